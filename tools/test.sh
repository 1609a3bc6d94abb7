#!/usr/bin/env bash
# The project's test command (README, .ci/run): sets up everything the tests need on a fresh Debian 12/13
# machine as root — Apptainer, the ordinary test user, one virtualenv per supported Snakemake major,
# a single-node Slurm and a personal HTCondor — runs the suite, and stops the daemons it started.
# Extra arguments go to the first pytest run (e.g. tools/test.sh -k refused).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "tools/test.sh: run as root (it installs packages and switches to the test user)" >&2; exit 2; }

start=$(date +%s)
bash tools/install-apptainer.sh
id -u singtest >/dev/null 2>&1 || useradd -m singtest
venv9=$(bash tools/venv.sh 9)
venv8=$(bash tools/venv.sh 8)
bash tools/slurm.sh up
trap 'bash tools/slurm.sh down' EXIT
bash tools/htcondor.sh up
trap 'bash tools/htcondor.sh down; bash tools/slurm.sh down' EXIT
echo "set-up took $(( $(date +%s) - start )) s"

status=0
# Everything on Snakemake 9; the Snakemake-facing tests again on Snakemake 8 (Slurm's plugin: 9 only).
"$venv9/bin/python" -m pytest -p no:cacheprovider -q tests "$@" || status=$?
"$venv8/bin/python" -m pytest -p no:cacheprovider -q tests/integration -m "not slurm" || status=$?
exit $status
