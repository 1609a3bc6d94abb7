exec 2> "${snakemake_log[0]}"
for sample in "${snakemake_input[@]}"; do
    printf '%s\t%s\n' "$(basename "$sample")" "$(cat "$sample"/abundance.txt)"
done > "${snakemake_output[0]}"
