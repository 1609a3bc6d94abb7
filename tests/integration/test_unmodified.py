"""A workflow you did not write, unmodified, under a policy named outside its Snakefile (SINGCONTAIN_POLICY,
or --singcontain-policy in --apptainer-args, as a profile would set it): checked before submission, and
each job contained where it runs — also in the job's own Snakemake process on a "node", which parses the
Snakefile again without any line of ours and gets the policy from the main process."""

import os
import shutil
from pathlib import Path

import pytest

from support import SBATCH_ARGS, SLURM_ARGS, SNAKEMAKE, as_user, chown_tree, owned_dir, snakemake

pytestmark = [pytest.mark.apptainer, pytest.mark.snakemake_internals]

SNAKEFILE = """\
rule all:
    input: "results/ns.txt"

rule probe:
    output: "results/ns.txt"
    container: config["image"]
    shell: "echo pid=$(readlink /proc/self/ns/pid) > {output}; cat /cvmfs/setup.sh >> {output}; touch planted || true"
"""
POLICY = "version: 1\ndefaults:\n  containment: containall\n  binds: ['${CVMFS_ROOT}:/cvmfs:ro']\n"
# Each "node" starts the job without the policy variables: it must learn the policy from the main process.
NODE = "env -u SINGCONTAIN_POLICY -u CVMFS_ROOT bash"
EXECUTORS = {
    "local": [],
    "cluster-generic": ["--executor", "cluster-generic", "--cluster-generic-submit-cmd", NODE, "-j", "1",
                        "--seconds-between-status-checks", "1"],
    "slurm": SLURM_ARGS,
    "cluster-generic-sbatch": SBATCH_ARGS + ["--cluster-generic-submit-cmd", "sbatch --parsable --partition=main"],
}
SLURM = {"slurm", "cluster-generic-sbatch"}


@pytest.fixture
def unmodified():
    work, site = owned_dir("singcontain-unmod-"), owned_dir("singcontain-unmod-site-")
    (work / "Snakefile").write_text(SNAKEFILE)
    (work / "policy.yaml").write_text(POLICY)
    (site / "setup.sh").write_text("release=42\n")
    chown_tree(work), chown_tree(site)
    yield work, site
    shutil.rmtree(work, ignore_errors=True), shutil.rmtree(site, ignore_errors=True)


@pytest.mark.parametrize("executor", [pytest.param(e, marks=[pytest.mark.slurm] if e in SLURM else [])
                                      for e in EXECUTORS])
def test_an_unmodified_workflow_runs_contained_under_a_named_policy(unmodified, image, executor):
    work, site = unmodified
    run = snakemake(work, *EXECUTORS[executor], "--config", f"image={image}",
                    env={"SINGCONTAIN_POLICY": "policy.yaml", "CVMFS_ROOT": str(site)})
    assert run.returncode == 0, run
    assert "snakemake-singcontain: 1 job of 1 rule checked against" in run.output, run
    seen = (work / "results/ns.txt").read_text()
    assert f"pid={os.readlink('/proc/self/ns/pid')}" not in seen and "release=42" in seen, seen
    assert not (work / "planted").exists()  # the workdir was read-only in the job


def test_the_policy_from_a_profile_setting(unmodified, image):
    """`apptainer-args: --singcontain-policy=FILE` in a profile: the same, with no variable at all."""
    work, site = unmodified
    (work / "profile").mkdir()
    (work / "profile/config.yaml").write_text(f'apptainer-args: "--singcontain-policy={work}/policy.yaml"\n')
    (work / "policy.yaml").write_text(POLICY.replace("${CVMFS_ROOT}", str(site)))
    chown_tree(work)
    run = snakemake(work, "--profile", "profile", "--config", f"image={image}")
    assert run.returncode == 0, run
    assert "checked against" in run.output and "release=42" in (work / "results/ns.txt").read_text(), run


def test_an_unmodified_workflow_is_refused_before_submission(unmodified, image):
    work, _ = unmodified
    run = snakemake(work, *EXECUTORS["cluster-generic"], "--config", f"image={image}",
                    env={"SINGCONTAIN_POLICY": "policy.yaml", "CVMFS_ROOT": "/nonexistent/cvmfs"})
    assert run.returncode != 0 and "error SC301" in run.output and "nothing was submitted" in run.output, run
    assert not (work / "results").exists()


def test_singcontain_check_takes_the_policy_option(unmodified, image):
    work, site = unmodified
    run = as_user([str(Path(SNAKEMAKE).with_name("singcontain")), "check", "--policy", "policy.yaml", "--sdm",
                   "apptainer", "--config", f"image={image}"], cwd=work, env={"CVMFS_ROOT": str(site)})
    assert run.returncode == 0 and "1 job of 1 rule checked: no findings." in run.output, run


API_DRY_RUN = """
import gc
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import (ConfigSettings, DeploymentMethod, DeploymentSettings, OutputSettings,
                                      ResourceSettings)
with SnakemakeApi(OutputSettings()) as api:
    workflow = api.workflow(ResourceSettings(cores=1), ConfigSettings(config={"image": IMAGE}),
                            deployment_settings=DeploymentSettings(deployment_method={DeploymentMethod.APPTAINER}),
                            snakefile=Path("Snakefile"))
    workflow.dag().execute_workflow(executor="dryrun")
print("frozen after the dry run:", gc.get_freeze_count())
"""


def test_a_dry_run_through_snakemakes_api_leaves_nothing_frozen(unmodified, image):
    """The preflight keeps Snakemake's objects frozen for the garbage collector until a dry run's end; a
    process that goes on after it (Snakemake's Python API) collects them again."""
    work, site = unmodified
    run = as_user([str(Path(SNAKEMAKE).with_name("python")), "-c", API_DRY_RUN.replace("IMAGE", repr(image))],
                  cwd=work, env={"SINGCONTAIN_POLICY": "policy.yaml", "CVMFS_ROOT": str(site)})
    assert run.returncode == 0, run
    assert "snakemake-singcontain: 1 job of 1 rule checked against" in run.output, run
    assert "frozen after the dry run: 0" in run.output, run
