# One summary row for a sample: awk -f summarize.awk REFERENCE.tsv SAMPLE.hits.tsv
# The header instead: awk -v header=1 -f summarize.awk REFERENCE.tsv
FNR == NR { if (FNR > 1) order[++n] = $1; next }
{ reads++; if ($2 != "*") { mapped++; on[$2]++ } }
END {
    if (header) {
        printf "sample\treads\tmapped\tmapped_percent"
        for (i = 1; i <= n; i++) printf "\t%s", order[i]
        printf "\n"
        exit
    }
    sample = FILENAME; sub(/.*\//, "", sample); sub(/\.hits\.tsv$/, "", sample)
    printf "%s\t%d\t%d\t%.1f", sample, reads, mapped, reads ? 100 * mapped / reads : 0
    for (i = 1; i <= n; i++) printf "\t%d", on[order[i]]
    printf "\n"
}
