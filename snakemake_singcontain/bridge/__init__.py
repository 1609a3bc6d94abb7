"""The join with Snakemake: the only package that touches Snakemake's internals.

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

Its files: containment.py (one workflow's: rule functions wrapped, the preflight, the record hooks), jobs.py
(Snakemake's jobs read into plain JobSpecs), shellcmd.py (Snakemake's container command), executor.py (which
batch system a run submits to), refusal.py (how a run or job is refused); here the version gate and the entry
points: contain() from a Snakefile, activate() from autoload.py.
"""

import atexit
import gc
import os
import shlex
import sys

from .. import launch
from ..errors import PolicyError
from ..policy import load_policy
from .containment import MARKER, Containment
from .refusal import workflow_error
from .shellcmd import wrap_shellcmd

SUPPORTED_MAJORS = (8, 9)


def _check_snakemake(workflow) -> None:
    import snakemake

    version = getattr(snakemake, "__version__", "unknown")
    major = version.split(".")[0]
    moved = [name for name in ("_build_dag", "execute", "dag", "rules", "deployment_settings", "is_main_process",
                               "dryrun", "configfiles", "_onstart", "_onsuccess", "_onerror", "persistence")
             if not hasattr(type(workflow), name) and not hasattr(workflow, name)]
    from snakemake.deployment import singularity

    moved += [name for name in ("shellcmd", "get_snakemake_searchpaths") if not hasattr(singularity, name)]
    if not major.isdigit() or int(major) not in SUPPORTED_MAJORS or moved:
        detail = f" (missing: {', '.join(moved)})" if moved else ""
        raise workflow_error(
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
        raise workflow_error("two policies named: " + " and ".join(f"{path} ({how})" for path, how in named.items())
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
    _thaw_after_execute(workflow_class)


def _thaw_after_execute(workflow_class) -> None:
    """A dry run keeps Snakemake's objects frozen for the garbage collector from its preflight on
    (Containment._check_jobs); they thaw when the workflow's execute() returns, so that a process that goes on
    (Snakemake's API) collects them again."""
    original = workflow_class.execute
    if getattr(original, "_singcontain", False):
        return

    def execute(self, *args, **kwargs):
        try:
            return original(self, *args, **kwargs)
        finally:
            if getattr(self, "_singcontain", None) is not None:
                self._singcontain.thaw()

    execute._singcontain = True
    workflow_class.execute = execute


def _freeze_at_exit() -> None:
    """Freeze every object for the collector when the process exits: the interpreter's teardown then frees
    what it holds without scanning Snakemake's objects again and again (about 0.15-0.25 s of CPU per Snakemake
    process, so per job on a batch system; 2.5 s of a 16 s dry run of 20,000 jobs, measured). Nothing is lost
    that the exit would keep: files and logs are closed by their owners' own exit steps (logging.shutdown,
    weakref finalizers), which do not wait for the collector. unregister first: registered once per process."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def contain(workflow, policy_file: str) -> None:
    caller = sys._getframe(2).f_code.co_filename  # the Snakefile that called contain()
    base = os.path.dirname(caller) if os.path.isfile(caller) else os.getcwd()
    _contain(workflow, os.path.abspath(os.path.join(base, policy_file)))


def _contain(workflow, path: str) -> None:
    _check_snakemake(workflow)
    if getattr(workflow, "_singcontain", None) is not None:
        raise workflow_error("contain() was called twice for this workflow; call it once, in the main Snakefile")
    requested = requested_policy(workflow)
    if requested and requested != path:
        raise workflow_error(f"two policies: the Snakefile's {path} and {requested} (--singcontain-policy or "
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
            raise workflow_error(err.render()) from None
    # A job's own Snakemake process (node, subprocess) takes the sealed settings instead, when its job starts.
    bridge = Containment(workflow, policy, path)
    workflow._singcontain = bridge
    wrap_shellcmd()
    _thaw_after_execute(type(workflow))
    _freeze_at_exit()
    original_build_dag = workflow._build_dag

    def build_dag(*args, **kwargs):
        bridge.prepare_rules()
        result = original_build_dag(*args, **kwargs)
        if workflow.is_main_process:
            bridge.preflight()
        return result

    workflow._build_dag = build_dag
