#!/usr/bin/env bash
# Install Apptainer (Debian sid's build, 1.4.x) into a private, relocatable prefix
# on Debian 12/13 x86_64, and expose `apptainer` + `singularity` in /usr/local/bin.
#
#   bash tools/install-apptainer.sh            # as root; idempotent, re-runs in well under 1 s
#
# Environment:
#   SINGCONTAIN_APPTAINER_PREFIX  install prefix (default /opt/singcontain/apptainer)
#   SINGCONTAIN_APPTAINER_BINDIR  where the commands are linked (default /usr/local/bin)
#
# Debian 12/13 ship no apptainer and sid's needs glibc >= 2.38, so the binaries run
# against a private copy of sid's glibc (patchelf'd interpreter + rpath); the system's
# apt sources and libc are never touched.  The prefix is self-contained: `cp -a PREFIX X`
# gives a second apptainer (X/bin/apptainer) that reads X/etc/apptainer/apptainer.conf
# (its ELF interpreter still points at PREFIX/libc, so keep PREFIX around).
set -euo pipefail

PREFIX=${SINGCONTAIN_APPTAINER_PREFIX:-/opt/singcontain/apptainer}
BINDIR=${SINGCONTAIN_APPTAINER_BINDIR:-/usr/local/bin}
LOG=/tmp/singcontain-install-apptainer.log
STAMP=.singcontain-installed
TRIPLET=x86_64-linux-gnu
LDSO=ld-linux-x86-64.so.2
# Host packages: apptainer's runtime helpers (SIF via squashfuse, overlay via fuse2fs,
# CNI plugins for --net; gocryptfs only silences an INFO line on every unprivileged
# exec), patchelf for the install itself, and what tools/build-test-image.sh copies
# into its image.  Not fuse3: on Debian 12 it would remove fuse 2.
PACKAGES=(ca-certificates debian-archive-keyring patchelf squashfs-tools squashfuse
          fuse2fs e2fsprogs uidmap containernetworking-plugins gocryptfs
          busybox-static bash-static)

die() { echo "install-apptainer: $*" >&2; exit 1; }
note() { echo "install-apptainer: $*"; }

# The log is started afresh by the first step that has work to do.
fresh_log() { [[ -n ${log_fresh:-} ]] || { : >"$LOG"; log_fresh=1; }; }
# Run quietly; on failure show the end of the log.
quiet() {
    echo "+ $*" >>"$LOG"
    if ! "$@" >>"$LOG" 2>&1; then
        echo "install-apptainer: failed: $*" >&2
        tail -n 25 "$LOG" >&2
        exit 1
    fi
}

[[ $(id -u) == 0 ]] || die "must run as root"
[[ $(uname -m) == x86_64 ]] || die "only x86_64 is supported"
PREFIX=$(realpath -m "$PREFIX")

# True if $1 (a command path) resolves into an install made by this script.
is_ours() {
    local real
    real=$(readlink -f "$1") || return 1
    [[ -e ${real%/bin/*}/$STAMP ]]
}

# 1. An apptainer/singularity that works and that we did not install: use it.
for cmd in apptainer singularity; do
    path=$(command -v "$cmd" 2>/dev/null) || continue
    is_ours "$path" && continue
    if version=$("$path" --version 2>/dev/null); then
        note "using existing $cmd at $path ($version)"
        exit 0
    fi
done

# Serialise concurrent runs (e.g. parallel test sessions).
mkdir -p "${PREFIX%/*}"
exec 9>>"$PREFIX.lock"
flock 9

# 2. Debian packages from the system's own suites.
missing=()
for p in "${PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) == "ii " ]] || missing+=("$p")
done
if ((${#missing[@]})); then
    fresh_log
    export DEBIAN_FRONTEND=noninteractive
    # Fresh machines/containers often have no package lists yet; otherwise try without updating.
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null \
        || ! apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1; then
        quiet apt-get update -q
        quiet apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
fi

# 3. Apptainer + sid's glibc into the prefix (skipped when a working install is there).
if ! [[ -e $PREFIX/$STAMP ]] || ! "$PREFIX/bin/apptainer" --version >/dev/null 2>&1; then
    fresh_log
    work=$(mktemp -d /tmp/singcontain-apptainer.XXXXXX)
    stage=$PREFIX.new.$$
    trap 'rm -rf "$work" "$stage"' EXIT
    mkdir -p "$work"/{lists/partial,cache/archives/partial,debs,root}
    # Private apt state pointing at sid on the system's own mirror (sites often reach only
    # theirs): the system's sources stay untouched.  The mirror may serve a sid Release past
    # its Valid-Until; signatures are still verified.
    mirror=$(bash "$(dirname "$0")/debian-mirror.sh") \
        || die "no Debian mirror in the system's apt sources to fetch apptainer from (see above)"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main" \
        >"$work/sources.list"
    apt_sid=(apt-get -q -o Dir::Etc::sourcelist="$work/sources.list" -o Dir::Etc::sourceparts=-
             -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache"
             -o Acquire::Check-Valid-Until=false -o APT::Sandbox::User=root)
    quiet "${apt_sid[@]}" update
    (cd "$work/debs" && quiet "${apt_sid[@]}" download apptainer/sid libc6/sid libseccomp2/sid libsqlite3-0/sid)
    for deb in "$work"/debs/*.deb; do quiet dpkg-deb -x "$deb" "$work/root"; done
    r=$work/root

    # Layout mirrors a relocated upstream install; apptainer derives every path from
    # where its binary lies.  The starter resolves the prefix one level too deep
    # (PREFIX/lib), hence the lib/etc and lib/var links.
    rm -rf "$stage"
    mkdir -p "$stage"/{bin,etc,libc,lib/$TRIPLET,var/lib/apptainer/mnt/session}
    cp -a "$r/usr/bin/apptainer" "$stage/bin/"
    ln -s apptainer "$stage/bin/singularity"
    cp -a "$r/etc/apptainer" "$stage/etc/"
    cp -a "$r/usr/lib/$TRIPLET/apptainer" "$stage/lib/$TRIPLET/"
    ln -s ../etc "$stage/lib/etc"
    ln -s ../var "$stage/lib/var"
    # All of glibc's top-level libraries (NSS modules included), plus the two libraries
    # that need it.
    cp -a "$r/usr/lib/$TRIPLET"/*.so* "$stage/libc/"

    # The interpreter must be an absolute path (the final one, not the staging dir);
    # library lookup is $ORIGIN-relative so that a copied prefix uses its own libraries.
    # DT_RPATH (not RUNPATH) so it also applies to the libraries' own dependencies:
    # with RUNPATH, libsqlite3 picks up the system's libm and fails on GLIBC_2.38.
    # shellcheck disable=SC2016  # literal: expanded by the dynamic loader
    origin='$ORIGIN'
    starter=lib/$TRIPLET/apptainer/bin/starter
    quiet patchelf --set-interpreter "$PREFIX/libc/$LDSO" --force-rpath --set-rpath "$origin/../libc" "$stage/bin/apptainer"
    quiet patchelf --set-interpreter "$PREFIX/libc/$LDSO" --force-rpath --set-rpath "$origin/../../../../libc" "$stage/$starter"
    for lib in "$stage"/libc/libsqlite3.so.*.* "$stage"/libc/libseccomp.so.*.*; do
        quiet patchelf --force-rpath --set-rpath "$origin" "$lib"
    done

    # Catch a wrong rpath now rather than at the first container start.
    for exe in bin/apptainer "$starter"; do
        if "$stage/libc/$LDSO" --list "$stage/$exe" \
            | awk -v s="$stage/" '$2 == "=>" && index($3, s) != 1 {bad = 1; print} END {exit !bad}' >>"$LOG"; then
            die "$exe would load system libraries (see $LOG)"
        fi
    done

    version=$(dpkg-deb -f "$work"/debs/apptainer_*.deb Version)
    echo "apptainer $version from Debian sid, installed by tools/install-apptainer.sh" >"$stage/$STAMP"
    rm -rf "$PREFIX"
    mv "$stage" "$PREFIX"
    "$PREFIX/bin/apptainer" --version >/dev/null 2>&1 \
        || { "$PREFIX/bin/apptainer" --version; die "installed apptainer does not run"; }
fi

# 4. Configuration (each change only when needed, so a re-run modifies nothing).
conf=$PREFIX/etc/apptainer/apptainer.conf
set_conf() { # key value: replace the (possibly commented) key line, or append it
    local key=$1 value=$2
    grep -qxF "$key = $value" "$conf" && return
    if grep -qE "^#? *$key *=" "$conf"; then
        sed -i -E "0,/^#? *$key *=.*/s||$key = $value|" "$conf"
    else
        echo "$key = $value" >>"$conf"
    fi
}
# A relocated install still looks for CNI configs in /etc/apptainer/network.
set_conf "cni configuration path" "$PREFIX/etc/apptainer/network"
set_conf "cni plugin path" "/usr/lib/cni"
# Stock `full` makes every root exec fail when the machine's bounding set lacks a
# capability (these VMs drop CAP_SYS_RESOURCE): give root exactly what is available.
set_conf "root default capabilities" "file"
CAPS=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
      LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
      SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
      SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
      MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
      CHECKPOINT_RESTORE)
bnd=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
caps=""
for i in "${!CAPS[@]}"; do
    if ((bnd >> i & 1)); then caps+="${caps:+,
}			\"CAP_${CAPS[i]}\""; fi
done
json=$(printf '{\n\t"users": {\n\t\t"root": [\n%s\n\t\t]\n\t}\n}' "$caps")
capfile=$PREFIX/etc/apptainer/capability.json
[[ $(<"$capfile") == "$json" ]] || printf '%s' "$json" >"$capfile"

# 5. Commands for all users.  Symlinks suffice: apptainer resolves /proc/self/exe, so
# it still finds PREFIX/etc/apptainer; `singularity` is what Snakemake < 9.2x looks for.
mkdir -p "$BINDIR"
for cmd in apptainer singularity; do
    link=$BINDIR/$cmd
    [[ $(readlink "$link" 2>/dev/null) == "$PREFIX/bin/$cmd" ]] && continue
    [[ -e $link && ! -L $link ]] && die "$link exists and is not a symlink; not replacing it"
    ln -sfn "$PREFIX/bin/$cmd" "$link"
done

# Unprivileged users mount SIF images with squashfuse via /dev/fuse (mode 600 here;
# resets at reboot, so this runs every time).
if [[ -c /dev/fuse && $(stat -c %a /dev/fuse) != 666 ]]; then chmod 666 /dev/fuse; fi
[[ -c /dev/fuse ]] || note "warning: no /dev/fuse; SIF images will be extracted to temporary sandboxes (slow)"
if [[ $(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 1) == 0 ]]; then
    note "warning: user.max_user_namespaces = 0; unprivileged users cannot run containers"
fi

cfgfile=$("$BINDIR/apptainer" buildcfg | sed -n 's/^APPTAINER_CONF_FILE=//p')
[[ $cfgfile == "$conf" ]] || die "apptainer reads $cfgfile instead of $conf"
echo "$("$BINDIR/apptainer" --version) | prefix $PREFIX | conf $conf | commands $BINDIR/{apptainer,singularity}"
