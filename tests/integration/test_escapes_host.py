"""Nothing of a contained rule runs outside its policy, in the real Apptainer, as an ordinary user: rule kinds
whose code runs on the host, the program that starts the container, and flags, variables and values that
would widen it. Each is refused before anything is submitted (or, where a run is allowed, stays within the
policy), and each has a control that shows the host effect the refusal prevents: the same rules uncontained
(`containment: none`), or Snakemake without the plugin.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

from support import SNAKEMAKE, as_user, chown_tree, owned_dir, runtime_binary, snakemake

WORKFLOWS = Path(__file__).parent / "workflows" / "escapes_host"
pytestmark = [pytest.mark.apptainer, pytest.mark.snakemake_internals]

REFUSED = "the containment policy failed its checks; nothing was submitted."
LIB_SECRET = f"singcontain-lib-secret-{os.getpid()}"
TARGETS = {rule: f"results/{rule}/{name}" for rule, name in (
    ("template", "rendered.yaml"), ("cwl", "out.txt"), ("containlibs", "probe.txt"),
    ("image_injection", "out.txt"), ("missing_image", "out.txt"), ("proc", "probe.txt"),
    ("benchmark", "out.txt"), ("protected_link", "out.txt"), ("tmpdir", "out.txt"))}
# What the controls run: the rules with a host effect to show, uncontained or without the plugin.
CONTROL_RULES = {"control.yaml": ("template", "proc", "protected_link"),
                 "off": ("image_injection", "libs", "benchmark")}


def assert_refused(run, *needles):
    assert run.returncode != 0 and REFUSED in run.output, run
    for needle in needles:
        assert needle in run.output, run
    assert "Traceback" not in run.output and "Logging error" not in run.output, run


def refusal_line(run, code: str, rule: str) -> str:
    """The one line of the refusal for this rule and code."""
    lines = [line for line in run.output.splitlines() if line.startswith(f"error {code} rule {rule}:")]
    assert lines, f"no 'error {code} rule {rule}:' line\n{run}"
    return lines[0]


class Workflow:
    """A copy of workflows/escapes_host/refusals with its host side: a site folder for the markers."""

    def __init__(self, image: str):
        self.parent = owned_dir("singcontain-eschost-")
        self.work, self.site = self.parent / "wf", self.parent / "site"
        shutil.copytree(WORKFLOWS / "refusals", self.work)
        self.site.mkdir()
        (self.site / "libsecret.so").write_text(LIB_SECRET + "\n")
        (self.site / "victim.txt").write_text("original\n")
        (self.site / "data").mkdir()
        (self.site / "protected-link").symlink_to(self.site / "data")
        chown_tree(self.parent)
        self.image = image

    def run(self, policy: str, targets, *args, env=None):
        injected = f"{self.image};touch$IFS{self.site}/image-ran;#"  # no blanks: Snakemake refuses those
        return snakemake(self.work, "--keep-going", *args, "--config", f"image={self.image}", f"policy={policy}",
                         f"site={self.site}", f"injected_image={injected}", "--", *targets,
                         env={"ESC_SITE": str(self.site), **(env or {})})

    def effects(self) -> dict:
        """Host effects, judged on the host."""
        def probe(rule):
            path = self.work / "results" / rule / "probe.txt"
            return path.read_text() if path.exists() else ""

        processes = probe("proc").partition("processes=")[2].strip()
        return {
            "template": (self.site / "template-ran").exists(),
            "containlibs": LIB_SECRET in probe("containlibs"),
            "libs": LIB_SECRET in probe("libs"),
            "image_injection": (self.site / "image-ran").exists(),
            "proc": processes.isdigit() and int(processes) > 10,
            "benchmark": (self.site / "victim.txt").read_text() != "original\n",
            "protected_link": (self.site / "data" / "planted").exists(),
        }

    def close(self):
        shutil.rmtree(self.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def refused(image):
    """One contained run of every rule: refused as a whole, before anything runs."""
    workflow = Workflow(image)
    try:
        run = workflow.run("containment.yaml", TARGETS.values())
        yield {"run": run, "effects": workflow.effects(), "ran": (workflow.work / "results").exists()
               or (workflow.work / "templates").exists()}
    finally:
        workflow.close()


@pytest.fixture(scope="module")
def controls(image):
    """Host effects with the protection off: the rules uncontained, and (for what the plugin must refuse even
    uncontained) Snakemake without the plugin, with --containall and APPTAINER_CONTAINLIBS from outside."""
    effects = {}
    for policy, rules in CONTROL_RULES.items():
        workflow = Workflow(image)
        try:
            targets = [TARGETS.get(rule, "results/libs/probe.txt") for rule in rules]
            args = ["--apptainer-args=--containall"] if policy == "off" else []
            env = {"APPTAINER_CONTAINLIBS": str(workflow.site / "libsecret.so")} if policy == "off" else {}
            workflow.run(policy, targets, *args, env=env)
            effects.update({rule: workflow.effects()[rule] for rule in rules})
        finally:
            workflow.close()
    return effects


def test_refused_as_a_whole_before_anything_ran(refused):
    assert_refused(refused["run"])
    assert not refused["ran"], refused["run"]


@pytest.mark.parametrize("rule, code, words", [
    ("template", "SC103", "template_engine"),
    ("containlibs", "SC104", "--containlibs"),
    ("image_injection", "SC210", "image"),
    ("proc", "SC307", "/proc"),
    ("benchmark", "SC408", "bench.tsv"),
    ("protected_link", "SC306", "/data"),  # protected paths compared by real path
])
def test_host_effect_refused_and_shown_by_control(refused, controls, rule, code, words):
    assert not refused["effects"][rule], f"{rule}: the host effect happened\n{refused['run']}"
    assert words in refusal_line(refused["run"], code, rule)
    control_rule = "libs" if rule == "containlibs" else rule  # --containlibs from outside, in the control
    assert controls[control_rule], f"control: {control_rule} showed no host effect ({controls})"


@pytest.mark.parametrize("rule, code, words", [
    ("cwl", "SC103", "cwl"),  # cwltool need not be installed: the refusal comes first
    ("missing_image", "SC211", "missing.sif"),
    ("tmpdir", "SC209", "TMPDIR"),  # was: a clean dry run, then a traceback at job start
])
def test_refused_before_submission(refused, rule, code, words):
    assert words in refusal_line(refused["run"], code, rule)


def test_apptainer_variables_and_flags_from_outside_the_policy_are_refused(image):
    workflow = Workflow(image)
    try:
        lib = str(workflow.site / "libsecret.so")
        # APPTAINER_CONFIG_FILE (a global flag's variable, not in action_flags.go) swaps apptainer.conf for
        # one the checks never read: `mount hostfs = yes` showed host mounts to a containall job (measured).
        conf = workflow.site / "apptainer.conf"
        conf.write_text("mount hostfs = yes\n")
        variables = {"APPTAINER_CONTAINLIBS": lib, "SINGULARITY_CONTAINLIBS": lib,
                     "APPTAINER_OVERLAYIMAGE": str(workflow.site), "APPTAINER_FUSESPEC": f"host:{lib} /mnt",
                     "APPTAINER_CONFIG_FILE": str(conf)}
        run = workflow.run("containment.yaml", ["results/libs/probe.txt"], f"--apptainer-args=--containlibs={lib}",
                           env=variables)
        assert not workflow.effects()["libs"], f"the containall job read a host file\n{run}"
        assert_refused(run)
        sc104 = "\n".join(line for line in run.output.splitlines() if line.startswith("error SC104"))
        missing = [name for name in [*variables, "--containlibs"] if name not in sc104]
        assert not missing, f"not named in an SC104 line: {missing}\n{run}"
    finally:
        workflow.close()


# Small workflows for the classes that need a run of their own.
SNAKEFILE = """\
from snakemake_singcontain import contain
contain(workflow, "containment.yaml")
container: config["image"]

rule all:
    input: {output!r}

rule job:
    output: {output!r}
    shell: {shell!r}
"""


def small_workflow(policy: str, output="results/out.txt", shell="echo ran > {output}") -> tuple[Path, Path]:
    parent = owned_dir("singcontain-eschost-")
    work, site = parent / "wf", parent / "site"
    work.mkdir(), site.mkdir()
    (work / "Snakefile").write_text(SNAKEFILE.format(output=output, shell=shell))
    (work / "containment.yaml").write_text(policy)
    chown_tree(parent)
    return parent, work


def test_shell_exec_from_a_workflow_profile_is_refused(image):
    """A workflow profile (loaded by Snakemake from the workdir) gives every rule shell_exec=./evil.sh: the host
    program that would start each job's container. (default-resources: Snakemake 8 keeps the quotes of a
    string in set-resources, so only this form reaches both.)"""
    ran = {}
    for containment in ("containall", "none"):  # the run, then the control
        parent, work = small_workflow(f"version: 1\ndefaults:\n  containment: {containment}\n")
        (work / "profiles/default").mkdir(parents=True)
        (work / "profiles/default/config.yaml").write_text("default-resources: [\"shell_exec='./evil.sh'\"]\n")
        (work / "evil.sh").write_text('#!/bin/sh\ntouch "$(dirname "$0")/evil-ran"\nexec /bin/bash "$@"\n')
        (work / "evil.sh").chmod(0o755)
        chown_tree(work)
        try:
            run = snakemake(work, "--config", f"image={image}")
            ran[containment] = (work / "evil-ran").exists()
            if containment == "containall":
                assert not ran["containall"], f"the profile's launcher ran on the host\n{run}"
                assert_refused(run)
                assert "shell_exec" in refusal_line(run, "SC108", "job")
        finally:
            shutil.rmtree(parent, ignore_errors=True)
    assert ran["none"], "control: the uncontained rule's launcher did not run"


def test_variable_value_never_adds_a_bind_mode(image):
    """binds: ["${REFDATA}"] is read-only; REFDATA=/some/folder:rw must not make it writable."""
    outcome = {}
    for containment in ("contain", "none"):  # the run, then the control
        parent, work = small_workflow(
            f'version: 1\ndefaults:\n  containment: {containment}\n  binds: ["${{REFDATA}}"]\n',
            shell="echo escaped > ${{REFDATA%:rw}}/planted && echo wrote > {output} || echo refused > {output}")
        refdata = parent / "site" / "refdata"
        for folder in (refdata, Path(f"{refdata}:rw")):  # both exist: the value names the second one
            folder.mkdir()
        chown_tree(parent)
        try:
            run = snakemake(work, "--config", f"image={image}", env={"REFDATA": f"{refdata}:rw"})
            outcome[containment] = ((refdata / "planted").exists(), run)
        finally:
            shutil.rmtree(parent, ignore_errors=True)
    planted, run = outcome["contain"]
    assert not planted, f"the read-only bind of ${{REFDATA}} was writable\n{run}"
    assert "Traceback" not in run.output, run
    assert outcome["none"][0], f"control: the uncontained job did not write\n{outcome['none'][1]}"


def test_non_utf8_path_in_a_refusal_gives_no_traceback(image):
    """A path that is not UTF-8 reaches a refusal through a policy variable (Snakemake 9.27 itself cannot take
    such a path as a job's output: its metadata store crashes first, before any check)."""
    parent, work = small_workflow("version: 1\ndefaults:\n  binds: ['${BAD_SOURCE}:/data:ro']\n")
    missing = os.fsdecode(os.fsencode(str(parent)) + b"/bad-\xff")  # a folder name that is not UTF-8, not there
    try:
        run = snakemake(work, "--config", f"image={image}", env={"BAD_SOURCE": missing})
        assert_refused(run, "SC301", "bad-")
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_conda_env_with_a_post_deploy_script_is_refused(image):
    """--sdm conda apptainer: Snakemake runs an env's post-deploy script on the host, outside any container:
    refused before anything runs (conda itself need not be installed, the refusal comes first). Contained
    creation itself: test_conda.py."""
    parent, work = small_workflow("version: 1\ndefaults:\n  containment: containall\n")
    (work / "env.yaml").write_text("channels: [conda-forge]\ndependencies: [busybox]\n")
    (work / "env.post-deploy.sh").write_text("#!/bin/sh\ntouch ran-on-the-host\n")
    (work / "Snakefile").write_text((work / "Snakefile").read_text().replace(
        "    shell:", '    conda: "env.yaml"\n    shell:'))
    chown_tree(work)
    try:
        run = as_user([SNAKEMAKE, "--sdm", "conda", "apptainer", "-c", "1", "--config", f"image={image}"], cwd=work)
        assert_refused(run)
        assert "post-deploy" in refusal_line(run, "SC107", "job")
        assert not (work / "results").exists() and not (work / "ran-on-the-host").exists()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_runtime_is_the_program_snakemake_runs(image):
    """`runtime: singularity` while Snakemake 9 runs `apptainer`: the checks would inspect another program
    than the one that starts the jobs. Here `singularity` is another program (a logging wrapper)."""
    import snakemake as snakemake_package

    parent, work = small_workflow("version: 1\nruntime: singularity\ndefaults:\n  containment: containall\n")
    bin_dir, log = parent / "bin", parent / "singularity.log"
    bin_dir.mkdir()
    wrapper = bin_dir / "singularity"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {os.path.realpath(runtime_binary())} "$@"\n')
    wrapper.chmod(0o755)
    chown_tree(parent)
    try:
        path = f"{bin_dir}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
        run = snakemake(work, "--config", f"image={image}", env={"PATH": path})
        calls = log.read_text() if log.exists() else ""
        if snakemake_package.__version__.startswith("8."):
            # Snakemake 8 runs `singularity`: the checked program is the one that starts the job.
            assert run.returncode == 0 and "bash -c" in calls, f"{run}\nwrapper calls:\n{calls}"
        else:
            assert_refused(run, "error SC212")
            assert "bash -c" not in calls, f"a job started through the unchecked program\n{calls}"
    finally:
        shutil.rmtree(parent, ignore_errors=True)
