"""On the node, right before the container starts, the job is checked again with the settings checked on the
submitting host: a bind source that exists there but not where the job runs fails that job with one clear
line, and the node's own environment does not change what is bound."""

from pathlib import Path

import pytest

from support import chown_tree, owned_dir, read_conditions, snakemake

pytestmark = [pytest.mark.apptainer, pytest.mark.snakemake_internals]

POLICY = 'version: 1\ndefaults:\n  binds: [{src: "${CVMFS_ROOT}", dst: /cvmfs, mode: ro}]\n'


def node_workflow():
    work, site = owned_dir("singcontain-node-"), owned_dir("singcontain-node-site-")
    (work / "Snakefile").write_text(read_conditions())
    (work / "containment.yaml").write_text(POLICY)
    (site / "conditions.txt").write_text("alignment=v7\n")
    chown_tree(work), chown_tree(site)
    return work, site


def cluster(submit: str) -> list[str]:
    return ["--executor", "cluster-generic", "--cluster-generic-submit-cmd", submit, "-j", "1",
            "--seconds-between-status-checks", "1"]


def test_bind_missing_on_node_fails_the_job_with_one_line(image):
    work, site = node_workflow()
    # The bind source exists where Snakemake checks and submits; the "node" does not have it.
    moved = Path(f"{site}.elsewhere")
    try:
        run = snakemake(work, *cluster(f"mv {site} {moved} && bash"), "--config", f"image={image}",
                        env={"CVMFS_ROOT": str(site)})
    finally:
        if moved.exists():
            moved.rename(site)
    assert run.returncode != 0
    lines = [line for line in run.output.splitlines() if "SC301" in line]
    assert lines and f"bind source {site} does not exist" in lines[0], run
    assert "Error in rule read_conditions" in run.output  # a normal job failure for Snakemake
    assert "Traceback" not in run.output
    assert not (work / "results" / "conditions.txt").exists()


def test_node_environment_does_not_change_the_checked_binds(image):
    """Also the control of the test above: the same workflow runs when the node has the bind source."""
    work, site = node_workflow()
    # The "node" sees another CVMFS_ROOT than the submitting host: the job binds what was checked.
    run = snakemake(work, *cluster("env CVMFS_ROOT=/cvmfs-not-mounted-here bash"), "--config", f"image={image}",
                    env={"CVMFS_ROOT": str(site)})
    assert run.returncode == 0, run
    assert (work / "results" / "conditions.txt").read_text() == "alignment=v7\n"
