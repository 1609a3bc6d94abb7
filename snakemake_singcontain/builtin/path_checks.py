"""Checks of binds and of every job's files: sources, syntax, protected paths, visibility, writability."""

from ..argv import needs_mount
from ..findings import ERROR, NOTE, WARNING, Finding
from ..hooks import hookimpl
from .paths import under


def _unexpressible(bind, runtime):
    paths = (bind.src, bind.dst)
    return any(needs_mount(p) for p in paths) and not (runtime and runtime.supports_mount)


def _protected(bind, protected):
    if bind.mode != "rw":
        return None
    if bind.src == "/" or bind.dst == "/":
        return "/"
    return next((p for p in protected if under(bind.src, p) or under(bind.dst, p)), None)


@hookimpl
def singcontain_check_rule(plan, runtime):
    s, rule = plan.settings, plan.rule
    for bind in s.binds:
        where = str(bind.origin) if bind.origin else None
        if bind.src in plan.missing:
            if bind.required:
                yield Finding("SC301", ERROR, rule, f"bind source {bind.src} does not exist on this host",
                              "create it, correct the path, or mark the bind 'required: false'", where=where)
            else:
                yield Finding("SC302", NOTE, rule, f"optional bind source {bind.src} does not exist; the bind is skipped",
                              "nothing to do if that is expected", where=where)
        if _unexpressible(bind, runtime):
            yield Finding("SC206", ERROR, rule, f"{bind.src}:{bind.dst} contains ',' or ':', which --bind cannot "
                          "express, and this runtime has no --mount", "rename the folder, or use Apptainer >= 1.1", where=where)
        hit = _protected(bind, s.protected)
        if hit:
            yield Finding("SC306", ERROR, rule, f"{bind.src} -> {bind.dst} is bound writable on or under protected {hit}",
                          "bind it read-only (mode: ro), or write elsewhere", where=where)
    if "ipc" in s.namespaces and s.containment == "none":
        yield Finding("SC404", WARNING, rule, "an IPC namespace without contain/containall still shares the host's "
                      "/dev/shm (POSIX shared memory crosses the boundary)", "add containment: contain",
                      where=s.origins.get("namespaces"))


@hookimpl
def singcontain_check_job(plan, runtime):
    rule, job = plan.rule.rule, plan.job.label
    if plan.rule.image is None:
        return  # runs on the host: nothing to see or not see
    for kind, path, why in plan.problems:
        if kind == "input":
            yield Finding("SC401", ERROR, rule, f"input {path} is not visible in the container: {why}",
                          "bind its folder (binds:) or enable auto_binds.inputs", job=job)
        elif kind == "output":
            yield Finding("SC402", ERROR, rule, f"output {path} is not writable in the container: {why}",
                          "write it elsewhere, or bind its folder writable (mode: rw)", job=job)
        else:
            yield Finding("SC403", ERROR, rule, f"input {path} is a symlink: {why}",
                          "bind the target's folder read-only, or copy the file into the workflow", job=job)
    for bind in plan.binds:
        if bind.origin is None or bind.origin.layer != "auto-bind":
            continue
        if _unexpressible(bind, runtime):
            yield Finding("SC206", ERROR, rule, f"folder {bind.src} contains ',' or ':' and this runtime has no --mount",
                          "rename the folder, or use Apptainer >= 1.1", job=job)
        hit = _protected(bind, plan.rule.settings.protected)
        if hit:
            yield Finding("SC306", ERROR, rule, f"writing {bind.src} would bind it writable under protected {hit}",
                          "write the job's outputs elsewhere", job=job)
