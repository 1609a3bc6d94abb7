"""A stand-in wrapper (fetch), in the form Snakemake's wrapper: directive loads."""
from snakemake.shell import shell

shell("echo fetch {snakemake.input} > {snakemake.output[0]} 2> {snakemake.log[0]}")
