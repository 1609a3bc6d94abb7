"""One workflow's containment: its rules' functions wrapped (each job's start and end, wherever the job's
function runs), the preflight right after Snakemake built the DAG (main process), and the run's record hooks.
Plain work is handed to preflight.py, jobstart.py, seal.py and records.py."""

import gc
import inspect
import json
import os
import shlex
import subprocess
import sys
import time

from .. import jobstart, launch, preflight, records, report, seal
from ..checker import Checker
from ..errors import PolicyError
from ..findings import Finding, has_errors, render
from ..plan import host_reads
from ..plugins import plugin_manager
from ..policy import load_site_layers
from ..runtime import detect
from .executor import intended_executor
from .jobs import JobReader, call_spec, path_or_uri, rule_kind
from .refusal import PREFIX, workflow_error

RUN_FUNC_PARAMS = ("input", "output", "wildcards", "log", "resources", "container_img", "singularity_args",
                   "use_singularity", "shadow_dir")
MARKER = "--singcontain-policy="  # in --apptainer-args: the policy every job's own process takes


class Containment:
    """One workflow's containment: its rules' functions wrapped, the preflight after the DAG is built (main
    process), each job's start and end (wherever the job's function runs)."""

    def __init__(self, workflow, policy, policy_file: str):
        self.workflow, self.policy, self.policy_file = workflow, policy, policy_file
        self._checker = None
        self._frozen = False  # Snakemake's objects, for the garbage collector (_check_jobs)
        self._seal: seal.Seal | None = None
        self._kinds = None
        self._changed: list[str] | None = None
        self._recorder: records.Recorder | None = None
        self._new_run_id: str | None = None
        self._reading = JobReader(workflow)
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
            self._kinds = {rule.name: rule_kind(rule) or "norun" for rule in self.workflow.rules}
        return self._kinds

    @property
    def sealed(self) -> seal.Seal:
        """What the main process checked: kept there, read once from its file in a job's own process."""
        if self._seal is None and self.policy is not None:
            raise workflow_error("a job started before the run's check; refusing")
        if self._seal is None:
            words = shlex.split(self.workflow.deployment_settings.apptainer_args or "")
            try:
                self._seal = seal.read(seal.carried_digest(words), os.uname().nodename)
            except seal.SealError as err:
                raise workflow_error(str(err)) from None
        return self._seal

    @property
    def checker(self) -> Checker:
        if self._checker is None:
            sealed = None if self.policy is not None else self.sealed.settings
            workflow = self.workflow
            files = [self.policy_file, *map(os.path.abspath, workflow.configfiles), *launch.site_files(),
                     *(path_or_uri(source) for source in list(workflow.included))]
            try:
                site = load_site_layers(launch.SITE_FILE, launch.named_site())
                self._checker = Checker(self.policy, detect(self._runtime_preference()), plugin_manager(),
                                        workdir=os.getcwd(), rule_kinds=self.kinds, sealed=sealed, site=site,
                                        host_reads=host_reads(os.getcwd(), workflow.basedir, files),
                                        source=workflow.basedir)
            except PolicyError as err:
                raise workflow_error(err.render()) from None
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
            if rule_kind(rule) is None or getattr(rule.run_func, "_singcontain", False):
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

            raise workflow_error(f"Snakemake {snakemake.__version__} calls rule functions without {missing}; "
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
                raise workflow_error(f"rule {rule} must run contained but would run on the host "
                                     "(no image, or Snakemake runs without --sdm apptainer); refusing")
            return None
        job = call_spec(snakemake_rule, a, image, self.kinds.get(rule, "shell"))
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
        raise workflow_error(f"job {label} refused on {host}: {why}")

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
        # The check allocates a JobSpec and more per job; a full collection they set off would scan Snakemake's
        # DAG too (millions of objects, which outlive the check): frozen, it scans only what the check made.
        # Measured on 20,000 jobs of one rule: the preflight's CPU 0.63 -> 0.20 s (medians of 4 rounds).
        # A dry run keeps them frozen until its execute() returns (thaw; bridge._thaw_after_execute): what
        # follows the check there only prints, and unfrozen, the collector took the whole DAG for new objects
        # and scanned it again (20,000 jobs of deep wildcards: 16 full collections against 14 without the plugin).
        gc.freeze()
        self._frozen = True
        try:
            self._check(list(snakemake_jobs), first)
        finally:
            if not self.workflow.dryrun:
                self.thaw()

    def thaw(self) -> None:
        if self._frozen:
            self._frozen = False
            gc.unfreeze()

    def _check(self, snakemake_jobs: list, first: bool) -> None:
        self._checked.update(snakemake_jobs)
        jobs, settings, findings = self._reading.specs(snakemake_jobs, self.kinds, self.checker,
                                                        self.use_apptainer and self.use_conda)
        images = self._reading.images
        run = preflight.Run(os.getcwd(), self.policy_file, self.policy.runtime, self.use_apptainer,
                            tuple(self.global_args), os.environ, intended_executor(self.workflow), sys.executable,
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
            raise workflow_error(f"the containment policy failed its checks{what}; {submitted}.\n" + render(findings))
        if findings:
            logger.warning(f"{PREFIX}:\n{render(findings)}")
