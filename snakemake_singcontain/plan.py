"""Policy settings x a job -> an immutable plan: ordered binds (auto-binds included) and what the job will see.

Paths are host paths; a job refers to its files by host path, so a file is usable inside only where the
container shows that same host folder at that same path.
"""

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field

from .paths import clean, under
from .policy import Bind, Floor, Origin, Settings

AUTO = Origin("auto-bind", "job files")
SUPPORT = Origin("snakemake", "Snakemake's own files")
WORKDIR = Origin("workdir", "Snakemake --home")


@dataclass(frozen=True)
class JobSpec:
    """What the plan needs to know of a job; built from Snakemake's job by the bridge."""

    rule: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # outputs and logs: everything the job writes
    wildcards: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None
    symlinks: Mapping[str, str] = field(default_factory=dict)  # input -> real host path, where they differ
    support: tuple[tuple[str, str], ...] = ()  # (host, container) folders Snakemake itself binds for the job

    @property
    def label(self) -> str:
        if not self.wildcards:
            return self.rule
        return f"{self.rule}[{', '.join(f'{k}={v}' for k, v in self.wildcards.items())}]"


@dataclass(frozen=True)
class Mount:
    src: str
    dst: str
    mode: str
    origin: str


@dataclass(frozen=True)
class RulePlan:
    """Everything about a rule that does not depend on the job: computed once per rule and image."""

    rule: str
    kind: str  # shell | script | notebook | wrapper | cwl | run
    image: str | None
    workdir: str
    settings: Settings
    floors: tuple[Floor, ...] = ()
    mounts: Mapping[str, Mount] = field(default_factory=dict)  # by destination: workdir, defaults, policy binds
    missing: frozenset[str] = frozenset()  # bind sources that do not exist on this host
    real_sources: Mapping[str, str] = field(default_factory=dict)  # writable bind source -> where it really leads

    @property
    def contained(self) -> bool:
        return self.settings.isolates


def rule_plan(rule: str, kind: str, image: str | None, workdir: str, settings: Settings,
              floors: tuple[Floor, ...] = (), default_mounts: tuple[str, ...] = (),
              missing: frozenset[str] = frozenset(), real_sources: Mapping[str, str] | None = None) -> RulePlan:
    """default_mounts: host folders the runtime shows without --contain (e.g. /tmp), from its configuration."""
    mounts: dict[str, Mount] = {}
    if settings.containment == "none":
        for path in default_mounts:
            mounts[path] = Mount(path, path, "rw", "runtime default mount")
    # Snakemake always passes --home WORKDIR: the workdir is mounted read-write at its own path (also
    # under --contain/--containall, measured with Apptainer 1.4.5).
    mounts[workdir] = Mount(workdir, workdir, "rw", "Snakemake --home")
    for bind in settings.binds:
        if bind.src in missing:
            continue
        mounts[bind.dst] = Mount(bind.src, bind.dst, bind.mode, str(bind.origin or "policy"))
    return RulePlan(rule, kind, image, workdir, settings, floors, mounts, missing, real_sources or {})


def lookup(mounts: Mapping[str, Mount], path: str) -> tuple[Mount | None, bool]:
    """The mount serving container `path`, and whether it shows the host's own `path` there."""
    probe = path
    while True:
        mount = mounts.get(probe)
        if mount is not None:
            rest = path[len(probe):].lstrip("/")
            return mount, (posixpath.join(mount.src, rest) if rest else mount.src) == path
        parent = posixpath.dirname(probe)
        if parent == probe:  # "/" (or "//", which dirname keeps)
            return None, False
        probe = parent


@dataclass(frozen=True)
class JobPlan:
    job: JobSpec
    rule: RulePlan
    binds: tuple[Bind, ...]  # policy binds then auto-binds, parents before children, no duplicates
    mounts: Mapping[str, Mount]
    problems: tuple[tuple[str, str, str], ...] = ()  # (kind, path, why): files the job cannot use
    real_sources: Mapping[str, str] = field(default_factory=dict)  # writable bind source -> where it really leads

    def access(self, host_path: str) -> str | None:
        """'rw' or 'ro' if the job sees `host_path` at the same path inside the container, else None."""
        mount, same = lookup(self.mounts, _absolute(host_path, self.rule.workdir))
        return mount.mode if mount and same else None


def _absolute(path: str, workdir: str) -> str:
    return clean(posixpath.join(workdir, path))


def job_plan(rule: RulePlan, job: JobSpec) -> JobPlan:
    mounts = dict(rule.mounts)
    auto: dict[str, Bind] = {}
    problems = []
    modes = rule.settings.auto_binds
    # Outputs first: an input beside an output then shares the output's writable folder bind.
    files = [("output", p, modes.outputs) for p in job.outputs] + [("input", p, modes.inputs) for p in job.inputs]
    for kind, path, auto_mode in files:
        path = _absolute(path, rule.workdir)
        mount, same = lookup(mounts, path)
        if mount is not None and not same:
            problems.append((kind, path, f"the container shows {mount.src} at {mount.dst} ({mount.origin})"))
        elif mount is None and auto_mode:
            folder = posixpath.dirname(path)
            auto[folder] = Bind(folder, folder, auto_mode, required=False, origin=AUTO)
            mounts[folder] = Mount(folder, folder, auto_mode, "auto-bind")
        elif mount is None:
            problems.append((kind, path, "no bind shows it and auto_binds is off for it"))
        elif kind == "output" and mount.mode != "rw":
            problems.append((kind, path, f"it lies under a read-only bind of {mount.src} ({mount.origin})"))
    for src, dst in job.support:
        src, dst = _absolute(src, rule.workdir), _absolute(dst, rule.workdir)
        mount, same = lookup(mounts, dst)
        if not (mount and same and mount.mode == "rw"):
            # Snakemake binds these writable after the plan's flags, also inside a read-only bind; Apptainer
            # keeps the first bind of a destination (measured), so binding them read-only here first is what
            # the job gets. A job only reads there (its outputs get their own binds).
            auto[dst] = Bind(src, dst, "ro", required=False, origin=SUPPORT)
            mounts[dst] = Mount(src, dst, "ro", "Snakemake's own files")
    for path, real in job.symlinks.items():
        mount, same = lookup(mounts, clean(real))
        if not (mount and same):
            problems.append(("symlink", _absolute(path, rule.workdir), f"it resolves to {real}, which the container does not show"))
    binds = [b for b in rule.settings.binds if b.src not in rule.missing] + list(auto.values())
    if any(under(rule.workdir, b.dst) and b.dst != rule.workdir for b in binds):
        # A bind of a parent of the workdir is mounted after Snakemake's --home and would hide it
        # (measured: a read-only parent makes the workdir read-only), so the workdir is bound again.
        binds.append(Bind(rule.workdir, rule.workdir, "rw", required=False, origin=WORKDIR))
    binds.sort(key=lambda b: b.dst.count("/"))  # parents before children, as Apptainer mounts them in order
    return JobPlan(job, rule, tuple(binds), mounts, tuple(problems))
