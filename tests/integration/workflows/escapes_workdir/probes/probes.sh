#!/bin/bash
# Write attempts, run INSIDE the container. Each records NAME=yes when the write went through, else NAME=no
# and NAME_error=<the shell's message> (the test wants EROFS, "Read-only file system", for the workdir).
# Whether a write reached the HOST is decided by the test, on the host.
set -u
group=$1 out=$2
shift 2
mkdir -p "$(dirname "$out")"
: > "$out"
say() { echo "$1=$2" >> "$out"; }
try() {  # try NAME COMMAND...
    local name=$1 error
    shift
    if error=$("$@" 2>&1); then say "$name" yes; else say "$name" no; say "${name}_error" "$(echo "$error" | head -1)"; fi
}

case $group in
workdir)  # the workdir and this job's inputs (outputs of other rules)
    same=$1 other=$2 policy=$3 run=$4
    try append_policy sh -c "echo '# appended by a job' >> '$policy'"
    try new_file_beside_snakefile sh -c "echo escaped > 'planted-$run.smk'"
    try overwrite_input_same_folder sh -c "echo escaped > '$same'"
    try overwrite_input_other_folder sh -c "echo escaped > '$other'"
    try write_dot_snakemake sh -c "echo escaped > '.snakemake/planted-$run'"
    ;;
directory)  # a directory() output: the folder itself is writable, its parent is not
    parent=$1 run=$2
    try write_beside_directory_output sh -c "echo escaped > '$parent/sibling-$run'"
    ;;
*)
    echo "probes.sh: unknown group $group" >&2
    exit 2
    ;;
esac
