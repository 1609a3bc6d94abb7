"""A stand-in wrapper (index), in the form Snakemake's wrapper: directive loads."""
from snakemake.shell import shell

shell("echo index {snakemake.input} > {snakemake.output[0]} 2> {snakemake.log[0]}")
