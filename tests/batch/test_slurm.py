"""Per-rule containment through a real Slurm (started by tools/slurm.sh): refused jobs never reach sbatch,
and a bind missing on the node fails that job with one line in its log."""

import shutil
import subprocess

import pytest

from support import SBATCH_ARGS, SLURM_ARGS, chown_tree, owned_dir, read_conditions, snakemake

pytestmark = [pytest.mark.apptainer, pytest.mark.slurm]

EXECUTORS = {"slurm": SLURM_ARGS, "cluster-generic-sbatch": SBATCH_ARGS}


def slurm_jobs(work) -> set[str]:
    """Every job slurmctld knows that runs in the folder work, finished ones included (kept for MinJobAge = 300 s).
    Only those: other tests submit their own jobs to the same Slurm meanwhile."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%Z"], capture_output=True, text=True, check=True).stdout
    return {job for job, _, folder in (line.partition("|") for line in out.splitlines()) if folder == str(work)}


def workflow(policy: str, snakefile=read_conditions()):
    work, site = owned_dir("singcontain-batch-"), owned_dir("singcontain-batch-site-")
    (work / "Snakefile").write_text(snakefile)
    (work / "containment.yaml").write_text(policy)
    (site / "conditions.txt").write_text("alignment=v7\n")
    chown_tree(work), chown_tree(site)
    return work, site


def submit_args(executor: str) -> list[str]:
    if executor == "slurm":
        return SLURM_ARGS
    return SBATCH_ARGS + ["--cluster-generic-submit-cmd", "sbatch --parsable --partition=main -o slurm-%j.out"]


REFUSALS = {
    "output under a read-only bind": ('version: 1\ndefaults:\n  binds: ["{site}:ro"]\n', "{site}/results/out.txt", "SC402"),
    "missing required bind source": ("version: 1\ndefaults:\n  binds: ['/nonexistent/sft:/cvmfs:ro']\n",
                                     "results/conditions.txt", "SC301"),
    "namespace the runtime refuses": ("version: 1\ndefaults:\n  namespaces: [pid]\n", "results/conditions.txt", "SC201"),
}


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("case", REFUSALS)
def test_refused_workflow_submits_nothing(executor, case, image, runtime_with_conf):
    policy, output, code = REFUSALS[case]
    work, site = workflow("")
    (work / "containment.yaml").write_text(policy.format(site=site))
    (work / "Snakefile").write_text(read_conditions(output.format(site=site)))
    env = {}
    if code == "SC201":
        env["PATH"] = f"{runtime_with_conf({'allow pid ns': 'no'})}:/usr/local/bin:/usr/bin:/bin"
    before = slurm_jobs(work)
    run = snakemake(work, *submit_args(executor), "--config", f"image={image}", env=env)
    assert run.returncode != 0 and code in run.output and "nothing was submitted" in run.output, run
    assert slurm_jobs(work) == before  # zero jobs reached Slurm


# The bind source exists when Snakemake checks and submits; a first Slurm job moves it away, so it is not there
# when the second job starts on the node (the node binds what was checked, never the policy expanded again).
NODE_SNAKEFILE = """\
from snakemake_singcontain import contain
contain(workflow, "containment.yaml")
container: config["image"]

rule all:
    input: "results/conditions.txt"

rule move_site:
    output: "moved.txt"
    shell: "mv {config[site]} {config[site]}.elsewhere && touch {output}"

rule read_conditions:
    input: "moved.txt"
    output: "results/conditions.txt"
    shell: "cat /cvmfs/conditions.txt > {output}"
"""
NODE_POLICY = ('version: 1\ndefaults:\n  binds: [{src: "${CVMFS_ROOT}", dst: /cvmfs, mode: ro}]\n'
               'rules:\n  move_site: {containment: none}\n')


@pytest.mark.parametrize("executor", EXECUTORS)
def test_bind_missing_on_node_fails_the_job_with_one_line(executor, image):
    work, site = workflow(NODE_POLICY, snakefile=NODE_SNAKEFILE)
    try:
        run = snakemake(work, *submit_args(executor), "--config", f"image={image}", f"site={site}",
                        env={"CVMFS_ROOT": str(site)})
    finally:
        shutil.rmtree(f"{site}.elsewhere", ignore_errors=True)  # where the first job moved it
    assert (work / "moved.txt").exists() and not site.exists(), run
    assert run.returncode != 0 and "Error in rule read_conditions" in run.output, run
    logs = [p for p in work.rglob("*") if p.is_file() and ("slurm_logs" in str(p) or p.name.startswith("slurm-"))]
    text = "\n".join(p.read_text() for p in logs)
    lines = [line for line in text.splitlines() if "SC301" in line]
    assert len(lines) == 1 and f"bind source {site} does not exist" in lines[0], text
    assert not (work / "results" / "conditions.txt").exists()
