"""Escape attempts inside the workdir, in the real Apptainer, as an ordinary user: a contained job writes only
the folders of its own outputs and logs, every job runs exactly the policy that was checked, and Snakemake's
own host-side actions on a job's outputs do not follow what the job planted there.

Each attempt is judged on the host (did the write land?) and, for the workdir, by the error the job saw
(EROFS). Each has a control: the same jobs uncontained (or the host effect without the plugin), which must
show the escape, so that a probe that cannot see one proves nothing.
"""

import os
import shutil
from pathlib import Path

import pytest

from support import chown_tree, owned_dir, snakemake, user_entry

WORKFLOWS = Path(__file__).parent / "workflows" / "escapes_workdir"
pytestmark = [pytest.mark.apptainer, pytest.mark.snakemake_internals]

EROFS = "Read-only file system"
REFUSED = "the containment policy failed its checks; nothing was submitted."
# cluster-generic with `bash` as the submit command: each job script runs at once, as on a node that shares
# the workdir (a Snakemake of its own parses the Snakefile, the policy and the configfile again).
CLUSTER = ["--executor", "cluster-generic", "--cluster-generic-submit-cmd", "bash", "-j", "1",
           "--seconds-between-status-checks", "1"]
WORKDIR_ATTEMPTS = ("append_policy", "new_file_beside_snakefile", "overwrite_input_same_folder",
                    "overwrite_input_other_folder", "write_dot_snakemake")


def copy_workflow(name: str) -> tuple[Path, Path]:
    """(parent, workdir): the workflow under a folder of its own, so '..' from the workdir lands in ours."""
    parent = owned_dir("singcontain-escwd-")
    work = parent / "wf"
    shutil.copytree(WORKFLOWS / name, work)
    chown_tree(parent)
    return parent, work


def records(path: Path) -> dict:
    return dict(line.partition("=")[::2] for line in path.read_text().splitlines())


def apptainer_warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.lstrip().startswith("WARNING:")]


def probe_run(image: str, policy: str) -> dict:
    run_name = policy.removesuffix(".yaml")
    parent, work = copy_workflow("probes")
    try:
        policy_text = (work / "containment.yaml").read_text()
        run = snakemake(work, "--config", f"image={image}", f"policy={policy}", f"run={run_name}")
        assert run.returncode == 0, run
        seen = records(work / "results/a/probe.txt") | records(work / "results/out/d/probe.txt")
        landed = {  # judged on the host
            "append_policy": (work / "containment.yaml").read_text() != policy_text,
            "new_file_beside_snakefile": (work / f"planted-{run_name}.smk").exists(),
            "overwrite_input_same_folder": (work / "results/a/made.txt").read_text() != "original\n",
            "overwrite_input_other_folder": (work / "inter/other.txt").read_text() != "original\n",
            "write_dot_snakemake": (work / ".snakemake" / f"planted-{run_name}").exists(),
            "write_beside_directory_output": (work / "results" / "out" / f"sibling-{run_name}").exists(),
        }
        return {"seen": seen, "landed": landed, "output": run.output}
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def probes(image):
    return {policy: probe_run(image, policy) for policy in ("containment.yaml", "off")}


def test_workdir_is_read_only_to_a_contained_job(probes):
    contained, control = probes["containment.yaml"], probes["off"]
    escaped = [name for name in WORKDIR_ATTEMPTS if contained["landed"][name]]
    assert not escaped, f"a containall job wrote {escaped}\n{contained['seen']}"
    not_erofs = {name: contained["seen"].get(f"{name}_error") for name in WORKDIR_ATTEMPTS
                 if EROFS not in contained["seen"].get(f"{name}_error", "")}
    assert not not_erofs, f"stopped, but not by a read-only workdir: {not_erofs}"
    assert all(control["landed"][name] for name in WORKDIR_ATTEMPTS), f"control did not see: {control['landed']}"


def test_directory_output_binds_itself_not_its_parent(probes):
    contained, control = probes["containment.yaml"], probes["off"]
    assert not contained["landed"]["write_beside_directory_output"], contained["seen"]
    assert control["landed"]["write_beside_directory_output"], control["seen"]


def test_no_apptainer_warning_for_shell_and_script_rules(probes):
    output = probes["containment.yaml"]["output"]
    assert "Finished" in output and "shell_ok" in output and "script_ok" in output
    assert not apptainer_warnings(output), "\n".join(apptainer_warnings(output))


# Refused before submission: an output that a wildcard value (from the config, or from a checkpoint's output)
# leads out of the workdir through '..', an output in .snakemake, a policy that is not a regular file.
REFUSAL_SNAKEFILE = """\
from snakemake_singcontain import contain
if config["policy"] != "off":
    contain(workflow, config["policy"])
container: config["image"]

rule all:
    input: expand("results/{sample}.txt", sample=config["samples"])

rule sample:
    output: "results/{sample}.txt"
    shell: "echo made > {output}"
"""
STATE_SNAKEFILE = REFUSAL_SNAKEFILE.replace('"results/{sample}.txt"', '".snakemake/out/{sample}.txt"')
# The sample names come from a checkpoint's output, data that a contained job wrote: the jobs they add to the
# DAG must be checked before they are submitted too.
CHECKPOINT_SNAKEFILE = REFUSAL_SNAKEFILE.replace(
    'input: expand("results/{sample}.txt", sample=config["samples"])',
    'input: lambda wc: expand("results/{sample}.txt", sample=read(checkpoints.listing.get().output[0]))\n\n'
    'def read(path):\n'
    '    return open(path).read().split()\n\n'
    'checkpoint listing:\n'
    '    output: "listing/samples.txt"\n'
    '    shell: "echo ok ../../outside > {output}"')
CONTAINALL = "version: 1\ndefaults:\n  containment: containall\n"


def refusal_workflow(snakefile: str) -> tuple[Path, Path]:
    parent = owned_dir("singcontain-escwd-")
    work = parent / "wf"
    work.mkdir()
    (work / "Snakefile").write_text(snakefile)
    (work / "containment.yaml").write_text(CONTAINALL)
    chown_tree(parent)
    return parent, work


def assert_refused(run, *needles):
    assert run.returncode != 0 and REFUSED in run.output, run
    for needle in needles:
        assert needle in run.output, run
    assert "Traceback" not in run.output, run


def test_output_leaving_the_workdir_through_dotdot_is_refused(image):
    samples = 'samples=["ok","../../outside"]'  # a sample name from data: results/../../outside.txt
    parent, work = refusal_workflow(REFUSAL_SNAKEFILE)
    try:
        run = snakemake(work, "--config", f"image={image}", "policy=containment.yaml", samples)
        assert not (parent / "outside.txt").exists(), f"the job wrote outside the workdir\n{run}"
        assert_refused(run, "error SC407 rule sample", "outside.txt")
        assert not (work / "results").exists()
        # Control: without the plugin the job writes beside the workdir, where the probe looks.
        control = snakemake(work, "--config", f"image={image}", "policy=off", samples)
        assert control.returncode == 0 and (parent / "outside.txt").exists(), control
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_output_from_a_checkpoint_leaving_the_workdir_is_refused(image):
    parent, work = refusal_workflow(CHECKPOINT_SNAKEFILE)
    try:
        run = snakemake(work, "--config", f"image={image}", "policy=containment.yaml")
        assert not (parent / "outside.txt").exists(), f"the job wrote outside the workdir\n{run}"
        assert run.returncode != 0 and "SC407" in run.output and "outside.txt" in run.output, run
        assert "Traceback" not in run.output, run
        # Control: without the plugin the job writes beside the workdir.
        control = snakemake(work, "--config", f"image={image}", "policy=off")
        assert control.returncode == 0 and (parent / "outside.txt").exists(), control
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero"])
def test_policy_that_is_not_a_regular_file_is_refused_without_hanging(image, kind):
    parent, work = refusal_workflow(REFUSAL_SNAKEFILE)
    policy = work / "containment.yaml"
    policy.unlink()
    os.mkfifo(policy) if kind == "fifo" else policy.symlink_to("/dev/zero")
    chown_tree(parent)
    try:
        run = snakemake(work, "--config", f"image={image}", "policy=containment.yaml", 'samples=["a"]', timeout=60)
        assert run.returncode != 0 and "containment.yaml" in run.output, run
        assert "Traceback" not in run.output and not (work / "results").exists(), run
    finally:
        if kind == "fifo":  # a Snakemake left blocked opening the fifo (it timed out) gets an end of file
            try:
                os.close(os.open(policy, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader: nothing is blocked
                pass
        shutil.rmtree(parent, ignore_errors=True)


def test_output_in_snakemakes_state_folder_is_refused_with_the_fix(image):
    parent, work = refusal_workflow(STATE_SNAKEFILE)
    try:
        run = snakemake(work, "--config", f"image={image}", "policy=containment.yaml", 'samples=["a"]')
        assert_refused(run, "error SC406 rule sample", ".snakemake/out/a.txt", "fix:")
        assert not (work / ".snakemake" / "out" / "a.txt").exists()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


# The node runs what was checked: job 1 (workdir: rw) rewrites the policy or the configfile, job 2 starts on
# the "node" afterwards and must be refused there, with one line naming the changed file.
class Secret:
    """A 600-mode file in the test user's home, which only a weakened job 2 could read."""

    def __init__(self):
        user = user_entry()
        self.text = f"singcontain-node-secret-{os.getpid()}"
        self.path = Path(user.pw_dir) / f".singcontain-node-secret-{os.getpid()}"
        self.path.write_text(self.text + "\n")
        os.chown(self.path, user.pw_uid, user.pw_gid)
        self.path.chmod(0o600)


@pytest.fixture
def secret():
    made = Secret()
    yield made
    made.path.unlink(missing_ok=True)


def node_workflow(image: str, secret: Secret, rewrite: str, *, contain=True) -> tuple[Path, Path]:
    parent, work = copy_workflow("node")
    (work / "config.yaml").write_text(f"image: {image}\nsecret: {secret.path}\nrewrite: {rewrite}\n"
                                      f"contain: {str(contain).lower()}\n")
    chown_tree(parent)
    return parent, work


def refused_on_node(run, changed: str) -> list[str]:
    assert run.returncode != 0, run
    lines = [line for line in run.output.splitlines() if "SC501" in line]
    assert lines and changed in lines[0] and ("rule b" in lines[0] or "job b" in lines[0]), run
    assert "Traceback" not in run.output, run
    return lines


def test_policy_rewritten_by_a_job_is_refused_on_the_node(image, secret):
    parent, work = node_workflow(image, secret, "containment.yaml")
    try:
        run = snakemake(work, *CLUSTER)
        probe = work / "results/b/probe.txt"
        assert not probe.exists() or secret.text not in probe.read_text(), f"job 2 ran weakened\n{run}"
        refused_on_node(run, "containment.yaml")
        assert not probe.exists()
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    # Control (locally: the probe does not depend on the executor): the rewritten policy checked from the start
    # shows job 2 the secret and the host's processes.
    parent, work = node_workflow(image, secret, "containment.yaml")
    try:
        shutil.copy(work / "containment.yaml.rewritten", work / "containment.yaml")
        control = snakemake(work)
        assert control.returncode == 0, control
        seen = (work / "results/b/probe.txt").read_text()
        assert secret.text in seen and int(seen.split("processes=")[1]) > 10, seen
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_configfile_rewritten_by_a_job_is_refused_on_the_node(image, secret):
    marker = Path(f"/tmp/singcontain-config-rewritten-{os.getpid()}")
    # The rewritten image string reaches Snakemake's host shell on the node (no blanks: Snakemake refuses an
    # image with whitespace and formats {…} in it; the shell splits $IFS).
    injected = f"'{image};touch$IFS{marker};:'"
    parent, work = node_workflow(image, secret, "config.yaml")
    try:
        (work / "config.yaml.rewritten").write_text(
            (work / "config.yaml").read_text().replace(f"image: {image}", f"image: {injected}"))
        chown_tree(work)
        run = snakemake(work, *CLUSTER)
        assert not marker.exists(), f"the rewritten configfile ran a host command on the node\n{run}"
        refused_on_node(run, "config.yaml")
    finally:
        shutil.rmtree(parent, ignore_errors=True)
        marker.unlink(missing_ok=True)
    # Control: that configfile, read without the plugin, runs the host command the test looks for.
    parent, work = node_workflow(image, secret, "config.yaml", contain=False)
    try:
        (work / "config.yaml").write_text((work / "config.yaml").read_text().replace(f"image: {image}",
                                                                                    f"image: {injected}"))
        control = snakemake(work)
        assert marker.exists(), f"control: no host command ran\n{control}"
    finally:
        shutil.rmtree(parent, ignore_errors=True)
        marker.unlink(missing_ok=True)


def swap_run(image: str, policy: str) -> dict:
    run_name = policy.removesuffix(".yaml")  # containment or off
    parent, work = copy_workflow("swap")
    home = Path(user_entry().pw_dir)
    scratch = parent / "scratch"
    for folder in (scratch, work / "results/b"):
        folder.mkdir(parents=True)  # real folders when checked; the swap rule replaces them by symlinks
    chown_tree(parent)
    planted = [home / f"b-{run_name}.txt", home / f"c-{run_name}.txt"]
    try:
        control = [f"--apptainer-args=--bind={home}"] if policy == "off" else []
        run = snakemake(work, "--keep-going", *control, "--config", f"image={image}", f"policy={policy}",
                        f"scratch={scratch}", f"home={home}", f"run={run_name}", env={"SWAP_SCRATCH": str(scratch)})
        landed = {"b": planted[0].exists(),
                  "c": planted[1].exists()}
        return {"landed": landed, "run": run}
    finally:
        shutil.rmtree(parent, ignore_errors=True)
        for path in planted:
            path.unlink(missing_ok=True)


def test_writable_folder_swapped_for_a_symlink_is_refused(image):
    contained = swap_run(image, "containment.yaml")
    run = contained["run"]
    assert not any(contained["landed"].values()), f"a job wrote the home through a swapped folder: " \
                                                  f"{contained['landed']}\n{run}"
    assert "Traceback" not in run.output, run
    # The policy bind that became a symlink is refused with SC502; the output folder, a link now in results/ (a
    # folder jobs write) that leads out of the workdir, with SC412 (judged by real path right before the job).
    assert run.returncode != 0 and "SC502" in run.output and "SC412" in run.output, run
    control = swap_run(image, "off")
    assert all(control["landed"].values()), f"control: {control['landed']}\n{control['run']}"


def test_snakemakes_post_job_actions_do_not_follow_planted_symlinks(image, secret):
    """Snakemake 8/9 after each job (dag.py: handle_protected, and touch of every output): a protected() output
    that the job made a symlink to the user's 600 secret is chmod-ed through it, to 0555 (world-readable); a
    .snakemake_timestamp symlink that the job put in its directory() output makes Snakemake create the file it
    names. Both measured with the read-only workdir in place."""
    outcome = {}
    for policy in ("containment.yaml", "off"):  # the run, then the control without the plugin
        parent, work = copy_workflow("postjob")
        created = parent / "created-by-snakemake"
        try:
            run = snakemake(work, "--keep-going", "--config", f"image={image}", f"policy={policy}",
                            f"secret={secret.path}", f"created={created}")
            outcome[policy] = {"chmod": secret.path.stat().st_mode & 0o777 != 0o600, "created": created.exists(),
                               "run": run}
        finally:
            shutil.rmtree(parent, ignore_errors=True)
            secret.path.chmod(0o600)
    contained = outcome["containment.yaml"]
    assert not contained["chmod"], f"Snakemake changed the mode of a host file through the job's symlink\n" \
                                   f"{contained['run']}"
    assert not contained["created"], f"Snakemake created a host file through the job's symlink\n{contained['run']}"
    assert "Traceback" not in contained["run"].output, contained["run"]
    control = outcome["off"]
    assert control["chmod"] and control["created"], f"control: {control}"
