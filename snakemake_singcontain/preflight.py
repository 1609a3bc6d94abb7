"""The preflight's findings about the run as a whole, which only its Snakemake process can see: the flags and
variables around the policy, the images, the job environment's values, where a batch job would look for its
paths, the runtime Snakemake runs, the smoke test of each rule's flags. Plain data in, findings out; the
bridge (the only module that reads Snakemake) gathers the data."""

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import attest
from .apptainer_flags import owned, unsafe_args, unsafe_environment
from .argv import bind_args, env_pair, settings_args, smuggled_variables
from .findings import ERROR, WARNING, Finding, has_errors
from .plan import JobSpec
from .policy import Settings
from .records import sha256
from .runtime import RuntimeInfo, detect, smoke_test

SAFE_IMAGE = re.compile(r"[A-Za-z0-9._~/:@+=][A-Za-z0-9._~/:@+=-]*")  # never a shell word break, quote or '$'
REMOTE_IMAGE = re.compile(r"^[a-z][a-z0-9+.-]*://")
# Folders an execute point does not share with the submit host: each node has its own, and HTCondor gives
# every job private, empty /tmp and /var/tmp (MOUNT_UNDER_SCRATCH, measured with 25.x).
NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm", "/run/user")


def escape_hatches(rules: Sequence[str], settings: Mapping[str, Settings], global_args: Sequence[str],
                   environ: Mapping[str, str]) -> list[Finding]:
    """What outside the policy would change a rule's container: --apptainer-args, APPTAINER_* variables,
    APPTAINERENV_* variables under a cleaned environment. Told once for the run where it concerns every rule."""
    found = [("SC104", f"--apptainer-args passes {word!r}, " + (
              "a flag the plugin sets from the policy" if owned(word) else "which is not on the allow-list of "
              "Apptainer flags that cannot widen what a job sees"), "drop it from --apptainer-args (and "
              "the profile), and express it with the policy's own keys") for word in unsafe_args(global_args)]
    found += [("SC104", f"the environment variable {name} would change every container's flags behind the policy",
               f"unset {name} before running Snakemake, and express it in the policy")
              for name in unsafe_environment(environ)]
    findings = [Finding(code, ERROR, ", ".join(sorted(rules)) if len(rules) < 4 else "every rule", message, fix)
                for code, message, fix in found]
    for rule in rules:
        findings += [Finding("SC104", ERROR, rule, f"the environment variable {name} would put a variable into "
                             "the cleaned environment that the policy's env does not allow",
                             f"unset {name}, or add the variable to the rule's env")
                     for name in smuggled_variables(settings[rule], environ)]
    return findings


def unpassable_values(names: Iterable[str], env: Mapping[str, str]) -> list[tuple[str, str]]:
    """SC209's (message, fix) for allowed variables whose value --env cannot carry in this environment."""
    found = []
    for name in names:
        try:
            env_pair(name, env.get(name, ""))
        except ValueError as err:
            found.append((str(err), f"change the value of {name}, or drop it from the rule's env"))
    return found


def job_findings(rule: str, job: str, shell_exec, post_deploy: str | None,
                 unpassable: Sequence[tuple[str, str]]) -> list[Finding]:
    """What only Snakemake's job knows, for a contained rule: its shell_exec resource (SC108), its conda
    environment's post-deploy script (SC107), values of its environment that --env cannot carry (SC209:
    unpassable_values)."""
    findings = []
    if shell_exec is not None:
        findings.append(Finding("SC108", ERROR, rule, f"the shell_exec resource {shell_exec!r} would replace the host "
                                "program that starts the container", "drop shell_exec for this rule (from the "
                                "Snakefile, a profile or --default-resources)", job=job))
    if post_deploy:
        findings.append(Finding("SC107", ERROR, rule, f"the conda environment's post-deploy script {post_deploy} would "
                                "run on the host, outside any container (Snakemake runs it there)",
                                "move what the script does into the image, or into the rule's own command"))
    return findings + [Finding("SC209", ERROR, rule, message, fix, job=job) for message, fix in unpassable]


def checked(jobs: Sequence[JobSpec], policy_file: str) -> str:
    """The one line that says the policy is in force (a run without it would look the same)."""
    digest = sha256(policy_file)[:12]
    if not jobs:
        return f"no job to run in a container, nothing to check (policy {policy_file}, sha256 {digest})"
    rules = len({job.rule for job in jobs})
    counted = f"{len(jobs)} job{'s' * (len(jobs) != 1)} of {rules} rule{'s' * (rules != 1)}"
    return f"{counted} checked against {policy_file} (sha256 {digest}); every job runs with its rule's flags"


def image_findings(rule: str, url: str, path: str | None) -> list[Finding]:
    """The image as named (`url`) and the file Snakemake runs (`path`; none without --sdm apptainer)."""
    findings = []
    for name in dict.fromkeys(n for n in (url, path) if n):
        if not SAFE_IMAGE.fullmatch(name):
            findings.append(Finding("SC210", ERROR, rule, f"the image {name!r} has characters outside "
                                    "[A-Za-z0-9._~/:@+=-]; Snakemake puts it into a shell command",
                                    "rename the image file, or correct the container: value"))
    if url.startswith("instance://"):
        findings.append(Finding("SC210", ERROR, rule, f"the image {url!r} joins a running instance, whose "
                                "namespaces and mounts the rule's flags cannot change",
                                "point container: at the instance's image file instead"))
    if not findings and path and not REMOTE_IMAGE.match(url) and not os.path.exists(path):
        findings.append(Finding("SC211", ERROR, rule, f"the image {path} does not exist",
                                "correct the container: path, or mount the file system that holds it"))
    return findings


def node_local_paths(executor: str, paths: Iterable[tuple[str, str, str]]) -> list[Finding]:
    """`paths`: (rule, what, path) a job on a node needs at the submit host's path (the workdir, the policy,
    Snakemake's Python, images, writable binds). Under HTCondor such a path is never there (an error); under
    other batch systems only where a node has a /tmp of its own (a warning: a one-machine cluster shares it)."""
    severity = ERROR if executor == "htcondor" else WARNING
    return [Finding("SC213", severity, rule, f"{what} {path} is under {local}, which each {executor} node (or job) "
                    "has of its own: a job there does not see the submit host's", "move it to a file system the "
                    "nodes share (the home or project space; /cvmfs for software)")
            for rule, what, path in paths
            for local in NODE_LOCAL if path == local or path.startswith(local + "/")]


def node_local_findings(executor: str | None, workdir: str, policy_file: str, python: str,
                        settings: Mapping[str, Settings], images: Mapping[str, str | None]) -> list[Finding]:
    """For a batch executor: what the jobs need at the submit host's paths, on a node-local folder (a dry run
    tells what the real run with that executor will tell)."""
    if executor is None:
        return []
    every = "every rule"
    paths = [(every, "the workdir", workdir), (every, "the policy", policy_file), (every, "Snakemake's Python", python)]
    paths += [(every, "the image", path) for path in images.values() if path]
    for rule, s in settings.items():
        paths += [(rule, "the writable bind of", b.src) for b in s.binds if b.mode == "rw"]
        paths += [(rule, "the scratch folder", s.scratch)] if s.scratch else []
    return node_local_paths(executor, paths)


def runtime_findings(asked_runtime: str, runs: RuntimeInfo | None, rules: Sequence[str]) -> list[Finding]:
    """The policy's runtime must be the program Snakemake runs (the checks look at that one)."""
    if asked_runtime == "auto" or not rules:
        return []
    asked = detect(asked_runtime)
    if asked and runs and os.path.realpath(asked.binary) == os.path.realpath(runs.binary):
        return []
    running = runs.binary if runs else "nothing (none on PATH)"
    return [Finding("SC212", ERROR, ", ".join(sorted(rules)), f"the policy asks for runtime {asked_runtime}, "
                    f"but Snakemake runs {running}", "drop `runtime:` from the policy (the plugin checks what "
                    "Snakemake runs), or put the wanted program first on PATH")]


def smoke_findings(checker, jobs: Sequence[JobSpec], urls: Mapping[str, str], cache: dict,
                   environ: Mapping[str, str], workdir: str) -> list[Finding]:
    """Start each distinct (image, rule flags) once, as the job would be started; `cache` keeps the results
    for the run (a checkpoint's jobs share them)."""
    runtime = checker.runtime
    findings = []
    to_pull: dict[str, list[str]] = {}  # image -> rules: told once per image, by its URL
    tests = []  # (rule, image, key)
    for job in {(j.rule, j.image): j for j in jobs if j.image}.values():
        plan = checker.rule_plan(job.rule, job.image)
        binds = [b for b in plan.settings.binds if b.src not in plan.missing]
        args = settings_args(plan.settings, environ) + [w for b in binds for w in bind_args(b, runtime)]
        if not os.path.exists(job.image):
            to_pull.setdefault(job.image, []).append(job.rule)
            continue
        tests.append((job.rule, job.image, (job.image, tuple(args))))
    new = list(dict.fromkeys(key for _, _, key in tests if key not in cache))
    if new:  # side by side: each mostly waits on its container's start
        with ThreadPoolExecutor(max_workers=min(len(new), 4)) as pool:
            cache.update(zip(new, pool.map(lambda key: smoke_test(runtime, key[0], list(key[1]), workdir), new)))
    for rule, image, key in tests:
        if not cache[key].ok:
            findings.append(Finding("SC207", ERROR, rule, *cache[key].told(urls.get(image, image))))
    for image, rules in to_pull.items():
        findings.append(Finding("SC207", WARNING, ", ".join(sorted(rules)), f"image {urls.get(image, image)} is not "
                                "pulled yet, so the rules' flags were not smoke-tested",
                                "nothing to do: once a run has pulled it, later runs smoke-test it; or point "
                                "container: at a local image"))
    return findings


@dataclass(frozen=True)
class Run:
    """What the preflight needs to know of the run, read from Snakemake by the bridge."""

    workdir: str
    policy_file: str
    policy_runtime: str  # the policy's `runtime:` (auto, apptainer, singularity)
    use_apptainer: bool  # --sdm apptainer
    global_args: tuple[str, ...]  # --apptainer-args, the policy marker left out
    environ: Mapping[str, str]
    executor: str | None  # the batch executor the real run submits to (also in a dry run); None: local
    python: str  # Snakemake's Python, which a batch job runs on its node
    attestations: str | None = None  # where probes are kept for the run's other processes; None: a dry run


def check(checker, jobs: Sequence[JobSpec], settings: Mapping[str, Settings], images: Mapping[str, str | None],
          run: Run, smoked: dict, whole_workflow: bool, found: Sequence[Finding] = ()) -> list[Finding]:
    """Every finding about these jobs before they are submitted: the checks, then (for the whole workflow)
    what only the run shows, then — where nothing is wrong so far, `found` (what reading the jobs found)
    included — each rule's flags started for real (smoke test) and probed (attest.py). `images`: URL -> local
    path; `smoked`: the smoke tests' results of the run."""
    findings = list(found) + checker.check(jobs, whole_workflow=whole_workflow)
    if whole_workflow:
        uncontained = sorted(r for r in settings if settings[r].isolates and not run.use_apptainer)
        if uncontained:
            findings.append(Finding("SC102", ERROR, ", ".join(uncontained),
                                    "the policy contains these rules, but Snakemake runs without --sdm apptainer, "
                                    "so they would run on the host", "add --sdm apptainer to the command line or profile"))
        findings += escape_hatches(sorted(settings), settings, run.global_args, run.environ)
        findings += node_local_findings(run.executor, run.workdir, run.policy_file, run.python, settings, images)
        findings += runtime_findings(run.policy_runtime, checker.runtime, [r for r in settings if settings[r].isolates])
    if checker.runtime is None or not run.use_apptainer or has_errors(findings):
        return findings
    findings += smoke_findings(checker, jobs, {path: url for url, path in images.items()}, smoked, run.environ,
                               run.workdir)
    if has_errors(findings):
        return findings
    distinct = {(j.rule, j.image): j for j in jobs if j.image and os.path.exists(j.image)}.values()
    with ThreadPoolExecutor(max_workers=4) as pool:  # side by side: each mostly waits on a container's start
        return findings + [f for _, found in pool.map(
            lambda job: attest.attest_rule(checker, job, run.attestations, run.workdir, run.environ), distinct)
            for f in found]
