#!/usr/bin/env bash
# A throw-away personal HTCondor (one machine: central manager, submit and execute point) for the tests,
# as root, without systemd.
#
#   tools/htcondor.sh install|up|down|status    (status exits 0 only when up; up installs first)
#   (install, up and down hold a lock, $PREFIX.lock, so concurrent calls run one after the other)
#
# Environment: SINGCONTAIN_HTCONDOR_PREFIX (default /opt/singcontain/htcondor) holds the install, the
# configuration and, under var/, the pool's state, logs (var/log/condor) and execute folder.
# SINGCONTAIN_HTCONDOR_SUBMIT_ONLY (default /srv/singcontain-submit-only): a folder jobs see empty.
# SINGCONTAIN_HTCONDOR_WAIT (default 120): seconds `up` waits for the pool to advertise its slot.
#
# Debian 12 has no HTCondor and Debian 13's is 23.x; sid's 25.x needs glibc >= 2.38, so it runs the way
# tools/install-apptainer.sh runs sid's Apptainer: the packages come through a private apt state (the
# system's apt sources and libc are never touched) and every binary is patched to a private copy of
# sid's glibc and libraries (interpreter + rpath). One method for Debian 12 and 13.
# After `up`, ordinary users reach the pool from a login shell (/etc/profile.d/singcontain-htcondor.sh
# exports CONDOR_CONFIG and puts the condor commands on PATH); `down` removes that file again.
set -euo pipefail

PREFIX=$(realpath -m "${SINGCONTAIN_HTCONDOR_PREFIX:-/opt/singcontain/htcondor}")
CONFIG=$PREFIX/etc/condor/condor_config
VAR=$PREFIX/var
PIDFILE=$VAR/run/condor_master.pid
PROFILE=/etc/profile.d/singcontain-htcondor.sh
STAMP=$PREFIX/.singcontain-installed
SUBMIT_ONLY=${SINGCONTAIN_HTCONDOR_SUBMIT_ONLY:-/srv/singcontain-submit-only}
WAIT=${SINGCONTAIN_HTCONDOR_WAIT:-120}   # seconds `up` waits for the pool's slot
LOG=/tmp/singcontain-htcondor-install.log
LDSO=ld-linux-x86-64.so.2
# There is no condor account: the daemons drop to nobody (the starter still runs jobs as their owner).
IDS=65534.65534
# condor, its single-node configuration, and every library it links or dlopens (the closure of its
# lib* dependencies in sid, plus libsystemd0, which the daemons dlopen).
PACKAGES=(condor minicondor libc6 libstdc++6 libgcc-s1 libgomp1 libcrypt1 libuuid1 libexpat1 libpcre2-8-0
          libsqlite3-0 libssl3t64 libcurl4t64 libbrotli1 libidn2-0 libunistring5 libnghttp2-14 libnghttp3-9
          libngtcp2-16 libngtcp2-crypto-ossl0 libpsl5t64 libssh2-1t64 libldap2 libsasl2-2
          libsasl2-modules-db libdb5.3t64 libzstd1 zlib1g libmunge2 libscitokens0t64 libvomsapi1t64
          libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libsystemd0
          libcap2 liblzma5)

die() { echo "htcondor.sh: $*" >&2; exit 1; }
note() { echo "htcondor.sh: $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
quiet() {
    echo "+ $*" >>"$LOG"
    "$@" >>"$LOG" 2>&1 || { echo "htcondor.sh: failed: $*" >&2; tail -n 25 "$LOG" >&2; exit 1; }
}
condor() { CONDOR_CONFIG=$CONFIG "$PREFIX/usr/bin/$1" "${@:2}"; }

installed() { [[ -e $STAMP ]] && condor condor_version >/dev/null 2>&1; }

install() {
    local t0 work stage r f apt_sid missing=() p mirror
    t0=$(now)
    [[ $(id -u) == 0 ]] || die "must run as root"
    [[ $(uname -m) == x86_64 ]] || die "only x86_64 is supported"
    if installed; then return 0; fi
    : >"$LOG"
    for p in patchelf debian-archive-keyring; do
        [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) == "ii " ]] || missing+=("$p")
    done
    if ((${#missing[@]})); then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1 || {
            quiet apt-get update -q; quiet apt-get install -y -q --no-install-recommends "${missing[@]}"; }
    fi
    mirror=$(bash "$(dirname "$0")/debian-mirror.sh") || die "no Debian archive mirror found (tools/debian-mirror.sh)"

    work=$(mktemp -d /tmp/singcontain-htcondor.XXXXXX)
    stage=$PREFIX.new.$$
    trap 'rm -rf "$work" "$stage"' EXIT
    mkdir -p "$work"/{lists/partial,cache/archives/partial,debs,root}
    # A private apt state pointing at sid; signatures are still verified (Valid-Until is not: a mirror
    # may serve a sid Release past it).
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main" >"$work/sources.list"
    apt_sid=(apt-get -q -o Dir::Etc::sourcelist="$work/sources.list" -o Dir::Etc::sourceparts=-
             -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache"
             -o Acquire::Check-Valid-Until=false -o APT::Sandbox::User=root)
    quiet "${apt_sid[@]}" update
    (cd "$work/debs" && quiet "${apt_sid[@]}" download "${PACKAGES[@]/%//sid}")
    for f in "$work"/debs/*.deb; do quiet dpkg-deb -x "$f" "$work/root"; done
    r=$work/root

    rm -rf "$stage"
    mkdir -p "$stage/libc"
    cp -a "$r/usr" "$r/etc" "$stage/"
    rm -rf "$stage/usr/share/doc" "$stage/usr/share/man" "$stage/usr/lib/python3"  # the python3 bindings need sid's python
    # All libraries in one folder: glibc's, the dependencies', and condor's own libcondor_utils.
    cp -a "$r"/usr/lib/x86_64-linux-gnu/*.so* "$r"/lib/x86_64-linux-gnu/*.so* "$r"/usr/lib/*.so* "$stage/libc/" 2>/dev/null || true
    [[ -e $stage/libc/$LDSO ]] || die "no $LDSO among the downloaded packages (see $LOG)"
    # Patch every dynamic ELF file: executables get the private interpreter (the final path, not the
    # staging one); DT_RPATH (not RUNPATH) so that it also holds for the libraries' own dependencies.
    while IFS= read -r -d '' f; do
        [[ $(head -c4 "$f") == $'\x7fELF' ]] || continue
        if patchelf --print-interpreter "$f" >/dev/null 2>&1; then
            quiet patchelf --set-interpreter "$PREFIX/libc/$LDSO" --force-rpath --set-rpath "$PREFIX/libc" "$f"
        elif [[ $f != */libc/ld-linux* ]] && patchelf --print-rpath "$f" >/dev/null 2>&1; then
            quiet patchelf --force-rpath --set-rpath "$PREFIX/libc" "$f"
        fi   # else static: nothing to patch
    done < <(find "$stage/usr/bin" "$stage/usr/sbin" "$stage/usr/libexec" "$stage/libc" -type f -print0)

    # The configuration in the prefix: Debian's condor_config with its paths moved, Debian's
    # 00-minicondor (single node) and 00-security kept; ours (written by `up`) comes after them.
    sed -i -e "s|^RELEASE_DIR *=.*|RELEASE_DIR = $PREFIX/usr|" -e "s|^LOCAL_DIR *=.*|LOCAL_DIR = $VAR|" \
        -e "s|/etc/condor|$PREFIX/etc/condor|g" -e "s|/usr/share/condor/config.d|$PREFIX/usr/share/condor/config.d|g" \
        "$stage/etc/condor/condor_config"
    echo "condor $(dpkg-deb -f "$work"/debs/condor_*.deb Version) from Debian sid, installed by tools/htcondor.sh" >"$stage/${STAMP##*/}"
    rm -rf "$PREFIX"
    mv "$stage" "$PREFIX"
    chmod -R a+rX "$PREFIX"
    installed || { condor condor_version; die "the installed HTCondor does not run (see $LOG)"; }
    rm -rf "$work"
    trap - EXIT
    printf 'htcondor.sh: installed in %s s: %s (%s packages, %s)\n' "$(since "$t0")" "$(cat "$STAMP")" \
        "${#PACKAGES[@]}" "$(du -sh "$PREFIX" | cut -f1)"
}

pid() { cat "$PIDFILE" 2>/dev/null || true; }
# The recorded PID counts only while it still runs condor_master (PIDs get reused) and is not a zombie.
alive() {
    local p st; p=$(pid)
    [[ -n $p && $(cat "/proc/$p/comm" 2>/dev/null) == condor_master ]] || return 1
    read -r _ _ st _ <"/proc/$p/stat" 2>/dev/null && [[ $st != Z ]]
}
# True once the recorded master has exited (or is a zombie); a PID still being exec'd into it has not.
exited() {
    local p st; p=$(pid)
    [[ -n $p ]] || return 0
    read -r _ _ st _ <"/proc/$p/stat" 2>/dev/null || return 0
    [[ $st == Z ]]
}
# Processes running a program of our prefix (the master's daemons, starters), whatever their parent now
# is: the daemons' command lines do not carry the prefix, their executables do.
ours() {
    local e
    for e in /proc/[0-9]*/exe; do
        if [[ $(readlink "$e" 2>/dev/null) == "$PREFIX"/* ]]; then e=${e#/proc/}; echo "${e%/exe}"; fi
    done
}

status() {
    if alive && condor condor_status -af Name 2>/dev/null | grep -q .; then echo up; return 0; fi
    if alive; then echo "partly up (master $(pid), no slot advertised)"; else echo down; fi
    return 1
}

down() {
    local p d
    p=$(pid)
    if alive; then
        kill -TERM "$p" 2>/dev/null || true   # the master stops its daemons (and their jobs) before exiting; it may just have exited
        for _ in $(seq 200); do [[ -z $(ours) ]] && ! alive && break; sleep 0.1; done
        if alive; then note "condor_master ($p) ignored SIGTERM for 20 s, killing"; kill -KILL "$p" 2>/dev/null || true; fi
    fi
    # Daemons left over by a killed master (their executables lie in our prefix).
    for d in $(ours); do note "stopping left-over daemon $d"; kill -KILL "$d" 2>/dev/null || true; done
    # An exited master stays a zombie until PID 1 reaps it (~2 s here): wait, so that `ps` right after
    # `down` shows nothing of ours.
    for _ in $(seq 50); do [[ $(cat "/proc/$p/comm" 2>/dev/null) == condor_master ]] || break; sleep 0.1; done
    rm -f "$PIDFILE"
    if [[ -f $PROFILE ]] && grep -qF "$CONFIG" "$PROFILE"; then rm -f "$PROFILE"; fi
}

up() {
    local t0 t1 slots=""
    t0=$(now)
    [[ $(id -u) == 0 ]] || die "must run as root"
    install
    if status >/dev/null; then note "already up (master $(pid))"; return 0; fi
    down >/dev/null   # a partial start: clean up what is left of it first
    [[ -e $PROFILE ]] && die "$PROFILE exists and is not ours; refusing to touch it"
    t1=$(now)
    # A fresh pool: state, logs, spool and execute folder are wiped on every start.
    rm -rf "$VAR"
    mkdir -p "$VAR"/{run,log,lock,spool}/condor "$VAR"/lib/condor/{execute,cred_dir} "$VAR"/{tokens.d,passwords.d}
    # Owned by the daemons' user: with EXECUTE owned by root the slot advertised no memory or disk and
    # jobs stayed idle forever. Logs readable by everyone, for debugging.
    chown -R "${IDS/./:}" "$VAR"/{run,log,lock,spool}/condor "$VAR"/lib/condor
    chmod 755 "$VAR"/log/condor "$VAR"/lib/condor/execute
    chmod 700 "$VAR"/{tokens.d,passwords.d}
    mkdir -p "$SUBMIT_ONLY"
    cat >"$PREFIX/etc/condor/config.d/99-singcontain" <<EOF
# Written by tools/htcondor.sh: a personal pool on the loopback interface only, no condor account.
CONDOR_HOST = 127.0.0.1
NETWORK_INTERFACE = 127.0.0.1
BIND_ALL_INTERFACES = False
ENABLE_IPV6 = False
CONDOR_IDS = $IDS
SEC_TOKEN_SYSTEM_DIRECTORY = $VAR/tokens.d
SEC_PASSWORD_DIRECTORY = $VAR/passwords.d
SEC_TOKEN_POOL_SIGNING_KEY_FILE = $VAR/passwords.d/POOL
# Fast matching for tests: a job starts a few seconds after submission instead of up to a minute.
SCHEDD_INTERVAL = 2
NEGOTIATOR_INTERVAL = 1
NEGOTIATOR_CYCLE_DELAY = 1
NEGOTIATOR_MIN_INTERVAL = 1
UPDATE_INTERVAL = 2
STARTER_UPDATE_INTERVAL = 2
SHADOW_QUEUE_UPDATE_INTERVAL = 2
JOB_START_DELAY = 0
# Every job sees a private, empty /tmp and /var/tmp (HTCondor's default), as on a site's execute point;
# and an empty $SUBMIT_ONLY: a folder the submit host has and the execute point lacks, for tests.
MOUNT_UNDER_SCRATCH = /tmp,/var/tmp,$SUBMIT_ONLY
EOF
    CONDOR_CONFIG=$CONFIG setsid "$PREFIX/usr/sbin/condor_master" -f \
        </dev/null >>"$VAR/log/condor/master.out" 2>&1 9>&- &   # 9: the lock, which must not outlive us
    echo $! >"$PIDFILE"
    # Ready when the collector lists the slot; bounded (a busy machine may need far more than the usual 3 s),
    # and over early if the master has exited (not merely while it is still being exec'd).
    local end=$((SECONDS + WAIT)) why="waited $WAIT s"
    until slots=$(condor condor_status -af Name 2>/dev/null) && [[ -n $slots ]]; do
        if exited; then why="condor_master exited"; break; fi
        ((SECONDS < end)) || break
        sleep 0.2
    done
    if [[ -z $slots ]]; then
        echo "htcondor.sh: no slot advertised after $(since "$t1") s ($why; $(status || true)); logs in $VAR/log/condor:" >&2
        tail -n 15 "$VAR"/log/condor/{MasterLog,StartLog,CollectorLog,master.out} >&2 2>/dev/null || true
        down
        exit 1
    fi
    cat >"$PROFILE" <<EOF
# Written by tools/htcondor.sh up, removed by its down: the personal HTCondor for every login shell.
export CONDOR_CONFIG=$CONFIG
case ":\$PATH:" in *":$PREFIX/usr/bin:"*) ;; *) PATH=\$PATH:$PREFIX/usr/bin ;; esac
EOF
    printf 'htcondor.sh: up in %s s (daemons %s s): HTCondor %s, slot %s (%s CPUs), master %s, CONDOR_CONFIG=%s, logs %s\n' \
        "$(since "$t0")" "$(since "$t1")" "$(condor condor_version | awk 'NR == 1 {print $2}')" "$slots" \
        "$(condor condor_status -af TotalSlotCpus 2>/dev/null | head -1)" "$(pid)" "$CONFIG" "$VAR/log/condor"
}

# One install, up or down at a time (another waits for it); the lock goes with this process.
lock() {
    [[ $(id -u) == 0 ]] || die "must run as root"
    mkdir -p "${PREFIX%/*}"
    exec 9>>"$PREFIX.lock"
    flock -w 600 9 || die "another tools/htcondor.sh install, up or down has held $PREFIX.lock for 600 s"
}

case ${1:-} in
    install) lock; install; note "$(cat "$STAMP") in $PREFIX" ;;
    up) lock; up ;;
    down)
        lock
        t0=$(now); was=$(status || true); down
        [[ $was == down ]] && note "was not up" || printf 'htcondor.sh: down in %s s\n' "$(since "$t0")" ;;
    status) status ;;
    *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac
