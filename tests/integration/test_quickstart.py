"""docs/quickstart.md, followed as written: its shell blocks (```bash) run in order in one shell, as the ordinary
user in an empty folder, and its files (a ```python or ```yaml block whose first line is `# FILENAME`) are
written where they appear. The only change: the checkout's placeholder path names this checkout (whose
tools/build-test-image.sh builds the image, as step 0b says: no registry here). This machine has no /cvmfs
nor DUST, so step 0's stand-ins are what the jobs see."""

import re
import shutil
from pathlib import Path

import pytest

from support import ROOT, as_user, owned_dir

pytestmark = pytest.mark.apptainer

QUICKSTART = ROOT / "docs" / "quickstart.md"
CHECKOUT_IN_DOCS = "/path/to/snakemake-singcontain"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def script_from(markdown: str, checkout: str) -> str:
    """One bash script: each file block becomes a heredoc, each bash block its own lines, in document order."""
    steps = []
    for lang, body in BLOCK.findall(markdown):
        first = body.split("\n", 1)[0]
        if lang in ("python", "yaml") and re.fullmatch(r"# [\w.-]+", first):
            assert "QUICKSTART_EOF" not in body
            steps.append(f"cat > {first[2:]} <<'QUICKSTART_EOF'\n{body}QUICKSTART_EOF")
        elif lang == "bash":
            steps.append(body.replace(CHECKOUT_IN_DOCS, checkout))
    return "set -euo pipefail\n" + "\n".join(steps)


def test_script_has_every_step():
    script = script_from(QUICKSTART.read_text(), str(ROOT))
    assert script.count("cat > ") == 2 and "cat > Snakefile" in script and "cat > containment.yaml" in script
    assert "snakemake -n --sdm apptainer" in script and "snakemake --sdm apptainer -c2" in script
    assert f"bash {ROOT}/tools/build-test-image.sh image.sif" in script and 'container: "image.sif"' in script
    assert "pip install" not in script and "--executor slurm" not in script  # not run here: plain blocks


@pytest.fixture
def work():
    path = owned_dir("singcontain-quickstart-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_quickstart_runs_as_written(work):
    assert not Path("/cvmfs").exists() and not Path("/nfs/dust").exists(), "the test expects a machine without a site"
    markdown = QUICKSTART.read_text()
    run = as_user(["bash", "-c", script_from(markdown, str(ROOT))], cwd=work)
    assert run.returncode == 0, run
    assert "Traceback" not in run.output and "error SC" not in run.output, run
    # The simulation wrote into the DUST stand-in through its writable bind; the plot read it back.
    sims = sorted((work / "stand-in" / "dust" / "sim").iterdir())
    assert [p.name for p in sims] == ["0.txt", "1.txt", "2.txt"], run
    assert (work / "plots" / "runs.txt").read_text() == "run 0\nrun 1\nrun 2\n"
    # singcontain check (step 3) summarised both rules, and nothing was written to the /cvmfs stand-in.
    assert re.search(r"\bsimulate\b.*containall", run.output) and re.search(r"\bplot\b", run.output), run
    assert not list((work / "stand-in" / "cvmfs").iterdir())


def test_the_refusal_shown_in_step_3_is_what_a_laptop_without_step_0_gets(work):
    markdown = QUICKSTART.read_text()
    shown = markdown.split("e.g. without step 0 on a laptop:\n\n```\n", 1)[1].split("```", 1)[0]
    expected = [line for line in shown.splitlines() if line.startswith(("error SC301", "    "))]
    assert expected and "DUST is not set" in expected[0]
    # Every step but step 0 (its stand-ins), up to the dry run that refuses.
    script = script_from(markdown, str(ROOT)).replace("[ -d /cvmfs ] ||", "true ||").replace(
        '[ -d "${DUST:-/nfs/dust/$USER}" ] ||', "true ||")
    script = script.split("snakemake -n --sdm apptainer")[0] + "snakemake -n --sdm apptainer\n"
    run = as_user(["bash", "-c", script], cwd=work)
    assert run.returncode != 0, run
    for line in expected:
        line = line.replace("/home/alice/analysis", str(work)).replace("alice", "singtest")
        assert line in run.output, (line, run)
