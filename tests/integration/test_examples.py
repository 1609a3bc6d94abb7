"""The shipped examples (examples/workflows/*) run end to end in the real Apptainer as an ordinary user, with
stand-in site folders outside the work folder: one Snakemake run each, asserting what a user looks at."""

import os
import re
import shutil
from pathlib import Path

import pytest

from support import ROOT, chown_tree, owned_dir, snakemake

pytestmark = pytest.mark.apptainer

EXAMPLES = ROOT / "examples" / "workflows"


@pytest.fixture
def folder():
    """folder(prefix) -> a fresh folder owned by the test user, removed after the test."""
    made = []

    def make(prefix: str) -> Path:
        made.append(owned_dir(prefix))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def example(folder, name: str) -> tuple[Path, Path]:
    """A fresh copy of an example as the test user's work folder, its stand-in folders moved out of it
    (into a site folder), as a site's /cvmfs or shared data lie outside the workdir."""
    work, site = folder(f"singcontain-ex-{name}-"), folder(f"singcontain-ex-{name}-site-")
    shutil.copytree(EXAMPLES / name, work, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".snakemake", "results", "logs"))
    if (work / "stand-in").exists():
        shutil.copytree(work / "stand-in", site, dirs_exist_ok=True)
        shutil.rmtree(work / "stand-in")
    chown_tree(work), chown_tree(site)
    return work, site


def read_only(path: Path) -> None:
    """Like a real /cvmfs: nobody writes there."""
    for p in [path, *path.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)


FINDING = re.compile(r"^(error|warning|note) (SC\d{3}) rule (.+?): ", re.M)


def findings(text: str) -> set[tuple[str, str, str]]:
    """(severity, code, rule) of every finding printed in `text`."""
    return set(FINDING.findall(text))


def test_hep_cvmfs_dust(image, folder):
    work, site = example(folder, "hep-cvmfs-dust")
    dust = folder("singcontain-ex-dust-")
    read_only(site / "cvmfs"), read_only(site / "afs")
    run = snakemake(work, "--config", f"image={image}",
                    env={"CVMFS_ROOT": str(site / "cvmfs"), "AFS_ROOT": str(site / "afs"), "DUST": str(dust)})
    assert run.returncode == 0, run
    assert not findings(run.output), run

    # The simulation (containall) wrote into DUST through its writable bind, using /cvmfs and /afs.
    sims = sorted((dust / "hep-cvmfs-dust" / "sim").iterdir())
    assert [p.name for p in sims] == ["run1.txt", "run2.txt", "run3.txt"]
    for number, sim in enumerate(sims, 1):
        header, *masses = sim.read_text().splitlines()
        assert header == (f"# hepgen 1.2 run {number}, 2000 events, "
                          "conditions /afs/example.org/conditions/2024/zmumu.txt")
        assert len(masses) == 2000 and all(re.fullmatch(r"\d+\.\d{3}", m) for m in masses)
        assert (work / "logs" / "simulate" / f"run{number}.log").read_text() == \
            f"hepgen: run {number}: 2000 events generated\n"
    assert not list(work.glob("**/run1.txt"))  # nothing of the simulation in the workdir

    # The plot (contain + pid) read DUST back (auto-bind) and binned as the /afs conditions say.
    histogram = (work / "results" / "mass_histogram.txt").read_text().splitlines()
    summary = re.fullmatch(r"# m\(mu mu\) \[GeV\]: 6000 events, mean (\S+), rms (\S+), \d+ below 80, \d+ above 102",
                           histogram[0])
    assert summary and 90 < float(summary[1]) < 92.5, histogram[0]
    assert len(histogram) == 23 and histogram[1].startswith("  80.0-  81.0 | ")
    peak = max(histogram[1:], key=lambda line: int(line.split()[-1]))
    assert peak.split("|")[0].strip() in ("90.0-  91.0", "91.0-  92.0") and "#" * 50 in peak
    assert not list((site / "cvmfs").rglob("*.txt"))  # nothing written to the stand-in /cvmfs


SUMMARY = """\
sample\treads\tmapped\tmapped_percent\tchrA\tchrB
brain\t10\t9\t90.0\t2\t7
kidney\t8\t5\t62.5\t1\t4
liver\t12\t9\t75.0\t5\t4
"""


def test_bio_reference_ro(image, folder):
    work, site = example(folder, "bio-reference-ro")
    reference = site / "reference" / "toy-genome"
    read_only(reference)
    marker = Path(f"/dev/shm/singcontain-ex-marker-{os.getpid()}")
    marker.touch()
    try:
        run = snakemake(work, "--config", f"image={image}", f"reads={site / 'reads'}",
                        env={"REFERENCE_DIR": str(reference)})
    finally:
        marker.unlink()
    assert run.returncode == 0, run
    assert not findings(run.output), run

    # The reference (read-only bind, its undeclared .fai included) and the reads outside the workdir
    # (auto-binds) were visible under contain.
    assert (work / "results" / "reference.tsv").read_text() == \
        "contig\tlength\tgc_percent\nchrA\t300\t40.7\nchrB\t180\t55.0\n"
    assert (work / "results" / "liver.hits.tsv").read_text().splitlines()[:2] == \
        ["liver.1\tchrA\t243", "liver.2\tchrA\t136"]
    assert (work / "logs" / "align" / "kidney.log").read_text() == "8 reads, 5 mapped\n"
    assert (work / "results" / "summary.tsv").read_text() == SUMMARY

    # summarize (ipc + contain) had its own /dev/shm: its scratch there, not the host's marker; and the
    # scratch it never removed is not on the host.
    log = (work / "logs" / "summarize.log").read_text()
    scratch = re.match(r"scratch: (/dev/shm/summarize\.\w+);", log)[1]
    assert log.split("holds: ")[1].split() == [Path(scratch).name]
    assert not Path(scratch).exists()


def test_refused_lists_every_mistake_and_runs_nothing(image, folder):
    work, site = example(folder, "refused")
    run = snakemake(work, "--config", f"image={image}", env={"CONDITIONS_DIR": str(site / "conditions")})
    assert run.returncode != 0, run
    assert "nothing was submitted" in run.output and "Traceback" not in run.output, run
    assert findings(run.output) == {
        ("error", "SC402", "calibrate"), ("error", "SC104", "fit"), ("error", "SC306", "plot"),
        ("error", "SC301", "reconstruct"), ("error", "SC101", "simulate_*"), ("error", "SC103", "summary"),
        ("warning", "SC404", "inspect"), ("note", "SC302", "inspect"),
    }, run
    # Each names what is wrong: the output, the missing source, the key.
    lines = {code: line for line in run.output.splitlines() for code in ("SC402", "SC301", "SC101") if code in line}
    assert f"{site}/conditions/alignment-v2.txt" in lines["SC402"], run
    assert "/cvmfs/sft.example.org" in lines["SC301"] and "'simulate_*'" in lines["SC101"], run
    # No job ran: no results, no logs, nothing written beside the conditions.
    assert not (work / "results").exists()
    assert sorted(p.name for p in (site / "conditions").iterdir()) == ["alignment.txt"]

    # The README shows exactly these findings.
    assert findings((EXAMPLES / "refused" / "README.md").read_text()) == findings(run.output)
