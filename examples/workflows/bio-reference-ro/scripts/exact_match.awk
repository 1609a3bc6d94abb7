# Exact matches of reads to a reference: awk -f exact_match.awk GENOME.fa READS.fq
# One line per read: read name, contig and 1-based position of its first exact match ('*' and 0: none).
FNR == NR {
    if (/^>/) { name = substr($1, 2); order[++n] = name }
    else seq[name] = seq[name] $0
    next
}
FNR % 4 == 1 { read = substr($1, 2) }
FNR % 4 == 2 {
    contig = "*"; position = 0
    for (i = 1; i <= n && !position; i++) if ((p = index(seq[order[i]], $1))) { contig = order[i]; position = p }
    print read "\t" contig "\t" position
    reads++; if (position) mapped++
}
END { printf "%d reads, %d mapped\n", reads, mapped > "/dev/stderr" }
