#!/usr/bin/env bash
# A throw-away single-node Slurm (munged + slurmctld + slurmd) for the tests, as root, without systemd.
#
#   tools/slurm.sh up|down|status       (status exits 0 only when up)
#
# Environment: SINGCONTAIN_SLURM_DIR (default /tmp/singcontain-slurm) holds slurm.conf, state, spool,
# logs and PIDs; SINGCONTAIN_SLURMCTLD_PORT / SINGCONTAIN_SLURMD_PORT (default 6817 / 6818);
# SINGCONTAIN_SLURM_WAIT (default 120): seconds `up` waits for each daemon's answer before it gives up.
# `up` and `down` hold a lock (the folder's name + .lock), so concurrent calls run one after the other.
# Sourced (`source tools/slurm.sh`), it only defines its functions.
# No accounting (no slurmdbd): `sacct` does not work, so Snakemake's slurm executor needs
# `--slurm-status-command squeue`, and cluster-generic needs tools/slurm-status.sh as status command.
# On a machine whose service manager already runs (or, on installing the packages, just started) the
# daemons: a working munged is reused, never stopped; a slurmctld/slurmd listening on our ports is
# stopped (`systemctl stop` of its unit under systemd, else SIGTERM after recording its command line,
# user, environment and folder) and started again the same way by `down`, as is any /etc/slurm config
# of theirs that ours replaced (kept meanwhile as /etc/slurm/NAME.singcontain-saved).
# Works with Debian 12's Slurm 22.05 and Debian 13's 24.11: the config only sets plugins that exist in
# both and leaves every `*/none` plugin at its default (23.11 removed most of those plugins).
set -euo pipefail

D=${SINGCONTAIN_SLURM_DIR:-/tmp/singcontain-slurm}
CTLD_PORT=${SINGCONTAIN_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SINGCONTAIN_SLURMD_PORT:-6818}
PARTITION=main
WAIT=${SINGCONTAIN_SLURM_WAIT:-120}
LOCK=${D%/}.lock
# Our config files are symlinked into /etc/slurm: slurm.conf must be there (slurm-jobstep strips
# SLURM_CONF before its `srun`), and cgroup.conf is read from beside it.
CONF_FILES=(slurm.conf cgroup.conf)
SAVED=singcontain-saved
PACKAGES=(slurmctld slurmd slurm-client munge)
DAEMONS=(munged slurmctld slurmd)  # start order; stopped in reverse

die() { echo "slurm.sh: $*" >&2; exit 1; }
note() { echo "slurm.sh: $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

pid_of() { cat "$D/run/$1.pid" 2>/dev/null || cat "$D/run/$1.reused" 2>/dev/null || true; }
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
    if ours_alive slurmctld && [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
        scancel --quiet $(squeue -h -o %i) 2>/dev/null || true
        for _ in $(seq 100); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.1; done
    fi
    # All at once: each daemon takes ~2 s to shut down, none needs another to do so.
    # A daemon may exit between the check and the signal: that is what we want, not an error.
    for d in "${DAEMONS[@]}"; do if ours_alive "$d"; then kill -TERM "$(pid_of "$d")" 2>/dev/null || true; fi; done
    for _ in $(seq 100); do
        any=""
        for d in "${DAEMONS[@]}"; do if ours_alive "$d"; then any=1; fi; done
        [[ -n $any ]] || break
        sleep 0.1
    done
    for d in "${DAEMONS[@]}"; do
        if ours_alive "$d"; then note "$d ($(pid_of "$d")) ignored SIGTERM for 10 s, killing"; kill -KILL "$(pid_of "$d")" 2>/dev/null || true; fi
    done
    # Exited daemons stay zombies until PID 1 reaps them (~2 s here): wait a little so that `pgrep`
    # right after `down` shows nothing.
    for _ in $(seq 30); do
        any=""
        for d in "${DAEMONS[@]}"; do [[ -e $D/run/$d.pid && $(cat "/proc/$(pid_of "$d")/comm" 2>/dev/null) == "$d" ]] && any=1; done
        [[ -n $any ]] || break
        sleep 0.1
    done
    rm -f "$D"/run/*.pid "$D"/run/*.reused
    local f
    for f in "${CONF_FILES[@]}"; do   # remove only our own symlinks; put back what they replaced
        if ours "$f"; then rm -f "/etc/slurm/$f"; fi
        if [[ -e /etc/slurm/$f.$SAVED && ! -e /etc/slurm/$f ]]; then mv "/etc/slurm/$f.$SAVED" "/etc/slurm/$f"; fi
    done
    restore_foreign
}

ours_alive() { [[ -e $D/run/$1.pid ]] && alive "$1"; }

# --- Daemons of the machine's own (package services) on our ports: stopped by `up`, restarted by `down`.
# One folder per stopped daemon under $D/foreign/N-NAME: `unit` (systemd) or cmdline/environ (NUL-
# separated), uid, gid, cwd, exe. Kept out of the folders `up` wipes.
listener() {  # PID of the process listening on TCP port $1 (from /proc: minimal roots have no ss)
    local inode link
    inode=$(awk -v port="$(printf ':%04X' "$1")" '$4 == "0A" && substr($2, length($2) - 4) == port {print $10; exit}' \
            /proc/net/tcp /proc/net/tcp6 2>/dev/null)
    [[ -n $inode ]] || return 0
    link=$(find /proc/[0-9]*/fd -lname "socket:\[$inode\]" -print -quit 2>/dev/null || true)  # processes come and go
    [[ -z $link ]] || cut -d/ -f3 <<<"$link"
}
pid_named() { { grep -lx "$1" /proc/[0-9]*/comm 2>/dev/null || true; } | head -n1 | cut -d/ -f3; }  # no pgrep in minimal roots
stop_foreign() {  # port
    local pid name unit rec st
    pid=$(listener "$1")
    [[ -n $pid ]] || return 0
    name=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    [[ $name == slurmctld || $name == slurmd ]] \
        || { down; die "port $1 is in use by ${name:-an unknown process} (PID ${pid:-?}); set SINGCONTAIN_SLURMCTLD_PORT/SINGCONTAIN_SLURMD_PORT"; }
    rec=$D/foreign/$(date +%s%N)-$name
    mkdir -p "$rec"
    unit=$(sed -n 's|^0::.*/\([^/]*\.service\)$|\1|p' "/proc/$pid/cgroup" 2>/dev/null || true)
    if [[ $(cat /proc/1/comm) == systemd && -n $unit ]]; then
        echo "$unit" >"$rec/unit"
        note "stopping $unit (its $name holds port $1; started again by down)"
        systemctl stop "$unit"
        return
    fi
    # The daemon may exit while it is being recorded: then there is nothing to stop, nor to start again.
    if ! { cp "/proc/$pid/cmdline" "$rec/cmdline" && cp "/proc/$pid/environ" "$rec/environ" &&
           readlink "/proc/$pid/exe" >"$rec/exe" && readlink "/proc/$pid/cwd" >"$rec/cwd" &&
           awk '/^Uid:/ {print $2 >"'"$rec"'/uid"} /^Gid:/ {print $2 >"'"$rec"'/gid"}' "/proc/$pid/status"; } 2>/dev/null; then
        rm -rf "$rec"
        note "$name (PID $pid) on port $1 exited by itself"
    else
        note "stopping $name (PID $pid, $(tr '\0' ' ' <"$rec/cmdline"), uid $(cat "$rec/uid")) on port $1; started again by down"
        kill -TERM "$pid" 2>/dev/null || true
    fi
    for _ in $(seq 100); do
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || break
        read -r _ _ st _ <"/proc/$pid/stat" 2>/dev/null && [[ $st == Z ]] && break
        sleep 0.1
    done
    for _ in $(seq 50); do [[ -z $(listener "$1") ]] && break; sleep 0.1; done
}
restore_foreign() {
    local recs rec name args envs port i prog
    recs=("$D"/foreign/*/)
    for ((i = ${#recs[@]} - 1; i >= 0; i--)); do   # in reverse order of stopping: slurmctld first
        rec=${recs[i]}
        [[ -d $rec ]] || continue
        name=${rec%/}; name=${name##*-}
        if [[ -f $rec/unit ]]; then
            systemctl start "$(cat "$rec/unit")" || note "could not start $(cat "$rec/unit") again"
        else
            mapfile -d '' -t args <"$rec/cmdline"; mapfile -d '' -t envs <"$rec/environ"
            # The program by the name it was started with (/usr/sbin/slurmd is a symlink to slurmd-wlm,
            # and the process name follows the name used), found as it was: from its folder and PATH.
            prog=$(cd "$(cat "$rec/cwd")" && PATH=$(printf '%s\n' "${envs[@]}" | sed -n 's/^PATH=//p') \
                   command -v "${args[0]}" || cat "$rec/exe")
            # Same user, folder, environment and argv (argv[0] included) as before, detached like a service.
            (cd "$(cat "$rec/cwd")" && exec setsid setpriv --reuid="$(cat "$rec/uid")" --regid="$(cat "$rec/gid")" \
                --init-groups env -i "${envs[@]}" bash -c 'exec -a "$0" "$@"' "${args[0]}" "$prog" "${args[@]:1}" \
                </dev/null >/dev/null 2>&1 8>&- &)
        fi
        [[ $name == slurmctld ]] && port=$CTLD_PORT || port=$SLURMD_PORT
        for _ in $(seq 100); do [[ -n $(listener "$port") ]] && break; sleep 0.1; done
        [[ -n $(listener "$port") ]] && note "started the machine's $name again" || note "the machine's $name did not start again (nothing listens on port $port)"
        rm -rf "$rec"
    done
}

# Start "$@" as a session leader in the background, recording its PID under name $1
# (setsid execs in place here, so $! is the daemon itself; every daemon runs in the foreground).
start() {
    local name=$1; shift
    setsid "$@" </dev/null >>"$D/log/$name.out" 2>&1 8>&- &   # 8: the lock, which must not outlive us
    echo $! >"$D/run/$name.pid"
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
ctld_answers() { scontrol ping 2>/dev/null | grep -q ' is UP'; }
node_state() { sinfo -h -N -n "$1" -o %t 2>/dev/null || true; }
node_idle() { [[ $(node_state "$1") == idle ]]; }

# True once the daemon recorded as $1 has exited (or is a zombie). Unlike `alive`, a PID still being exec'd
# into its program (its name still that of the shell) has not exited.
exited() {
    local pid st; pid=$(pid_of "$1")
    [[ -n $pid ]] || return 0
    read -r _ _ st _ <"/proc/$pid/stat" 2>/dev/null || return 0
    [[ $st == Z ]]
}

# await WHAT COMMAND...: asks COMMAND every 0.2 s until it succeeds, for up to $WAIT s (a busy machine may need
# far more than the usual second); gives up early when a daemon started here has exited.
await() {
    local what=$1 end=$((SECONDS + WAIT)) told="" d; shift
    until "$@"; do
        for d in "${DAEMONS[@]}"; do
            if [[ -e $D/run/$d.pid ]] && exited "$d"; then WHY="$d exited"; return 1; fi
        done
        ((SECONDS < end)) || { WHY="waited ${WAIT} s"; return 1; }
        if [[ -z $told ]] && ((SECONDS + WAIT - end >= 10)); then note "still waiting for $what"; told=1; fi
        sleep 0.2
    done
}

# A start that failed: why, the daemons' logs, and nothing of ours left running.
fail() {
    echo "slurm.sh: $1 (${WHY:-}; $(status || true)) after $(since "$T0") s; logs in $D/log:" >&2
    tail -n 15 "$D/log/slurmctld.log" "$D/log/slurmd.log" "$D"/log/*.out >&2 2>/dev/null || true
    down
    exit 1
}
ours() { [[ -L /etc/slurm/$1 && $(readlink "/etc/slurm/$1") == "$D/$1" ]]; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

up() {
    local missing=() p ver node cpus mem
    T0=$(now)
    [[ $(id -u) == 0 ]] || die "must run as root"
    if status >/dev/null; then note "already up (PIDs in $D/run)"; return 0; fi
    down >/dev/null   # a partial start: clean up what is left of it first

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

    # A fresh folder: only our own subfolders are wiped, never $D itself (it may be user-given).
    mkdir -p "$D"
    [[ $(stat -c %u "$D") == 0 && ! -L $D ]] || die "$D is not a root-owned folder"
    rm -rf "$D/state" "$D/spool" "$D/log" "$D/run" "$D/slurm.conf" "$D/cgroup.conf"
    mkdir -p "$D/state" "$D/spool" "$D/log" "$D/run"
    chmod 755 "$D" "$D/log"   # readable by the test user, for debugging

    # The packages' own units may run (or have just been started by the install above) on our ports.
    stop_foreign "$SLURMD_PORT"; stop_foreign "$CTLD_PORT"
    for p in $CTLD_PORT $SLURMD_PORT; do
        port_busy "$p" && { down; die "port $p is still in use; set SINGCONTAIN_SLURMCTLD_PORT/SINGCONTAIN_SLURMD_PORT"; }
    done

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
        [[ -f $D/$p ]] || continue
        if [[ -e /etc/slurm/$p || -L /etc/slurm/$p ]] && ! ours "$p"; then
            [[ -e /etc/slurm/$p.$SAVED ]] && { down; die "/etc/slurm/$p and /etc/slurm/$p.$SAVED both exist; move one away"; }
            note "/etc/slurm/$p kept as /etc/slurm/$p.$SAVED until down"
            mv "/etc/slurm/$p" "/etc/slurm/$p.$SAVED"
        fi
        chmod 644 "$D/$p"; ln -sfn "$D/$p" "/etc/slurm/$p"
    done

    # munged as user munge (it refuses keys/dirs owned by others); setpriv execs, so the PID is munged's.
    [[ -s /etc/munge/munge.key ]] || { mungekey -c 2>/dev/null || create-munge-key; chown munge:munge /etc/munge/munge.key; }
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    # A munged of the machine's (munge.service, perhaps just started by the install): use it, never stop it.
    local other
    other=$(pid_named munged)
    if [[ -n $other ]]; then
        await "the running munged (PID $other) to answer \`munge -n | unmunge\`" munge_works \
            || fail "a munged (PID $other) runs but does not answer \`munge -n | unmunge\`; fix or stop it"
        echo "$other" >"$D/run/munged.reused"
        note "using the running munged (PID $other)"
    else
        start munged setpriv --reuid=munge --regid=munge --init-groups munged -F
        await "munged to answer" munge_works || fail "munged did not answer \`munge -n | unmunge\`"
    fi
    # One daemon after the other, each waited for by its own answer: slurmd registers with a slurmctld that
    # answers, and the node is ready when slurmctld reports it idle.
    start slurmctld slurmctld -D
    await "slurmctld to answer" ctld_answers || fail "slurmctld did not answer \`scontrol ping\`"
    start slurmd slurmd -D -N "$node"
    await "node $node to be idle" node_idle "$node" \
        || fail "node $node is not idle (state: '$(node_state "$node")')"
    printf 'slurm.sh: up in %s s: Slurm %s, node %s (%s CPUs, %s MB), partition %s (default), slurmctld :%s, slurmd :%s, logs %s\n' \
        "$(since "$T0")" "$ver" "$node" "$cpus" "$mem" "$PARTITION" "$CTLD_PORT" "$SLURMD_PORT" "$D/log"
}

# One up or down at a time (another waits for it); the lock goes with this process.
lock() {
    exec 8>>"$LOCK"
    flock -w "$WAIT" 8 || die "another tools/slurm.sh up or down has held $LOCK for ${WAIT} s"
}

[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0
case ${1:-} in
    up) lock; up ;;
    down)
        lock
        t0=$(now); was=$(status || true); down
        [[ $was == down ]] && note "was not up" || printf 'slurm.sh: down in %s s\n' "$(since "$t0")" ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
