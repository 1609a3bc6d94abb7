#!/usr/bin/env bash
# The README's first command: on a fresh Debian 12/13 machine, as root, run the example
# examples/workflows/hep-cvmfs-dust contained, as an ordinary user, in the real Apptainer.
#
#   bash tools/demo.sh
#
# Installs Apptainer (tools/install-apptainer.sh), creates the ordinary user singtest if missing, makes the
# Snakemake 9 virtualenv (tools/venv.sh 9), builds the local busybox+bash test image (no registry needed),
# then copies the example into a fresh work folder with stand-in /cvmfs, /afs and DUST folders and runs it
# as singtest. Idempotent: every run starts the work and DUST folders afresh. Quiet but for the summary.
#
# Environment: SINGCONTAIN_DEMO_DIR (default /var/tmp/singcontain-demo), SINGCONTAIN_TEST_USER (singtest).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
demo=${SINGCONTAIN_DEMO_DIR:-/var/tmp/singcontain-demo}
user=${SINGCONTAIN_TEST_USER:-singtest}
example=hep-cvmfs-dust

# --- what this machine lacks: say it, and what to run instead ------------------------------------------
by_hand() {
    cat >&2 <<EOF
To run the example by hand instead, as an ordinary user on a machine with Apptainer >= 1.1
(https://apptainer.org/docs/admin/latest/installation.html) and Python >= 3.11:
    pip install '$repo'              # snakemake-singcontain and Snakemake 8.30+ or 9.x
    cp -r '$repo/examples/workflows/$example' ~/$example && cd ~/$example
    mkdir -p /tmp/dust-\$USER
    CVMFS_ROOT=\$PWD/stand-in/cvmfs AFS_ROOT=\$PWD/stand-in/afs DUST=/tmp/dust-\$USER \\
        snakemake --sdm apptainer -c2 --config image=IMAGE
IMAGE: a .sif or docker:// image with bash and awk; with busybox-static and bash-static installed,
    bash '$repo/tools/build-test-image.sh' /tmp/test.sif    builds one without any registry.
EOF
}
missing=()
[[ $(id -u) == 0 ]] || missing+=("root: it installs packages and runs the example as the ordinary user $user; run: sudo bash tools/demo.sh")
# shellcheck source=/dev/null
os_id=$(. /etc/os-release 2>/dev/null && echo "${ID:-?} ${VERSION_ID:-?}") || os_id="unknown"
[[ $os_id == "debian 12" || $os_id == "debian 13" ]] \
    || missing+=("Debian 12 or 13 (this is: $os_id): tools/install-apptainer.sh installs Debian's Apptainer build")
[[ $(uname -m) == x86_64 ]] || missing+=("x86_64 (this is: $(uname -m)): tools/install-apptainer.sh installs an x86_64 build")
if ((${#missing[@]})); then
    echo "tools/demo.sh: this machine is missing what the demo needs:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    by_hand
    exit 2
fi

log=$(mktemp /tmp/singcontain-demo.XXXXXX.log)
trap 'rm -f "$log"' EXIT
step() { # step DESCRIPTION COMMAND...: run quietly; on failure show the end of its output and stop
    local what=$1
    shift
    if ! "$@" >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "tools/demo.sh: $what failed" >&2
        exit 1
    fi
}

# --- the machine: Apptainer, the ordinary user, Snakemake, the image ------------------------------------
step "installing Apptainer (tools/install-apptainer.sh)" bash "$repo/tools/install-apptainer.sh"
id -u "$user" >/dev/null 2>&1 || step "creating the user $user" useradd -m "$user"
venv=$(bash "$repo/tools/venv.sh" 9 2>>"$log") || { tail -n 30 "$log" >&2; echo "tools/demo.sh: tools/venv.sh 9 failed" >&2; exit 1; }
mkdir -p "$demo/image"
chmod 755 "$demo" "$demo/image"
image=$demo/image/test.sif
step "building the test image (tools/build-test-image.sh)" bash "$repo/tools/build-test-image.sh" "$image"

# --- a fresh work folder and stand-in site folders ------------------------------------------------------
work=$demo/work site=$demo/site dust=$demo/dust
rm -rf "$work" "$site" "$dust"
mkdir -p "$work" "$site" "$dust"
cp -r "$repo/examples/workflows/$example/." "$work/"
mv "$work/stand-in/cvmfs" "$work/stand-in/afs" "$site/"   # outside the workdir, as on a site
rm -rf "$work/stand-in" "$work/.snakemake" "$work/results" "$work/logs"
chmod -R a-w "$site"                                        # a real /cvmfs is read-only too
chmod 755 "$site" "$work" "$dust"
chown -R "$user:" "$work" "$dust"

# --- the run, as the ordinary user ---------------------------------------------------------------------
home=$(getent passwd "$user" | cut -d: -f6)
run_env=(HOME="$home" USER="$user" LOGNAME="$user" LANG=C.UTF-8 PATH="$venv/bin:/usr/local/bin:/usr/bin:/bin"
         CVMFS_ROOT="$site/cvmfs" AFS_ROOT="$site/afs" DUST="$dust")
command=(runuser -u "$user" -- env -i "${run_env[@]}"
         "$venv/bin/snakemake" --sdm apptainer -c2 --verbose --config "image=$image")
if ! (cd "$work" && "${command[@]}") >"$work/demo-run.log" 2>&1; then
    grep -vE '^(DEBUG|\s*$)' "$work/demo-run.log" | tail -n 40 >&2
    echo "tools/demo.sh: the example failed; full output: $work/demo-run.log" >&2
    exit 1
fi

# --- the summary ---------------------------------------------------------------------------------------
sim=$dust/hep-cvmfs-dust/sim
histogram=$work/results/mass_histogram.txt
cat <<EOF
snakemake-singcontain demo: examples/workflows/$example ran contained, as $user
($(apptainer --version), Snakemake $("$venv/bin/snakemake" --version)).

  work folder   $work   (Snakefile, containment.yaml, logs/, demo-run.log)
  simulation    $sim/run{1,2,3}.txt   (DUST stand-in; written under containall)
  histogram     $histogram   (plot: contain + pid)
  stand-ins     CVMFS_ROOT=$site/cvmfs  AFS_ROOT=$site/afs  DUST=$dust

Each rule's container, as Snakemake started it:
EOF
awk '/^(local)?rule [A-Za-z0-9_]+:$/ { rule = substr($2, 1, length($2) - 1) }
     / exec --home / && !seen[rule]++ { sub(/^.* exec /, "exec "); sub(/ bash -c .*/, ""); print "  " rule ":\n    apptainer " $0 }' \
    "$work/demo-run.log"
echo
echo "\$ head -3 $sim/run1.txt"
head -3 "$sim/run1.txt" | sed 's/^/  /'
echo "\$ head -1 results/mass_histogram.txt; grep -E '^ *(8[89]|9[0-4])\\.0' results/mass_histogram.txt"
# No bin in that range is a result to show, not a failure (grep exits 1 then, which pipefail would pass on).
{ head -1 "$histogram"; grep -E '^ *(8[89]|9[0-4])\.0' "$histogram" || echo "(no bins from 88.0 to 94.0)"; } | sed 's/^/  /'
echo
echo "Run it again by hand: cd $work && ${command[*]}"
