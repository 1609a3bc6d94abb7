# Contig lengths from a FASTA index and GC content from the FASTA: awk -f reference_stats.awk GENOME.fa.fai GENOME.fa
FNR == NR { size[$1] = $2; order[++n] = $1; next }
/^>/ { name = substr($1, 2); next }
{ line = $0; gc[name] += gsub(/[GCgc]/, "", line) }
END {
    print "contig\tlength\tgc_percent"
    for (i = 1; i <= n; i++) printf "%s\t%d\t%.1f\n", order[i], size[order[i]], 100 * gc[order[i]] / size[order[i]]
}
