"""Checks of binds and of every job's files: sources, syntax, protected paths, visibility, writability."""

from dataclasses import replace

from ..argv import needs_mount
from ..findings import ERROR, NOTE, WARNING, Finding
from ..hooks import hookimpl
from ..paths import under


def _unexpressible(bind, runtime):
    paths = (bind.src, bind.dst)
    return any(needs_mount(p) for p in paths) and not (runtime and runtime.supports_mount)


def protected_hit(bind, protected, real_sources) -> str | None:
    """The protected path a writable bind would expose: on, under, or (a parent bound) above it; the
    source is also taken where a symlink really leads."""
    if bind.mode != "rw":
        return None
    paths = {bind.src, bind.dst, real_sources.get(bind.src, bind.src)}
    if "/" in paths:
        return "/"
    return next((p for p in protected if any(under(x, p) or under(p, x) for x in paths)), None)


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
        hit = protected_hit(bind, s.protected, plan.real_sources)
        if hit:
            yield Finding("SC306", ERROR, rule, f"{bind.src} -> {bind.dst} is bound writable and exposes protected {hit}",
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
        layer = bind.origin.layer if bind.origin else "policy"
        if layer in ("auto-bind", "workdir", "snakemake") and _unexpressible(bind, runtime):
            # Policy binds are told once per rule (above); these come from the job's own paths.
            yield Finding("SC206", ERROR, rule, f"folder {bind.src} contains ',' or ':' and this runtime has no --mount",
                          "rename the folder, or use Apptainer >= 1.1", job=job)
        if layer != "auto-bind":
            continue
        hit = protected_hit(bind, plan.rule.settings.protected, plan.real_sources)
        if hit:
            yield Finding("SC306", ERROR, rule, f"writing {bind.src} would bind it writable, exposing protected {hit}",
                          "write the job's outputs elsewhere", job=job)
        for floor in plan.rule.floors:
            hit = protected_hit(bind, floor.never_writable, plan.real_sources)
            if hit:
                yield Finding("SC105", ERROR, rule, f"writing {bind.src} would bind it writable, exposing {hit}, which "
                              f"plugin {floor.plugin} forbids", "write the job's outputs elsewhere", job=job)
        if bind.mode == "ro" and protected_hit(replace(bind, mode="rw"), plan.rule.settings.protected, {}):
            yield Finding("SC405", WARNING, rule, f"input folder {bind.src} is bound over the image's own {bind.dst}",
                          "copy the file into the workflow, or bind it to another destination", job=job)
