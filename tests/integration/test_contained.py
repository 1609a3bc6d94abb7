"""Each job runs exactly as contained as its rule's policy says: asserted from inside the jobs, in the real
Apptainer, as an ordinary user, under the local and the cluster-generic executor."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support import SBATCH_ARGS, SLURM_ARGS, USER, chown_tree, owned_dir, snakemake

WORKFLOW = Path(__file__).parent / "workflows" / "contained"
pytestmark = [pytest.mark.apptainer, pytest.mark.snakemake_internals]

EXECUTORS = {
    "local": [],
    # A "cluster" whose submit command runs the job script right here: the job re-parses the Snakefile
    # in a fresh process, as on a compute node.
    "cluster-generic": ["--executor", "cluster-generic", "--cluster-generic-submit-cmd", "bash", "-j", "2",
                        "--seconds-between-status-checks", "1"],
    # The same workflow through a real Slurm on this machine (tools/slurm.sh).
    "slurm": SLURM_ARGS,
    "cluster-generic-sbatch": SBATCH_ARGS + ["--cluster-generic-submit-cmd", "sbatch --parsable --partition=main"],
}
SLURM = {"slurm", "cluster-generic-sbatch"}


def host_ns(kind: str) -> str:
    return os.readlink(f"/proc/self/ns/{kind}")


def read(path) -> dict:
    # surrogateescape: a listing of host processes may hold another test's non-UTF-8 command line (run in parallel)
    return dict(line.split("=", 1) for line in Path(path).read_text(errors="surrogateescape").split("\n") if "=" in line)


@pytest.fixture(scope="module", params=[pytest.param(name, marks=[pytest.mark.slurm] if name in SLURM else [])
                                        for name in EXECUTORS])
def ran(request, image):
    """One run of the whole workflow, with host-side markers the jobs must or must not see."""
    work, site = owned_dir("singcontain-wf-"), owned_dir("singcontain-site-")
    shutil.copytree(WORKFLOW, work, dirs_exist_ok=True)
    (site / "cvmfs" / "sft").mkdir(parents=True)
    (site / "cvmfs" / "sft" / "setup.sh").write_text("export SFT=1\n")
    (site / "dust").mkdir()
    chown_tree(work), chown_tree(site)
    (site / "cvmfs").chmod(0o555), (site / "cvmfs" / "sft").chmod(0o555)  # a real /cvmfs is read-only too
    home = Path(os.path.expanduser(f"~{USER}"))
    (home / "marker").touch()
    tmp_marker = Path(f"/tmp/singcontain-marker-{os.getpid()}")
    tmp_marker.touch()
    shm_marker = Path(f"/dev/shm/singcontain-marker-{os.getpid()}")
    shm_marker.touch()
    sleeper = subprocess.Popen(["sleep", "4321"])  # a host process that --pid must hide
    try:
        run = snakemake(work, *EXECUTORS[request.param], "--config", f"image={image}", f"host_home={home}",
                        env={"CVMFS_ROOT": str(site / "cvmfs"), "DUST": str(site / "dust"),
                             "ALLOWED_VAR": "yes", "SECRET_VAR": "leaked"})
    finally:
        sleeper.kill()
        tmp_marker.unlink(), shm_marker.unlink()
    assert run.returncode == 0, run
    return work, site, run, tmp_marker.name, shm_marker.name


def test_pid_namespace_hides_host_processes(ran):
    work, *_ = ran
    on, off = ((work / "results" / "pid_on.txt").read_text(errors="surrogateescape"),
               (work / "pid_off.txt").read_text(errors="surrogateescape"))
    assert read(work / "results" / "pid_on.txt")["pidns"] != host_ns("pid")
    assert "sleep 4321" not in on and len(on.splitlines()) < 10
    assert read(work / "pid_off.txt")["pidns"] == host_ns("pid")
    assert "sleep 4321" in off


def test_contain_hides_host_tmp_and_home_but_keeps_workdir(ran):
    work, _, _, tmp_marker, _ = ran
    seen = read(work / "results" / "contained.txt")
    assert tmp_marker not in seen["tmp"]
    assert seen["home"] == "hidden"
    # The workdir stays the job's working folder under --contain, readable but read-only: only results/,
    # its output's folder, is writable.
    assert seen["pwd"] == str(work) and seen["snakefile"] == "readable"
    assert seen["workdir"] == "read-only" and not (work / "planted").exists()


def test_containall_passes_only_allowed_variables(ran):
    work, *_ = ran
    # OMP_NUM_THREADS is Snakemake's per-job value (threads: 2), allowed by the policy's env.
    assert (work / "results" / "containall_env.txt").read_text().split() == ["allowed=yes", "secret=unset", "omp=2"]


def test_readonly_bind_is_readable_but_not_writable(ran):
    work, site, *_ = ran
    text = (work / "results" / "cvmfs.txt").read_text()
    assert "export SFT=1" in text and "write=refused" in text
    assert not (site / "cvmfs" / "sft" / "new").exists()


def test_writable_bind_receives_output_on_host(ran):
    _, site, *_ = ran
    assert (site / "dust" / "sim.txt").read_text() == "simulated\n"


def test_ipc_namespace_and_dev_shm(ran):
    work, _, run, _, shm_marker = ran
    contained, uncontained = read(work / "results" / "ipc_contain.txt"), read(work / "ipc_none.txt")
    assert contained["ipcns"] != host_ns("ipc") and uncontained["ipcns"] != host_ns("ipc")
    # Measured: only --contain/--containall give the container its own /dev; --ipc alone shares /dev/shm.
    assert shm_marker not in contained["shm"]
    assert shm_marker in uncontained["shm"]
    assert "SC404" in run.output  # ... which the check warns about
