"""The join with Snakemake: the only module that touches Snakemake's internals.

Snakemake has no per-rule container hook (issues #262, #894, #3478). What it has, read from 8.30 and 9.27:
- `workflow._build_dag()` runs before anything is pulled, scheduled or submitted, in dry runs too; after
  it, `workflow.dag.needrun_jobs()` holds every job with concrete paths. The preflight runs there.
- every rule's generated function `rule.run_func(input, output, params, wildcards, threads, resources, log,
  rule, conda_env, container_img, singularity_args, …, shadow_dir, …, runtime_paths)` receives the global
  --apptainer-args as `singularity_args`, and `shell()`/`script:` read it from there to build `apptainer exec
  --home CWD <singularity_args> [--bind runtime_paths] IMAGE bash -c …`. Each rule's function is wrapped to
  put that job's flags there and to drop Snakemake's writable `runtime_paths` binds (bound read-only instead).
- `snakemake.deployment.singularity.shellcmd` builds that host shell command: wrapped to quote the image and
  to leave out Snakemake's writable binds of its import paths (the plan binds them read-only).
- a remote job (slurm, cluster-generic, htcondor …) and a local subprocess job re-parse the Snakefile, so
  contain() runs there too and the same wrapper re-checks the job right before its container starts, with
  the settings the main process checked and sealed (seal.py), never the policy expanded again there.
Anything else found is refused (fail closed) with a message naming the Snakemake version.
"""

import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import time

from . import conda, jobstart, launch, preflight, records, report, seal
from .checker import Checker
from .errors import PolicyError
from .findings import Finding, has_errors, render
from .plan import JobSpec, host_reads
from .plugins import plugin_manager
from .policy import Settings, load_policy, load_site_layers
from .runtime import detect

SUPPORTED_MAJORS = (8, 9)
RUN_FUNC_PARAMS = ("input", "output", "wildcards", "log", "resources", "container_img", "singularity_args",
                   "use_singularity", "shadow_dir")
PREFIX = "snakemake-singcontain"
MARKER = "--singcontain-policy="


def _workflow_error(message: str):
    from snakemake.exceptions import WorkflowError

    class ContainmentRefused(WorkflowError):
        # Snakemake prints the frames of a WorkflowError raised outside its own package; a user error
        # is one message, so this one shows no frames.
        @property
        def __traceback__(self):
            return None

        @__traceback__.setter
        def __traceback__(self, value):
            pass

    # A path that is not UTF-8 (kept by Python as surrogates) would break Snakemake's logging.
    text = f"{PREFIX}: {message}".encode("utf-8", "backslashreplace").decode("utf-8")
    return ContainmentRefused(text)


def _check_snakemake(workflow) -> None:
    import snakemake

    version = getattr(snakemake, "__version__", "unknown")
    major = version.split(".")[0]
    moved = [name for name in ("_build_dag", "dag", "rules", "deployment_settings", "is_main_process", "dryrun",
                               "configfiles", "_onstart", "_onsuccess", "_onerror", "persistence")
             if not hasattr(type(workflow), name) and not hasattr(workflow, name)]
    from snakemake.deployment import singularity

    moved += [name for name in ("shellcmd", "get_snakemake_searchpaths") if not hasattr(singularity, name)]
    if not major.isdigit() or int(major) not in SUPPORTED_MAJORS or moved:
        detail = f" (missing: {', '.join(moved)})" if moved else ""
        raise _workflow_error(
            f"Snakemake {version} is not supported{detail}; its internals may have moved, so no job is run. "
            f"Use Snakemake 8.30+ or 9.x, or upgrade snakemake-singcontain.")


def requested_policy(workflow) -> str | None:
    """The policy asked for outside the Snakefile: --singcontain-policy=FILE in --apptainer-args (from the
    command line or a profile; what the main process passes on to every job; Apptainer itself refuses that
    flag, so a job whose Python lacks this plugin fails instead of running uncontained), or SINGCONTAIN_POLICY.
    Two different policies named are refused: a profile Snakemake loads by itself from the workdir must not
    silently replace the one the user named."""
    words = shlex.split(workflow.deployment_settings.apptainer_args or "")
    named = {launch.from_launch_folder(w[len(MARKER):]): "--singcontain-policy in --apptainer-args (command line or profile)"
             for w in words if w.startswith(MARKER)}
    if named and not workflow.is_main_process:
        return next(reversed(named))  # what the main process put on the job's command line: the one it checked
    if os.environ.get("SINGCONTAIN_POLICY"):
        named.setdefault(launch.from_launch_folder(os.environ["SINGCONTAIN_POLICY"]), "SINGCONTAIN_POLICY")
    if len(named) > 1:
        raise _workflow_error("two policies named: " + " and ".join(f"{path} ({how})" for path, how in named.items())
                              + "; name one of them, once")
    return next(iter(named), None)


def activate(workflow_class) -> None:
    """Contain every workflow for which a policy is requested outside its Snakefile (autoload.py calls this
    when Snakemake is imported); a Snakefile's own contain() comes first."""
    original = workflow_class._build_dag
    if getattr(original, "_singcontain", False):
        return

    def _build_dag(self, *args, **kwargs):
        if getattr(self, "_singcontain", None) is None and (path := requested_policy(self)):
            _contain(self, path)
            return self._build_dag(*args, **kwargs)  # now the instance's, which contain() wrapped
        return original(self, *args, **kwargs)

    _build_dag._singcontain = True
    workflow_class._build_dag = _build_dag


def contain(workflow, policy_file: str) -> None:
    caller = sys._getframe(2).f_code.co_filename  # the Snakefile that called contain()
    base = os.path.dirname(caller) if os.path.isfile(caller) else os.getcwd()
    _contain(workflow, os.path.abspath(os.path.join(base, policy_file)))


def _contain(workflow, path: str) -> None:
    _check_snakemake(workflow)
    if getattr(workflow, "_singcontain", None) is not None:
        raise _workflow_error("contain() was called twice for this workflow; call it once, in the main Snakefile")
    requested = requested_policy(workflow)
    if requested and requested != path:
        raise _workflow_error(f"two policies: the Snakefile's {path} and {requested} (--singcontain-policy or "
                              "SINGCONTAIN_POLICY); drop one of them")
    if MARKER not in (workflow.deployment_settings.apptainer_args or ""):
        # Every job's own Snakemake process learns the policy there, and fails closed without this plugin.
        workflow.deployment_settings.apptainer_args = " ".join(
            filter(None, (workflow.deployment_settings.apptainer_args, shlex.quote(MARKER + path))))
    policy = None
    if workflow.is_main_process:
        try:
            policy = load_policy(path)
        except PolicyError as err:
            raise _workflow_error(err.render()) from None
    # A job's own Snakemake process (node, subprocess) takes the sealed settings instead, when its job starts.
    bridge = _Bridge(workflow, policy, path)
    workflow._singcontain = bridge
    _wrap_shellcmd()
    original_build_dag = workflow._build_dag

    def build_dag(*args, **kwargs):
        bridge.prepare_rules()
        result = original_build_dag(*args, **kwargs)
        if workflow.is_main_process:
            bridge.preflight()
        return result

    workflow._build_dag = build_dag


def _wrap_shellcmd() -> None:
    """Quote the image in Snakemake's host shell command (it is inserted as is), drop the writable binds of
    Snakemake's import paths for Python scripts (every job's flags bind them read-only, _snakemake_binds), and
    give the creation of conda environments inside the image, and the looks at its conda, contained flags of
    their own (conda.py)."""
    from snakemake.deployment import singularity

    original = singularity.shellcmd
    if getattr(original, "_singcontain", False):
        return
    signature = inspect.signature(original)

    def shellcmd(img_path, cmd, *args, **kwargs):
        call = signature.bind(img_path, cmd, *args, **kwargs)
        a = call.arguments
        a["is_python_script"] = False
        a["img_path"] = shlex.quote(str(img_path))
        if conda.is_creation(a.get("envvars")):
            a["args"] = conda.joined(conda.creation_args(cmd, a["envvars"], os.getcwd(), os.environ))
            a["bind"] = None  # Snakemake's writable source cache: the environment file is in the workdir
            from snakemake.logging import logger

            logger.info(f"{PREFIX}: creating a conda environment inside {img_path}, contained: {a['args']}")
        elif conda.is_conda_check(cmd, a.get("args"), a.get("quiet", False)):
            a["args"] = conda.joined(conda.check_args(os.getcwd()))
        return original(*call.args, **call.kwargs)

    shellcmd._singcontain = True
    singularity.shellcmd = shellcmd


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


def _path_or_uri(source_file) -> str:
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
        env_file = str(_path_or_uri(spec.file))
        stem = re.sub(r"\.ya?ml$", "", env_file)
        script = infer_source_file(stem + ".post-deploy.sh")
        return str(_path_or_uri(script)) if stem != env_file and sourcecache.exists(script) else None
    except Exception:  # a spec of another kind (an env by name), or the source cannot be reached
        return str(getattr(spec, "file", spec))


def _rule_kind(rule) -> str | None:
    for kind, attr in (("shell", "shellcmd"), ("script", "script"), ("notebook", "notebook"),
                       ("wrapper", "wrapper"), ("cwl", "cwl"), ("template", "template_engine")):
        if getattr(rule, attr, None) is not None:
            return kind
    if getattr(rule, "norun", False):
        return None  # nothing runs: no container either
    return "run"


def _snakemake_binds(kind: str, runtime_paths) -> tuple[tuple[str, str], ...]:
    """What Snakemake would bind into a job's container by itself, writable: 9.x its runtime paths (source
    cache, storage prefix), and for Python scripts its own import paths (bound here for any script, notebook
    or wrapper: read-only, they cost nothing where unused)."""
    binds = [(str(p), str(p)) for p in runtime_paths or () if os.path.exists(p)]
    if kind in ("script", "notebook", "wrapper"):
        from snakemake.deployment.singularity import get_snakemake_searchpath_mountpoints, get_snakemake_searchpaths

        binds += zip(map(str, get_snakemake_searchpaths()), get_snakemake_searchpath_mountpoints())
    return tuple(binds)


def _intended_executor(workflow) -> str | None:
    """The batch executor the run submits to; None for local execution. A dry run tells what the real run
    with that executor will tell, though it executes with Snakemake's `dryrun` plugin."""
    plugin = workflow.executor_plugin
    if plugin is None:
        return None
    if not workflow.dryrun:
        return None if workflow.local_exec else plugin.name
    name = _dry_run_executor()
    if name is None:
        return None
    from snakemake_interface_common.exceptions import InvalidPluginException
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    try:
        local = ExecutorPluginRegistry().get_plugin(name).common_settings.local_exec
    except InvalidPluginException:  # not installed here: Snakemake itself refuses the real run
        return None
    return None if local else name


def _dry_run_executor() -> str | None:
    """The executor a dry run stands in for, read from the frames on this call's stack: 9.x keeps it as
    `executor` of DAGApi.execute_workflow; 8.30 overwrites it with "dryrun" in cli.args_to_api, whose
    `parser` (configargparse) still knows a profile's executor, and the command line has the user's own."""
    name, profile = None, None
    frame = sys._getframe(1)
    while frame is not None:
        module, function = frame.f_globals.get("__name__"), frame.f_code.co_name
        if module == "snakemake.api" and function == "execute_workflow" and name is None:
            name = frame.f_locals.get("executor")
        if module == "snakemake.cli" and function == "args_to_api" and "parser" in frame.f_locals:
            sources = getattr(frame.f_locals["parser"], "get_source_to_settings_dict", dict)()
            profile = next((s["executor"][1] for key, s in sources.items()
                            if key.startswith("config_file") and "executor" in s), profile)
        frame = frame.f_back
    if isinstance(name, str) and name not in ("dryrun", "touch"):
        return name
    words = sys.argv[1:]
    given = [w.split("=", 1)[1] for w in words if w.startswith("--executor=")]
    given += [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--executor", "-e")]
    return given[-1] if given else profile


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


def _call_spec(snakemake_rule, a: dict, image: str, kind: str) -> JobSpec:
    """A job as its rule's function receives it (arguments `a`), right before it starts."""
    shadow = a.get("shadow_dir")
    return JobSpec(snakemake_rule.name, tuple(a["input"]), tuple(a["output"]) + tuple(a["log"] or ()),
                   dict(a["wildcards"].items()), image, support=_snakemake_binds(kind, a.get("runtime_paths")),
                   directories=_flagged(a["output"], "directory", snakemake_rule.output),
                   protected=_flagged(a["output"], "protected", snakemake_rule.output),
                   benchmarks=_benchmarks(snakemake_rule, a["wildcards"]),
                   shadow=os.path.abspath(shadow) if shadow else None)


class _JobReader:
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
        support = {kind: _snakemake_binds(kind, runtime_paths) for kind in set(kinds.values())}
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


class _Bridge:
    """One workflow's containment: its rules' functions wrapped, the preflight after the DAG is built (main
    process), each job's start and end (wherever the job's function runs)."""

    def __init__(self, workflow, policy, policy_file: str):
        self.workflow, self.policy, self.policy_file = workflow, policy, policy_file
        self._checker = None
        self._seal: seal.Seal | None = None
        self._kinds = None
        self._changed: list[str] | None = None
        self._recorder: records.Recorder | None = None
        self._new_run_id: str | None = None
        self._reading = _JobReader(workflow)
        self._settings_data: dict[str, dict] = {}  # rule -> its settings as a record shows them

    @property
    def use_apptainer(self) -> bool:
        from snakemake.settings.types import DeploymentMethod

        return DeploymentMethod.APPTAINER in self.workflow.deployment_settings.deployment_method

    @property
    def use_conda(self) -> bool:
        from snakemake.settings.types import DeploymentMethod

        return DeploymentMethod.CONDA in self.workflow.deployment_settings.deployment_method

    @property
    def global_args(self) -> list[str]:
        return [w for w in shlex.split(self.workflow.deployment_settings.apptainer_args or "")
                if not w.startswith((MARKER, seal.MARKER))]

    @property
    def kinds(self) -> dict[str, str]:
        if self._kinds is None:
            self._kinds = {rule.name: _rule_kind(rule) or "norun" for rule in self.workflow.rules}
        return self._kinds

    @property
    def sealed(self) -> seal.Seal:
        """What the main process checked: kept there, read once from its file in a job's own process."""
        if self._seal is None and self.policy is not None:
            raise _workflow_error("a job started before the run's check; refusing")
        if self._seal is None:
            words = shlex.split(self.workflow.deployment_settings.apptainer_args or "")
            try:
                self._seal = seal.read(seal.carried_digest(words), os.uname().nodename)
            except seal.SealError as err:
                raise _workflow_error(str(err)) from None
        return self._seal

    @property
    def checker(self) -> Checker:
        if self._checker is None:
            sealed = None if self.policy is not None else self.sealed.settings
            workflow = self.workflow
            files = [self.policy_file, *map(os.path.abspath, workflow.configfiles), *launch.site_files(),
                     *(_path_or_uri(source) for source in list(workflow.included))]
            try:
                site = load_site_layers(launch.SITE_FILE, launch.named_site())
                self._checker = Checker(self.policy, detect(self._runtime_preference()), plugin_manager(),
                                        workdir=os.getcwd(), rule_kinds=self.kinds, sealed=sealed, site=site,
                                        host_reads=host_reads(os.getcwd(), workflow.basedir, files),
                                        source=workflow.basedir)
            except PolicyError as err:
                raise _workflow_error(err.render()) from None
        return self._checker

    @staticmethod
    def _runtime_preference() -> str:
        """The binary Snakemake will run: 8.x always calls `singularity`, 9.x `apptainer` first."""
        import snakemake

        return "singularity" if snakemake.__version__.startswith("8.") else "auto"

    def prepare_rules(self) -> None:
        """Give rules the policy's fallback image and wrap every rule's function (once); with
        rerun_on_change, give each a hidden param that changes with its containment and image."""
        policy = self.policy if self.policy is not None else self.sealed
        for rule in self.workflow.rules:
            if _rule_kind(rule) is None or getattr(rule.run_func, "_singcontain", False):
                continue
            image = policy.image
            if image and not rule.container_img and rule.container_img is not False:
                rule.container_img = image
            rule.run_func = self._wrap(rule)
            if policy.rerun_on_change:
                rule.set_params(singcontain=self._rerun_param(rule))

    def _rerun_param(self, rule) -> str:
        """Snakemake's own `params` rerun trigger then reruns a job whose rule's settings or image changed."""
        settings = records.settings_digest(seal.settings_data(self.checker.settings(rule.name)))
        image = rule.container_img if isinstance(rule.container_img, str) else ""
        if image and not preflight.REMOTE_IMAGE.match(image) and os.path.isfile(image):
            image = records.image_digest(image, os.getcwd())  # the content, once per image file and run
        return f"containment {settings[:16]} image {image}"

    # --- a job's start and end, wherever its function runs (main process, or the job's own on a node) -------

    def _wrap(self, rule):
        original = rule.run_func
        signature = inspect.signature(original)
        missing = [p for p in RUN_FUNC_PARAMS if p not in signature.parameters]
        if missing:
            import snakemake

            raise _workflow_error(f"Snakemake {snakemake.__version__} calls rule functions without {missing}; "
                                  "this version is not supported, so no job is run")
        drops_runtime_paths = "runtime_paths" in signature.parameters

        def run_contained(*args, **kwargs):
            call = signature.bind(*args, **kwargs)
            start, status, started = time.time(), 1, None
            try:
                started = self._start(rule, call.arguments)
                if started is not None:
                    call.arguments["singularity_args"] = shlex.join(started.argv)
                if drops_runtime_paths:
                    call.arguments["runtime_paths"] = []  # bound read-only by the job's own flags
                result = original(*call.args, **call.kwargs)
                status = 0
                return result
            except subprocess.CalledProcessError as err:
                status = err.returncode
                raise
            finally:
                if started is not None:
                    try:
                        self._finish(started, status)  # before any of Snakemake's own steps on the host
                    finally:
                        self._record(started, call.arguments, start, status)

        run_contained._singcontain = True
        return run_contained

    def _start(self, snakemake_rule, a: dict) -> jobstart.Started | None:
        """Right before the job starts: re-check it and make what its container needs; None where it runs
        without a container (refused where its rule must be contained)."""
        rule = snakemake_rule.name
        image = a["container_img"] if a["use_singularity"] else None
        if image is None:
            if self.checker.settings(rule).isolates:
                raise _workflow_error(f"rule {rule} must run contained but would run on the host "
                                      "(no image, or Snakemake runs without --sdm apptainer); refusing")
            return None
        job = _call_spec(snakemake_rule, a, image, self.kinds.get(rule, "shell"))
        if self.policy is None and self._changed is None:  # a job's own process re-read these: once per process
            self._changed = seal.changed_files(self.sealed)
        try:
            return jobstart.start(self.checker, job, self.sealed, self._changed or [], self.global_args, os.environ,
                                  a.get("threads", 1), a["resources"] or {}, self._attestations_folder, os.getcwd())
        except jobstart.Refused as why:
            self._refuse(job.label, str(why))

    def _finish(self, started: jobstart.Started, status: int) -> None:
        """Right after the job's container ends, success or failure, before Snakemake's own steps on the host."""
        planted = jobstart.finish(started)
        if planted:
            self._refuse(started.plan.job.label, "SC410 it left links that Snakemake would follow on the host, to "
                         "places the job could not write (removed): " + ", ".join(planted))
        if status and started.made:
            from snakemake.logging import logger

            logger.error(f"{PREFIX}: {jobstart.top_level_hint(started)}")

    def _record(self, started: jobstart.Started, a: dict, start: float, status: int) -> None:
        """How the job ran, appended when it ends (records.py)."""
        if self.workflow.dryrun:
            return
        sealed, rule = self.sealed, started.plan.job.rule
        if self._recorder is None:
            self._recorder = records.Recorder(os.getcwd(), sealed.run_id)
        if rule not in self._settings_data:
            self._settings_data[rule] = seal.settings_data(self.checker.settings(rule))
        self._recorder.write(records.job_record(
            started.plan, started.image, started.argv, started.attestation, self._settings_data[rule],
            list(a["output"]), a.get("jobid"), self.checker.runtime,
            sealed.files.get(self.policy_file) or records.sha256(self.policy_file), start, status))

    def _refuse(self, label: str, why: str):
        """Fail the job with one line; from a job's own process (a node), also for the main process to tell
        on the user's terminal, with where the job's log is (batch systems show only an exit code)."""
        host = os.uname().nodename
        if self.policy is None:
            log = os.path.realpath("/proc/self/fd/2")
            log = log if os.path.isfile(log) else None
            try:
                records.Recorder(os.getcwd(), self.sealed.run_id).refusal(job=label, host=host, why=why, log=log)
            except (OSError, ValueError):
                pass  # the job's own log still has the line
        raise _workflow_error(f"job {label} refused on {host}: {why}")

    # --- the run, in the main process -------------------------------------------------------------------------

    def _hook_run_record(self) -> None:
        """The run's first and last record lines, from Snakemake's own start, success and error hooks: called
        only when jobs are scheduled (not for --report, not in dry runs); a run without the last line was
        interrupted, or is running. A failed run tells the jobs refused on nodes."""
        workflow = self.workflow
        start, success, error = workflow._onstart, workflow._onsuccess, workflow._onerror

        def onstart(log):
            self._recorder.start(argv=sys.argv[1:])
            return start(log)

        def onsuccess(log):
            self._recorder.end(0)
            return success(log)

        def onerror(log):
            from snakemake.logging import logger

            self._recorder.end(1)
            for r in records.refusals(os.getcwd(), self.run_id):
                where = f"; its log: {r['log']}" if r.get("log") else ""
                logger.error(f"{PREFIX}: job {r['job']} refused on {r['host']}: {r['why']}{where}")
            return error(log)

        workflow._onstart, workflow._onsuccess, workflow._onerror = onstart, onsuccess, onerror

    def preflight(self) -> None:
        """Check every job to run, before anything is pulled or submitted; refuse the run on any error. Jobs a
        checkpoint adds later are checked the same way before they are submitted (_watch_checkpoints)."""
        self._checked: set = set()
        self._check_jobs(self.workflow.dag.needrun_jobs(), first=True)
        if not self.workflow.dryrun:
            self._watch_checkpoints()

    def _watch_checkpoints(self) -> None:
        dag = self.workflow.dag
        original = dag.update_checkpoint_dependencies

        async def update_checkpoint_dependencies(*args, **kwargs):
            updated = await original(*args, **kwargs)
            if updated:
                self._check_jobs([job for job in dag.needrun_jobs() if job not in self._checked], first=False)
            return updated

        dag.update_checkpoint_dependencies = update_checkpoint_dependencies

    def _check_jobs(self, snakemake_jobs, first: bool) -> None:
        snakemake_jobs = list(snakemake_jobs)
        self._checked.update(snakemake_jobs)
        jobs, settings, findings = self._reading.specs(snakemake_jobs, self.kinds, self.checker,
                                                        self.use_apptainer and self.use_conda)
        images = self._reading.images
        run = preflight.Run(os.getcwd(), self.policy_file, self.policy.runtime, self.use_apptainer,
                            tuple(self.global_args), os.environ, _intended_executor(self.workflow), sys.executable,
                            self._attestations_folder)
        findings = preflight.check(self.checker, jobs, settings, images, run, first, found=findings)
        if first and os.environ.get("SINGCONTAIN_REPORT"):  # asked for by the singcontain command
            audit = report.build(self.checker, jobs, findings, os.environ,
                                 with_jobs=os.environ.get("SINGCONTAIN_REPORT_JOBS"),
                                 urls={path: url for url, path in images.items()})
            audit["checkpoints"] = sorted({r.name for r in self.workflow.rules if getattr(r, "is_checkpoint", False)})
            with open(os.environ["SINGCONTAIN_REPORT"], "w") as f:
                json.dump(audit, f)
        self._report(findings, "" if first else " for the jobs a checkpoint added")
        self._seal_run()
        if first:
            from snakemake.logging import logger

            logger.info(f"{PREFIX}: {preflight.checked(jobs, self.policy_file)}")

    def _seal_run(self) -> None:
        """Keep what was checked for the jobs this process starts, and write it for the jobs' own Snakemake
        processes (nodes, subprocesses); its digest goes with every job's command line, which no job can change."""
        settings = {r: self.checker.settings(r) for r in self.kinds if self.kinds[r] != "norun"}
        images = list(self._reading.images.values())
        dryrun = self.workflow.dryrun
        files = [] if dryrun else [self.policy_file, *map(os.path.abspath, self.workflow.configfiles)]
        self._seal = seal.of_check(settings, self.policy.image, images, self.run_id, self.policy.rerun_on_change, files)
        if dryrun:
            return
        for path in self._seal.images:  # hashed once per run, here, not by every job
            records.image_digest(path, os.getcwd())
        if self._recorder is None:  # the first check of this run: its record says when it starts and ends
            self._recorder = records.Recorder(os.getcwd(), self.run_id)
            self._hook_run_record()
        digest = seal.write(self._seal)
        deployment = self.workflow.deployment_settings
        words = [w for w in shlex.split(deployment.apptainer_args or "") if not w.startswith(seal.MARKER)]
        deployment.apptainer_args = shlex.join([*words, seal.MARKER + digest])

    @property
    def run_id(self) -> str:
        if self._seal is not None:
            return self._seal.run_id
        if self._new_run_id is None:
            self._new_run_id = records.new_run_id()
        return self._new_run_id

    @property
    def _attestations_folder(self) -> str | None:
        """Where probes are kept for the run's other processes; None in a dry run, which keeps nothing."""
        return None if self.workflow.dryrun else os.path.join(seal.FOLDER, "attestations", self.run_id)

    def _report(self, findings: list[Finding], what: str = "") -> None:
        from snakemake.logging import logger

        if has_errors(findings):
            submitted = "nothing was submitted" if not what else "none of them was submitted"
            raise _workflow_error(f"the containment policy failed its checks{what}; {submitted}.\n" + render(findings))
        if findings:
            logger.warning(f"{PREFIX}:\n{render(findings)}")
