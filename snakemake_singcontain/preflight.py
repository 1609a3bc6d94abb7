"""The preflight's findings about the run as a whole, which only its Snakemake process can see: the flags and
variables around the policy, the images, the job environment's values, where a batch job would look for its
paths, the runtime Snakemake runs, each rule's image started with its flags. Plain data in, findings out; the
bridge (the only module that reads Snakemake) gathers the data."""

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import attest
from .apptainer_flags import owned, unsafe_args, unsafe_environment
from .argv import env_pair, smuggled_variables
from .findings import ERROR, WARNING, Finding, has_errors
from .plan import JobSpec
from .policy import Settings
from .records import sha256
from .runtime import RuntimeInfo, detect

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


def started_findings(rule: str, image: str, attestation: attest.Attestation,
                     compared: Sequence[Finding]) -> list[Finding]:
    """SC207 where the rule's image did not start with its flags as asked — `image` named as the workflow names
    it — (the probe's start failed, or the runtime warned that it dropped part of the request: the site's
    configuration); else what the probe found against the plan (attest.compare)."""
    told = attest.failure_told(attestation, image)
    if told is None and attestation.warnings:
        told = (f"the runtime weakened this rule's flags (the site's configuration): {'; '.join(attestation.warnings)}",
                f"ask the site admin to allow it, or change the rule's policy; `{attestation.told_command}` shows the "
                "runtime's message")
    if told is None:
        return list(compared)
    return [Finding("SC207", ERROR, rule, *told)]


def not_pulled(jobs: Sequence[JobSpec], urls: Mapping[str, str]) -> list[Finding]:
    """SC207 warnings for the images not on this host yet (a remote image Snakemake pulls when the run starts):
    their rules' flags cannot be tried before the run."""
    rules: dict[str, set[str]] = {}
    for job in jobs:
        if job.image:
            rules.setdefault(job.image, set()).add(job.rule)
    rules = {image: names for image, names in rules.items() if not os.path.exists(image)}
    return [Finding("SC207", WARNING, ", ".join(sorted(names)), f"image {urls.get(image, image)} is not pulled yet, so "
                    "the rules' flags were not smoke-tested", "nothing to do: once a run has pulled it, later runs "
                    "smoke-test it; or point container: at a local image") for image, names in rules.items()]


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
          run: Run, whole_workflow: bool, found: Sequence[Finding] = ()) -> list[Finding]:
    """Every finding about these jobs before they are submitted: the checks, then (for the whole workflow)
    what only the run shows, then — where nothing is wrong so far, `found` (what reading the jobs found)
    included — each rule's image started with its flags, as its jobs will be (once per image and distinct
    flags), and what it shows compared with each rule's plan (attest.py; SC207 where it did not start as
    asked). `images`: URL -> local path."""
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
    urls = {path: url for url, path in images.items()}
    findings += not_pulled(jobs, urls)
    distinct = {(j.rule, j.image): j for j in jobs if j.image}
    distinct = {key: job for key, job in distinct.items() if os.path.exists(job.image)}
    flags = {key: attest.rule_flags(checker, job, run.environ) for key, job in distinct.items()}
    starts = list(dict.fromkeys((image, tuple(args)) for (_, image), (_, args) in flags.items()))
    with ThreadPoolExecutor(max_workers=4) as pool:  # side by side: each mostly waits on a container's start
        seen = dict(zip(starts, pool.map(lambda start: attest.observed(checker.runtime, start[0], list(start[1]),
                                                                       run.attestations, run.workdir), starts)))
    for (rule, image), (plan, args) in flags.items():
        attestation = seen[(image, tuple(args))]
        compared = attest.compare(attestation, attest.expectation(plan), checker.runtime)
        findings += started_findings(rule, urls.get(image, image), attestation, compared)
    return findings
