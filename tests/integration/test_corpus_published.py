"""Workflows that reproduce structures of published ones that a contained run refused (tests/corpus/*, each
README names the structure): a catalogue workflow testing itself under `-d .test` and reading its own files
through `..`, outputs and logs at the top of the workdir, a `run:` rule that drops a preset which uses another,
an output folder that is a symlink to a writable policy bind. Under the policy a careful user writes,
`singcontain check --sdm apptainer` (the user's own dry run, with the audit) is clean, and each runs for real,
contained, in the busybox+bash test image, with its key effects checked on the host; the mistakes next to them
are still refused.

Every Snakemake start costs ~2 s, so all runs are made once per module, three at a time, and each test reads
its own result."""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from support import ROOT, as_user, chown_tree, no_traceback, owned_dir, parallel_cases, snakemake, user_entry

pytestmark = [pytest.mark.apptainer, pytest.mark.snakemake_internals]

CORPUS = ROOT / "tests" / "corpus"
SINGCONTAIN = str(Path(sys.executable).with_name("singcontain"))
# cluster-generic with `bash` as the submit command: each job script runs at once, as on a node that shares
# the workdir.
CLUSTER = ["--executor", "cluster-generic", "--cluster-generic-submit-cmd", "bash", "-j", "1",
           "--seconds-between-status-checks", "1"]

# name: (Snakemake's arguments, the workdir in the copy, the policy's image variable)
WORKFLOWS = {
    "catalogue_test_dir": (["-d", ".test"], ".test", "CATALOGUE_IMAGE"),
    "toplevel_outputs": ([], ".", "TOPLEVEL_IMAGE"),
    "run_rule_nested_preset": ([], ".", "ANALYSIS_IMAGE"),
    "symlinked_output_folder": ([], ".", "SCRATCH_IMAGE"),
}
TOPLEVEL_MADE = {"testdata.tar.gz", "warmup.txt", "report.html", "report.log", "all.done", "results", "logs",
                 ".snakemake"}

FINDING = re.compile(r"^(error|warning|note) (SC\d{3}) rule (.+?): ", re.MULTILINE)


def errors(text: str) -> set[tuple[str, str, str]]:
    return {f for f in FINDING.findall(text) if f[0] == "error"}


class Copy:
    """A fresh copy of one corpus workflow owned by the test user, with its site outside it: a stand-in /cvmfs
    (CVMFS_ROOT), the conditions folder (CONDITIONS), the scratch area that results/ leads to (SCRATCH)."""

    def __init__(self, name: str, made: list, image: str):
        self.root = owned_dir(f"singcontain-published-{name}-")
        self.site = owned_dir(f"singcontain-published-{name}-site-")
        made += [self.root, self.site]
        shutil.copytree(CORPUS / name, self.root, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".snakemake", "__pycache__"))
        self.args, workdir, image_variable = WORKFLOWS[name]
        self.work = self.root / workdir
        self.top = set(p.name for p in self.work.iterdir())
        self.scratch = self.site / "scratch" / "analysis"
        self.home_folder = Path(user_entry().pw_dir) / f".singcontain-published-{self.root.name}"
        made.append(self.home_folder)
        self.env = {image_variable: image, "CVMFS_ROOT": str(self.site / "cvmfs"),
                    "CONDITIONS": str(self.site / "conditions"), "SCRATCH": str(self.site / "scratch")}
        setup = self.site / "cvmfs" / "lhcb.example.org" / "setup.sh"
        setup.parent.mkdir(parents=True)
        setup.write_text("export ANALYSIS_RELEASE=v1\n")
        (self.site / "conditions").mkdir()
        self.scratch.mkdir(parents=True)
        if name == "symlinked_output_folder":
            (self.work / "results").symlink_to(self.scratch)
            self.home_folder.mkdir()
            chown_tree(self.home_folder)
            (self.work / "home-link").symlink_to(self.home_folder)
        chown_tree(self.root), chown_tree(self.site)

    def snakemake(self, *args: str):
        return snakemake(self.root, *self.args, *args, env=self.env, timeout=300)

    def singcontain(self, *args: str):
        # with --sdm apptainer given explicitly, as in the user's own Snakemake command
        return as_user([SINGCONTAIN, *args, "--sdm", "apptainer", *self.args], cwd=self.root, env=self.env,
                       timeout=300)


def cases(image: str, made: list) -> dict:
    """Every run of this module: name -> a function that makes its own copy and runs it -> (copy, Run)."""
    def case(name, action):
        def make():
            wf = Copy(name, made, image)
            return wf, action(wf)
        return make

    return {
        **{f"check {name}": case(name, lambda wf: wf.singcontain("check")) for name in WORKFLOWS},
        **{f"real {name}": case(name, lambda wf: wf.snakemake()) for name in WORKFLOWS},
        "real toplevel_outputs cluster-generic": case("toplevel_outputs", lambda wf: wf.snakemake(*CLUSTER)),
        "catalogue outside source": case("catalogue_test_dir",
                                         lambda wf: wf.snakemake("-n", "results/qc/config-defaults.txt")),
        "toplevel renamed": case("toplevel_outputs", lambda wf: wf.snakemake("renamed.txt")),
        "toplevel explain": case("toplevel_outputs", lambda wf: wf.singcontain("explain", "--target", "report.html")),
        "toplevel lazy": case("toplevel_outputs", lambda wf: wf.snakemake("--latency-wait", "1", "lazy.txt")),
        "symlink home": case("symlinked_output_folder", lambda wf: wf.snakemake("home-link/hist_a.txt")),
    }


@pytest.fixture(scope="module")
def runs(image):
    """runs(name) -> (copy, Run)."""
    yield from parallel_cases(lambda made: cases(image, made))


def ran_and_failed(run):
    """The job was submitted and failed (not refused before the run, as SC406 did)."""
    assert run.returncode != 0, run
    assert "nothing was submitted" not in run.output and "SC406" not in run.output, run


# --- the sound policies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", WORKFLOWS)
def test_sound_policy_check_is_clean(runs, name):
    _, check = runs(f"check {name}")
    assert check.returncode == 0 and not errors(check.output), check
    no_traceback(check)


# --- run for real, contained ----------------------------------------------------------------------------------


def test_catalogue_workflow_under_dot_test_reads_its_own_files(runs):
    """Under -d .test the jobs read ../workflow/resources and ../workflow/schemas (read-only) and write
    results/ and logs/ of .test; nothing is written into the workflow's source tree."""
    wf, run = runs("real catalogue_test_dir")
    assert run.returncode == 0, run
    summary = (wf.work / "results/summary.txt").read_text().splitlines()
    assert summary[0] == "test run" and sorted(summary[1:]) == ["A 3", "B 4"], summary
    assert (wf.work / "results/annotated/A.txt").read_text().startswith("# annotated by the workflow\n")
    assert (wf.work / "results/qc/samples-checked.txt").read_text().split() == ["sample", "condition",
                                                                               "sample", "condition"]
    assert (wf.work / "logs/summarize.log").exists()
    source = sorted(str(p.relative_to(wf.root)) for p in (wf.root / "workflow").rglob("*")
                    if "__pycache__" not in p.parts)
    shipped = sorted(str(p.relative_to(CORPUS / "catalogue_test_dir")) for p in
                     (CORPUS / "catalogue_test_dir/workflow").rglob("*") if "__pycache__" not in p.parts)
    assert source == shipped, "a job wrote into the workflow's source tree"


def test_catalogue_input_outside_its_source_tree_needs_a_bind(runs):
    """Only the Snakefile's own folder (workflow/) is the workflow's source: the repository's config/ beside it,
    read through '..' from .test, is outside the workdir and needs a policy bind (SC407)."""
    wf, run = runs("catalogue outside source")
    assert run.returncode != 0, run
    assert errors(run.output) == {("error", "SC407", "config_defaults")}, run
    assert str(wf.root / "config/config.yaml") in run.output, run


@pytest.mark.parametrize("where", ["local", "cluster-generic"])
def test_outputs_and_logs_at_the_top_of_the_workdir(runs, where):
    wf, run = runs("real toplevel_outputs" + (" cluster-generic" if where != "local" else ""))
    assert run.returncode == 0, run
    assert (wf.work / "warmup.txt").read_text() == "warm\nup\n"  # truncated, then appended
    report = (wf.work / "report.html").read_text()
    assert report.startswith("<html>") and report.split("<pre>\n")[1].split("</pre>")[0].split() == ["2", "3"], report
    assert (wf.work / "all.done").exists() and (wf.work / "testdata.tar.gz").stat().st_size > 0
    assert (wf.work / "report.log").exists()
    created = {p.name for p in wf.work.iterdir()} - wf.top
    assert created == TOPLEVEL_MADE, f"files at the top beyond the declared ones: {created - TOPLEVEL_MADE}"


def test_explain_shows_the_top_level_file_bound_writable(runs):
    """explain shows exactly the job's own files at the top bound writable (the file, not the workdir)."""
    wf, run = runs("toplevel explain")
    assert run.returncode == 0 and not errors(run.output), run
    rows = [line.split() for line in run.output.splitlines() if line.lstrip().startswith(str(wf.work))]
    writable = {row[0] for row in rows if len(row) > 2 and row[2] == "rw" and row[0] != str(wf.work)}
    assert writable == {str(wf.work / "report.html"), str(wf.work / "report.log")}, run


def test_tool_that_renames_over_a_top_level_output_fails_with_the_fix(runs):
    """Its temporary file beside the output is a sibling at the top: the job fails, nothing is left there,
    and the message says what to do (`workdir: rw` for that rule, or an output folder)."""
    wf, run = runs("toplevel renamed")
    ran_and_failed(run)
    assert not (wf.work / "renamed.txt.tmp").exists(), "the job created a sibling at the top"
    assert not (wf.work / "renamed.txt").exists(), "a file was left that Snakemake would take as done"
    assert "workdir: rw" in run.output, run
    no_traceback(run)


def test_job_that_does_not_write_its_top_level_output_fails(runs):
    """As in plain Snakemake: the job fails and no (empty) file is left that a later run would take as done."""
    wf, run = runs("toplevel lazy")
    ran_and_failed(run)
    assert not (wf.work / "lazy.txt").exists(), run
    no_traceback(run)


def test_run_rule_dropping_a_preset_that_uses_another(runs):
    """merge drops `site`, which uses `cvmfs`: it holds no bind, so the run: block runs on the host; the
    select jobs read /cvmfs (the stand-in) contained."""
    wf, run = runs("real run_rule_nested_preset")
    assert run.returncode == 0, run
    merged = json.loads((wf.work / "results/merged.json").read_text())
    assert merged == {"ee": {"events": 2, "release": "v1"}, "mumu": {"events": 3, "release": "v1"}}, merged


def test_output_folder_symlinked_to_a_writable_bind(runs):
    """results -> the scratch area the policy binds writable: the jobs write there, through the link."""
    wf, run = runs("real symlinked_output_folder")
    assert run.returncode == 0, run
    assert (wf.scratch / "hist_a.txt").exists() and (wf.scratch / "logs/hist_b.log").exists()
    assert (wf.scratch / "summary.txt").read_text().strip() == "4"  # two distinct values per sample
    assert (wf.work / "results").is_symlink()


def test_output_folder_symlinked_into_the_home_is_refused(runs):
    """home-link -> a folder in the home that no policy bind covers: SC407 naming the real path, before
    anything runs, and nothing is written there."""
    wf, run = runs("symlink home")
    assert run.returncode != 0, run
    lines = [line for line in run.output.splitlines() if "SC407" in line and "rule histogram" in line]
    assert lines and str(wf.home_folder) in lines[0], run
    assert not list(wf.home_folder.iterdir()), "a job wrote into the home through the link"
    no_traceback(run)
