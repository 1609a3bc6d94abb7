# The number of annotated lines per sample, under the config's title.
{
    echo "${snakemake_params[title]}"
    for file in "${snakemake_input[@]}"; do
        echo "$(basename "$file" .txt) $(wc -l < "$file")"
    done
} > "${snakemake_output[0]}" 2> "${snakemake_log[0]}"
