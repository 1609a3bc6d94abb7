#!/usr/bin/env bash
# A throw-away single-node Slurm (munged + slurmctld + slurmd) for the tests, as root, without systemd.
#
#   tools/slurm.sh up|down|status       (status exits 0 only when up)
#
# Environment: SINGCONTAIN_SLURM_DIR (default /tmp/singcontain-slurm) holds slurm.conf, state, spool,
# logs and PIDs; SINGCONTAIN_SLURMCTLD_PORT / SINGCONTAIN_SLURMD_PORT (default 6817 / 6818).
# No accounting (no slurmdbd): `sacct` does not work, so Snakemake's slurm executor needs
# `--slurm-status-command squeue`, and cluster-generic needs tools/slurm-status.sh as status command.
# Works with Debian 12's Slurm 22.05 and Debian 13's 24.11: the config only sets plugins that exist in
# both and leaves every `*/none` plugin at its default (23.11 removed most of those plugins).
set -euo pipefail

D=${SINGCONTAIN_SLURM_DIR:-/tmp/singcontain-slurm}
CTLD_PORT=${SINGCONTAIN_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SINGCONTAIN_SLURMD_PORT:-6818}
PARTITION=main
# Our config files are symlinked into /etc/slurm: slurm.conf must be there (slurm-jobstep strips
# SLURM_CONF before its `srun`), and cgroup.conf is read from beside it.
CONF_FILES=(slurm.conf cgroup.conf)
PACKAGES=(slurmctld slurmd slurm-client munge)
DAEMONS=(munged slurmctld slurmd)  # start order; stopped in reverse

die() { echo "slurm.sh: $*" >&2; exit 1; }
note() { echo "slurm.sh: $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

pid_of() { cat "$D/run/$1.pid" 2>/dev/null || true; }
# A recorded PID counts only while it runs the same program (PIDs get reused) and is not a zombie.
alive() {
    local pid st; pid=$(pid_of "$1")
    [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] || return 1
    read -r _ _ st _ <"/proc/$pid/stat" 2>/dev/null && [[ $st != Z ]]
}

status() {
    local d n=0
    for d in "${DAEMONS[@]}"; do alive "$d" && n=$((n + 1)); done
    if ((n == ${#DAEMONS[@]})); then echo up; return 0; fi
    ((n == 0)) && echo down || echo "partly up ($n of ${#DAEMONS[@]} daemons)"
    return 1
}

down() {
    local d any
    # Jobs outlive slurmd (their slurmstepd is detached): cancel them all through our slurmctld first.
    if alive slurmctld && [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
        scancel --quiet $(squeue -h -o %i) 2>/dev/null || true
        for _ in $(seq 100); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.1; done
    fi
    # All at once: each daemon takes ~2 s to shut down, none needs another to do so.
    for d in "${DAEMONS[@]}"; do if alive "$d"; then kill -TERM "$(pid_of "$d")"; fi; done
    for _ in $(seq 100); do
        any=""
        for d in "${DAEMONS[@]}"; do if alive "$d"; then any=1; fi; done
        [[ -n $any ]] || break
        sleep 0.1
    done
    for d in "${DAEMONS[@]}"; do
        if alive "$d"; then note "$d ($(pid_of "$d")) ignored SIGTERM for 10 s, killing"; kill -KILL "$(pid_of "$d")"; fi
    done
    # Exited daemons stay zombies until PID 1 reaps them (~2 s here): wait a little so that `pgrep`
    # right after `down` shows nothing.
    for _ in $(seq 30); do
        any=""
        for d in "${DAEMONS[@]}"; do [[ $(cat "/proc/$(pid_of "$d")/comm" 2>/dev/null) == "$d" ]] && any=1; done
        [[ -n $any ]] || break
        sleep 0.1
    done
    rm -f "$D"/run/*.pid
    local f
    for f in "${CONF_FILES[@]}"; do   # remove only our own symlinks
        if ours "$f"; then rm -f "/etc/slurm/$f"; fi
    done
}

# Start "$@" as a session leader in the background, recording its PID under name $1
# (setsid execs in place here, so $! is the daemon itself; every daemon runs in the foreground).
start() {
    local name=$1; shift
    setsid "$@" </dev/null >>"$D/log/$name.out" 2>&1 &
    echo $! >"$D/run/$name.pid"
}

ours() { [[ -L /etc/slurm/$1 && $(readlink "/etc/slurm/$1") == "$D/$1" ]]; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

up() {
    local t0 missing=() p ver node cpus mem
    t0=$(now)
    [[ $(id -u) == 0 ]] || die "must run as root"
    if status >/dev/null; then note "already up (PIDs in $D/run)"; return 0; fi
    down >/dev/null   # a partial start: clean up what is left of it first

    for p in "${CONF_FILES[@]}"; do
        if [[ -e /etc/slurm/$p || -L /etc/slurm/$p ]] && ! ours "$p"; then
            die "/etc/slurm/$p exists and is not our symlink to $D/$p; refusing to touch it (move it away first)"
        fi
    done
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if ((${#missing[@]})); then
        note "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y -q --no-install-recommends "${missing[@]}" ||
          { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; }; } \
            >/tmp/singcontain-slurm-apt.log 2>&1 ||
            { tail -20 /tmp/singcontain-slurm-apt.log >&2; die "apt-get install failed"; }
    fi
    for p in $CTLD_PORT $SLURMD_PORT; do
        port_busy "$p" && die "port $p is already in use (another Slurm?); set SINGCONTAIN_SLURMCTLD_PORT/SINGCONTAIN_SLURMD_PORT"
    done

    # A fresh folder: only our own subfolders are wiped, never $D itself (it may be user-given).
    mkdir -p "$D"
    [[ $(stat -c %u "$D") == 0 && ! -L $D ]] || die "$D is not a root-owned folder"
    rm -rf "$D/state" "$D/spool" "$D/log" "$D/run" "$D/slurm.conf" "$D/cgroup.conf"
    mkdir -p "$D/state" "$D/spool" "$D/log" "$D/run"
    chmod 755 "$D" "$D/log"   # readable by the test user, for debugging

    ver=$(slurmctld -V | awk '{print $2}')
    node=$(hostname -s)
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.85}' /proc/meminfo)
    cat >"$D/slurm.conf" <<EOF
# Written by tools/slurm.sh for Slurm $ver. Single node, no accounting.
ClusterName=singcontain
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
# No cgroups here (no systemd): track job processes through /proc.
ProctrackType=proctrack/linuxproc
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Start submitted batch jobs within ~1 s instead of up to 3 s.
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
MailProg=/bin/true
# Finished jobs stay visible to squeue/scontrol for 5 min: tools/slurm-status.sh and the slurm
# executor's squeue mode rely on that (the latter falls back to sacct if MinJobAge < 3x its delay).
MinJobAge=300
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pidfile
SlurmdPidFile=$D/run/slurmd.pidfile
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    # Slurm >= 23.02 loads a cgroup plugin in slurmd even with proctrack/linuxproc, and fails without
    # systemd (cgroup/v2 wants a systemd scope) or without /sys/fs/cgroup: switch it off. 22.05 has no
    # "disabled" value and does not need cgroups here.
    if [[ $(printf '%s\n' "$ver" 23.02 | sort -V | head -n1) == 23.02 ]]; then
        echo "CgroupPlugin=disabled" >"$D/cgroup.conf"
    fi
    mkdir -p /etc/slurm
    for p in "${CONF_FILES[@]}"; do
        if [[ -f $D/$p ]]; then chmod 644 "$D/$p"; ln -sfn "$D/$p" "/etc/slurm/$p"; fi
    done

    # munged as user munge (it refuses keys/dirs owned by others); setpriv execs, so the PID is munged's.
    [[ -s /etc/munge/munge.key ]] || { mungekey -c 2>/dev/null || create-munge-key; chown munge:munge /etc/munge/munge.key; }
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    start munged setpriv --reuid=munge --regid=munge --init-groups munged -F
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    if ! alive munged || ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        tail "$D/log/munged.out" >&2; down; die "munged did not start (another munged running?)"
    fi

    start slurmctld slurmctld -D
    start slurmd slurmd -D -N "$node"

    local state=""
    for _ in $(seq 300); do
        state=$(sinfo -h -N -n "$node" -o %t 2>/dev/null || true)
        [[ $state == idle ]] && break
        status >/dev/null || break   # a daemon died: no point in waiting
        sleep 0.1
    done
    if [[ $state != idle ]]; then
        echo "slurm.sh: node not idle (state: '${state:-no answer}'; $(status)) after $(since "$t0") s; logs in $D/log:" >&2
        tail -n 15 "$D/log/slurmctld.log" "$D/log/slurmd.log" "$D"/log/*.out >&2 2>/dev/null || true
        down
        exit 1
    fi
    printf 'slurm.sh: up in %s s: Slurm %s, node %s (%s CPUs, %s MB), partition %s (default), slurmctld :%s, slurmd :%s, logs %s\n' \
        "$(since "$t0")" "$ver" "$node" "$cpus" "$mem" "$PARTITION" "$CTLD_PORT" "$SLURMD_PORT" "$D/log"
}

case ${1:-} in
    up) up ;;
    down)
        t0=$(now); was=$(status || true); down
        [[ $was == down ]] && note "was not up" || printf 'slurm.sh: down in %s s\n' "$(since "$t0")" ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
