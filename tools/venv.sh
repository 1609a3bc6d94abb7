#!/usr/bin/env bash
# Usage: tools/venv.sh 8|9 — a virtualenv with the supported Snakemake of that major, its executor
# plugins, and this project installed (not editable: the ordinary test user must be able to read it all).
# Made from Debian's /usr/bin/python3 under /opt, since the default Python lives under /root (mode 700).
# Prints the venv's path. Idempotent: reinstalls this project only when its files changed, the rest only
# when the pins or pyproject.toml did.
set -euo pipefail
major=${1:?usage: tools/venv.sh 8|9}
repo=$(cd "$(dirname "$0")/.." && pwd)
case $major in
  # The versions we support and test: the latest 8.x and 9.x (with pygments, for --report).
  8) pins="snakemake[reports]==8.30.0 snakemake-executor-plugin-cluster-generic==1.0.9" ;;
  9) pins="snakemake[reports]==9.27.1 snakemake-executor-plugin-cluster-generic==1.0.9 snakemake-executor-plugin-slurm==2.8.0 snakemake-executor-plugin-htcondor==0.3.0" ;;
  *) echo "tools/venv.sh: Snakemake major must be 8 or 9" >&2; exit 2 ;;
esac
venv=${SINGCONTAIN_HOME:-/opt/singcontain}/venv-snakemake$major
log=$(mktemp /tmp/singcontain-venv.XXXXXX.log)
trap 'rm -f "$log"' EXIT
fail() { tail -30 "$log" >&2; echo "tools/venv.sh: creating $venv failed" >&2; exit 1; }
# Each step checked on its own: `set -e` does not apply inside a `{ …; } || …` block.
stamp="$pins batch-executors-and-test-packages-apart $(sha256sum "$repo/pyproject.toml" | cut -c1-16)"
# A changed stamp makes the venv anew: packages of an earlier layout must not stay behind on Snakemake's path.
if [ -e "$venv" ] && [ "$(cat "$venv/.singcontain-stamp" 2>/dev/null)" != "$stamp" ]; then rm -rf "$venv"; fi
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$venv" >>"$log" 2>&1 \
    || { apt-get install -y -q python3-venv >>"$log" 2>&1 && /usr/bin/python3 -m venv "$venv" >>"$log" 2>&1; } || fail
fi
if [ "$(cat "$venv/.singcontain-stamp" 2>/dev/null)" != "$stamp" ]; then
  "$venv/bin/pip" install -q --upgrade pip >>"$log" 2>&1 || fail
  # Snakemake imports every executor plugin on its path at each start, and lists every folder of every package
  # on it once per plugin registry. On the test venv's path that costs it half its start-up (measured): the
  # Slurm and HTCondor plugins bring pandas, numpy and HTCondor's bindings; the test extra brings pytest,
  # hypothesis, rdflib and more. Both groups live apart, each in a folder of its own with what it needs, the
  # dependencies it shares with the venv at the venv's versions: $venv/batch-executors, which the tests put on
  # PYTHONPATH only for a run that submits to a batch system (tests/support.py), and $venv/test-packages,
  # which tools/test.sh puts on PYTHONPATH for pytest alone.
  batch=$(echo "$pins" | tr ' ' '\n' | grep -E '^snakemake-executor-plugin-(slurm|htcondor)==' || true)
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q $(echo "$pins" | tr ' ' '\n' | grep -vxF "$batch") "$repo" >>"$log" 2>&1 || fail
  "$venv/bin/pip" freeze --exclude-editable | grep -iv '^snakemake[-_]singcontain' >"$venv/.singcontain-runtime-pins"
  apart() {  # FOLDER REQUIREMENT...
    local folder=$1; shift
    rm -rf "${venv:?}/$folder"
    [ $# = 0 ] || "$venv/bin/pip" install -q --target "$venv/$folder" -c "$venv/.singcontain-runtime-pins" "$@" \
      >>"$log" 2>&1
  }
  # shellcheck disable=SC2086
  apart batch-executors $batch || fail
  # shellcheck disable=SC2046
  apart test-packages $("$venv/bin/python" -c 'import sys, tomllib
print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["test"]))' \
      "$repo/pyproject.toml") || fail
  echo "$stamp" > "$venv/.singcontain-stamp"
  rm -f "$venv/.singcontain-project"
fi
# The project itself, again whenever one of its files changed (~5 s; skipped when nothing did).
project=$(cd "$repo" && find setup.py pyproject.toml snakemake_singcontain.pth snakemake_singcontain -name __pycache__ -prune \
          -o -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
if [ "$(cat "$venv/.singcontain-project" 2>/dev/null)" != "$project" ] \
   || ! compgen -G "$venv/lib/python3*/site-packages/snakemake_singcontain/__init__.py" >/dev/null; then
  rm -f "$venv/.singcontain-project"
  "$venv/bin/pip" install -q --no-deps --force-reinstall "$repo" >>"$log" 2>&1 || fail
  chmod -R a+rX "$venv"
  echo "$project" > "$venv/.singcontain-project"
fi
echo "$venv"
