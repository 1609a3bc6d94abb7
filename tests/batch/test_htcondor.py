"""Per-rule containment through a real HTCondor (the personal pool of tools/htcondor.sh) and Snakemake's
htcondor executor, as an ordinary user: each rule's containment seen from inside its job, refused policies
submit no job, and a bind missing on the execute point fails that job with one line."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from support import as_user, chown_tree, has_batch_executor, read_conditions, snakemake, user_entry

pytestmark = [pytest.mark.apptainer, pytest.mark.htcondor]

PREFIX = Path(os.environ.get("SINGCONTAIN_HTCONDOR_PREFIX", "/opt/singcontain/htcondor"))
CONDOR_ENV = {"CONDOR_CONFIG": str(PREFIX / "etc/condor/condor_config")}
# HTCondor hides the host's /tmp and /var/tmp from every job (MOUNT_UNDER_SCRATCH): work folders, site
# stand-ins and the image live elsewhere, as on a shared file system.
WORK_BASE = Path(os.environ.get("SINGCONTAIN_HTCONDOR_WORK", "/srv/singcontain-htcondor-tests"))
WORKFLOW = Path(__file__).parent / "workflows" / "htcondor"
# A vanilla job gets no PATH (no `apptainer`) and no USER, nor the variables the Snakefile reads (DUST: it
# is parsed again on the execute point) or a rule's env lets through (SECRET_VAR too, so that containall
# has something to keep out). The plugin's `--envvars` is broken in 0.3.0; getenv takes a list of names.
GETENV = "USER, PATH, LANG, DUST, ALLOWED_VAR, SECRET_VAR"
HTCONDOR_ARGS = ["--executor", "htcondor", "-j", "8", "--seconds-between-status-checks", "1",
                 "--default-resources", f"getenv='{GETENV}'"]


@pytest.fixture(scope="module", autouse=True)
def plugin():
    """The pool itself is gated by the htcondor marker (tests/conftest.py); the executor plugin here."""
    if not has_batch_executor("htcondor"):
        # In CI the environment is set up by tools/test.sh: a missing piece is a failure, never a skip.
        (pytest.fail if os.environ.get("CI") else pytest.skip)("snakemake-executor-plugin-htcondor is not "
                                                              "installed (tools/venv.sh 9)")


@pytest.fixture(scope="module")
def base():
    WORK_BASE.mkdir(mode=0o755, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="run-", dir=WORK_BASE))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def job_image(image, base):
    """The session's test image, copied where jobs can see it (it is built under /tmp)."""
    return str(Path(shutil.copy(image, base / "test.sif")))


def owned(base: Path, name: str) -> Path:
    path = base / name
    path.mkdir()
    os.chown(path, user_entry().pw_uid, user_entry().pw_gid)
    return path


def condor_jobs(work: Path) -> set[str]:
    """Every job the pool's schedd knows that runs in the folder work: queued, running and finished (history).
    Only those: other tests may submit their own jobs to the same pool meanwhile."""
    ids = set()
    for argv in (["condor_q", "-allusers"], ["condor_history"]):
        run = as_user([str(PREFIX / "usr/bin" / argv[0]), *argv[1:], "-af", "GlobalJobId", "Iwd"], cwd="/",
                      env=CONDOR_ENV)
        assert run.returncode == 0, run
        ids |= {job for job, _, folder in (line.partition(" ") for line in run.output.splitlines())
                if folder == str(work)}
    return ids


def seen(work: Path, rule: str) -> dict:
    """What a rule's job wrote from inside its container: its key=value lines, and the whole text."""
    text = (work / "results" / f"{rule}.txt").read_text()
    return {**dict(line.split("=", 1) for line in text.splitlines() if "=" in line), "text": text}


@pytest.fixture(scope="module")
def ran(base, job_image):
    """One run of the workflow under HTCondor, with host-side markers the jobs must or must not see."""
    work, site = owned(base, "wf"), owned(base, "site")
    shutil.copytree(WORKFLOW, work, dirs_exist_ok=True)
    (site / "dust").mkdir()
    chown_tree(work), chown_tree(site)
    host_marker = Path(f"/tmp/singcontain-marker-{os.getpid()}")
    host_marker.touch()
    sleeper = subprocess.Popen(["sleep", "4321"])  # a host process that --pid must hide
    try:
        run = snakemake(work, *HTCONDOR_ARGS, "--config", f"image={job_image}", f"job_marker=job-marker-{os.getpid()}",
                        env={**CONDOR_ENV, "DUST": str(site / "dust"), "ALLOWED_VAR": "yes", "SECRET_VAR": "leaked"})
    finally:
        sleeper.kill()
        host_marker.unlink()
    assert run.returncode == 0, run
    return work, site, host_marker.name, f"job-marker-{os.getpid()}"


def test_jobs_ran_as_htcondor_jobs(ran):
    work, *_ = ran
    logs = {p.parent.name for p in (work / ".snakemake" / "htcondor").glob("*/*.err")}
    assert logs == {"contained", "uncontained", "containall_env", "simulate"}


def test_pid_namespace_hides_host_processes(ran):
    work, *_ = ran
    host = os.readlink("/proc/self/ns/pid")
    contained, uncontained = seen(work, "contained"), seen(work, "uncontained")
    assert contained["pidns"] != host and "sleep 4321" not in contained["text"]
    assert uncontained["pidns"] == host and "sleep 4321" in uncontained["text"]  # the control


def test_contain_hides_the_jobs_tmp(ran):
    work, _, host_marker, job_marker = ran
    assert job_marker not in seen(work, "contained")["tmp"]
    # The control sees the job's own /tmp; HTCondor already hides the host's /tmp from every job.
    assert job_marker in seen(work, "uncontained")["tmp"]
    assert host_marker not in seen(work, "uncontained")["tmp"]


def test_containall_cleans_the_environment(ran):
    work, *_ = ran
    # SECRET_VAR reached the job (getenv) and containall kept it out; ALLOWED_VAR is in the rule's env.
    assert seen(work, "containall_env")["text"].split() == ["allowed=yes", "secret=unset"]


def test_writable_bind_receives_output_on_host(ran):
    _, site, *_ = ran
    assert (site / "dust" / "sim.txt").read_text() == "simulated\n"


def test_login_shell_reaches_the_pool():
    # As on a real submit host: an ordinary user's login shell finds condor_q and the pool.
    run = subprocess.run(["runuser", "-l", user_entry().pw_name, "-c", "condor_q -totals"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "Total for all users" in run.stdout, run


REFUSALS = {
    "output under a read-only bind": ('version: 1\ndefaults:\n  binds: ["{site}:ro"]\n', "{site}/results/out.txt", "SC402"),
    "missing required bind source": ("version: 1\ndefaults:\n  binds: ['/nonexistent/sft:/cvmfs:ro']\n", "results/conditions.txt", "SC301"),
    # HTCondor gives each job its own empty /tmp (MOUNT_UNDER_SCRATCH): a writable bind there would not
    # receive the job's output on the submit host.
    "writable bind under the node-local /tmp": ("version: 1\ndefaults:\n  binds: ['/tmp:/scratch:rw']\n",
                                                "results/conditions.txt", "SC213"),
}


def workflow(base: Path, name: str, policy: str, output="results/conditions.txt"):
    work, site = owned(base, name), owned(base, name + "-site")
    (work / "Snakefile").write_text(read_conditions(output.replace("{site}", str(site))))
    (work / "containment.yaml").write_text(policy.replace("{site}", str(site)))
    (site / "conditions.txt").write_text("alignment=v7\n")
    chown_tree(work), chown_tree(site)
    return work, site


@pytest.mark.parametrize("case", REFUSALS)
def test_refused_workflow_submits_no_job(case, base, job_image):
    policy, output, code = REFUSALS[case]
    work, site = workflow(base, f"refused-{code}", policy, output)
    before = condor_jobs(work)
    run = snakemake(work, *HTCONDOR_ARGS, "--config", f"image={job_image}", env=CONDOR_ENV)
    assert run.returncode != 0 and code in run.output and "nothing was submitted" in run.output, run
    assert condor_jobs(work) == before  # zero jobs reached HTCondor


def submit_only() -> Path:
    """A folder this host has and the pool's execute point lacks: tools/htcondor.sh adds one to the pool's
    MOUNT_UNDER_SCRATCH, so every job sees it empty, as a node without a submit host's mount would."""
    run = as_user([str(PREFIX / "usr/bin/condor_config_val"), "MOUNT_UNDER_SCRATCH"], cwd="/", env=CONDOR_ENV)
    hidden = [p.strip() for p in run.output.split(",") if p.strip() not in ("", "/tmp", "/var/tmp")]
    assert run.returncode == 0 and hidden, f"the pool hides no folder of its own from jobs: {run}"
    return Path(hidden[0])


@pytest.fixture(scope="module")
def node_refusal(base, job_image):
    # The policy is checked (and sealed) on the submit host, where the bind source exists; on the execute
    # point it does not, and the job is refused there.
    site = Path(tempfile.mkdtemp(prefix="site-", dir=submit_only()))
    try:
        policy = 'version: 1\ndefaults:\n  binds: ["{site}:/cvmfs:ro"]\n'
        work, _ = workflow(base, "node", policy.replace("{site}", str(site)))
        (site / "conditions.txt").write_text("alignment=v7\n")
        chown_tree(site)
        run = snakemake(work, *HTCONDOR_ARGS, "--config", f"image={job_image}", env=CONDOR_ENV)
    finally:
        shutil.rmtree(site)
    assert run.returncode != 0 and "Error in rule read_conditions" in run.output, run
    assert not (work / "results" / "conditions.txt").exists()
    return work, site, run


def test_bind_missing_on_node_fails_the_job_with_one_line_in_its_log(node_refusal):
    work, site, _ = node_refusal
    logs = list((work / ".snakemake" / "htcondor" / "read_conditions").glob("*.err"))
    lines = [line for p in logs for line in p.read_text().splitlines() if "SC301" in line]
    assert len(lines) == 1, lines
    assert "read_conditions" in lines[0] and f"refused on {os.uname().nodename}" in lines[0], lines
    assert f"bind source {site} does not exist" in lines[0], lines


def test_bind_missing_on_node_reaches_the_terminal_in_one_line(node_refusal):
    work, site, run = node_refusal
    lines = [line for line in run.output.splitlines() if "SC301" in line]
    assert len(lines) == 1, run
    log = next((work / ".snakemake" / "htcondor" / "read_conditions").glob("*.err"))
    for part in ("read_conditions", os.uname().nodename, f"bind source {site} does not exist", str(log)):
        assert part in lines[0], run


def test_an_unmodified_workflow_runs_contained_on_the_execute_point(base, job_image):
    """No contain() in the Snakefile, the policy named only on the submit host (SINGCONTAIN_POLICY, which the
    job's getenv does not pass): the job's own Snakemake gets the policy from the main process."""
    work, site = workflow(base, "unmodified", 'version: 1\ndefaults:\n  containment: containall\n'
                          '  binds: ["{site}:/cvmfs:ro"]\n')
    (work / "Snakefile").write_text(
        'container: config["image"]\n\nrule all:\n    input: "results/seen.txt"\n\n'
        'rule probe:\n    output: "results/seen.txt"\n'
        '    shell: "readlink /proc/self/ns/pid > {output}; cat /cvmfs/conditions.txt >> {output}"\n')
    chown_tree(work)
    run = snakemake(work, *HTCONDOR_ARGS, "--config", f"image={job_image}",
                    env={**CONDOR_ENV, "SINGCONTAIN_POLICY": str(work / "containment.yaml")})
    assert run.returncode == 0 and "checked against" in run.output, run
    pid_ns, conditions = (work / "results/seen.txt").read_text().splitlines()
    assert pid_ns != os.readlink("/proc/self/ns/pid") and conditions == "alignment=v7", (pid_ns, conditions)
