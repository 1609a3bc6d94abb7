"""Policy settings x a job -> an immutable plan: ordered binds (auto-binds included) and what the job will see.

Paths are host paths; a job refers to its files by host path, so a file is usable inside only where the
container shows that same host folder at that same path.

What a job in a container may write is judged by REAL path (symlinks resolved), never by how the path is
written (docs/snakemake.md, "What a job may write"):
- inside the workdir: the folders of its own outputs and logs (a directory() output: itself), and at the
  workdir's top only its declared files, each bound alone; never `.snakemake/` (SC406) nor a place the host
  later reads as configuration or code (`profiles/`, the Snakefiles, configfiles, the policy: SC411). The
  rest of the workdir, which Snakemake mounts writable with --home, is bound again read-only (`workdir: rw`
  opts out). A link met on the way to an output folder may lead only below the folder it lies in, or out of
  the workdir under a writable policy bind: any other was left by a job (SC412);
- outside the workdir: only under a writable policy bind (SC407), or the job's own shadow folder.
What it may read: the workdir, the workflow's own source tree (read-only), what a policy bind shows, and
(auto_binds) each input elsewhere: a folder input itself, a file its folder (tools read index files beside
their input), read-only; not through '..' out of the workdir (how a path built from data reaches the host:
SC407), nor through a link that a job could have left (SC412). Inputs that lie in a writable folder are bound
read-only file by file.
"""

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field

from .paths import clean, parent, under
from .policy import Bind, Floor, Origin, Settings

AUTO = Origin("auto-bind", "job files")
INPUT = Origin("input", "job inputs, read-only inside a writable folder")
SUPPORT = Origin("snakemake", "Snakemake's own files")
WORKDIR = Origin("workdir", "Snakemake --home")
STATE = Origin("state", "Snakemake's state folder (.snakemake)")
SHADOW = Origin("shadow", "the job's shadow folder")
SCRATCH = Origin("scratch", "the job's own /tmp, policy scratch")
TOPLEVEL = Origin("top-level file", "a declared output at the top of the workdir, bound alone")
SOURCE = Origin("workflow source", "the workflow's own files, read-only")
DEFAULT = Origin("runtime default mount", "the runtime's configuration")
JOB_LAYERS = frozenset(o.layer for o in (AUTO, INPUT, SUPPORT, WORKDIR, STATE, SHADOW, SCRATCH, TOPLEVEL, SOURCE))
NOT_POLICY = JOB_LAYERS | {DEFAULT.layer}
FILE_ORIGINS = (INPUT, TOPLEVEL, SOURCE)  # binds of single files: a plan with them is the job's alone
# An input bound file by file costs one --bind each; Snakemake starts the container through `sh -c` with
# one argument, which the kernel caps at 128 KiB (MAX_ARG_STRLEN).
MAX_INPUT_BINDS = 256


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
    directories: frozenset[str] = frozenset()  # outputs that are directory()
    protected: frozenset[str] = frozenset()  # outputs that are protected(): Snakemake chmods them after the job
    benchmarks: tuple[str, ...] = ()  # written by Snakemake on the host after the job
    shadow: str | None = None  # the job's shadow folder, known only when it starts
    scratch: str | None = None  # the job's own host folder for /tmp (policy `scratch`), made when it starts
    real_folders: Mapping[str, str] = field(default_factory=dict)  # folder of a job file -> its real path, where
    # they differ (a symlinked data/ or scratch/): the container must show the real folder, at its own path
    links: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # a symlink inside the workdir on the way
    # to a job file -> (where it leads, the real folder it lies in)
    input_folders: frozenset[str] = frozenset()  # inputs outside the workdir that are folders (real paths)

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
    kind: str  # shell | script | notebook | wrapper | cwl | template | run
    image: str | None
    workdir: str
    settings: Settings
    floors: tuple[Floor, ...] = ()
    mounts: Mapping[str, Mount] = field(default_factory=dict)  # by destination: workdir, defaults, policy binds
    missing: frozenset[str] = frozenset()  # bind sources that do not exist on this host
    real_sources: Mapping[str, str] = field(default_factory=dict)  # writable bind source -> where it really leads
    protected: tuple[str, ...] = ()  # the policy's protected paths and, where they differ, their real paths
    host_reads: tuple[str, ...] = ()  # real paths the host reads later as configuration or code: never writable
    source: str | None = None  # the workflow's own source tree (real path), whose files a job may read
    top_is_users: bool = True  # no job writes the workdir's top (no rule has `workdir: rw`): links there are the user's
    # Per-rule memo (folder -> the rule's mount serving it; checks' results per bind): jobs share folders.
    memo: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def contained(self) -> bool:
        return self.settings.isolates

    @property
    def workdir_mode(self) -> str:
        """Read-only in every container, whatever its containment (Snakemake's --home would make it writable):
        what one job writes there beside its outputs, later jobs and runs would trust."""
        return self.settings.workdir


def shape(job: JobSpec) -> tuple | None:
    """What a job's plan depends on besides its rule, where only the folders of its files matter: jobs of one
    rule with the same shape get the same binds (a large DAG's jobs mostly share a few shapes). None where
    file names matter (symlinks, directory() outputs, benchmarks, shadow, scratch)."""
    if job.symlinks or job.directories or job.benchmarks or job.shadow or job.scratch or job.links or job.protected:
        return None
    # Each path up to its last '/': jobs with equal keys have equal folders (posixpath.dirname, at twice the cost)
    return (tuple([p[:p.rfind("/") + 1] for p in job.outputs]), tuple([p[:p.rfind("/") + 1] for p in job.inputs]),
            job.support)


def rule_plan(rule: str, kind: str, image: str | None, workdir: str, settings: Settings,
              floors: tuple[Floor, ...] = (), default_mounts: tuple[str, ...] = (),
              missing: frozenset[str] = frozenset(), real_sources: Mapping[str, str] | None = None,
              protected: tuple[str, ...] | None = None, host_reads: tuple[str, ...] = (),
              source: str | None = None, top_is_users: bool = True) -> RulePlan:
    """default_mounts: host folders the runtime shows without --contain (e.g. /tmp), from its configuration."""
    mounts: dict[str, Mount] = {}
    if settings.containment == "none":
        for path in default_mounts:
            mounts[path] = Mount(path, path, "rw", DEFAULT.layer)
    # Snakemake always passes --home WORKDIR (mounted writable, also under --contain/--containall); a
    # contained job gets it read-only through a bind of its own (measured: a later --bind W:W:ro wins).
    plan = RulePlan(rule, kind, image, workdir, settings)
    mounts[workdir] = Mount(workdir, workdir, plan.workdir_mode, WORKDIR.layer)
    if plan.workdir_mode == "rw":
        state = posixpath.join(workdir, ".snakemake")
        mounts[state] = Mount(state, state, "ro", STATE.layer)
    for bind in settings.binds:
        if bind.src in missing:
            continue
        mounts[bind.dst] = Mount(bind.src, bind.dst, bind.mode, str(bind.origin or "policy"))
    return RulePlan(rule, kind, image, workdir, settings, floors, mounts, missing, real_sources or {},
                    settings.protected if protected is None else protected, host_reads, source, top_is_users)


class _Mounts:
    """The rule's mounts (their lookups memoized per folder, for every job of the rule) plus the job's own."""

    def __init__(self, rule: RulePlan):
        self.rule_mounts, self.folders = rule.mounts, rule.memo.setdefault("folders", {})
        self.job_mounts: dict[str, Mount] = {}

    def add(self, mount: Mount) -> None:
        self.job_mounts[mount.dst] = mount

    def _rule_mount(self, folder: str) -> Mount | None:
        if folder not in self.folders:
            parent = posixpath.dirname(folder)
            self.folders[folder] = self.rule_mounts.get(folder) or (
                self._rule_mount(parent) if parent != folder else None)
        return self.folders[folder]

    def find(self, path: str) -> tuple[Mount | None, bool]:
        """The mount serving container `path` (the deepest), and whether it shows the host's own `path` there."""
        best = self.rule_mounts.get(path) or self._rule_mount(posixpath.dirname(path))
        own = serving(self.job_mounts, path, len(best.dst) - 1 if best else 0) if self.job_mounts else None
        best = own or best
        return best, best is not None and best.src == best.dst

    def all(self) -> dict[str, Mount]:
        return {**self.rule_mounts, **self.job_mounts}


def serving(mounts: Mapping[str, Mount], path: str, deeper_than: int = 0) -> Mount | None:
    """The mount serving container `path` (clean, absolute; `mounts` by destination): the deepest whose
    destination holds it, and only one whose destination is longer than `deeper_than` characters. It shows the
    host's own `path` there where its source is its destination."""
    probe = path
    while len(probe) > deeper_than:
        mount = mounts.get(probe)
        if mount is not None:
            return mount
        if probe == "/":
            return None
        probe = parent(probe)
    return None


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
        mount = serving(self.mounts, absolute(host_path, self.rule.workdir))
        return mount.mode if mount and mount.src == mount.dst else None


def absolute(path: str, workdir: str) -> str:
    """`path` (a job's, relative to `workdir`, or absolute) absolute and clean."""
    joined = path if path.startswith("/") else f"{workdir}/{path}"  # posixpath.join, at half its cost
    # normpath only where it changes something (it is the hot spot of a large DAG otherwise)
    return clean(joined) if "/." in joined or "//" in joined or joined.endswith("/") else joined


def renamed(plan: JobPlan, job: JobSpec, folders: Mapping[str, str]) -> JobPlan:
    """The plan of a job of the same family as `plan`'s (Checker.family: the same rule and shape, but each
    output folder a plain sibling of the template's), for `job`: the template's own output-folder binds moved to
    `job`'s folders (`folders`: template folder -> this job's). Only plans without problems are templates."""
    binds = tuple(Bind(folders[b.src], folders[b.src], b.mode, required=False, origin=AUTO)
                  if b.origin is AUTO and b.src == b.dst and b.src in folders else b for b in plan.binds)
    mounts = {}
    for dst, mount in plan.mounts.items():
        if dst in folders and mount.origin == AUTO.layer and mount.src == dst:
            dst = folders[dst]
            mount = Mount(dst, dst, mount.mode, mount.origin)
        mounts[dst] = mount
    # replace(plan, …), without the dataclass's per-field work: this runs for every job of such a DAG
    renamed_plan = object.__new__(JobPlan)
    renamed_plan.__dict__.update(plan.__dict__, job=job, binds=binds, mounts=mounts)
    return renamed_plan


def real_path(path: str, real_folders: Mapping[str, str]) -> str:
    """`path` (absolute) with its folder resolved as the checker found it (Apptainer follows symlinks the same
    way)."""
    path = clean(path) if "/." in path or "//" in path or path.endswith("/") else path
    if path in real_folders:
        return real_folders[path]
    folder, name = posixpath.split(path)
    return posixpath.join(real_folders[folder], name) if folder in real_folders else path


def _bind(mounts: _Mounts, binds: dict, src: str, dst: str, mode: str, origin: Origin) -> None:
    binds[dst] = Bind(src, dst, mode, required=False, origin=origin)
    mounts.add(Mount(src, dst, mode, origin.layer))


def host_reads(workdir: str, basedir: str, files) -> tuple[str, ...]:
    """What Snakemake and this plugin read on the host as configuration or code, on this run or the next: never
    writable to a job (SC411). `profiles/` in the workdir and beside the Snakefile, `files` (the policy,
    configfiles, site files, every Snakefile and include; a URL is left out), and the workflow's source folder
    as a whole where it is not the workdir (nor holds it): the catalogue layout, workflow/."""
    basedir = os.path.realpath(basedir)
    paths = [posixpath.join(workdir, "profiles"), posixpath.join(basedir, "profiles")]
    paths += [p for p in files if isinstance(p, str) and "://" not in p]
    if not under(workdir, basedir):
        paths.append(basedir)
    return tuple(dict.fromkeys(map(os.path.abspath, paths)))


def host_read(rule: RulePlan, grant: str) -> str | None:
    """The place the host reads as configuration or code that a writable `grant` is, holds, or lies in."""
    memo = rule.memo.setdefault("host_reads", {})
    if grant not in memo:
        memo[grant] = next((p for p in rule.host_reads if under(p, grant) or under(grant, p)), None)
    return memo[grant]


def _left_by_a_job(rule: RulePlan, job: JobSpec, written: str) -> list[str]:
    """The links on the way to `written` that a job could have left and that lead elsewhere than below the
    folder they lie in. At the workdir's top a link is the user's while no rule's job writes there."""
    return [link for link, (target, parent) in job.links.items()
            if under(written, link) and not under(target, parent)
            and (posixpath.dirname(link) != rule.workdir or not rule.top_is_users)]


def _link_problem(job: JobSpec, links: list[str], why: str) -> tuple[str, str]:
    return "link", f"{links[-1]} is a symlink to {job.links[links[-1]][0]}: a link in a folder that jobs can write {why}"


def _write_problem(rule: RulePlan, job: JobSpec, raw: str, written: str, path: str, folder: str,
                   mount: Mount | None, same: bool) -> tuple[str, str] | None:
    """Why the job may not write output `raw` (`written` absolute, `path` real, in `folder`), or None; see the
    module's docstring."""
    workdir = rule.workdir
    if job.shadow and under(path, job.shadow):
        return None  # the job's own shadow folder, bound writable
    # A job's link may lead out only where a writable policy bind shows (any job of a rule with that bind
    # could write there anyway); the user's links at the top lead below their folder whenever they stay inside.
    policy_writable = mount is not None and same and mount.mode == "rw" and mount.origin not in NOT_POLICY
    suspect = _left_by_a_job(rule, job, written)
    if suspect and (not policy_writable or any(under(job.links[link][0], workdir) for link in suspect)):
        return _link_problem(job, suspect, "may lead only below that folder, or out of the workdir under a "
                             "writable policy bind")
    if under(folder, workdir):
        state = posixpath.join(workdir, ".snakemake")
        if under(folder, state) and not under(folder, posixpath.join(state, "storage")):
            return "workdir", "it lies in .snakemake, Snakemake's own state, which no job may write"
        hit = host_read(rule, path if folder == workdir else folder)
        if hit:
            return "hostread", f"the host reads {hit} as configuration or code on later runs"
        return None
    if mount is not None and same and mount.mode == "rw" and (mount.origin not in NOT_POLICY or mount.origin in (
            DEFAULT.layer, SHADOW.layer, SCRATCH.layer)):
        return None
    if mount is not None and same and mount.mode == "ro":
        return "output", f"it lies under a read-only bind of {mount.src} ({mount.origin})"
    if mount is not None and not same:
        return "output", f"the container shows {mount.src} at {mount.dst} ({mount.origin})"
    return "dotdot", (f"{raw!r} really lies at {path}, outside the workdir, and no writable policy bind shows it"
                      if raw != path else "it lies outside the workdir, and no writable policy bind shows it")


def job_plan(rule: RulePlan, job: JobSpec) -> JobPlan:
    mounts = _Mounts(rule)
    auto: dict[str, Bind] = {}
    problems = []
    workdir = rule.workdir
    modes = rule.settings.auto_binds
    contained = rule.settings.containment != "none"
    # Relative paths of a shadow job lie in its shadow folder, which is the job's own: bound writable.
    base = job.shadow or workdir
    if job.shadow:
        _bind(mounts, auto, job.shadow, job.shadow, "rw", SHADOW)
    if job.scratch:
        _bind(mounts, auto, job.scratch, "/tmp", "rw", SCRATCH)

    # Snakemake's own folders first (source cache, storage prefix, import paths), as one code path before the
    # run and at the job's start: Snakemake would bind them writable (the bridge drops its binds); read-only
    # here, the job only reads there (its outputs get their own binds).
    for src, dst in job.support:
        src, dst = absolute(src, workdir), absolute(dst, workdir)
        mount, same = mounts.find(dst)
        if not (mount and same and mount.mode == "ro"):
            _bind(mounts, auto, src, dst, "ro", SUPPORT)

    # Outputs first: an input beside an output then shares the output's writable folder bind.
    for raw in job.outputs:
        written = absolute(raw, base)
        path = real_path(written, job.real_folders)
        folder = path if path in job.directories else posixpath.dirname(path)
        mount, same = mounts.find(path)
        problem = _write_problem(rule, job, raw, written, path, folder, mount, same)
        if problem:
            problems.append((problem[0], path, problem[1]))
        elif not under(folder, workdir) or (mount is not None and mount.mode == "rw" and same):
            continue  # outside: a writable policy bind or the shadow folder shows it; inside: already writable
        elif mount is not None and mount.origin not in (WORKDIR.layer, STATE.layer):
            why = "the container shows {0.src} at {0.dst} ({0.origin})" if not same else \
                "it lies under a read-only bind of {0.src} ({0.origin})"
            problems.append(("output", path, why.format(mount)))
        elif not modes.outputs:
            problems.append(("output", path, "no bind shows it and auto_binds is off for it"))
        elif folder == workdir:  # the top of the workdir: this one file, made when the job starts
            _bind(mounts, auto, path, path, modes.outputs, TOPLEVEL)
        else:
            _bind(mounts, auto, folder, folder, modes.outputs, AUTO)
    writable_inputs = []
    for raw in job.inputs:
        written = absolute(raw, base)
        path = real_path(written, job.real_folders)
        mount, same = mounts.find(path)
        if mount is not None and not same:
            problems.append(("input", path, f"the container shows {mount.src} at {mount.dst} ({mount.origin})"))
        elif mount is not None:
            if mount.origin in (AUTO.layer, TOPLEVEL.layer) and mount.mode == "rw" and modes.inputs != "rw":
                writable_inputs.append(path)  # in one of the job's output folders
        elif not modes.inputs:
            problems.append(("input", path, "no bind shows it and auto_binds is off for it"))
        elif rule.source and under(path, rule.source):
            _bind(mounts, auto, posixpath.dirname(path), posixpath.dirname(path), "ro", SOURCE)  # e.g. ../workflow/x
        elif suspect := _left_by_a_job(rule, job, written):
            kind, why = _link_problem(job, suspect, "may lead out of the workdir only where a policy bind shows")
            problems.append((kind, path, why))
        elif contained and ".." in raw.split("/") and not under(path, workdir):
            # Climbing out of the workdir is how a path built from data (a wildcard) reaches the host.
            problems.append(("dotdot", path, f"input {raw!r} leaves the workdir through '..' and no policy bind "
                             "shows it"))
        else:  # the input itself where it is a folder (reading ~/data must not show all of ~), else its folder
            folder = path if path in job.input_folders else posixpath.dirname(path)
            _bind(mounts, auto, folder, folder, modes.inputs, AUTO)
    if len(writable_inputs) > MAX_INPUT_BINDS:
        problems.append(("inputs", writable_inputs[0], f"{len(writable_inputs)} inputs lie in the job's writable output "
                         f"folders; more than {MAX_INPUT_BINDS} cannot each be bound read-only"))
    else:
        for path in writable_inputs:
            _bind(mounts, auto, path, path, "ro", INPUT)
    for raw, real in job.symlinks.items():
        mount, same = mounts.find(clean(real))
        if not (mount and same):
            problems.append(("symlink", absolute(raw, workdir), f"it resolves to {real}, which the container does not show"))
    for raw in job.benchmarks:
        written = absolute(raw, workdir)
        if suspect := _left_by_a_job(rule, job, written):  # Snakemake writes it on the host, through such links
            kind, why = _link_problem(job, suspect, "may lead only below that folder")
            problems.append((kind, written, why))
    for raw in job.benchmarks if contained else ():
        path = absolute(raw, workdir)
        mount, same = mounts.find(posixpath.dirname(path))
        if mount is not None and mount.mode == "rw":
            problems.append(("benchmark", path, "the job may write its folder, and Snakemake writes the benchmark "
                             "there on the host after the job, following any symlink the job left"))
    binds = [b for b in rule.settings.binds if b.src not in rule.missing] + list(auto.values())
    # Snakemake's --home mounts the workdir writable; a bind of a parent of the workdir would hide it
    # (measured). So the workdir is bound again, after its parents, in the rule's mode.
    binds.append(Bind(workdir, workdir, rule.workdir_mode, required=False, origin=WORKDIR))
    if rule.workdir_mode == "rw":
        binds.append(Bind(posixpath.join(workdir, ".snakemake"), posixpath.join(workdir, ".snakemake"), "ro",
                          required=False, origin=STATE))
    binds.sort(key=lambda b: b.dst.count("/"))  # parents before children, as Apptainer mounts them in order
    return JobPlan(job, rule, tuple(binds), mounts.all(), tuple(problems))
