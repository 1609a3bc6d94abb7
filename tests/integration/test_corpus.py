"""Workflows that reproduce the structures of real public Snakemake workflows (tests/corpus/*, each README names
the one it models), under the policy a careful user would write: `singcontain check` (the user's own dry run,
with the audit) passes with no error, a planted mistake gives its finding, and what issue 11 found on the real
ones behaves as a user expects.

Every Snakemake start costs ~2 s, so all runs are made once per module, three at a time (runs), and each test
reads its own result."""

import json
import re
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from support import ROOT, as_user, chown_tree, no_traceback, owned_dir, parallel_cases, snakemake

pytestmark = [pytest.mark.apptainer, pytest.mark.snakemake_internals]

CORPUS = ROOT / "tests" / "corpus"
SINGCONTAIN = str(Path(sys.executable).with_name("singcontain"))

# name: (workdir in the copy, policy in the copy, wrapper folder in the copy or None, image variable or None)
WORKFLOWS = {
    "rnaseq_modules": ("deploy", "deploy/containment.yaml", "module/wrappers", None),
    "wrappers_scripts": (".", "workflow/containment.yaml", "wrappers", None),
    "checkpoint_demux": (".", "workflow/containment.yaml", None, "DEMUX_IMAGE"),
    "hep_scratch_symlink": (".", "containment.yaml", None, "ANALYSIS_IMAGE"),
    "shadow_novice": (".", "containment.yaml", None, "NOVICE_IMAGE"),
}

SELECTED = "scratch/selected/data/2012/beauty_0.root"  # one job of the HEP analysis, run for real

FINDING = re.compile(r"^(error|warning|note) (SC\d{3}) rule (.+?): ", re.MULTILINE)


def findings(text: str) -> set[tuple[str, str, str]]:
    return set(FINDING.findall(text))


def errors(text: str) -> set[tuple[str, str, str]]:
    return {f for f in findings(text) if f[0] == "error"}


class Copy:
    """A fresh copy of one corpus workflow owned by the test user, with a site outside it: a stand-in /cvmfs
    (CVMFS_ROOT) and, for the HEP analysis, the EOS folder its scratch/ symlink leads to."""

    def __init__(self, name: str, made: list, image: str | None = None):
        self.root = owned_dir(f"singcontain-corpus-{name}-")
        self.site = owned_dir(f"singcontain-corpus-{name}-site-")
        made += [self.root, self.site]
        shutil.copytree(CORPUS / name, self.root, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".snakemake", "__pycache__"))
        workdir, policy, wrappers, image_variable = WORKFLOWS[name]
        self.work, self.policy = self.root / workdir, self.root / policy
        self.args = ["--wrapper-prefix", f"file://{self.root / wrappers}/"] if wrappers else []
        self.env = {"CVMFS_ROOT": str(self.site / "cvmfs"), "EOS_SCRATCH": str(self.site / "eos" / "scratch")}
        if image:
            self.env[image_variable] = image
        setup = self.site / "cvmfs" / "lhcb.example.org" / "setup.sh"
        setup.parent.mkdir(parents=True)
        setup.write_text("export ANALYSIS_RELEASE=v1\n")
        if name == "hep_scratch_symlink":
            self.eos = self.site / "eos" / "scratch"
            for kind in ("data", "mc"):
                for year in ("2012", "2018"):
                    for sample in ("beauty_0", "beauty_1"):
                        (self.eos / kind / year).mkdir(parents=True, exist_ok=True)
                        (self.eos / kind / year / f"{sample}.root").write_text("event 1\nevent 2\n")
            (self.work / "scratch").symlink_to(self.eos)
        chown_tree(self.root), chown_tree(self.site)

    def add_rules(self, *lines: str) -> "Copy":
        """Add entries under the policy's `rules:` (its last key)."""
        self.policy.write_text(self.policy.read_text() + "".join(f"  {line}\n" for line in lines))
        return self

    def drop_line(self, line: str) -> "Copy":
        text = self.policy.read_text()
        assert f"{line}\n" in text
        self.policy.write_text(text.replace(f"{line}\n", ""))
        return self

    def owned_folder(self, relative: str) -> Path:
        folder = self.work / relative
        folder.mkdir(parents=True)
        chown_tree(self.work)
        return folder

    def snakemake(self, *args: str, env=None):
        return snakemake(self.work, *self.args, *args, env={**self.env, **(env or {})}, timeout=300)

    def dry_run(self, *args: str, env=None):
        return self.snakemake("-n", *args, env=env)

    def singcontain(self, *args: str):
        # with --sdm apptainer given explicitly, as in the user's own Snakemake command
        return as_user([SINGCONTAIN, *args, "--sdm", "apptainer", *self.args], cwd=self.work, env=self.env,
                       timeout=300)


def cases(image: str, made: list) -> dict:
    """Every run of this module: name -> a function that makes its own copy, changes it, runs it -> (copy, Run)."""
    def case(name, action, edit=lambda wf: None, with_image=False):
        def make():
            wf = Copy(name, made, image if with_image else None)
            edit(wf)
            return wf, action(wf)
        return make

    def dry(wf):
        return wf.dry_run()

    def real(wf):
        return wf.snakemake()

    def read_only(rule, folder):
        return lambda wf: wf.add_rules(f'{rule}: {{binds: ["{wf.owned_folder(folder)}:ro"]}}')

    return {
        # `singcontain check` is the user's own dry run (`snakemake -n` with the same arguments) and the audit
        **{f"check {name}": case(name, lambda wf: wf.singcontain("check")) for name in WORKFLOWS},
        "planted SC402": case("wrappers_scripts", dry, read_only("align", "results/align")),
        "planted SC407": case("rnaseq_modules", lambda wf: wf.dry_run("--config", "species=../../../elsewhere")),
        "planted SC101": case("checkpoint_demux", dry, lambda wf: wf.add_rules("split_barcode: {namespaces: [uts]}")),
        "planted SC301": case("hep_scratch_symlink",  # a typo in the variable's value, as in a profile
                              lambda wf: wf.dry_run(env={"CVMFS_ROOT": str(wf.site / "cvfms")})),
        "top-level output": case("shadow_novice", dry, lambda wf: wf.drop_line("  count_reads: {workdir: rw}")),
        "checkpoint json": case("checkpoint_demux", lambda wf: wf.singcontain("check", "--format", "json")),
        "checkpoint adds read-only outputs": case(
            "checkpoint_demux", real, read_only("count_barcode", "results/counts"), with_image=True),
        "source_path inputs off": case("rnaseq_modules", dry,
                                       lambda wf: wf.add_rules("plot: {auto_binds: {inputs: false}}")),
        "shadow without writable workdir": case(
            "shadow_novice", dry, lambda wf: wf.drop_line("  inspect: {containment: containall, workdir: rw}")
            .add_rules("inspect: {containment: containall}")),
        "init module": case("rnaseq_modules", lambda wf: wf.singcontain("init"), lambda wf: wf.policy.unlink()),
        "explain warning": case("wrappers_scripts", lambda wf: wf.singcontain("explain", "genome_index")),
        "explain download": case("wrappers_scripts", lambda wf: wf.singcontain("explain", "get_genome")),
        "scratch select real": case("hep_scratch_symlink", lambda wf: wf.snakemake(SELECTED), with_image=True),
        "novice real": case("shadow_novice", real, with_image=True),
    }


@pytest.fixture(scope="module")
def runs(image):
    """runs(name) -> (copy, Run)."""
    yield from parallel_cases(lambda made: cases(image, made))


# --- the sound policies -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", WORKFLOWS)
def test_sound_policy_passes(runs, name):
    _, check = runs(f"check {name}")
    assert check.returncode == 0, check
    assert not errors(check.output), check
    no_traceback(check)


# --- a planted mistake per workflow ---------------------------------------------------------------------------


def test_output_folder_bound_read_only(runs):
    _, run = runs("planted SC402")
    assert run.returncode != 0 and "nothing was submitted" in run.output, run
    assert errors(run.output) == {("error", "SC402", "align")}, run


def test_wildcard_value_leaving_the_workdir(runs):
    """A species name from the config, `../../../elsewhere`, would make the download write outside the workdir."""
    _, run = runs("planted SC407")
    assert run.returncode != 0, run
    assert errors(run.output) == {("error", "SC407", "get_transcriptome"), ("error", "SC407", "index")}, run


def test_typo_in_a_checkpoint_name(runs):
    _, run = runs("planted SC101")
    assert run.returncode != 0, run
    assert errors(run.output) == {("error", "SC101", "split_barcode")}, run
    assert "split_barcodes" in run.output, run  # the fix lists the rule names


def test_cvmfs_root_typo(runs):
    _, run = runs("planted SC301")
    assert run.returncode != 0, run
    assert errors(run.output) == {("error", "SC301", "fit"), ("error", "SC301", "select")}, run


def test_workdir_output_without_writable_workdir_is_bound_alone(runs):
    # count_reads writes counts.txt at the workdir's top: without `workdir: rw` that one file is bound writable.
    _, run = runs("top-level output")
    assert run.returncode == 0 and not errors(run.output), run


# --- issue 11 ------------------------------------------------------------------------------------------------


def test_symlinked_scratch_outside_the_workdir(runs):
    """scratch/ a symlink to an EOS folder (the lxplus layout), which the policy binds writable: the check
    passes and the contained job reads and writes there, through the link, with its software from /cvmfs."""
    _, check = runs("check hep_scratch_symlink")
    assert check.returncode == 0 and not errors(check.output), check
    wf, run = runs("scratch select real")
    assert run.returncode == 0, run
    assert (wf.eos / SELECTED.removeprefix("scratch/")).read_text() == "selected with v1\nevent 1\nevent 2\n"


def test_check_names_the_checkpoints(runs):
    _, run = runs("checkpoint json")
    assert run.returncode == 0, run
    audit, _ = json.JSONDecoder().raw_decode(run.output[run.output.index("{"):])
    assert audit["checkpoints"] == ["split_barcodes"], run


def test_check_text_names_the_checkpoint(runs):
    _, run = runs("check checkpoint_demux")
    said = re.compile(r"\bcheckpoints?\b")  # not the copy's folder name, checkpoint_demux
    assert [line for line in run.output.splitlines() if said.search(line) and "split_barcodes" in line], run


def test_jobs_a_checkpoint_added_are_checked_before_submission(runs):
    wf, run = runs("checkpoint adds read-only outputs")
    assert run.returncode != 0, run
    assert "the containment policy failed its checks for the jobs a checkpoint added" in run.output, run
    assert ("error", "SC402", "count_barcode") in errors(run.output), run
    assert (wf.work / "results/demux/run1/AAC.txt").exists(), run  # the checkpoint itself ran
    assert not list((wf.work / "results/counts").rglob("*.txt")), run
    assert not (wf.work / "results/summary").exists(), run


def test_source_path_input_without_input_auto_binds(runs):
    """plot's spec is a workflow.source_path() file of the module, outside the deployment's workdir. Snakemake 9
    binds its source cache into the container, so turning input auto-binds off must not make it 'not visible'.
    Snakemake 8.30 binds no source cache and hands the job a copy under ~/.cache, which a contained job does not
    see: there SC401 is right."""
    _, run = runs("source_path inputs off")
    if version("snakemake").startswith("8."):
        assert errors(run.output) == {("error", "SC401", "plot")} and "source-cache" in run.output, run
        return
    assert run.returncode == 0, run
    assert not {code for _, code, _ in findings(run.output)} & {"SC401", "SC407"}, run


def test_one_warning_per_image_not_yet_pulled(runs):
    _, run = runs("check wrappers_scripts")
    lines = [line for line in run.output.splitlines() if line.startswith("warning SC207")]
    assert len(lines) == 2, run
    assert "docker://mambaorg/micromamba:1.5.10" in lines[0] and "docker://quay.io/biocontainers/star" in lines[1], run
    assert "rule genome_index:" in lines[1] and "genome_index" not in lines[0], run
    assert not any(".simg" in line for line in lines), run


def test_explain_a_job_with_a_warning(runs):
    _, run = runs("explain warning")
    assert run.returncode == 0, run
    no_traceback(run)
    assert "findings for this job:\nwarning SC207 rule genome_index" in run.output, run


def test_explain_download_rule_has_the_hosts_network(runs):
    """get_genome drops the net namespace (it downloads the reference): it has the host's network."""
    _, run = runs("explain download")
    assert run.returncode == 0, run
    assert re.search(r"^\s+network\s+host\s", run.output, re.MULTILINE), run


def test_init_lists_the_module_rules(runs):
    wf, run = runs("init module")
    assert run.returncode == 0, run
    written = wf.policy.read_text()
    assert all(rule in written for rule in ("get_transcriptome", "index", "quant", "table", "plot")), written


def test_shadow_rule_writes_in_its_shadow_folder(runs):
    _, run = runs("shadow without writable workdir")
    assert run.returncode == 0, run
    assert not errors(run.output), run


# --- end to end ----------------------------------------------------------------------------------------------


def test_novice_workflow_runs_contained(runs):
    """The whole lesson-style workflow, contained, in the busybox+bash image: shadow, temp, protected,
    directory() outputs and outputs in the workdir itself."""
    wf, run = runs("novice real")
    assert run.returncode == 0, run
    assert (wf.work / "reads.ctrl_1.fq.count").read_text() == "2\n"
    assert (wf.work / "quant.heat_1/reads.txt").read_text() == "4\n"
    assert (wf.work / "collected/listing.txt").read_text().split() == [
        "quant.ctrl_1", "quant.heat_1", "reads.ctrl_1_inspect.gz", "reads.heat_1_inspect.gz"]
    assert not (wf.work / "trimmed/ctrl_1.fq").exists()  # temp(), removed once used
    assert (wf.work / "reads.ctrl_1_inspect.gz").exists() and not (wf.work / "reads.ctrl_1_inspect.txt").exists()
