"""The docs say nothing the product contradicts: every sentence in README.md and docs/ that calls something
planned, not yet done or to come is listed here with a check of the product that keeps it true; a new such
sentence fails until it is checked too (or rewritten to say what is)."""

import re
import tomllib
from pathlib import Path

from snakemake_singcontain.policy.load import TOP_KEYS

ROOT = Path(__file__).resolve().parents[2]
# "planned" as a promise, not as in "the plan" (weaker than planned, a planned bind: the attestation's terms).
PROMISE = re.compile(r"\b((?<!than )planned(?! bind| mount)|not yet|not implemented|in a future|future (release|version)|will be added|"
                     r"coming soon|to be added|TODO|not done|later version|on the roadmap)\b", re.I)


def entry_point_groups() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project.get("entry-points", {}))


# A snippet of each known sentence -> why it is true, checked against the product.
KNOWN = {
    # records.md: a run's status while it runs; about the run, not the product.
    "not done yet) or *unknown*": lambda: True,
    # records.md: a report plugin that carries the records is not written: the package registers none.
    "reporter. Not done.": lambda: not any("report" in group for group in entry_point_groups()),
}


def promises() -> list[tuple[str, int, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PROMISE.search(line):
                found.append((path.name, number, line))
    return found


def test_every_promise_in_the_docs_is_known_and_checked():
    unchecked = [f"{name}:{number}: {line}" for name, number, line in promises()
                 if not any(snippet in line for snippet in KNOWN)]
    assert not unchecked, "docs promise what no test checks:\n" + "\n".join(unchecked)
    for snippet, holds in KNOWN.items():
        assert holds(), snippet


def test_the_rerun_trigger_is_described_as_it_is():
    assert "rerun_on_change" in TOP_KEYS  # it exists, so no doc may call it planned
    for name in ("quickstart.md", "policy.md", "records.md"):
        text = (ROOT / "docs" / name).read_text()
        assert "rerun_on_change: true" in text, name
        assert not re.search(r"(trigger|rerun)[^.]*\bplanned\b", text, re.I), name


def test_hpc_htcondor_says_how_to_install_the_executor_where_the_profile_goes_and_a_running_pool():
    text = (ROOT / "docs" / "hpc.md").read_text()
    section = text.split("## HTCondor")[1].split("\n## Trying it on one machine")[0]
    assert "pip install snakemake-executor-plugin-htcondor==" in section
    assert "profiles/htcondor/config.yaml" in section and "--profile profiles/htcondor" in section
    assert "already up" in section and "port 9618" in section
    # The version named is the one the tests install (tools/venv.sh).
    version = re.search(r"snakemake-executor-plugin-htcondor==([\d.]+)", section).group(1)
    assert f"snakemake-executor-plugin-htcondor=={version}" in (ROOT / "tools" / "venv.sh").read_text()
