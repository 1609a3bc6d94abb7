"""Findings: what a check reports. Codes are stable; docs/checks.md documents every one."""

from collections.abc import Iterable
from dataclasses import dataclass

ERROR, WARNING, NOTE = "error", "warning", "note"

CODES = {
    "SC101": "a `rules:` key matches no rule of the workflow",
    "SC102": "a rule asks for containment but has no image",
    "SC103": "a contained rule's code runs on the host (`run:`, `template_engine:`, `cwl:`)",
    "SC104": "a flag or APPTAINER_*/SINGULARITY_* variable that is not on the allow-list (`args`, --apptainer-args, environment)",
    "SC105": "a rule goes below a site plugin's floor",
    "SC107": "a conda environment's post-deploy script would run on the host (--sdm conda apptainer)",
    "SC108": "a contained rule's `shell_exec` resource would replace the host program that starts the container",
    "SC201": "the runtime's configuration disables a requested namespace",
    "SC202": "the runtime's configuration forbids user binds (user bind control = no)",
    "SC203": "user namespaces are unavailable to a non-setuid runtime",
    "SC204": "a network type the runtime does not allow",
    "SC205": "the runtime mounts all host filesystems (mount hostfs = yes)",
    "SC206": "a bind path that Apptainer's --bind syntax cannot express",
    "SC207": "the smoke test of a rule's flags failed or was weakened by the runtime",
    "SC208": "no container runtime found",
    "SC209": "an allowed variable's value cannot be passed safely with --env",
    "SC210": "an image name with characters outside the safe set",
    "SC211": "a local image file does not exist",
    "SC212": "the policy's `runtime` is not the program Snakemake runs",
    "SC213": "a batch executor's job needs a path under a node-local folder (/tmp, /var/tmp)",
    "SC214": "the runtime's configuration file cannot be read, so what it grants cannot be verified",
    "SC301": "a required bind source does not exist",
    "SC302": "an optional bind source does not exist and is skipped",
    "SC306": "a writable bind (or the writable workdir) on or under a protected path, or of /, compared by real path",
    "SC307": "a bind of /proc, /sys or /dev, which undoes the container's namespaces",
    "SC401": "a job input is not visible in the container",
    "SC402": "a job output or log is not writable in the container",
    "SC403": "a job input is a symlink resolving outside what the container sees",
    "SC404": "an IPC namespace without contain/containall leaves the host's /dev/shm shared",
    "SC405": "a job input under a system folder auto-binds the host's folder over the image's own",
    "SC406": "a job output or log lies in .snakemake, Snakemake's own state, which no job may write",
    "SC407": "a job output really lies outside the workdir (or an input leaves it through '..') and no policy bind shows it",
    "SC408": "a benchmark file lies in a folder the job can write",
    "SC409": "too many inputs lie in the job's writable output folders to bind each read-only",
    "SC410": "after the job: a link it left where Snakemake follows links on the host (removed, job failed)",
    "SC411": "a job output where the host reads configuration or code (profiles/, Snakefiles, configfiles, the policy)",
    "SC412": "a link inside the workdir that a job could have left leads elsewhere",
    "SC501": "before a job: the run's seal, the policy, a configfile or an image changed since the check (job refused)",
    "SC502": "before a job: a writable policy bind's source now leads elsewhere than when it was checked (job refused)",
    "SC601": "the job's container shows a host folder that neither the plan nor the runtime's defaults mount",
    "SC602": "the job's container shows writable a host folder that the plan binds read-only",
    "SC603": "a namespace the plan asks for is the host's inside the job's container",
    "SC604": "host variables inside a job's container whose plan cleans the environment",
    "SC605": "the job's container is stricter than planned (a bind missing or read-only, a namespace or a clean "
             "environment not asked for)",
    "SC606": "the probe of a rule's flags could not start the image (the image's or the runtime's fault)",
}


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    rule: str
    message: str
    fix: str
    job: str | None = None  # an example job, e.g. "simulate[sample=a]"
    where: str | None = None  # the policy line responsible, when known


@dataclass(frozen=True)
class Group:
    """One finding, or the same check failing for many jobs of one rule, told once with a job count."""

    first: Finding
    jobs: int


def group(findings: Iterable[Finding]) -> list[Group]:
    groups: dict[tuple, tuple[Finding, set]] = {}
    for f in findings:
        key = (f.code, f.rule, f.severity, f.message if f.job is None else None)
        if key not in groups:
            groups[key] = (f, set())
        groups[key][1].add(f.job)
    order = {ERROR: 0, WARNING: 1, NOTE: 2}
    return sorted((Group(f, len(jobs)) for f, jobs in groups.values()),
                  key=lambda g: (order[g.first.severity], g.first.rule, g.first.code))


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == ERROR for f in findings)


def render(findings: Iterable[Finding]) -> str:
    lines = []
    for g in group(findings):
        f = g.first
        more = f" (and {g.jobs - 1} more jobs of this rule)" if g.jobs > 1 else ""
        lines.append(f"{f.severity} {f.code} rule {f.rule}: {f.message}{more}")
        if f.job:
            lines.append(f"    job: {f.job}")
        if f.where:
            lines.append(f"    set at: {f.where}")
        lines.append(f"    fix: {f.fix}")
    return "\n".join(lines)
