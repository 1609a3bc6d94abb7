#!/usr/bin/env bash
# Status command for Snakemake's cluster-generic executor on a Slurm without accounting (no sacct):
#   --cluster-generic-status-cmd tools/slurm-status.sh      (called as: slurm-status.sh JOBID)
# Prints exactly one of running / success / failed.
# `squeue -t all` still lists finished jobs for MinJobAge seconds (300 in tools/slurm.sh) with their
# final state; only COMPLETED (every process exited 0) counts as success.
set -uo pipefail
id=${1:?usage: slurm-status.sh JOBID}
id=${id%%;*}   # `sbatch --parsable` may print "jobid;cluster"

if out=$(squeue -h -j "$id" -t all -o %T 2>&1); then
    state=$(head -n1 <<<"$out")
    if [[ -z $state ]]; then
        # Accepted but not (yet or any more) listed; `scontrol show job` asks slurmctld directly.
        state=$(scontrol show job "$id" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
    fi
elif grep -qi 'invalid job id' <<<"$out"; then
    # slurmctld no longer knows the job (older than MinJobAge, or slurmctld was restarted without
    # its state): its outcome cannot be known any more, so do not claim success.
    echo "slurm-status.sh: job $id is unknown to Slurm" >&2
    echo failed
    exit 0
else
    # slurmctld unreachable for a moment: say running, Snakemake asks again.
    echo "slurm-status.sh: squeue failed: $out" >&2
    echo running
    exit 0
fi

case $state in
    COMPLETED) echo success ;;
    BOOT_FAIL | CANCELLED | DEADLINE | FAILED | NODE_FAIL | OUT_OF_MEMORY | PREEMPTED | REVOKED | SPECIAL_EXIT | TIMEOUT)
        echo failed ;;
    *) echo running ;;   # PENDING, CONFIGURING, RUNNING, COMPLETING, SUSPENDED, REQUEUED, ..., or empty
esac
