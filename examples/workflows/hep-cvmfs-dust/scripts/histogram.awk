# A text histogram of simulated masses: awk -f histogram.awk CONDITIONS RUN...
# CONDITIONS gives hist_min, hist_max and hist_bins; each RUN file holds one mass per line ('#' = comment).
FNR == NR {
    if ($1 == "hist_min") lo = $2
    if ($1 == "hist_max") hi = $2
    if ($1 == "hist_bins") bins = $2
    next
}
/^#/ { next }
{
    n++; sum += $1; sumsq += $1 * $1
    if ($1 < lo) under++
    else if ($1 >= hi) over++
    else count[int(($1 - lo) / ((hi - lo) / bins))]++
}
END {
    width = (hi - lo) / bins
    peak = 0
    for (b = 0; b < bins; b++) if (count[b] > peak) peak = count[b]
    mean = sum / n
    printf "# m(mu mu) [GeV]: %d events, mean %.2f, rms %.2f, %d below %g, %d above %g\n", n, mean, root(sumsq / n - mean * mean), under, lo, over, hi
    for (b = 0; b < bins; b++) {
        bar = ""
        for (i = 0; i < int(50 * count[b] / peak + 0.5); i++) bar = bar "#"
        printf "%6.1f-%6.1f | %-50s %d\n", lo + b * width, lo + (b + 1) * width, bar, count[b]
    }
}

# Newton's square root: some awks (busybox's) have no math functions.
function root(x,    r, i) {
    if (x <= 0) return 0
    r = x
    for (i = 0; i < 60; i++) r = (r + x / r) / 2
    return r
}
