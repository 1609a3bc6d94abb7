# fit.sh OUT IN...: one line per input.
set -euo pipefail
out=$1; shift
for f in "$@"; do echo "$f $(wc -l < "$f")"; done > "$out"
