"""Fixtures and the prerequisite gate for tests that need the real Apptainer, test user and Slurm."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from support import ROOT, USER, runtime_binary, user_entry


BATCH_SYSTEMS = {"slurm": "Slurm", "htcondor": "HTCondor"}  # marker (and tools/MARKER.sh) -> name


def _missing(items) -> dict:
    """For each test that needs them, what of the real environment is missing."""
    base = []
    if not runtime_binary():
        base.append("no apptainer on PATH (run tools/install-apptainer.sh)")
    if user_entry() is None:
        base.append(f"no user {USER} (useradd -m {USER})")
    if os.geteuid() != 0:
        base.append("not root (tests switch to the ordinary test user)")
    down = {}  # batch system marker -> what is missing
    for marker, name in BATCH_SYSTEMS.items():
        if any(marker in item.keywords for item in items) and subprocess.run(
                ["bash", str(ROOT / f"tools/{marker}.sh"), "status"], capture_output=True).returncode:
            down[marker] = f"no {name} running (bash tools/{marker}.sh up)"
    missing = {}
    for item in items:
        markers = [m for m in ("apptainer", *BATCH_SYSTEMS) if m in item.keywords]
        needs = (base if markers else []) + [down[m] for m in markers if m in down]
        if needs:
            missing[item] = needs
    return missing


def pytest_collection_modifyitems(config, items):
    missing = _missing(items)
    if missing and os.environ.get("CI"):
        # In CI the environment is set up by tools/test.sh: a missing piece is a failure, never a skip.
        raise pytest.UsageError("integration prerequisites missing: " + "; ".join(sorted({m for v in missing.values() for m in v})))
    for item, needs in missing.items():
        item.add_marker(pytest.mark.skip(reason="; ".join(needs)))


@pytest.fixture(scope="session")
def image():
    """The busybox + bash test image, built locally once per session (no registry is reachable)."""
    out = Path(tempfile.mkdtemp(prefix="singcontain-image-", dir="/tmp"))
    out.chmod(0o755)
    sif = out / "test.sif"
    subprocess.run(["bash", str(ROOT / "tools/build-test-image.sh"), str(sif)], check=True,
                   stdout=subprocess.DEVNULL)
    sif.chmod(0o644)
    yield str(sif)
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def runtime_with_conf():
    """make({key: value}) -> a bin folder holding a copy of the installed Apptainer whose apptainer.conf has
    those keys changed, as a site admin might set them. Put it first on PATH."""
    from snakemake_singcontain.runtime import detect

    made = []

    def make(changes: dict) -> str:
        runtime = detect()
        prefix = Path(runtime.binary).resolve().parent.parent
        if not runtime.conf_file or not Path(runtime.conf_file).is_relative_to(prefix):
            pytest.skip("needs a relocatable Apptainer prefix (tools/install-apptainer.sh makes one)")
        copy = Path(tempfile.mkdtemp(prefix="singcontain-apptainer-", dir="/tmp"))
        copy.chmod(0o755)
        made.append(copy)
        shutil.copytree(prefix, copy / "prefix", symlinks=True)
        conf = copy / "prefix" / Path(runtime.conf_file).relative_to(prefix)
        lines = [line for line in conf.read_text().splitlines()
                 if line.split("=")[0].strip().lower() not in changes]
        conf.write_text("\n".join(lines + [f"{key} = {value}" for key, value in changes.items()]) + "\n")
        return str(copy / "prefix" / "bin")

    yield make
    for copy in made:
        shutil.rmtree(copy, ignore_errors=True)
