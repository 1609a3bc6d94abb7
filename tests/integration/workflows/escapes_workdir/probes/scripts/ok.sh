# A bash script: rule (the test image has no Python); Snakemake runs it with bash inside the container.
echo fine > "${snakemake_output[0]}" 2> "${snakemake_log[0]}"
