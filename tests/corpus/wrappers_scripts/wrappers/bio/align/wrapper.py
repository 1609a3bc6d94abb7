"""A stand-in wrapper (align), in the form Snakemake's wrapper: directive loads."""
from snakemake.shell import shell

shell("echo align {snakemake.input} > {snakemake.output[0]} 2> {snakemake.log[0]}")
