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


@pytest.fixture
def work(image):
    work = owned_dir("singcontain-records-")
    (work / "Snakefile").write_text(SNAKEFILE)
    (work / "containment.yaml").write_text(POLICY % "contain")
    shutil.copy(image, work / "img.sif")
    chown_tree(work)
    yield work
    shutil.rmtree(work, ignore_errors=True)


def run(work: Path, *args):
    done = snakemake(work, "--config", f"image={work / 'img.sif'}", *args)
    assert done.returncode == 0, done
    return records.runs(str(work))[-1]["run"]


def test_a_rebuilt_image_and_a_changed_policy_show_per_output(work):
    first = run(work)
    made = records.load(str(work), first)
    assert sorted(o for r in made for o in r["outputs"]) == OUTPUTS
    image_digest = sha256(work / "img.sif")
    for r in made:
        assert r["exit_status"] == 0 and r["runtime"] in ("apptainer", "singularity") and r["runtime_version"]
        assert r["image_path"] == str(work / "img.sif") and r["image_sha256"] == image_digest
        assert "--contain" in r["argv"] and r["start"] <= r["end"]
    assert records.runs(str(work))[-1] | {"start": 0, "end": 0} == {
        "run": first, "status": "finished", "start": 0, "end": 0, "jobs": 3, "failed": 0,
        "rules": {"one": 2, "two": 1}, "hosts": [made[0]["host"]], "unreadable_lines": 0}

    # The image file is replaced at the same path between runs.
    rebuilt = owned_dir("singcontain-records-img-")
    build_image(rebuilt / "img.sif")
    shutil.copy(rebuilt / "img.sif", work / "img.sif")
    shutil.rmtree(rebuilt)
    assert sha256(work / "img.sif") != image_digest
    second = run(work, "--forceall")
    changed = {o["output"]: o["changes"] for o in records.diff(made, records.load(str(work), second))}
    assert changed == {o: [{"what": "image digest", "a": image_digest, "b": sha256(work / "img.sif")}] for o in OUTPUTS}

    # The policy gives rule two --containall instead of --contain.
    (work / "containment.yaml").write_text(POLICY % "containall")
    third = run(work, "--forceall")
    outputs = {o["output"]: o for o in records.diff(records.load(str(work), second), records.load(str(work), third))}
    flags = [c for c in outputs["results/summary.txt"]["changes"] if c["what"] == "flags"]
    assert len(flags) == 1 and "--contain" in flags[0]["removed"] and "--containall" in flags[0]["added"]
    for output in ("results/a.txt", "results/b.txt"):
        assert not [c for c in outputs[output]["changes"] if c["what"] in ("flags", "image digest")]

    # What a user runs.
    shown = as_user([SINGCONTAIN, "diff", first, second], cwd=work)
    assert shown.returncode == 1, shown
    assert f"results/summary.txt (rule two): changed\n  image digest: {image_digest[:12]}… -> " in shown.output
    shown = as_user([SINGCONTAIN, "runs", "--run", "latest"], cwd=work)
    assert shown.returncode == 0, shown
    assert re.search(r"^rule two: 1 job\(s\)\n(.*\n)*  flags    --containall", shown.output, re.M), shown  # no wildcards: no "(-)"


@pytest.mark.skipif(metadata.version("snakemake").startswith("8."), reason="--report-metadata is new in Snakemake 9")
def test_the_html_report_carries_the_latest_runs_record(work):
    run(work)
    template = re.search(r"```yaml\n( *__definitions__:.*?) *```", (ROOT / "docs/records.md").read_text(), re.S)[1]
    (work / "meta.yaml").write_text(textwrap.dedent(template))
    chown_tree(work)
    done = snakemake(work, "--config", f"image={work / 'img.sif'}", "--report", "report.html",
                     "--report-metadata", "meta.yaml")
    assert done.returncode == 0, done
    assert sha256(work / "img.sif") in (work / "report.html").read_text()


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


@pytest.mark.parametrize("opt_in", [True, False])
def test_a_containment_change_reruns_the_rule_only_on_request(work, opt_in):
    policy = POLICY if not opt_in else "rerun_on_change: true\n" + POLICY
    (work / "containment.yaml").write_text(policy % "contain")
    run(work)
    (work / "containment.yaml").write_text(policy % "containall")  # only rule two's containment changes
    chown_tree(work)
    dry = snakemake(work, "-n", "--config", f"image={work / 'img.sif'}")
    assert dry.returncode == 0, dry
    if opt_in:
        assert "Params have changed since last execution" in dry.output and "rule two:" in dry.output, dry
        assert "rule one:" not in dry.output, dry  # its containment is the same
    else:
        assert "Nothing to be done" in dry.output, dry
