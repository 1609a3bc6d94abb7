#!/usr/bin/env bash
# The project's test command (README, .ci/run): sets up everything the tests need on a fresh Debian 12/13
# machine as root — Apptainer, the ordinary test user, one virtualenv per supported Snakemake major,
# a single-node Slurm and a personal HTCondor — runs the suite, and stops the daemons it started.
#
#   tools/test.sh [PYTEST ARGS...]     the whole suite (extra arguments go to the Snakemake 9 run, e.g. -k refused)
#   tools/test.sh --fast [PYTEST ARGS...]   the tier to run after each change (docs/developing.md)
#
# Each set-up step skips what is already done: an installed Apptainer, an up-to-date virtualenv (the project is
# reinstalled only when one of its files changed), a Slurm or HTCondor that already runs (and is left running).
# Tests run in parallel: SINGCONTAIN_TEST_WORKERS pytest-xdist workers (default 4; an integration test mostly
# waits for Snakemake's start-up, Apptainer and the batch systems' polls, so more workers than cores pay), and
# the Snakemake 8 run beside the Snakemake 9 one, with half as many. tests/conftest.py keeps the tests that share
# a fixture's run on one worker and hands out the longest first, by their durations in earlier runs (kept in
# each virtualenv).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "tools/test.sh: run as root (it installs packages and switches to the test user)" >&2; exit 2; }
fast=""
if [[ ${1:-} == --fast ]]; then fast=1; shift; fi
workers=${SINGCONTAIN_TEST_WORKERS:-4}

start=$(date +%s)
bash tools/install-apptainer.sh
id -u singtest >/dev/null 2>&1 || useradd -m singtest
timings() { echo "$1/.singcontain-test-timings.json"; }
# pytest and the other test packages live apart from Snakemake's path (tools/venv.sh): on PYTHONPATH for pytest.
pytest9() {
    env SINGCONTAIN_TEST_TIMINGS="$(timings "$venv9")" PYTHONPATH="$venv9/test-packages" "$venv9/bin/python" \
        -m pytest -p no:cacheprovider -q -n "$workers" --dist loadgroup "$@"
}
if [[ -n $fast ]]; then
    # The pure tests, and real contained runs and refusals on this machine's Apptainer: no batch system, one
    # Snakemake.
    venv9=$(bash tools/venv.sh 9)
    echo "set-up took $(( $(date +%s) - start )) s"
    pytest9 -m "not slurm and not htcondor" tests/unit tests/integration/test_contained.py \
        tests/integration/test_refused.py tests/integration/test_escapes.py "$@"
    exit
fi
started=()   # the batch systems this run started, stopped again at its end
out=$(mktemp -d /tmp/singcontain-test.XXXXXX)
trap 'for s in "${started[@]}"; do bash "tools/$s.sh" down; done; rm -rf "$out"' EXIT
# Both virtualenvs are made while the batch systems come up (pip beside apt and the daemons' start). venv.sh
# installs python3-venv with apt when it is missing: that comes first here, so that apt runs once at a time.
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || apt-get install -y -q python3-venv >/dev/null
venv_pids=()
for major in 9 8; do
    bash tools/venv.sh "$major" >"$out/venv$major" 2>"$out/venv$major.err" &
    venv_pids+=($!)
done
for s in slurm htcondor; do   # one after the other: on a fresh machine each may install packages with apt
    if bash "tools/$s.sh" status >/dev/null; then
        echo "$s.sh: already up; left running"
    else
        started=("$s" "${started[@]}")
        bash "tools/$s.sh" up
    fi
done
for i in 0 1; do
    wait "${venv_pids[i]}" || { cat "$out/venv$(( 9 - i )).err" >&2; exit 1; }
done
venv9=$(cat "$out/venv9") venv8=$(cat "$out/venv8")
echo "set-up took $(( $(date +%s) - start )) s"

# Everything on Snakemake 9. On Snakemake 8 again only what depends on Snakemake's internals (marked
# snakemake_internals: the plugin's hooks into Snakemake, real contained runs, the node side, escapes through
# Snakemake's own actions); the policy, the checks, the CLI's rendering and Apptainer's behaviour do not change
# with Snakemake's major. Slurm's executor plugin exists for Snakemake 9 only. Both at once: each keeps the
# machine busy while the other waits; the Snakemake 8 run's report follows the Snakemake 9 one's.
SINGCONTAIN_TEST_TIMINGS=$(timings "$venv8") PYTHONPATH="$venv8/test-packages" \
    "$venv8/bin/python" -m pytest -p no:cacheprovider -q -n $(( (workers + 1) / 2 )) --dist loadgroup \
    tests/integration -m "snakemake_internals and not slurm" >"$out/snakemake8" 2>&1 &
pid8=$!
status=0
pytest9 tests "$@" || status=$?
wait "$pid8" || status=$?
echo "--- Snakemake 8, the tests marked snakemake_internals:"
cat "$out/snakemake8"
exit $status
