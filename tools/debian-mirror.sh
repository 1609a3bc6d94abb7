#!/usr/bin/env bash
# Print the base URL of the Debian archive this machine's apt uses (e.g. http://HOST/debian), so that
# installers fetch from the site's own mirror or proxy instead of a fixed host.
#
#   bash tools/debian-mirror.sh      # one URL on stdout, exit 0; or a message on stderr, exit 1
#
# Reads the one-line format (sources.list, sources.list.d/*.list) and the deb822 format
# (sources.list.d/*.sources; `Enabled: no` stanzas skipped). Only `deb` entries of a Debian suite
# (this system's codename or a release name/alias) with component main count. Preferred: the main
# suite over -updates/-backports, a network URI over file:/cdrom:. Security archives never count
# (they hold only security updates).
# Environment: SINGCONTAIN_APT_ROOT (default /) — a root holding etc/apt/..., for tests.
set -euo pipefail

root=${SINGCONTAIN_APT_ROOT:-/}
root=${root%/}
list=$root/etc/apt/sources.list
parts=$root/etc/apt/sources.list.d
if [[ -z $root ]] && command -v apt-config >/dev/null; then
    # The real system: honour a relocated sources list, as apt does.
    eval "$(apt-config shell list Dir::Etc::sourcelist/f parts Dir::Etc::sourceparts/d)"
    parts=${parts%/}
fi

codename=$(sed -n 's/^VERSION_CODENAME=//p' "$root/etc/os-release" "$root/usr/lib/os-release" 2>/dev/null |
           tr -d '"' | head -n1 || true)

files=()
[[ -f $list ]] && files+=("$list")
# sources.list.d in name order, whatever the extension, as apt reads it.
mapfile -t -O ${#files[@]} files < <(find "$parts" -maxdepth 1 -type f \( -name '*.list' -o -name '*.sources' \) 2>/dev/null | LC_ALL=C sort)

# Each file gives candidates "score<TAB>order<TAB>uri"; the lowest score, then the first one, wins.
best=$(for i in "${!files[@]}"; do
    f=${files[i]}
    awk -v codename="$codename" -v file="$i" -v deb822="$([[ $f == *.sources ]] && echo 1 || echo 0)" '
    BEGIN {
        n = split("jessie stretch buster bullseye bookworm trixie forky duke sid oldoldstable oldstable " \
                  "stable testing unstable experimental " codename, names, " ")
        for (i = 1; i <= n; i++) debian[names[i]] = 1
    }
    # suite -> 0 main suite, 1 -updates/-backports/..., -1 not a Debian suite or a security one
    function rank(suite,   base) {
        if (suite ~ /-security$|\/updates$/) return -1
        base = suite; sub(/-(updates|backports|backports-sloppy|proposed-updates)$/, "", base)
        if (!(base in debian)) return -1
        return base == suite ? 0 : 1
    }
    function offer(type, uri, suite, comps,   r) {
        if (type != "deb" || (" " comps " ") !~ / main /) return
        if (uri ~ /debian-security/) return
        r = rank(suite); if (r < 0) return
        if (uri ~ /^(cdrom|file|copy):/) r += 2   # usable only here, and cdrom: hardly at all
        sub(/\/+$/, "", uri)
        printf "%d\t%04d%06d\t%s\n", r, file, ++order, uri
    }
    function flush(   i, j, t, u, s, nt, nu, ns) {
        if (tolower(f["enabled"]) !~ /^ *(no|false|0) *$/) {
            nt = split(f["types"], t, " "); nu = split(f["uris"], u, " "); ns = split(f["suites"], s, " ")
            for (i = 1; i <= nt; i++) for (j = 1; j <= nu; j++) for (k = 1; k <= ns; k++)
                offer(t[i], u[j], s[k], f["components"])
        }
        delete f; key = ""
    }
    { sub(/\r$/, "") }
    deb822 && /^[ \t]*$/ { flush(); next }
    deb822 && /^#/ { next }
    deb822 && /^[ \t]/ { if (key != "") f[key] = f[key] " " $0; next }   # continuation line
    deb822 {
        key = tolower(substr($0, 1, index($0, ":") - 1)); f[key] = substr($0, index($0, ":") + 1)
        gsub(/\t/, " ", f[key]); next
    }
    {   # one-line format: deb [options] uri suite components...
        sub(/#.*/, ""); if (NF < 3) next
        i = 2
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        comps = ""; for (j = i + 2; j <= NF; j++) comps = comps " " $j
        offer($1, $i, $(i + 1), comps)
    }
    END { if (deb822) flush() }
    ' "$f"
done | sort -t$'\t' -k1,1n -k2,2 | head -n1 | cut -f3) || true

if [[ -z $best ]]; then
    echo "debian-mirror.sh: no Debian archive found in ${files[*]:-$list and $parts/*.{list,sources}} (want an enabled 'deb' entry of a Debian suite with component main, not a security archive); add your mirror to the apt sources" >&2
    exit 1
fi
echo "$best"
