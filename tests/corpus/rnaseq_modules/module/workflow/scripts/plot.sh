exec 2> "${snakemake_log[0]}"
sed "s/TITLE/${snakemake_params[title]}/" "${snakemake_input[spec]}" > "${snakemake_output[0]}"
