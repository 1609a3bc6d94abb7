"""The audit of a check: findings, a per-rule summary and (on request) every job's flags, as plain data.

The bridge writes it as JSON when the `singcontain` command asks (SINGCONTAIN_REPORT=path); the command
renders it. Plain data keeps the command free of Snakemake internals.
"""

import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict

from .argv import JOB_VARIABLES, apptainer_args
from .checker import Checker
from .findings import Finding
from .plan import JobSpec

THREADS = "{threads}"  # in the audit's flags: the job's `threads`, as the run passes them
NO_SDM = "add --sdm apptainer"  # the fix of the bridge's SC102 for a run without --sdm apptainer


def build(checker: Checker, jobs: Sequence[JobSpec], findings: Sequence[Finding], environ: Mapping[str, str],
          with_jobs: str | None = None, urls: Mapping[str, str] | None = None) -> dict:
    """with_jobs: "each" (one row per job) or "grouped" (one row per rule and identical flags, with a count: the
    audit of a large workflow stays small). `urls`: an image's local path -> the image as the workflow names
    it (docker://…), shown instead."""
    counts = Counter(job.rule for job in jobs)
    # A job without a local image (no --sdm apptainer) has none to name: every such URL maps from None.
    images = {job.rule: (urls or {}).get(job.image, job.image) if job.image else None for job in jobs}
    # Without --sdm apptainer every job runs on the host: the one finding that helps is SC102 "add --sdm
    # apptainer" (the bridge's); "the rule has no image" would send the user to add what the rule has.
    without_sdm = {r for f in findings if f.code == "SC102" and NO_SDM in f.fix for r in f.rule.split(", ")}
    findings = [f for f in findings if not (f.code == "SC102" and f.rule in without_sdm and NO_SDM not in f.fix)]
    rules = {}
    for rule in sorted(counts):
        s = checker.settings(rule)
        on_host = (("run:", "a run: block is Python in Snakemake's own process") if checker.rule_kinds.get(rule) == "run"
                   else ("no --sdm apptainer", "Snakemake runs without --sdm apptainer") if rule in without_sdm
                   else ("no image", "the rule has no image") if not images[rule] else None)
        rules[rule] = {
            "on_host": on_host[1] if on_host else None,  # why the job runs on the host, if it does
            "containment": f"host ({on_host[0]})" if on_host else s.containment,
            "namespaces": list(s.effective_namespaces),
            "cleanenv": s.effective_cleanenv,
            "env": list(s.env),
            # Without a net namespace the job has the host's network (measured: eth0 inside).
            "network": s.network if "net" in s.effective_namespaces else "host",
            "workdir": s.workdir if s.containment != "none" else "rw",
            # Without scratch, a contained job's /tmp is Apptainer's small in-memory folder (64 MiB by default).
            "tmp": "host's /tmp" if s.containment == "none" else f"scratch in {s.scratch}" if s.scratch else "in-memory",
            "writable_tmpfs": s.writable_tmpfs,
            "gpu": s.gpu,
            "args": list(s.args),
            "binds_ro": [f"{b.src}:{b.dst}" for b in s.binds if b.mode == "ro"],
            "binds_rw": [f"{b.src}:{b.dst}" for b in s.binds if b.mode == "rw"],
            "auto_binds": {"inputs": s.auto_binds.inputs, "outputs": s.auto_binds.outputs},
            "image": images[rule],
            "jobs": counts[rule],
            "origins": dict(s.origins),
        }
    report = {"workdir": checker.workdir, "findings": [asdict(f) for f in findings], "rules": rules}
    if with_jobs:
        runtime = checker.runtime
        # A job's shell gets its own thread counts (jobstart.job_environment), which a cleaned environment
        # passes with --env: the audit knows no job's threads, so it shows where each job's number goes.
        environ = {**environ, **dict.fromkeys(JOB_VARIABLES, THREADS)}
        rows: dict = {}
        for job in jobs:
            plan = checker.job_plan(job)
            try:
                args = shlex.join(apptainer_args(plan, runtime, environ)) if job.image else None
            except ValueError as err:  # a path --bind cannot express: reported as SC206
                args = f"(not expressible: {err})"
            key = (job.rule, job.image, args) if with_jobs == "grouped" else len(rows)
            if key in rows:
                rows[key]["count"] += 1
                continue
            rows[key] = {"rule": job.rule, "job": job.label, "wildcards": dict(job.wildcards),
                         "outputs": list(job.outputs), "image": job.image, "apptainer_args": args, "count": 1,
                         "binds": [asdict(b) | {"origin": str(b.origin)} for b in plan.binds]}
        report["jobs"] = list(rows.values())
    return report
