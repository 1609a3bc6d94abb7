#!/bin/bash
# Escape attempts, run INSIDE the container by the rules of the Snakefile. Every attempt records NAME=yes when
# the action worked (a read saw the host's secret, a write went through) and NAME=no when it was stopped.
# Whether a write reached the HOST is decided by the test, on the host; sanity lines (ok_*) show that the
# probed binds exist, so a refusal comes from the policy and not from a missing path.
set -u
group=$1 out=$2
shift 2
: > "$out"
say() { echo "$1=$2" >> "$out"; }
try() {  # try NAME COMMAND...: NAME=yes if the command succeeds
    local name=$1
    shift
    if "$@" >/dev/null 2>&1; then say "$name" yes; else say "$name" no; fi
}
contains() {  # contains FILE TEXT
    [ -r "$1" ] && grep -qF -- "$2" "$1"
}

case $group in
pid)  # policy: contain + pid namespace. Host marker: `sleep 4322`, pid $1, run by this same user.
    host_pid=$1
    try ps_sees_host_process sh -c 'ps -o args | grep -q "^sleep 432[2]"'
    try proc_lists_host_process sh -c 'for f in /proc/[0-9]*/cmdline; do tr "\0" " " < "$f"; echo; done | grep -q "^sleep 4322 *$"'
    try proc_reads_host_pid sh -c "tr '\0' ' ' < /proc/$host_pid/cmdline | grep -q '^sleep 4322'"
    try kill_reaches_host_process kill -0 "$host_pid"
    say ok_processes_counted "$(ls -d /proc/[0-9]* | wc -l)"
    ;;
contain)  # policy: contain. Host markers in the real home, /tmp, /var/tmp (shadow-like) and /dev/shm.
    home=$1 marker=$2 secret=$3 site=$4 run=$5
    try read_home_marker contains "$home/$marker" "$secret"
    try read_tmp_marker contains "/tmp/$marker" "$secret"
    try read_shadow_marker contains "/var/tmp/$marker/shadow" "$secret"
    try read_dev_shm_marker contains "/dev/shm/$marker" "$secret"
    try list_dev_shm_marker sh -c "ls -A /dev/shm | grep -qxF '$marker'"
    try write_unbound_host_folder sh -c "echo escaped > '$site/unbound/escape-$run'"
    try write_host_home sh -c "echo escaped > '$home/$marker-written-$run'"
    try write_host_tmp_via_workdir_parent sh -c "echo escaped > \"\$PWD/../$marker-written-$run\""
    try write_host_var_tmp sh -c "echo escaped > '/var/tmp/$marker/written-$run'"
    say ok_pwd "$PWD"
    ;;
ro)  # policy: contain, $site/shared/ro bound read-only and $site/shared/rw writable, both at their host paths;
    # the workdir (PWD) is read-only too, only this job's output folder in it is writable.
    site=$1 run=$2
    ro=$site/shared/ro rw=$site/shared/rw own=$(dirname "$out")
    try ok_ro_readable grep -q original "$ro/target-append.txt"
    try ok_rw_writable sh -c "echo fine > '$rw/legit-$run'"
    try write_ro_new_file sh -c "echo escaped > '$ro/new-$run'"
    try write_ro_append sh -c "echo escaped >> '$ro/target-append.txt'"
    try write_ro_delete rm -f "$ro/target-delete.txt"
    try write_ro_workdir_new_file sh -c "echo escaped > '$PWD/new-$run'"
    try write_ro_workdir_snakefile sh -c "echo '# escaped' >> '$PWD/Snakefile'"
    link=$own/link-to-ro  # in the workdir, in the job's own (writable) output folder
    try write_ro_via_workdir_symlink sh -c "ln -sfn '$ro' '$link' && echo escaped > '$link/via-workdir-symlink-$run'"
    try ok_workdir_symlink_made test -L "$link"
    try write_ro_via_rw_symlink sh -c "ln -sfn '$ro' '$rw/link-to-ro' && echo escaped > '$rw/link-to-ro/via-rw-symlink-$run'"
    try write_ro_via_dotdot sh -c "echo escaped > '$rw/../ro/via-dotdot-$run'"
    try write_ro_via_hardlink sh -c "ln '$ro/target-hardlink.txt' '$rw/hardlink-$run' && echo escaped >> '$rw/hardlink-$run'"
    try write_ro_after_remount sh -c "mount -o remount,rw '$ro' 2>/dev/null; echo escaped > '$ro/via-remount-$run'"
    ;;
containall_env)  # policy: containall, env allow-list [ALLOWED_VAR]. The host also exports SECRET_VAR.
    # The pattern is written so that it cannot match itself: Apptainer keeps each job's command line in
    # appinit's environment (ENGINE_CONFIG1), and this probe's command line is part of it.
    try ok_allowed_var_passed sh -c '[ "${ALLOWED_VAR:-}" = yes ]'
    try env_has_secret sh -c 'env | grep -q "^SECRET_VA[R]="'
    try proc_environ_has_secret sh -c 'cat /proc/[0-9]*/environ 2>/dev/null | tr "\0" "\n" | grep -q "SECRET_VA[R]="'
    ;;
sysv)  # policy: ipc namespace. The host holds a SysV shared memory segment with key $1.
    key=$1
    try sysv_shm_key_visible sh -c "awk '{print \$1}' /proc/sysvipc/shm | grep -qx -- '$key'"
    try ok_proc_sysvipc_readable test -r /proc/sysvipc/shm
    ;;
*)
    echo "probes.sh: unknown group $group" >&2
    exit 2
    ;;
esac
