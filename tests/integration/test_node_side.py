"""On the node, right before the container starts, the job is checked again: a bind source that exists on
the submitting host but not where the job runs fails that job with one clear line."""

import pytest

from support import chown_tree, owned_dir, snakemake

pytestmark = pytest.mark.apptainer

SNAKEFILE = """\
from snakemake_singcontain import contain
contain(workflow, "containment.yaml")
container: config["image"]

rule all:
    input: "conditions.txt"

rule read_conditions:
    output: "conditions.txt"
    shell: "cat /cvmfs/conditions.txt > {output}"
"""
POLICY = 'version: 1\ndefaults:\n  binds: [{src: "${CVMFS_ROOT}", dst: /cvmfs, mode: ro}]\n'


def node_workflow():
    work, site = owned_dir("singcontain-node-"), owned_dir("singcontain-node-site-")
    (work / "Snakefile").write_text(SNAKEFILE)
    (work / "containment.yaml").write_text(POLICY)
    (site / "conditions.txt").write_text("alignment=v7\n")
    chown_tree(work), chown_tree(site)
    return work, site


def test_bind_missing_on_node_fails_the_job_with_one_line(image):
    work, site = node_workflow()
    # The "node" sees another CVMFS_ROOT than the submitting host: the policy expands there again.
    submit = "env CVMFS_ROOT=/cvmfs-not-mounted-here bash"
    run = snakemake(work, "--executor", "cluster-generic", "--cluster-generic-submit-cmd", submit, "-j", "1", "--seconds-between-status-checks", "1",
                    "--config", f"image={image}", env={"CVMFS_ROOT": str(site)})
    assert run.returncode != 0
    lines = [line for line in run.output.splitlines() if "SC301" in line]
    assert lines and "bind source /cvmfs-not-mounted-here does not exist" in lines[0], run
    assert "Error in rule read_conditions" in run.output  # a normal job failure for Snakemake
    assert "Traceback" not in run.output
    assert not (work / "conditions.txt").exists()


def test_same_workflow_runs_when_the_node_has_the_bind(image):
    work, site = node_workflow()
    run = snakemake(work, "--executor", "cluster-generic", "--cluster-generic-submit-cmd", "bash", "-j", "1", "--seconds-between-status-checks", "1",
                    "--config", f"image={image}", env={"CVMFS_ROOT": str(site)})
    assert run.returncode == 0, run
    assert (work / "conditions.txt").read_text() == "alignment=v7\n"
