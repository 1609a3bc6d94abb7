exec 2> "${snakemake_log[0]}"
for counts in "${snakemake_input[@]}"; do
    printf '%s\t%s\n' "$(basename "$(dirname "$counts")")" "$(cat "$counts")"
done > "${snakemake_output[0]}"
