"""Shared fixtures: the real Apptainer, the test image, and Snakemake runs as an ordinary user.

Integration tests run Snakemake as the ordinary user `singtest` (HPC users are not root; Apptainer here
refuses root without --userns), from the same virtualenv as pytest, in work folders that user owns.
"""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
USER = os.environ.get("SINGCONTAIN_TEST_USER", "singtest")
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


# Snakemake's Slurm plugin polls sacct by default, which hangs silently without accounting (measured):
# squeue is the status command here; cluster-generic gets a squeue-based status script.
SLURM_ARGS = ["--executor", "slurm", "-j", "4", "--slurm-status-command", "squeue",
              "--slurm-init-seconds-before-status-checks", "5", "--seconds-between-status-checks", "1",
              "--default-resources", "slurm_partition=main", "slurm_account=test"]
SBATCH_ARGS = ["--executor", "cluster-generic", "-j", "4", "--seconds-between-status-checks", "1",
               "--cluster-generic-status-cmd", str(ROOT / "tools" / "slurm-status.sh")]


def _user():
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        return None


def _runtime():
    return shutil.which("apptainer") or shutil.which("singularity")


def _missing(items) -> dict:
    """For each test that needs them, what of the real environment is missing."""
    base = []
    if not _runtime():
        base.append("no apptainer on PATH (run tools/install-apptainer.sh)")
    if _user() is None:
        base.append(f"no user {USER} (useradd -m {USER})")
    if os.geteuid() != 0:
        base.append("not root (tests switch to the ordinary test user)")
    slurm_items = [item for item in items if "slurm" in item.keywords]
    slurm = []
    if slurm_items and subprocess.run(["bash", str(ROOT / "tools/slurm.sh"), "status"], capture_output=True).returncode:
        slurm.append("no Slurm running (bash tools/slurm.sh up)")
    missing = {}
    for item in items:
        needs = (base if "apptainer" in item.keywords or "slurm" in item.keywords else []) + (
            slurm if "slurm" in item.keywords else [])
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


def owned_dir(prefix: str) -> Path:
    """A fresh folder under /tmp owned by the test user (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    user = _user()
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o755)
    return path


def chown_tree(path: Path) -> None:
    user = _user()
    for p in [path, *path.rglob("*")]:
        os.lchown(p, user.pw_uid, user.pw_gid)


@pytest.fixture(scope="session")
def image() -> str:
    out = Path(tempfile.mkdtemp(prefix="singcontain-image-", dir="/tmp"))
    out.chmod(0o755)
    sif = out / "test.sif"
    subprocess.run(["bash", str(ROOT / "tools/build-test-image.sh"), str(sif)], check=True,
                   stdout=subprocess.DEVNULL)
    sif.chmod(0o644)
    return str(sif)


@dataclass
class Run:
    returncode: int
    output: str

    def __repr__(self):
        return f"exit {self.returncode}\n{self.output}"


def as_user(argv, cwd, env=None, timeout=600) -> Run:
    """Run argv as the test user with a small, explicit environment (like a login shell on a cluster)."""
    user = _user()
    base = {"HOME": user.pw_dir, "USER": USER, "LOGNAME": USER, "LANG": "C.UTF-8",
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"}
    base.update(env or {})
    done = subprocess.run(["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in base.items()), *argv],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return Run(done.returncode, done.stdout + done.stderr)


def snakemake(workdir, *args, env=None, timeout=600) -> Run:
    return as_user([SNAKEMAKE, "--sdm", "apptainer", "-c", "2", *args], cwd=workdir, env=env, timeout=timeout)


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
