"""Helpers for tests that run the real thing: Snakemake as the ordinary test user, in the real Apptainer.

Integration tests run Snakemake as the ordinary user `singtest` (HPC users are not root; Apptainer here
refuses root without --userns), from the same virtualenv as pytest, in work folders that user owns.
(A module of its own, not conftest.py: tests/unit has a conftest too, and `from conftest import` would
then depend on import order.)
"""

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USER = os.environ.get("SINGCONTAIN_TEST_USER", "singtest")
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# Snakemake imports every executor plugin on its path at each start; the Slurm and HTCondor ones bring pandas
# and HTCondor's bindings (half of Snakemake's start-up). tools/venv.sh keeps them in a folder of their own,
# which a run that submits to one of those batch systems gets on its PYTHONPATH (as_user), and only such a run.
BATCH_EXECUTORS = Path(sys.executable).parent.parent / "batch-executors"
BATCH_ENV = {"PYTHONPATH": str(BATCH_EXECUTORS)}


def submits_to_batch(argv) -> bool:
    """Whether a command line names the slurm or htcondor executor."""
    words = [str(w) for w in argv]
    return any(a in ("--executor", "-e") and b in ("slurm", "htcondor") for a, b in zip(words, words[1:])) or \
        any(w in ("--executor=slurm", "--executor=htcondor") for w in words)


def has_batch_executor(name: str) -> bool:
    return (BATCH_EXECUTORS / f"snakemake_executor_plugin_{name}").is_dir()


# Snakemake's Slurm plugin polls sacct by default, which hangs silently without accounting (measured):
# squeue is the status command here; cluster-generic gets a squeue-based status script. The plugin waits 10 s
# longer before each poll that finds no job done, and the init seconds again after one that does: 1 s there
# lets it see each next job end after ~1, 12 or 33 s instead of ~5, 20 or 45 s.
SLURM_ARGS = ["--executor", "slurm", "-j", "4", "--slurm-status-command", "squeue",
              "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
              "--default-resources", "slurm_partition=main", "slurm_account=test"]
SBATCH_ARGS = ["--executor", "cluster-generic", "-j", "4", "--seconds-between-status-checks", "1",
               "--cluster-generic-status-cmd", str(ROOT / "tools" / "slurm-status.sh")]


# The workflow of the node-side and batch tests: contained by its containment.yaml, one job that reads the site's
# conditions through the /cvmfs bind the policy names and writes them to OUTPUT.
READ_CONDITIONS = """\
from snakemake_singcontain import contain
contain(workflow, "containment.yaml")
container: config["image"]

rule all:
    input: "OUTPUT"

rule read_conditions:
    output: "OUTPUT"
    shell: "cat /cvmfs/conditions.txt > {output}"
"""


def read_conditions(output: str = "results/conditions.txt") -> str:
    """READ_CONDITIONS writing to output."""
    return READ_CONDITIONS.replace("OUTPUT", output)


def user_entry():
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        return None


def runtime_binary():
    return shutil.which("apptainer") or shutil.which("singularity")


OWNED_DIRS: list[Path] = []  # made by owned_dir() in this process; removed at its end if no test failed (conftest)


def owned_dir(prefix: str) -> Path:
    """A fresh folder under /tmp owned by the test user (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    OWNED_DIRS.append(path)
    user = user_entry()
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o755)
    return path


def chown_tree(path: Path) -> None:
    user = user_entry()
    for p in [path, *path.rglob("*")]:
        os.lchown(p, user.pw_uid, user.pw_gid)


@dataclass
class Run:
    returncode: int
    output: str

    def __repr__(self):
        return f"exit {self.returncode}\n{self.output}"


def as_user(argv, cwd, env=None, timeout=600) -> Run:
    """Run argv as the test user with a small, explicit environment (like a login shell on a cluster)."""
    user = user_entry()
    base = {"HOME": user.pw_dir, "USER": USER, "LOGNAME": USER, "LANG": "C.UTF-8",
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"}
    base.update(BATCH_ENV if submits_to_batch(argv) else {})
    base.update(env or {})
    done = subprocess.run(["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in base.items()), *argv],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return Run(done.returncode, done.stdout + done.stderr)


def snakemake(workdir, *args, env=None, timeout=600) -> Run:
    return as_user([SNAKEMAKE, "--sdm", "apptainer", "-c", "2", *args], cwd=workdir, env=env, timeout=timeout)


def no_traceback(run) -> None:
    """A user error is one message: no Python frames, no logging failure. Snakemake 8 prints its own frames for
    every job whose process (a shadow or group job's subprocess) failed, ending in SpawnedJobError: those are
    Snakemake's report of the failed job, whatever failed it, and hold no frame of this plugin."""
    spawned = re.compile(r"Traceback \(most recent call last\):\n(?:.*\n)*?\S*SpawnedJobError\n")
    assert not any("snakemake_singcontain" in block for block in spawned.findall(run.output)), run
    output = spawned.sub("", run.output)
    assert "Traceback" not in output and 'File "' not in output and "Logging error" not in output, run


def parallel_cases(make_cases):
    """For a module fixture: make_cases(made) -> {name: make}, each making its own copy (listed in `made`) and
    running it; all run at once, three at a time (a Snakemake start waits on Apptainer and the disk part of the
    time). Yields name -> (copy, Run); a case that could not be made raises its error in the test that reads
    it. The copies are removed afterwards."""
    made = []
    with ThreadPoolExecutor(3) as pool:
        futures = {name: pool.submit(make) for name, make in make_cases(made).items()}
    yield lambda name: futures[name].result()
    for path in made:
        shutil.rmtree(path, ignore_errors=True)
