"""Run records in the real Apptainer, as an ordinary user: each job's record is written when its container exits;
across runs, `singcontain diff` names per output the image rebuilt at the same path and the flags a policy
change made; under Slurm the records come from the nodes' own Snakemake processes."""

import hashlib
import json
import re
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from snakemake_singcontain import records
from support import ROOT, SLURM_ARGS, as_user, chown_tree, owned_dir, snakemake

pytestmark = [pytest.mark.apptainer, pytest.mark.snakemake_internals]

SINGCONTAIN = str(Path(sys.executable).with_name("singcontain"))
SNAKEFILE = """
from snakemake_singcontain import contain
contain(workflow, "containment.yaml")

rule all:
    input: "results/summary.txt"

rule one:
    output: "results/{s}.txt"
    container: config["image"]
    shell: "echo {wildcards.s} > {output}"

rule two:
    input: expand("results/{s}.txt", s=["a", "b"])
    output: "results/summary.txt"
    container: config["image"]
    shell: "cat {input} > {output}"
"""
POLICY = """version: 1
defaults:
  containment: contain
rules:
  two: {containment: %s}
"""
OUTPUTS = ["results/a.txt", "results/b.txt", "results/summary.txt"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_image(path: Path) -> None:
    """A fresh build: same content, another SIF (its build time and id differ), so another digest."""
    subprocess.run(["bash", str(ROOT / "tools/build-test-image.sh"), str(path)], check=True, stdout=subprocess.DEVNULL)
    path.chmod(0o644)


def workdir(image) -> Path:
    work = owned_dir("singcontain-records-")
    (work / "Snakefile").write_text(SNAKEFILE)
    (work / "containment.yaml").write_text(POLICY % "contain")
    shutil.copy(image, work / "img.sif")
    chown_tree(work)
    return work


@pytest.fixture
def work(image):
    work = workdir(image)
    yield work
    shutil.rmtree(work, ignore_errors=True)


def run(work: Path, *args):
    done = snakemake(work, "--config", f"image={work / 'img.sif'}", *args)
    assert done.returncode == 0, done
    return records.runs(str(work))[-1]["run"]


SNAKEMAKE_8 = metadata.version("snakemake").startswith("8.")


@pytest.fixture(scope="module")
def history(image):
    """One workdir's history, which the tests below read: a first run; the image file replaced at the same path
    and a second run; rule two's containment changed from contain to containall, a dry run, and a third run;
    then what a user runs to see it (`singcontain diff`, `singcontain runs`) and, on Snakemake 9, the HTML
    report with the run's record."""
    work = workdir(image)
    seen = {"work": work}
    try:
        seen["first"] = run(work)
        seen["first image"] = sha256(work / "img.sif")
        rebuilt = owned_dir("singcontain-records-img-")
        build_image(rebuilt / "img.sif")
        shutil.copy(rebuilt / "img.sif", work / "img.sif")
        shutil.rmtree(rebuilt)
        seen["second"] = run(work, "--forceall")
        seen["second image"] = sha256(work / "img.sif")
        (work / "containment.yaml").write_text(POLICY % "containall")  # the default: no rerun on this change
        seen["dry run"] = snakemake(work, "-n", "--config", f"image={work / 'img.sif'}")
        seen["third"] = run(work, "--forceall")
        seen["diff"] = as_user([SINGCONTAIN, "diff", seen["first"], seen["second"]], cwd=work)
        seen["runs"] = as_user([SINGCONTAIN, "runs", "--run", "latest"], cwd=work)
        if not SNAKEMAKE_8:  # --report-metadata is new in Snakemake 9
            template = re.search(r"```yaml\n( *__definitions__:.*?) *```", (ROOT / "docs/records.md").read_text(), re.S)[1]
            (work / "meta.yaml").write_text(textwrap.dedent(template))
            chown_tree(work)
            seen["report"] = snakemake(work, "--config", f"image={work / 'img.sif'}", "--report", "report.html",
                                       "--report-metadata", "meta.yaml")
        yield seen
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_a_rebuilt_image_and_a_changed_policy_show_per_output(history):
    work, first, second, third = history["work"], history["first"], history["second"], history["third"]
    made = records.load(str(work), first)
    assert sorted(o for r in made for o in r["outputs"]) == OUTPUTS
    image_digest = history["first image"]
    for r in made:
        assert r["exit_status"] == 0 and r["runtime"] in ("apptainer", "singularity") and r["runtime_version"]
        assert r["image_path"] == str(work / "img.sif") and r["image_sha256"] == image_digest
        assert "--contain" in r["argv"] and r["start"] <= r["end"]
    (summary,) = [r for r in records.runs(str(work)) if r["run"] == first]
    assert summary | {"start": 0, "end": 0} == {
        "run": first, "status": "finished", "start": 0, "end": 0, "jobs": 3, "failed": 0,
        "rules": {"one": 2, "two": 1}, "hosts": [made[0]["host"]], "unreadable_lines": 0}

    # The image file was replaced at the same path between the first two runs.
    assert history["second image"] != image_digest
    changed = {o["output"]: o["changes"] for o in records.diff(made, records.load(str(work), second))}
    assert changed == {o: [{"what": "image digest", "a": image_digest, "b": history["second image"]}] for o in OUTPUTS}

    # The policy gave rule two --containall instead of --contain.
    outputs = {o["output"]: o for o in records.diff(records.load(str(work), second), records.load(str(work), third))}
    flags = [c for c in outputs["results/summary.txt"]["changes"] if c["what"] == "flags"]
    assert len(flags) == 1 and "--contain" in flags[0]["removed"] and "--containall" in flags[0]["added"]
    for output in ("results/a.txt", "results/b.txt"):
        assert not [c for c in outputs[output]["changes"] if c["what"] in ("flags", "image digest")]

    # What a user runs.
    shown = history["diff"]
    assert shown.returncode == 1, shown
    assert f"results/summary.txt (rule two): changed\n  image digest: {image_digest[:12]}… -> " in shown.output
    shown = history["runs"]
    assert shown.returncode == 0, shown
    assert re.search(r"^rule two: 1 job\(s\)\n(.*\n)*  flags    --containall", shown.output, re.M), shown  # no wildcards: no "(-)"


@pytest.mark.skipif(SNAKEMAKE_8, reason="--report-metadata is new in Snakemake 9")
def test_the_html_report_carries_the_latest_runs_record(history):
    done = history["report"]
    assert done.returncode == 0, done
    assert history["second image"] in (history["work"] / "report.html").read_text()


def test_a_containment_change_reruns_nothing_by_default(history):
    dry = history["dry run"]  # after rule two's containment changed
    assert dry.returncode == 0, dry
    assert "Nothing to be done" in dry.output, dry


@pytest.mark.slurm
def test_records_of_slurm_jobs_come_from_the_nodes(work):
    run_id = run(work, *SLURM_ARGS)
    folder = work / ".snakemake/singcontain/records" / run_id
    made = records.load(str(work), run_id)
    assert sorted(o for r in made for o in r["outputs"]) == OUTPUTS
    # The jobs' records were written by the jobs' own Snakemake processes (one file per writing process),
    # none by the main process, which wrote the run's start and end.
    kinds = {p.name: {json.loads(line)["kind"] for line in p.read_text().splitlines()} for p in folder.glob("*.jsonl")}
    assert sorted(map(sorted, kinds.values())) == [["job"]] * (len(kinds) - 1) + [["run"]], kinds
    assert records.runs(str(work))[-1]["status"] == "finished"


def test_a_containment_change_reruns_the_rule_on_request(work):
    policy = "rerun_on_change: true\n" + POLICY
    (work / "containment.yaml").write_text(policy % "contain")
    run(work)
    (work / "containment.yaml").write_text(policy % "containall")  # only rule two's containment changes
    chown_tree(work)
    dry = snakemake(work, "-n", "--config", f"image={work / 'img.sif'}")
    assert dry.returncode == 0, dry
    assert "Params have changed since last execution" in dry.output and "rule two:" in dry.output, dry
    assert "rule one:" not in dry.output, dry  # its containment is the same
