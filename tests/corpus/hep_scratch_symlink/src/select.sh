# select.sh IN OUT: the experiment's environment from /cvmfs, then keep the events that pass (every line here).
set -euo pipefail
source /cvmfs/lhcb.example.org/setup.sh
echo "selected with $ANALYSIS_RELEASE" > "$2"
cat "$1" >> "$2"
