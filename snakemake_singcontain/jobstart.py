"""What happens right before and right after a job's container: plain file-system work on a JobPlan, no
Snakemake. The bridge calls it in the process that starts the job (the main one, or the job's own on a node).
"""

import os
from collections.abc import Mapping
from dataclasses import replace

from . import seal
from .argv import JOB_VARIABLES
from .plan import AUTO, JobPlan

TMP_VARIABLES = ("TMPDIR", "TMP", "TEMPDIR", "TEMP")


def job_environment(threads, resources: Mapping | None) -> dict[str, str]:
    """The environment Snakemake gives a job's shell: its own plus the per-job thread counts and tmpdir
    (shell.py sets them in the job's process only). Under cleanenv, the policy's `env` picks from it."""
    env = dict(os.environ, **{name: str(threads) for name in JOB_VARIABLES})
    tmpdir = (resources or {}).get("tmpdir")
    if tmpdir:
        env.update(dict.fromkeys(TMP_VARIABLES, str(tmpdir)))
    return env


def changes_since_check(sealed: seal.Seal, image: str, plan: JobPlan, changed_files: list[str]) -> list[str]:
    """Why the job may not start as checked: files its process re-read (`changed_files`), the image, and
    symlinks on its writable folders that the check did not see."""
    refuse = [f"SC501 {path} changed since the check on the submit host" for path in changed_files]
    pulled = os.path.abspath(os.path.join(".snakemake", "singularity"))
    if not os.path.abspath(image).startswith(pulled + os.sep):  # Snakemake's own pull cache: read-only to jobs
        why = seal.changed_image(sealed, image)
        refuse += [f"SC501 {why}"] if why else []
    # The job's folders as written (the plan binds where they lead now): a folder a job swapped for a
    # symlink since the check shows up on the way to them.
    job = plan.job
    writable = {os.path.dirname(os.path.abspath(p)) for p in job.outputs} | set(job.directories)
    writable |= {b.src for b in plan.rule.settings.binds if b.mode == "rw"}
    refuse += [f"SC502 {folder} is now a symlink to {target}, which the check did not see"
               for folder, target in seal.unchecked_links(sorted(writable), sealed.links)]
    return refuse


def resolved(plan: JobPlan) -> JobPlan:
    """Bind sources as they really are right now (Apptainer follows symlinks), writable folders created:
    Snakemake makes output folders itself, but not a directory() output."""
    binds = []
    for bind in plan.binds:
        if bind.mode == "rw" and bind.origin is AUTO and not os.path.exists(bind.src):
            os.makedirs(bind.src, exist_ok=True)
        real = os.path.realpath(bind.src)
        binds.append(replace(bind, src=real) if real != bind.src else bind)
    return replace(plan, binds=tuple(binds))


def remove_planted_symlinks(plan: JobPlan) -> list[str]:
    """After the job: Snakemake acts on its outputs in its own host process (chmod of protected() outputs,
    .snakemake_timestamp in directory() outputs, reading report() outputs), each following a symlink. A
    symlink the job left that leads to a file it could not see is removed; returned as "path -> target"."""
    base = plan.job.shadow or plan.rule.workdir
    paths = [os.path.join(base, p) for p in plan.job.outputs]
    paths += [os.path.join(d, ".snakemake_timestamp") for d in plan.job.directories]
    planted = []
    for path in paths:
        if os.path.islink(path):
            target = os.path.realpath(path)
            if path.endswith("/.snakemake_timestamp") or plan.access(target) is None:
                planted.append(f"{path} -> {os.readlink(path)}")
                os.unlink(path)
    return planted
