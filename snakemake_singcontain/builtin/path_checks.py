"""Checks of binds and of every job's files: sources, syntax, protected paths, visibility, writability."""

import bisect
import functools
from dataclasses import replace

from ..argv import expressible, needs_mount
from ..findings import ERROR, NOTE, WARNING, Finding
from ..hooks import hookimpl
from ..paths import parent, under
from ..plan import JOB_LAYERS


KERNEL_FILESYSTEMS = ("/proc", "/sys", "/dev")


def _unexpressible(bind, runtime):
    paths = (bind.src, bind.dst)
    return (any(needs_mount(p) for p in paths) and not (runtime and runtime.supports_mount)
            or not all(map(expressible, paths)))


def protected_hit(bind, protected, real_sources) -> str | None:
    """The protected path a writable bind would expose: on, under, or (a parent bound) above it; the
    source is also taken where a symlink really leads."""
    if bind.mode != "rw":
        return None
    paths = {bind.src, bind.dst, real_sources.get(bind.src, bind.src)}
    if "/" in paths:
        return "/"
    exact, below = _index(tuple(protected))
    hits = {p for x in paths for p in _on_or_above(x, exact)} | {p for x in paths for p in _below(x, below)}
    return next((p for p in protected if _bare(p) in hits), None) if hits else None


def _bare(path: str) -> str:
    return path.rstrip("/") or "/"


@functools.lru_cache(maxsize=64)
def _index(protected: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """A rule's protected paths, for one bind's question in O(log n) (a new folder beside a known one) to
    O(depth + log n): as a set, and sorted."""
    bare = frozenset(map(_bare, protected))
    return bare, tuple(sorted(bare))


def _on_or_above(path: str, exact: frozenset[str]) -> tuple[str, ...]:
    """The protected paths that `path` is, or lies under. Kept per folder: a DAG's folders share parents, so a
    new folder costs one step from its parent's answer, not one per level."""
    known = _known_above(exact)
    if len(known) > 100_000:
        known.clear()
    walked, probe = [], path
    while probe and probe not in known:
        walked.append(probe)
        probe = "" if probe == "/" else parent(probe)
    found = known.get(probe, ())
    for folder in reversed(walked):
        found = known[folder] = (folder,) + found if folder in exact else found
    return known.get(path, ())


@functools.lru_cache(maxsize=64)
def _known_above(exact: frozenset[str]) -> dict[str, tuple[str, ...]]:
    return {}


def _below(path: str, ordered: tuple[str, ...]):
    """The protected paths below `path` (a bound parent would show them): sorted, they follow path + '/'."""
    prefix = path.rstrip("/") + "/"
    for p in ordered[bisect.bisect_left(ordered, prefix):]:
        if not p.startswith(prefix):
            return
        yield p


@hookimpl
def singcontain_check_rule(plan, runtime):
    s, rule = plan.settings, plan.rule
    for bind in s.binds:
        where = str(bind.origin) if bind.origin else None
        if bind.src in plan.missing:
            unset = bind.origin.defaulted if bind.origin else ()
            if bind.required and unset:  # `${CVMFS_ROOT:-/cvmfs}` without CVMFS_ROOT: the variable is the news
                names = " and ".join(unset)
                yield Finding("SC301", ERROR, rule, f"bind source {bind.src} does not exist on this host: {names} "
                              f"{'is' if len(unset) == 1 else 'are'} not set, so the default was taken",
                              f"export {unset[0]}=… (where this host has it), create {bind.src}, or mark the bind "
                              "'required: false'", where=where)
            elif bind.required:
                yield Finding("SC301", ERROR, rule, f"bind source {bind.src} does not exist on this host",
                              "create it, correct the path, or mark the bind 'required: false'", where=where)
            else:
                yield Finding("SC302", NOTE, rule, f"optional bind source {bind.src} does not exist; the bind is skipped",
                              "nothing to do if that is expected", where=where)
        if _unexpressible(bind, runtime):
            yield Finding("SC206", ERROR, rule, f"{bind.src!r} -> {bind.dst!r} contains a line break, or ',' or ':' "
                          "and this runtime has no --mount", "rename the folder (a line break cannot be bound at all), "
                          "or use Apptainer >= 1.1", where=where)
        hit = protected_hit(bind, plan.protected, plan.real_sources)
        if hit:
            yield Finding("SC306", ERROR, rule, f"{bind.src} -> {bind.dst} is bound writable and exposes protected {hit}",
                          "bind it read-only (mode: ro), or write elsewhere", where=where)
    if s.scratch and s.scratch in plan.missing and s.containment != "none":
        yield Finding("SC301", ERROR, rule, f"scratch folder {s.scratch} does not exist on this host",
                      "create it, or correct the policy's scratch", where=s.origins.get("scratch"))
    for bind in s.binds if s.containment != "none" or s.effective_namespaces else ():  # what the namespaces hide
        kernel = next((p for p in KERNEL_FILESYSTEMS for x in (bind.src, bind.dst, plan.real_sources.get(bind.src, bind.src))
                       if under(x, p) or under(p, x)), None)
        if kernel:
            yield Finding("SC307", ERROR, rule, f"{bind.src} -> {bind.dst} shows the host's {kernel}, which undoes the "
                          "container's own (host processes, devices)", "drop this bind", where=str(bind.origin) if bind.origin else None)
    if "ipc" in s.namespaces and s.containment == "none":
        yield Finding("SC404", WARNING, rule, "an IPC namespace without contain/containall still shares the host's "
                      "/dev/shm (POSIX shared memory crosses the boundary)", "add containment: contain",
                      where=s.origins.get("namespaces"))


PROBLEMS = {  # plan problem kind -> code, what it is, the fix
    "input": ("SC401", "input {path} is not visible in the container: {why}",
              "bind its folder (binds:) or enable auto_binds.inputs"),
    "output": ("SC402", "output {path} is not writable in the container: {why}",
               "write it elsewhere, or bind its folder writable (`:rw` after the bind, or `mode: rw` in the long form)"),
    "symlink": ("SC403", "input {path} is a symlink: {why}",
                "bind the target's folder read-only, or copy the file into the workflow"),
    "workdir": ("SC406", "output {path} cannot be written: {why}", "write it into a folder of its own (e.g. results/)"),
    "dotdot": ("SC407", "{path}: {why}",
               "keep the job's files inside the workdir (check the wildcard values and symlinks), or bind that folder "
               "in the policy (writable for an output: mode: rw)"),
    "hostread": ("SC411", "output {path} cannot be written: {why}", "write it into a folder of its own (e.g. results/)"),
    "link": ("SC412", "{path}: {why}",
             "remove the link (a job left it); if you made it, make it a folder, or point it out of the workdir at a "
             "folder the policy binds"),
    "benchmark": ("SC408", "benchmark {path} lies in a folder the job can write: {why}",
                  "give benchmarks a folder of their own, e.g. benchmark: \"benchmarks/{sample}.tsv\""),
    "inputs": ("SC409", "{why} (first: {path})",
               "write the output into a folder of its own, or set auto_binds: {inputs: rw} to accept writable inputs"),
}


@hookimpl
def singcontain_check_job(plan, runtime):
    rule = plan.rule.rule
    if plan.rule.image is None:
        return  # runs on the host: nothing to see or not see
    for kind, path, why in plan.problems:
        code, message, fix = PROBLEMS[kind]
        yield Finding(code, ERROR, rule, message.format(path=path, why=why), fix, job=plan.job.label)
    memo = plan.rule.memo.setdefault("path_checks", {})
    for bind in plan.binds:
        layer = bind.origin.layer if bind.origin else "policy"
        if layer not in JOB_LAYERS:
            continue  # policy binds are told once per rule (above)
        real = plan.real_sources.get(bind.src, bind.src)
        key = (bind.src, bind.dst, bind.mode, layer, real)
        if key not in memo:  # jobs of a rule share their folders: each bind is judged once
            # a tuple: mostly the empty one, which costs no object (one per job folder where every job has its own)
            memo[key] = tuple(_judge_job_bind(bind, layer, plan.rule, {bind.src: real}, runtime))
        for code, severity, message, fix in memo[key]:
            yield Finding(code, severity, rule, message, fix, job=plan.job.label)


def _judge_job_bind(bind, layer, rule_plan, real_sources, runtime):
    if _unexpressible(bind, runtime):
        yield ("SC206", ERROR, f"folder {bind.src!r} contains a line break, or ',' or ':' and this runtime has no "
               "--mount", "rename the folder (a line break cannot be bound at all), or use Apptainer >= 1.1")
    hit = protected_hit(bind, rule_plan.protected, real_sources)
    if hit:
        yield ("SC306", ERROR, f"{bind.src} would be bound writable ({layer}), exposing protected {hit}",
               "write the job's outputs elsewhere")
    for floor in rule_plan.floors:
        hit = protected_hit(bind, floor.never_writable, real_sources)
        if hit:
            yield ("SC105", ERROR, f"{bind.src} would be bound writable ({layer}), exposing {hit}, which "
                   f"{floor.plugin} forbids", "write the job's outputs elsewhere")
    if layer == "auto-bind" and bind.mode == "ro" and protected_hit(replace(bind, mode="rw"), rule_plan.settings.protected, {}):
        yield ("SC405", WARNING, f"input folder {bind.src} is bound over the image's own {bind.dst}",
               "copy the file into the workflow, or bind it to another destination")
