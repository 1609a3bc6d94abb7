"""A new user's first hour (issue "The first hour, again"), each step as they meet it: real Snakemake and
Apptainer as the ordinary user, asserting what they read."""

import json
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from support import BATCH_ENV, ROOT, SNAKEMAKE, as_user, chown_tree, has_batch_executor, owned_dir

pytestmark = [pytest.mark.apptainer, pytest.mark.snakemake_internals]

SINGCONTAIN = str(Path(sys.executable).with_name("singcontain"))

SNAKEFILE = """\
rule all:
    input: "out/a.txt", "out/b.txt", "out/plain/p.txt", "out/host/h.txt"

rule make:
    output: "out/{x}.txt"
    container: "image.sif"
    threads: 2
    shell: "echo {wildcards.x} > {output}"

rule plain:
    output: "out/plain/p.txt"
    container: "image.sif"
    shell: "echo plain > {output}"

rule hostwork:
    output: "out/host/h.txt"
    run:
        with open(output[0], "w") as f:
            f.write("host\\n")
"""

POLICY = """\
version: 1
defaults: {containment: contain, namespaces: [pid]}
rules:
  plain: {containment: none}
  hostwork: {containment: none, namespaces: [-pid]}
"""


def make_workflow(prefix: str, snakefile: str = SNAKEFILE, policy: str = POLICY, image: Path | None = None) -> Path:
    work = owned_dir(prefix)
    (work / "Snakefile").write_text(snakefile)
    (work / "containment.yaml").write_text(policy)
    if image is not None:
        shutil.copy(image, work / "image.sif")
    chown_tree(work)
    return work


@pytest.fixture(scope="module")
def workflow(image):
    work = make_workflow("singcontain-firsthour-", image=Path(image))
    yield work
    shutil.rmtree(work, ignore_errors=True)


def run(work: Path, *argv: str, env: dict | None = None):
    return as_user(list(argv), cwd=work, env={"SINGCONTAIN_POLICY": "containment.yaml", **(env or {})})


# Runs that several tests read (each a Snakemake start): made once, on first use.

@pytest.fixture(scope="module")
def local_dry_run(workflow):
    """The workflow's dry run as it is, without a batch executor: clean, the control of the tests below."""
    return run(workflow, SNAKEMAKE, "-n", "--sdm", "apptainer")


@pytest.fixture(scope="module")
def explain_plain(workflow):
    """`singcontain explain` of the rule with `containment: none`."""
    return run(workflow, SINGCONTAIN, "explain", "plain", "--sdm", "apptainer")


# Dry runs tell what the real run will do.

needs_htcondor_plugin = pytest.mark.skipif(not has_batch_executor("htcondor"),
                                           reason="the HTCondor executor plugin is installed with Snakemake 9 only")


@needs_htcondor_plugin
def test_a_dry_run_for_htcondor_tells_the_node_local_workdir(workflow, local_dry_run):
    told = run(workflow, SNAKEMAKE, "-n", "--sdm", "apptainer", "--executor", "htcondor", "-j", "2")
    assert told.returncode != 0 and "error SC213" in told.output, told
    assert f"the workdir {workflow} is under /tmp, which each htcondor node" in told.output, told
    # Control: the same dry run without a batch executor has nothing to say about /tmp.
    local = local_dry_run
    assert local.returncode == 0 and "SC213" not in local.output, local


@needs_htcondor_plugin
def test_check_with_an_htcondor_profile_tells_the_node_local_workdir(workflow):
    profile = workflow / "condor"
    profile.mkdir(exist_ok=True)
    (profile / "config.yaml").write_text("executor: htcondor\njobs: 2\nsoftware-deployment-method: apptainer\n")
    chown_tree(profile)
    told = run(workflow, SINGCONTAIN, "check", "--profile", "condor", env=BATCH_ENV)
    assert told.returncode == 1 and "error SC213" in told.output and "the workdir" in told.output, told
    local = run(workflow, SINGCONTAIN, "check", "--sdm", "apptainer")
    assert local.returncode == 0 and "SC213" not in local.output, local


def test_a_dry_run_with_a_cluster_generic_profile_warns_of_the_node_local_workdir(workflow):
    profile = workflow / "generic"
    profile.mkdir(exist_ok=True)
    (profile / "config.yaml").write_text('executor: cluster-generic\ncluster-generic-submit-cmd: "true"\njobs: 2\n')
    chown_tree(profile)
    told = run(workflow, SNAKEMAKE, "-n", "--sdm", "apptainer", "--profile", "generic")
    assert told.returncode == 0 and "warning SC213" in told.output and "cluster-generic node" in told.output, told
    # The command line's executor wins over the profile's, as in the real run.
    local = run(workflow, SNAKEMAKE, "-n", "--sdm", "apptainer", "--profile", "generic", "--executor", "local")
    assert local.returncode == 0 and "SC213" not in local.output, local


# The smoke test starts what Snakemake starts, and blames the image when the image is at fault.

def busybox_image_without_bash(folder: Path) -> Path:
    root = folder / "rootfs"
    for sub in ("bin", "tmp", "proc", "sys", "dev"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "true", "echo", "cat"):
        (root / "bin" / applet).symlink_to("busybox")
    sif = folder / "image.sif"
    chown_tree(folder)
    built = as_user(["apptainer", "-s", "build", str(sif), str(root)], cwd=folder)
    assert built.returncode == 0, built
    shutil.rmtree(root)
    return sif


def test_an_image_without_bash_is_refused_naming_the_image_not_the_site(local_dry_run):
    work = make_workflow("singcontain-nobash-")
    try:
        busybox_image_without_bash(work)
        told = run(work, SNAKEMAKE, "-n", "--sdm", "apptainer")
        assert told.returncode != 0 and "error SC207" in told.output, told
        assert "the image image.sif has no `bash`, which Snakemake starts every job with" in told.output, told
        assert "fix: add bash to the image" in told.output and "site admin" not in told.output, told
        # Control: the image with bash passes the same smoke test.
        passed = local_dry_run
        assert passed.returncode == 0 and "SC207" not in passed.output, passed
    finally:
        shutil.rmtree(work, ignore_errors=True)


# explain


def test_explain_with_a_misspelt_wildcard_names_the_rules_wildcards(workflow):
    told = run(workflow, SINGCONTAIN, "explain", "make", "--wildcards", "xx=a", "--sdm", "apptainer")
    assert told.returncode == 2, told
    assert "rule make has no wildcard 'xx'; its wildcards: x" in told.output, told
    assert "singcontain explain make --wildcards x=" in told.output, told


def test_explain_a_rule_among_the_users_own_targets(workflow):
    told = run(workflow, SINGCONTAIN, "explain", "make", "--sdm", "apptainer", "-c1", "out/b.txt")
    assert told.returncode == 0, told
    assert "job make[x=b] (rule make), image image.sif" in told.output, told
    assert "unrecognized arguments" not in told.output


def test_explain_says_a_run_block_runs_on_the_host_and_gives_no_apptainer_line(workflow):
    told = run(workflow, SINGCONTAIN, "explain", "hostwork", "--sdm", "apptainer")
    assert told.returncode == 0, told
    assert "job hostwork (rule hostwork) runs on the host, not in a container: a run: block" in told.output, told
    assert "exec --home" not in told.output and "command: none" in told.output, told


def test_explain_says_containment_none_runs_in_the_image_without_contain(explain_plain):
    told = explain_plain
    assert "image image.sif, without --contain (containment: none)" in told.output, told
    assert " exec --home " in told.output and "--contain" not in told.output.split(" exec --home ")[1], told


def test_explain_without_a_net_namespace_shows_the_hosts_network_as_the_docs_say(explain_plain):
    told = explain_plain
    row = next(line for line in told.output.splitlines() if line.strip().startswith("network"))
    assert "host" in row and "no net namespace" in row, told
    docs = (ROOT / "docs" / "policy.md").read_text()
    assert "Without `net` the key does nothing and the job has the host's network" in docs


def test_without_sdm_apptainer_check_and_explain_tell_the_one_true_finding(workflow):
    check = run(workflow, SINGCONTAIN, "check")
    assert check.returncode == 1 and check.output.count("error SC102") == 1, check
    assert "without --sdm apptainer" in check.output and "has no image" not in check.output, check
    explain = run(workflow, SINGCONTAIN, "explain", "make", "--wildcards", "x=a")
    assert "job make[x=a] (rule make) runs on the host, not in a container: Snakemake runs without --sdm" in explain.output
    assert explain.output.count("error SC102") == 1 and "has no image" not in explain.output, explain
    assert "exec --home" not in explain.output


# report: the forecast is what the run then records.

def test_report_shows_the_per_job_thread_counts_the_run_then_passes(image):
    work = make_workflow("singcontain-threads-", policy="version: 1\ndefaults: {containment: containall}\n"
                         "rules: {hostwork: {containment: none}}\n", image=Path(image))
    try:
        report = run(work, SINGCONTAIN, "report", "--format", "json", "--jobs", "--sdm", "apptainer")
        assert report.returncode == 0, report
        audit = json.JSONDecoder().raw_decode(report.output[report.output.index("{"):])[0]
        (forecast,) = [j["apptainer_args"] for j in audit["jobs"] if j["job"] == "make[x=a]"]
        assert "--env OMP_NUM_THREADS={threads}" in forecast.replace("'", ""), forecast
        markdown = run(work, SINGCONTAIN, "report", "--sdm", "apptainer")
        assert "`{threads}`: each job's own thread count" in markdown.output, markdown

        ran = run(work, SNAKEMAKE, "--sdm", "apptainer", "-c", "2", "out/a.txt")
        assert ran.returncode == 0, ran
        record = run(work, SINGCONTAIN, "runs", "--run", "latest", "--format", "json")
        record = json.JSONDecoder().raw_decode(record.output[record.output.index("{"):])[0]
        (group,) = [g for g in record["groups"] if g["rule"] == "make"]
        # The record groups a rule's flags without the job's own binds: the flags before the binds match.
        expected = " ".join(shlex.split(forecast.replace("{threads}", "2"))).split(" --bind")[0]
        assert " ".join(group["flags"]).split(" --bind")[0] == expected, (group["flags"], expected)
        assert "OMP_NUM_THREADS=2" in expected
    finally:
        shutil.rmtree(work, ignore_errors=True)


# Paths a user types are taken from where they typed them.

def test_a_relative_policy_is_taken_from_where_the_command_is_typed_not_the_workdir(workflow):
    (workflow / ".test").mkdir(exist_ok=True)
    shutil.copy(workflow / "image.sif", workflow / ".test" / "image.sif")  # container: is relative to the workdir
    chown_tree(workflow)
    told = run(workflow, SNAKEMAKE, "-n", "--sdm", "apptainer", "-d", ".test", "-s", "Snakefile",
               env={"SINGCONTAIN_POLICY": "containment.yaml"})
    assert f"checked against {workflow}/containment.yaml" in told.output, told
    assert ".test/containment.yaml" not in told.output, told


def test_init_prints_and_writes_the_same_way_to_name_the_policy(workflow):
    project = owned_dir("singcontain-init-path-")
    try:
        for sub in ("workflow", "run"):
            (project / sub).mkdir()
        (project / "workflow" / "Snakefile").write_text(SNAKEFILE)
        chown_tree(project)
        told = as_user([SINGCONTAIN, "init", "-s", "../workflow/Snakefile"], cwd=project / "run")
        assert told.returncode == 0, told
        header = (project / "workflow" / "containment.yaml").read_text()
        command = "SINGCONTAIN_POLICY=../workflow/containment.yaml snakemake -s ../workflow/Snakefile --sdm apptainer"
        assert command in told.output and command in header, (told, header)
        check = "singcontain check --policy ../workflow/containment.yaml -s ../workflow/Snakefile --sdm apptainer"
        assert check in told.output and check in header, (told, header)
    finally:
        shutil.rmtree(project, ignore_errors=True)


def test_init_help_shows_the_policy_option_once():
    told = as_user([SINGCONTAIN, "init", "--help"], cwd="/")
    usage = told.output.split("\n\n")[0]
    assert usage.count("[--policy FILE]") == 1, told


# The site file named by SINGCONTAIN_SITE: a layer on top of the admin's, told by its own name.

def test_a_named_site_file_is_told_by_name_and_adds_its_floor(workflow):
    told = run(workflow, SNAKEMAKE, "-n", "--sdm", "apptainer", env={"SINGCONTAIN_SITE": "group-site.yaml"})
    assert told.returncode != 0, told
    assert f"{workflow}/group-site.yaml: cannot read the site file SINGCONTAIN_SITE names" in told.output, told
    assert "unset SINGCONTAIN_SITE" in told.output and "policy file" not in told.output, told
    (workflow / "group-site.yaml").write_text("version: 1\nfloor:\n  containment: containall\n")
    chown_tree(workflow)
    try:
        told = run(workflow, SNAKEMAKE, "-n", "--sdm", "apptainer", env={"SINGCONTAIN_SITE": "group-site.yaml"})
        assert told.returncode != 0 and "error SC105 rule make: containment 'contain' is below the site floor " \
            f"'containall' set by site file {workflow}/group-site.yaml:2" in told.output, told
    finally:
        (workflow / "group-site.yaml").unlink()


# diff: the change in effective terms first.

def test_diff_after_contain_pid_to_containall_tells_what_it_means(image):
    work = make_workflow("singcontain-diff-", policy="version: 1\ndefaults: {containment: contain, namespaces: [pid]}\n"
                         "rules: {hostwork: {containment: none, namespaces: [-pid]}}\n", image=Path(image))
    try:
        first = run(work, SNAKEMAKE, "--sdm", "apptainer", "-c", "2", "out/a.txt")
        assert first.returncode == 0, first
        (work / "containment.yaml").write_text("version: 1\ndefaults: {containment: containall}\n")
        second = run(work, SNAKEMAKE, "--sdm", "apptainer", "-c", "2", "out/a.txt", "-R", "make")
        assert second.returncode == 0, second
        told = run(work, SINGCONTAIN, "diff", "previous", "latest")
        assert told.returncode == 1, told
        lines = told.output.splitlines()
        assert any(line.endswith("out/a.txt (rule make): changed") for line in lines), told
        at = next(i for i, line in enumerate(lines) if line.startswith("  in effect:"))
        assert lines[at] == ("  in effect: containment contain → containall; PID namespace kept; IPC namespace "
                                 "gained; clean environment on; per-job thread counts now passed"), told
        assert lines[at + 1] == "  flags:" and "    - --pid" in lines and "    + --env OMP_NUM_THREADS=2" in lines
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_runs_outside_a_workflow_says_where_it_looked():
    told = as_user([SINGCONTAIN, "runs"], cwd="/")
    assert "no recorded runs in /.snakemake/singcontain/records" in told.output and "-d WORKDIR" in told.output, told
