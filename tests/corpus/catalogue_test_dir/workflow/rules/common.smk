import csv

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

with open(config["samples"]) as f:
    SAMPLES = list(csv.DictReader(f, delimiter="\t"))
for row in SAMPLES:
    validate(row, schema="../schemas/samples.schema.yaml")

NAMES = [row["sample"] for row in SAMPLES]
