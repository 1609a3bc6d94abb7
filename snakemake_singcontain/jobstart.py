"""What happens right before and right after a job's container: plain work on a JobSpec and the file system,
no Snakemake. The bridge calls it in the process that starts the job (the main one, or the job's own on a
node): `start()` re-checks the job as it is now and returns its flags, or raises Refused; `finish()` undoes
what the job may not leave for the host.
"""

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from . import attest, seal
from .argv import JOB_VARIABLES, apptainer_args
from .findings import ERROR
from .plan import AUTO, TOPLEVEL, JobPlan, JobSpec
from .preflight import escape_hatches

TMP_VARIABLES = ("TMPDIR", "TMP", "TEMPDIR", "TEMP")


@dataclass(frozen=True)
class Started:
    """A job whose container is about to start: what its end and its record need."""

    image: str
    argv: list[str]  # the flags it runs with, as one list
    plan: JobPlan  # bind sources resolved, as they were bound
    made: Mapping[str, int] = field(default_factory=dict)  # top-level outputs made for it -> their mtime then
    attestation: str | None = None  # the digest of what its container showed on this host (attest.py)
    scratch: str | None = None  # its own host folder for /tmp (policy `scratch`), removed when it ends


class Refused(Exception):
    """Why the job may not start, as one line ("CODE message; CODE message")."""


def start(checker, job: JobSpec, sealed: seal.Seal, changed_files: list[str], global_args: Sequence[str],
          environ: Mapping[str, str], threads, resources: Mapping, attestations: str | None,
          workdir: str) -> Started:
    """Right before the job's container starts: its plan made afresh and checked, its flags, its /tmp folder, its
    top-level outputs and its probe (attest.py, cached per host, flags and run). `attestations`: where probes are
    kept for the run; None in a dry run."""
    settings = checker.settings(job.rule)
    scratch = None
    if settings.scratch and settings.containment != "none" and os.path.isdir(settings.scratch):
        scratch = tempfile.mkdtemp(prefix=f"{job.rule}-", dir=settings.scratch)
        job = replace(job, scratch=scratch)
    try:
        refuse = []
        if settings.isolates and resources.get("shell_exec"):
            refuse.append("SC108 its shell_exec resource would replace the program that starts the container")
        plan, why = judge(checker, job, sealed, changed_files, global_args, environ)
        _refuse_if(refuse + why)
        env = job_environment(threads, resources, environ)
        try:  # before anything is made on disk for the job
            apptainer_args(plan, checker.runtime, env)
        except ValueError as err:  # a value --env cannot carry (SC209), e.g. in a job a checkpoint added
            raise Refused(f"SC209 {err}") from None
        attestation, found = attest.attest_rule(checker, job, attestations, workdir, environ)
        _refuse_if([f"{f.code} {f.message}" for f in found if f.severity == ERROR])
        plan, made = resolved(plan)
        argv = apptainer_args(plan, checker.runtime, env) + list(global_args)
        return Started(job.image, argv, plan, made, attestation.digest, scratch)
    except BaseException:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        raise


def _refuse_if(why: list[str]) -> None:
    if why:
        raise Refused("; ".join(why))


def job_environment(threads, resources: Mapping | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment Snakemake gives a job's shell: `environ` plus the per-job thread counts and tmpdir
    (shell.py sets them in the job's process only). Under cleanenv, the policy's `env` picks from it."""
    env = dict(environ, **{name: str(threads) for name in JOB_VARIABLES})
    tmpdir = (resources or {}).get("tmpdir")
    if tmpdir:
        env.update(dict.fromkeys(TMP_VARIABLES, str(tmpdir)))
    return env


def judge(checker, job: JobSpec, sealed: seal.Seal, changed_files: list[str], global_args, environ) -> tuple[
        JobPlan, list[str]]:
    """Right before the job starts, in the process that starts it: its plan, made afresh by real path as it is
    now (jobs that ran since the check may have left links), and why it may not start ("CODE message")."""
    plan = checker.job_plan(job, fresh=True)
    findings = checker.check_plans([plan], whole_workflow=False)
    findings += escape_hatches([job.rule], {job.rule: checker.settings(job.rule)}, global_args, environ)
    why = [f"{f.code} {f.message}" for f in findings if f.severity == ERROR]
    return plan, why + changes_since_check(sealed, job.image, plan, changed_files)


def changes_since_check(sealed: seal.Seal, image: str, plan: JobPlan, changed_files: list[str]) -> list[str]:
    """Why the job may not start as checked: files its process re-read (`changed_files`), the image, and its
    writable policy binds' sources. (Links on its own paths are judged anew by its plan, made fresh right
    before it starts.)"""
    refuse = [f"SC501 {path} changed since the check on the submit host" for path in changed_files]
    writable = [b.src for b in plan.rule.settings.binds if b.mode == "rw"]
    refuse += [f"SC502 the writable bind {src} now leads to {now}, not where it led when checked"
               for src, now in seal.moved_sources(sealed, writable)]
    pulled = os.path.abspath(os.path.join(".snakemake", "singularity"))
    if not os.path.abspath(image).startswith(pulled + os.sep):  # Snakemake's own pull cache: read-only to jobs
        why = seal.changed_image(sealed, image)
        refuse += [f"SC501 {why}"] if why else []
    return refuse


def resolved(plan: JobPlan) -> tuple[JobPlan, dict[str, int]]:
    """Bind sources as they really are right now (Apptainer follows symlinks), writable folders created
    (Snakemake makes output folders itself, but not a directory() output), and each top-level output made
    empty so that it can be bound alone: returned with its mtime, to tell afterwards whether the job wrote it."""
    binds, made = [], {}
    for bind in plan.binds:
        if bind.mode == "rw" and bind.origin is AUTO and not os.path.exists(bind.src):
            os.makedirs(bind.src, exist_ok=True)
        if bind.origin is TOPLEVEL and not os.path.lexists(bind.src):
            os.close(os.open(bind.src, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            made[bind.src] = os.stat(bind.src).st_mtime_ns
        real = os.path.realpath(bind.src)
        binds.append(replace(bind, src=real) if real != bind.src else bind)
    return replace(plan, binds=tuple(binds)), made


def finish(started: Started) -> list[str]:
    """Right after the job's container ends, success or failure, before Snakemake's own steps on the host: the
    top-level outputs it never wrote go again, and the links it left where Snakemake would follow them; those
    are returned (the job then fails, SC410). Its /tmp folder goes."""
    try:
        remove_unwritten(started.made)
        return remove_planted_links(started.plan)
    finally:
        if started.scratch:
            shutil.rmtree(started.scratch, ignore_errors=True)


def top_level_hint(started: Started) -> str:
    """What to do when a job that wrote top-level outputs failed: the one-file bind may be why."""
    plan = started.plan
    return (f"job {plan.job.label} may write {', '.join(sorted(started.made))} at the top of the workdir only as "
            "that one file: a tool that replaces it by rename, or writes files beside it, fails there (read-only "
            f"file system, or device busy); give rule {plan.rule.rule} `workdir: rw` in the policy, or write its "
            "outputs into a folder (e.g. results/)")


def remove_unwritten(made: Mapping[str, int]) -> None:
    """A top-level output the job never wrote goes again, so that Snakemake sees it missing, as without us."""
    for path, mtime in made.items():
        try:
            st = os.lstat(path)
            if st.st_size == 0 and st.st_mtime_ns == mtime:
                os.unlink(path)
        except OSError:
            pass


def _touched_by_snakemake(plan: JobPlan) -> list[tuple[str, bool]]:
    """(path, written) for every path Snakemake acts on for this job on the host after it ends, success or
    failure; `written` where it changes what it finds there (chmod of protected() outputs, also walking
    directory() outputs; moving a shadow job's outputs; writing benchmarks and .snakemake_timestamp), else it
    only reads (output checks, --show-failed-logs printing and copying logs, a report)."""
    job = plan.job
    base = job.shadow or plan.rule.workdir
    paths = [(os.path.join(base, p), bool(job.shadow) or os.path.abspath(os.path.join(base, p)) in job.protected)
             for p in job.outputs]
    paths += [(os.path.join(plan.rule.workdir, p), True) for p in job.benchmarks]
    for folder in job.directories:
        paths.append((os.path.join(folder, ".snakemake_timestamp"), True))
        for root, dirs, files in os.walk(folder):  # links are not followed: they are listed, and judged
            paths += [(os.path.join(root, name), folder in job.protected) for name in dirs + files]
    return paths


def remove_planted_links(plan: JobPlan) -> list[str]:
    """After the job, before Snakemake's own host-side steps (which follow links): a link on the way to a path
    Snakemake acts on — below the workdir's top, where jobs write (this one, or another before it) — is
    removed where it leads out of the job's view, or, where Snakemake changes what it finds, out of what the
    job could write itself; returned as "path -> target" (the job then fails, SC410). A link to a file the job
    could read (ln -s of an input) stays where Snakemake only reads it; the user's own links at the workdir's
    top are followed."""
    workdir, shadow = plan.rule.workdir, plan.job.shadow
    planted, seen = [], set()
    for path, written in _touched_by_snakemake(plan):
        probe = os.path.abspath(path)
        top = shadow if shadow and probe.startswith(shadow + os.sep) else workdir
        while (probe, written) not in seen and probe.startswith(top + os.sep):
            seen.add((probe, written))
            users = top == workdir and os.path.dirname(probe) == workdir and plan.rule.top_is_users
            if os.path.islink(probe) and not users:
                access = plan.access(os.path.realpath(probe))
                if probe.endswith("/.snakemake_timestamp") or access is None or written and access != "rw":
                    planted.append(f"{probe} -> {os.readlink(probe)}")
                    os.unlink(probe)
            probe = os.path.dirname(probe)
    return planted
