exec 2> "${snakemake_log[0]}"
for count in "${snakemake_input[@]}"; do
    printf '%s\t%s\n' "$(basename "$count" .txt)" "$(cat "$count")"
done > "${snakemake_output[0]}"
