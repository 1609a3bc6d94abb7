"""Snakemake's jobs read into plain JobSpecs: from its DAG before anything runs (JobReader), and from a rule
function's arguments right before a job starts (call_spec); with what only Snakemake knows of a rule or a
job (its kind, its resources, its conda environment's post-deploy script, the folders Snakemake binds)."""

import os
import re

from .. import jobstart, preflight
from ..checker import Checker
from ..findings import Finding
from ..plan import JobSpec
from ..policy import Settings


def _resource_varies(rule, name: str) -> bool | None:
    """Whether the jobs of `rule` may differ in resource `name`: None where the rule has none, False where all
    have the same (a value, or Snakemake's own default tmpdir), True where it is a function of the job."""
    resources = rule.resources
    if name not in resources.keys():
        return None
    value = resources[name]
    if hasattr(value, "is_evaluable"):  # 9.x: a Resource; the default tmpdir is the expression system_tmpdir
        return value.is_evaluable() and value.raw != "system_tmpdir"
    return callable(value)  # 8.x: the value, or a function


def path_or_uri(source_file) -> str:
    if not hasattr(source_file, "get_path_or_uri"):
        return str(source_file)  # 8.x keeps an env file as a path (IOFile)
    try:
        return source_file.get_path_or_uri(secret_free=False)  # 9.x
    except TypeError:
        return source_file.get_path_or_uri()  # 8.x


def _post_deploy_script(spec, sourcecache) -> str | None:
    """The env file's post-deploy script, which Snakemake runs on the host, looked up as Snakemake does; where
    that cannot be told, the env file itself: refused, fail closed."""
    from snakemake.sourcecache import infer_source_file

    try:
        env_file = str(path_or_uri(spec.file))
        stem = re.sub(r"\.ya?ml$", "", env_file)
        script = infer_source_file(stem + ".post-deploy.sh")
        return str(path_or_uri(script)) if stem != env_file and sourcecache.exists(script) else None
    except Exception:  # a spec of another kind (an env by name), or the source cannot be reached
        return str(getattr(spec, "file", spec))


def rule_kind(rule) -> str | None:
    for kind, attr in (("shell", "shellcmd"), ("script", "script"), ("notebook", "notebook"),
                       ("wrapper", "wrapper"), ("cwl", "cwl"), ("template", "template_engine")):
        if getattr(rule, attr, None) is not None:
            return kind
    if getattr(rule, "norun", False):
        return None  # nothing runs: no container either
    return "run"


def snakemake_binds(kind: str, runtime_paths) -> tuple[tuple[str, str], ...]:
    """What Snakemake would bind into a job's container by itself, writable: 9.x its runtime paths (source
    cache, storage prefix), and for Python scripts its own import paths (bound here for any script, notebook
    or wrapper: read-only, they cost nothing where unused)."""
    binds = [(str(p), str(p)) for p in runtime_paths or () if os.path.exists(p)]
    if kind in ("script", "notebook", "wrapper"):
        from snakemake.deployment.singularity import get_snakemake_searchpath_mountpoints, get_snakemake_searchpaths

        binds += zip(map(str, get_snakemake_searchpaths()), get_snakemake_searchpath_mountpoints())
    return tuple(binds)


def _flagged(outputs, flag: str, patterns=None) -> frozenset[str]:
    """The outputs flagged directory() or protected(); `patterns` (the rule's outputs) carry the flag where
    `outputs` are plain strings, as in a rule function's arguments."""
    from snakemake.io import is_flagged

    flagged = outputs if patterns is None or len(patterns) != len(outputs) else patterns
    return frozenset(os.path.abspath(o) for o, f in zip(outputs, flagged) if is_flagged(f, flag))


def _benchmarks(snakemake_rule, wildcards) -> tuple[str, ...]:
    """The job's benchmark file, which Snakemake writes on the host after the job."""
    pattern = getattr(snakemake_rule, "benchmark", None)
    return (str(pattern.apply_wildcards(dict(wildcards.items()))),) if pattern else ()


def call_spec(snakemake_rule, a: dict, image: str, kind: str) -> JobSpec:
    """A job as its rule's function receives it (arguments `a`), right before it starts."""
    shadow = a.get("shadow_dir")
    return JobSpec(snakemake_rule.name, tuple(a["input"]), tuple(a["output"]) + tuple(a["log"] or ()),
                   dict(a["wildcards"].items()), image, support=snakemake_binds(kind, a.get("runtime_paths")),
                   directories=_flagged(a["output"], "directory", snakemake_rule.output),
                   protected=_flagged(a["output"], "protected", snakemake_rule.output),
                   benchmarks=_benchmarks(snakemake_rule, a["wildcards"]),
                   shadow=os.path.abspath(shadow) if shadow else None)


class JobReader:
    """Snakemake's jobs (from its DAG, before any runs) read into plain JobSpecs, with what only Snakemake's job
    knows judged on the way (preflight.job_findings). A large DAG's jobs mostly share rules, images and
    reference files: each is asked of Snakemake once."""

    def __init__(self, workflow):
        self.workflow = workflow
        self.images: dict[str, str] = {}  # image URL -> local path: Snakemake resolves it anew per call (~60 µs)
        self._symlinks: dict[str, str | None] = {}  # input -> where it leads, if a symlink
        self._varies: dict[tuple, bool | None] = {}  # (rule, resource) -> _resource_varies
        self._rule_tmpdir: dict[str, object] = {}  # rule -> the tmpdir every job of it has
        self._post_deploy: dict[str, str | None] = {}  # conda env spec -> its post-deploy script
        self._env_judged: dict[tuple, list] = {}  # (rule, tmpdir) -> SC209 (message, fix) pairs

    def specs(self, snakemake_jobs, kinds: dict[str, str], checker: Checker, conda_in_image: bool) -> tuple[
            list[JobSpec], dict[str, Settings], list[Finding]]:
        """The jobs that run something, each rule's settings, and the findings met while reading them."""
        jobs, findings = [], []
        per_rule: dict[str, Settings] = {}  # the job loop stays cheap
        directory_rules: dict[str, bool] = {}  # rule -> has a directory() output
        runtime_paths = getattr(self.workflow, "runtime_paths", ())  # 9.x; what a job's function receives
        # A shadow job writes its relative outputs in a folder of its own there, made when it starts.
        shadow = os.path.join(os.path.abspath(self.workflow.persistence.shadow_path), "(the job's own)")
        support = {kind: snakemake_binds(kind, runtime_paths) for kind in set(kinds.values())}
        images = self.images
        for job in snakemake_jobs:
            rule = job.rule.name
            if kinds.get(rule, "norun") == "norun":
                continue
            if rule not in per_rule:
                per_rule[rule] = checker.settings(rule)
            settings = per_rule[rule]
            image = None
            if job.container_img_url:  # also without --sdm apptainer: then SC102 tells the one fix that helps
                url = job.container_img_url
                if url not in images:
                    images[url] = job.container_img_path
                    findings += preflight.image_findings(rule, url, images[url])
                image = images[url]
            if settings.isolates:
                findings += self._job_findings(rule, settings, job, conda_in_image)
            inputs = tuple(map(str, job.input))  # plain strings: Snakemake's hash and compare theirs in Python
            symlinks = {p: real for p in inputs if (real := self._symlinked(p))}
            benchmarks = (str(job.benchmark),) if job.rule.benchmark and job.benchmark else ()
            if rule not in directory_rules:
                directory_rules[rule] = bool(_flagged(job.rule.output, "directory"))
            directories = _flagged(job.output, "directory") if directory_rules[rule] else frozenset()
            outputs = tuple(map(str, job.output)) + tuple(map(str, job.log))
            jobs.append(JobSpec(rule, inputs, outputs, dict(job.wildcards_dict), image, symlinks,
                                support=support[kinds[rule]], directories=directories, benchmarks=benchmarks,
                                shadow=shadow if job.rule.shadow_depth else None))
        return jobs, per_rule, findings

    def _symlinked(self, path: str) -> str | None:
        """Where an input that is a symlink leads; asked once per path (jobs share their reference files)."""
        if path not in self._symlinks:
            real = os.path.realpath(path) if os.path.islink(path) else None
            self._symlinks[path] = real if real != os.path.abspath(path) else None
        return self._symlinks[path]

    def _job_findings(self, rule: str, settings: Settings, job, conda_in_image: bool) -> list[Finding]:
        """What only Snakemake's job knows: its resources, its conda environment, its environment's values."""
        # Snakemake 8 shows a string resource as <TBD> here; asked only of rules that have one.
        shell_exec = job.resources.get("shell_exec") if self._varies_in(job, "shell_exec") is not None else None
        spec = job.conda_env_spec if conda_in_image else None
        if spec and str(spec) not in self._post_deploy:  # looked up once per env file
            self._post_deploy[str(spec)] = _post_deploy_script(spec, self.workflow.sourcecache)
        unpassable = []
        if settings.effective_cleanenv:
            tmpdir = self._tmpdir(job) if set(settings.env) & set(jobstart.TMP_VARIABLES) else None
            key = (rule, str(tmpdir))
            if key not in self._env_judged:  # the thread counts are digits, which --env always carries
                env = jobstart.job_environment(1, {"tmpdir": tmpdir}, os.environ)
                self._env_judged[key] = preflight.unpassable_values(settings.env, env)
            unpassable = self._env_judged[key]
        post_deploy = self._post_deploy[str(spec)] if spec else None
        if shell_exec is None and not post_deploy and not unpassable:
            return []  # the common case: no job label made
        return preflight.job_findings(rule, str(job), shell_exec, post_deploy, unpassable)

    def _varies_in(self, job, resource: str) -> bool | None:
        key = (job.rule.name, resource)
        if key not in self._varies:
            self._varies[key] = _resource_varies(job.rule, resource)
        return self._varies[key]

    def _tmpdir(self, job):
        """The job's tmpdir resource: asked of each job only where it is a function of the job (Snakemake
        evaluates all of a job's resources at once: about 0.1 ms a job, more than the rest of its checks)."""
        varies = self._varies_in(job, "tmpdir")
        if varies is None:
            return None
        if varies:
            return job.resources.get("tmpdir")
        if job.rule.name not in self._rule_tmpdir:
            self._rule_tmpdir[job.rule.name] = job.resources.get("tmpdir")
        return self._rule_tmpdir[job.rule.name]
