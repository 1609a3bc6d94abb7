"""`--sdm conda apptainer` as catalogue workflows run it, with plain Snakemake (no policy): the control for
issue 18's conda work. The image (tools/build-conda-image.sh) holds a conda front end on py-rattler and local
channels, so environments resolve and install with no network. Every apptainer call is logged by a wrapper
first on PATH, so the tests see what Snakemake runs on the host, and how."""

import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from support import ROOT, SNAKEMAKE, as_user, chown_tree, owned_dir

pytestmark = [pytest.mark.apptainer, pytest.mark.snakemake_internals]

CORPUS = ROOT / "tests" / "corpus" / "conda_pipeline"
ENVS = sorted((CORPUS / "envs").glob("*.yaml"))

# Logs each call (its APPTAINERENV_/SINGULARITYENV_ variables and shell-quoted argv), then runs the real one.
LOGGING_WRAPPER = """#!/bin/bash
{{ env | grep -E '^(SINGULARITYENV|APPTAINERENV)_' | tr '\\n' ' '; printf '%s' {name}; printf ' %q' "$@"; echo; }} >> {log}
exec {real} "$@"
"""
# Snakemake 9.27.1 runs `conda clean -y --tarballs` on the host after each creation, and 8.30/9.x's local
# executor runs `conda info --json` there (workflow.conda_base_path): the host's conda is the image's, contained.
HOST_CONDA = """#!/bin/sh
exec {real} --quiet --silent exec --contain {image} conda "$@"
"""


BUILD = ROOT / "tools" / "build-conda-image.sh"


def _build(out: Path, *extra: str) -> str:
    # Kept between runs. The Snakemake 8 and 9 runs of tools/test.sh run at once: one builds, the other waits.
    with open(f"{out}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.exists():
            done = subprocess.run(["bash", str(BUILD), str(out), *extra], capture_output=True, text=True, timeout=900)
            if done.returncode:
                pytest.skip(f"the conda image could not be built ({BUILD.name}): {done.stderr.strip()[-1500:]}")
    return str(out)


@pytest.fixture(scope="module")
def images():
    # Named after what the images are made of, so that a change of the script or an env file rebuilds them.
    made_of = hashlib.sha256(b"".join(p.read_bytes() for p in (BUILD, *ENVS))).hexdigest()[:16]
    folder = Path("/tmp") / f"singcontain-conda-image-{made_of}"
    folder.mkdir(mode=0o755, exist_ok=True)
    return {"plain": _build(folder / "conda.sif"),
            "containerized": _build(folder / "conda-envs.sif", "--containerized", *map(str, ENVS))}


class Run:
    """One plain Snakemake run of a fresh copy of the corpus workflow, its apptainer calls logged."""

    def __init__(self, image: str, *config: str, post_deploy: str | None = None, policy: str | None = None):
        self.root = owned_dir("singcontain-conda-")
        shutil.copytree(CORPUS, self.root, dirs_exist_ok=True)
        if post_deploy:
            (self.root / "envs" / "count.post-deploy.sh").write_text(post_deploy)
        chown_tree(self.root)
        bin_dir = self.root / ".host-bin"
        bin_dir.mkdir()
        self.log = self.root / "apptainer-calls.log"
        real = shutil.which("apptainer") or shutil.which("singularity")
        for name in ("apptainer", "singularity"):
            (bin_dir / name).write_text(LOGGING_WRAPPER.format(name=name, log=shlex.quote(str(self.log)),
                                                               real=shlex.quote(real)))
        (bin_dir / "conda").write_text(HOST_CONDA.format(real=shlex.quote(real), image=shlex.quote(image)))
        for f in bin_dir.iterdir():
            f.chmod(0o755)
        chown_tree(self.root)
        path = f"{bin_dir}:{Path(SNAKEMAKE).parent}:/usr/local/bin:/usr/bin:/bin"
        env = {"PATH": path}
        if policy:  # the workflow as it is, its policy named when it is run
            (self.root / "containment.yaml").write_text(policy)
            env["SINGCONTAIN_POLICY"] = str(self.root / "containment.yaml")
        self.result = as_user([SNAKEMAKE, "--sdm", "conda", "apptainer", "-c1", "--config", f"image={image}", *config],
                              cwd=self.root, env=env, timeout=600)
        self.calls = self.log.read_text().splitlines() if self.log.exists() else []

    def read(self, path: str) -> str:
        return (self.root / path).read_text()

    def package_caches(self) -> list[Path]:
        """The package caches Snakemake gave the creations (CONDA_PKGS_DIRS=/tmp/conda/UUID)."""
        return [Path(m.group(1)) for c in self.calls if (m := re.search(r"CONDA_PKGS_DIRS=(\S+)", c))]

    def remove(self) -> None:
        for path in (self.root, *self.package_caches()):
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def created(images):
    run = Run(images["plain"])
    yield run
    run.remove()


def test_environments_are_created_inside_the_image_and_jobs_run_in_them(created):
    assert created.result.returncode == 0, created.result
    creations = [c for c in created.calls if "conda env create" in c.replace("\\ ", " ")]
    assert len(creations) == 2, created.calls  # one per env file, each through `apptainer exec IMAGE`
    assert all(" exec --home " in c and "conda.sif" in c for c in creations)
    prefixes = sorted(p.parent for p in (created.root / ".snakemake" / "conda").glob("*/conda-meta"))
    assert len(prefixes) == 2
    greeting = created.read("results/heat.greeting.txt")
    # The package's prefix placeholder was rewritten to the env's folder and its post-link script ran there.
    assert re.search(r"^hello heat from sc-greet in .*/\.snakemake/conda/\w+$", greeting, re.M), greeting
    assert "post-link ran for " in greeting
    counts = created.read("results/heat.counts.txt").split("\n")
    assert counts[0] == "5" and counts[1].startswith(f"env {created.root}/.snakemake/conda/"), counts


def test_control_an_uncontained_creation_writes_the_workdir_and_the_hosts_tmp(created):
    # What contained creation must stop: with only --apptainer-args, the package manager's home is the
    # workdir (`conda config --set` writes .condarc there) and its package cache is the host's /tmp.
    assert created.result.returncode == 0, created.result
    assert created.read(".condarc").strip() == "channel_priority: strict"
    assert ".snakemake/conda/" in created.read(".conda/environments.txt")
    caches = created.package_caches()
    assert caches and all(c.is_relative_to("/tmp") and c.is_dir() for c in caches), created.calls


def test_an_image_that_holds_the_environments_needs_no_creation(images):
    run = Run(images["containerized"], "containerized=true")
    try:
        assert run.result.returncode == 0, run.result
        assert not [c for c in run.calls if "conda env create" in c.replace("\\ ", " ")], run.calls
        assert "hello ctrl from sc-greet in /conda-envs/" in run.read("results/ctrl.greeting.txt")
        assert run.read("results/ctrl.counts.txt").split("\n")[1].startswith("env /conda-envs/")
        assert not (run.root / ".snakemake" / "conda").exists() or not any((run.root / ".snakemake" / "conda").iterdir())
    finally:
        run.remove()


def test_control_a_post_deploy_script_runs_on_the_host(images):
    # Snakemake runs an env's post-deploy script with `source ACTIVATE ENV; sh SCRIPT` on the host, not in the
    # image: contained creation has to refuse it or run it contained itself.
    marker = Path(tempfile.mkdtemp(prefix="singcontain-conda-marker-", dir="/tmp"))
    os.chmod(marker, 0o777)
    script = f'#!/bin/sh\necho "container=${{APPTAINER_CONTAINER:-none}}" > {marker}/ran\n'
    run = Run(images["plain"], post_deploy=script)
    try:
        assert run.result.returncode == 0, run.result
        assert (marker / "ran").read_text().strip() == "container=none"
        assert not [c for c in run.calls if "post-deploy" in c], run.calls
    finally:
        run.remove()
        shutil.rmtree(marker, ignore_errors=True)


CONTAIN = "version: 1\ndefaults: {containment: contain, namespaces: [pid]}\n"


def test_with_a_policy_creation_runs_contained_and_the_jobs_in_their_environments(images):
    run = Run(images["plain"], policy=CONTAIN)
    try:
        assert run.result.returncode == 0, run.result
        creations = [c for c in run.calls if "conda env create" in c.replace("\\ ", " ")]
        assert len(creations) == 2 and all(" --contain --cleanenv " in c for c in creations), run.calls
        # What the uncontained control wrote, this one did not: the workdir stayed the user's, /tmp the host's.
        assert not (run.root / ".condarc").exists() and not (run.root / ".conda").exists()
        assert run.package_caches() and not any(c.exists() for c in run.package_caches()), run.calls
        # Nor is anything left in the host's /tmp: each creation's throw-away home and package cache went with it.
        scratch = [Path(folder) for c in creations for folder in re.findall(r" --home (/tmp/\S+)/home\b", c)]
        assert len(scratch) == 2 and not any(p.exists() for p in scratch), creations
        # The image's conda is looked at contained too.
        calls = [c.replace("\\ ", " ") for c in run.calls]
        checks = [c for c in calls if "conda --version" in c or "conda info --json" in c]
        assert checks and all("--contain" in c for c in checks), checks
        greeting = run.read("results/heat.greeting.txt")
        assert re.search(r"^hello heat from sc-greet in .*/\.snakemake/conda/\w+$", greeting, re.M), greeting
        counts = run.read("results/heat.counts.txt").split("\n")
        assert counts[0] == "5" and counts[1].startswith(f"env {run.root}/.snakemake/conda/"), counts
        jobs = [c for c in calls if "activate" in c]
        assert jobs and all(" --contain " in c and " --pid " in c for c in jobs), jobs  # the rule's own flags
    finally:
        run.remove()


def test_with_a_policy_a_post_deploy_script_is_refused_before_anything_runs(images):
    marker = Path(tempfile.mkdtemp(prefix="singcontain-conda-marker-", dir="/tmp"))
    os.chmod(marker, 0o777)
    run = Run(images["plain"], policy=CONTAIN, post_deploy=f"#!/bin/sh\ntouch {marker}/ran\n")
    try:
        assert run.result.returncode != 0 and "SC107" in run.result.output, run.result
        assert "post-deploy" in run.result.output and not (marker / "ran").exists()
        assert not [c for c in run.calls if "conda env create" in c.replace("\\ ", " ")], run.calls
    finally:
        run.remove()
        shutil.rmtree(marker, ignore_errors=True)
