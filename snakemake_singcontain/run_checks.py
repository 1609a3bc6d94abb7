"""Findings about a run that only its Snakemake process can see: the flags and variables around the policy,
the images, the job environment's values. Plain data in, findings out; the bridge gathers the data."""

import os
import re
from collections.abc import Iterable, Mapping, Sequence

from .apptainer_flags import owned, unsafe_args, unsafe_environment
from .argv import env_pair, smuggled_variables
from .findings import ERROR, WARNING, Finding
from .policy import Settings

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
