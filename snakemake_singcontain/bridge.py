"""The join with Snakemake: the only module that touches Snakemake's internals.

Snakemake has no per-rule container hook (issues #262, #894, #3478). What it has, read from 8.30 and 9.27:
- `workflow._build_dag()` runs before anything is pulled, scheduled or submitted, in dry runs too; after
  it, `workflow.dag.needrun_jobs()` holds every job with concrete paths. The preflight runs there.
- every rule's generated function `rule.run_func(input, output, params, wildcards, threads, resources, log,
  rule, conda_env, container_img, singularity_args, …)` receives the global --apptainer-args as
  `singularity_args`, and `shell()`/`script:` read it from there to build `apptainer exec --home CWD
  <singularity_args> IMAGE bash -c …`. Each rule's function is wrapped to put that job's flags there.
- a remote job (slurm, cluster-generic …) re-parses the Snakefile on the node, so contain() runs there too
  and the same wrapper re-checks the job right before its container starts.
Anything else found is refused (fail closed) with a message naming the Snakemake version.
"""

import inspect
import json
import os
import shlex
import sys

from . import report
from .argv import (apptainer_args, bind_args, env_pair, owned_environment, owned_flags, settings_args,
                   smuggled_variables)
from .checker import Checker
from .errors import PolicyError
from .findings import ERROR, WARNING, Finding, has_errors, render
from .plan import JobSpec
from .plugins import plugin_manager
from .policy import load_policy
from .runtime import SmokeResult, detect, smoke_test

SUPPORTED_MAJORS = (8, 9)
RUN_FUNC_PARAMS = ("input", "output", "wildcards", "log", "container_img", "singularity_args", "use_singularity")
PREFIX = "snakemake-singcontain"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


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

    return ContainmentRefused(f"{PREFIX}: {message}")


def _check_snakemake(workflow) -> None:
    import snakemake

    version = getattr(snakemake, "__version__", "unknown")
    major = version.split(".")[0]
    moved = [name for name in ("_build_dag", "dag", "rules", "deployment_settings", "is_main_process", "dryrun")
             if not hasattr(type(workflow), name) and not hasattr(workflow, name)]
    if not major.isdigit() or int(major) not in SUPPORTED_MAJORS or moved:
        detail = f" (missing: {', '.join(moved)})" if moved else ""
        raise _workflow_error(
            f"Snakemake {version} is not supported{detail}; its internals may have moved, so no job is run. "
            f"Use Snakemake 8.30+ or 9.x, or upgrade snakemake-singcontain.")


def contain(workflow, policy_file: str) -> None:
    _check_snakemake(workflow)
    if getattr(workflow, "_singcontain", None) is not None:
        raise _workflow_error("contain() was called twice for this workflow; call it once, in the main Snakefile")
    caller = sys._getframe(2).f_code.co_filename  # the Snakefile that called contain()
    base = os.path.dirname(caller) if os.path.isfile(caller) else os.getcwd()
    path = os.path.join(base, policy_file)
    try:
        policy = load_policy(path)
    except PolicyError as err:
        raise _workflow_error(err.render()) from None
    bridge = _Bridge(workflow, policy)
    workflow._singcontain = bridge
    original_build_dag = workflow._build_dag

    def build_dag(*args, **kwargs):
        bridge.prepare_rules()
        result = original_build_dag(*args, **kwargs)
        if workflow.is_main_process:
            bridge.preflight()
        return result

    workflow._build_dag = build_dag


def _job_environment(a: dict) -> dict[str, str]:
    """The environment Snakemake gives a job's shell: its own plus the per-job thread counts and tmpdir
    (shell.py sets them in the job's process only). Under cleanenv, the policy's `env` picks from it."""
    threads = str(a.get("threads", 1))
    env = dict(os.environ, **{name: threads for name in THREAD_VARIABLES})
    tmpdir = (a.get("resources") or {}).get("tmpdir")
    if tmpdir:
        env.update(dict.fromkeys(("TMPDIR", "TMP", "TEMPDIR", "TEMP"), str(tmpdir)))
    return env


def _snakemake_binds(rule, a: dict) -> tuple[tuple[str, str], ...]:
    """What Snakemake binds into a job's container by itself, writable: 9.x its runtime paths (source
    cache, storage prefix), and for Python `script:`/`notebook:` jobs its own import paths (bound here for
    any script or notebook: read-only, they cost nothing where unused)."""
    binds = [(str(p), str(p)) for p in a.get("runtime_paths") or () if os.path.exists(p)]
    if getattr(rule, "script", None) or getattr(rule, "notebook", None):
        from snakemake.deployment.singularity import get_snakemake_searchpath_mountpoints, get_snakemake_searchpaths

        binds += zip(map(str, get_snakemake_searchpaths()), get_snakemake_searchpath_mountpoints())
    return tuple(binds)


def _rule_kind(rule) -> str | None:
    for kind, attr in (("shell", "shellcmd"), ("script", "script"), ("notebook", "notebook"),
                       ("wrapper", "wrapper"), ("cwl", "cwl")):
        if getattr(rule, attr, None) is not None:
            return kind
    if getattr(rule, "norun", False) or getattr(rule, "template_engine", None) is not None:
        return None  # nothing runs: no container either
    return "run"


class _Bridge:
    def __init__(self, workflow, policy):
        self.workflow, self.policy = workflow, policy
        self._checker = None
        self._smoked: dict[tuple, SmokeResult] = {}

    @property
    def use_apptainer(self) -> bool:
        from snakemake.settings.types import DeploymentMethod

        return DeploymentMethod.APPTAINER in self.workflow.deployment_settings.deployment_method

    @property
    def global_args(self) -> list[str]:
        return shlex.split(self.workflow.deployment_settings.apptainer_args or "")

    @property
    def checker(self) -> Checker:
        if self._checker is None:
            kinds = {rule.name: _rule_kind(rule) or "norun" for rule in self.workflow.rules}
            try:
                self._checker = Checker(self.policy, detect(self._runtime_preference()), plugin_manager(),
                                        workdir=os.getcwd(), rule_kinds=kinds)
            except PolicyError as err:
                raise _workflow_error(err.render()) from None
        return self._checker

    def _runtime_preference(self) -> str:
        """Check the binary Snakemake will run: 8.x always calls `singularity`, 9.x prefers `apptainer`."""
        import snakemake

        if self.policy.runtime == "auto" and snakemake.__version__.startswith("8."):
            return "singularity"
        return self.policy.runtime

    def prepare_rules(self) -> None:
        """Give rules the policy's fallback image and wrap every rule's function (once)."""
        for rule in self.workflow.rules:
            if _rule_kind(rule) is None or getattr(rule.run_func, "_singcontain", False):
                continue
            if self.policy.image and not rule.container_img and rule.container_img is not False:
                rule.container_img = self.policy.image
            rule.run_func = self._wrap(rule)

    def _wrap(self, rule):
        original = rule.run_func
        signature = inspect.signature(original)
        missing = [p for p in RUN_FUNC_PARAMS if p not in signature.parameters]
        if missing:
            import snakemake

            raise _workflow_error(f"Snakemake {snakemake.__version__} calls rule functions without {missing}; "
                                  "this version is not supported, so no job is run")

        def run_contained(*args, **kwargs):
            call = signature.bind(*args, **kwargs)
            call.arguments["singularity_args"] = self.job_args(rule, call.arguments)
            return original(*call.args, **call.kwargs)

        run_contained._singcontain = True
        return run_contained

    def job_args(self, snakemake_rule, a: dict) -> str:
        """Right before the job starts (locally or on a node): re-check it, then its flags as one string."""
        rule = snakemake_rule.name
        image = a["container_img"] if a["use_singularity"] else None
        job = JobSpec(rule, tuple(a["input"]), tuple(a["output"]) + tuple(a["log"] or ()),
                      dict(a["wildcards"].items()), image, support=_snakemake_binds(snakemake_rule, a))
        plan = self.checker.job_plan(job)
        if image is None:
            if plan.rule.contained:
                raise _workflow_error(f"rule {rule} must run contained but would run on the host "
                                      "(no image, or Snakemake runs without --sdm apptainer); refusing")
            return a["singularity_args"]
        runtime = self.checker.runtime
        findings = self.checker.check([job], whole_workflow=False) + self._escape_hatch_findings(rule)
        errors = [f for f in findings if f.severity == ERROR]
        if errors:
            # One line per problem, e.g. "/cvmfs/sft.cern.ch does not exist on this host", in the job's log.
            raise _workflow_error(f"job {job.label} refused on {os.uname().nodename}: "
                                  + "; ".join(f"{f.code} {f.message}" for f in errors))
        return shlex.join(apptainer_args(plan, runtime, _job_environment(a)) + self.global_args)

    def _escape_hatch_findings(self, rule: str) -> list[Finding]:
        """What outside the policy would change this rule's container: --apptainer-args, APPTAINER_*
        variables, APPTAINERENV_* variables under a cleaned environment, unpassable allowed values."""
        settings = self.checker.settings(rule)
        found = [("SC104", f"--apptainer-args passes {flag!r}, a flag the plugin sets from the policy",
                  "drop it from --apptainer-args and express it in the policy") for flag in owned_flags(self.global_args)]
        found += [("SC104", f"the environment variable {name} would change the container's flags behind the policy",
                   f"unset {name} before running Snakemake, and express it in the policy")
                  for name in owned_environment(os.environ)]
        found += [("SC104", f"the environment variable {name} would put a variable into the cleaned environment "
                   "that the policy's env does not allow", f"unset {name}, or add the variable to the rule's env")
                  for name in smuggled_variables(settings, os.environ)]
        for name in settings.env if settings.effective_cleanenv else ():
            try:
                env_pair(name, os.environ.get(name, ""))
            except ValueError as err:
                found.append(("SC209", str(err), f"change the value of {name}, or drop it from the rule's env"))
        return [Finding(code, ERROR, rule, message, fix) for code, message, fix in found]

    def preflight(self) -> None:
        """Check every job to run, before anything is pulled or submitted; refuse the run on any error."""
        workflow = self.workflow
        jobs = []
        images = {}  # image URL -> local path: Snakemake resolves it anew on every call (~60 µs)
        use_apptainer = self.use_apptainer
        for job in workflow.dag.needrun_jobs():
            if _rule_kind(job.rule) is None:
                continue
            image = None
            if use_apptainer:
                url = job.container_img_url
                if url not in images:
                    images[url] = job.container_img_path
                image = images[url]
            inputs = tuple(job.input)
            symlinks = {p: real for p in inputs if os.path.islink(p) and (real := os.path.realpath(p)) != os.path.abspath(p)}
            jobs.append(JobSpec(job.rule.name, inputs, tuple(job.output) + tuple(job.log),
                                dict(job.wildcards_dict), image, symlinks))
        findings = self.checker.check(jobs)
        rules = {job.rule for job in jobs}
        uncontained = sorted(r for r in rules if self.checker.settings(r).isolates and not use_apptainer)
        if uncontained:
            findings.append(Finding("SC102", ERROR, ", ".join(uncontained),
                                    "the policy contains these rules, but Snakemake runs without --sdm apptainer, "
                                    "so they would run on the host", "add --sdm apptainer to the command line or profile"))
        for rule in sorted(rules):
            findings += self._escape_hatch_findings(rule)
        if not has_errors(findings):
            findings += self._smoke_tests(jobs)
        if os.environ.get("SINGCONTAIN_REPORT"):  # asked for by the singcontain command
            audit = report.build(self.checker, jobs, findings, os.environ,
                                 with_jobs=os.environ.get("SINGCONTAIN_REPORT_JOBS") == "1")
            with open(os.environ["SINGCONTAIN_REPORT"], "w") as f:
                json.dump(audit, f)
        self._report(findings)

    def _smoke_tests(self, jobs: list[JobSpec]) -> list[Finding]:
        """Start each distinct (image, rule flags) once, as the job would be started; cached for the run."""
        runtime = self.checker.runtime
        if runtime is None:
            return []
        findings = []
        for job in {(j.rule, j.image): j for j in jobs if j.image}.values():
            plan = self.checker.rule_plan(job.rule, job.image)
            binds = [b for b in plan.settings.binds if b.src not in plan.missing]
            args = settings_args(plan.settings, os.environ) + [w for b in binds for w in bind_args(b, runtime)]
            if not os.path.exists(job.image):
                findings.append(Finding("SC207", WARNING, job.rule, f"image {job.image} is not on this host yet, so "
                                        "the rule's flags were not smoke-tested",
                                        "run once without -n (Snakemake then pulls it), or point container: at a local image"))
                continue
            key = (job.image, tuple(args))
            if key not in self._smoked:
                self._smoked[key] = smoke_test(runtime, job.image, args, os.getcwd())
            result = self._smoked[key]
            if not result.ok:
                what = "; ".join(result.weakened) or result.fatal
                command = f"{runtime.binary} exec {shlex.join(['--home', os.getcwd(), *args])} {job.image} true"
                findings.append(Finding("SC207", ERROR, job.rule, f"starting the image with this rule's flags failed "
                                        f"or was weakened: {what}",
                                        f"run `{command}` to see the runtime's message; ask the site admin, or change "
                                        "the rule's policy"))
        return findings

    def _report(self, findings: list[Finding]) -> None:
        from snakemake.logging import logger

        if has_errors(findings):
            raise _workflow_error("the containment policy failed its checks; nothing was submitted.\n" + render(findings))
        if findings:
            logger.warning(f"{PREFIX}:\n{render(findings)}")
