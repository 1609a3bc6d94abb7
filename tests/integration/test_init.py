"""`singcontain init` and `explain` as a new user meets them: run from another folder, on a workflow that uses a
module and has an `all` rule, init writes a starter policy beside the Snakefile that lists the rules that run
something; explain on a rule with wildcards says how to name one of its jobs."""

import re
import shutil
import sys
from pathlib import Path

import pytest

from snakemake_singcontain.policy import load_policy
from support import as_user, chown_tree, owned_dir

pytestmark = [pytest.mark.apptainer, pytest.mark.snakemake_internals]

SINGCONTAIN = str(Path(sys.executable).with_name("singcontain"))

MODULE = """\
rule align:
    output: "aligned/{s}.txt"
    shell: "echo {wildcards.s} > {output}"

rule count:
    input: "aligned/{s}.txt"
    output: "counts/{s}.txt"
    shell: "wc -l {input} > {output}"
"""

SNAKEFILE = """\
rule all:
    input: expand("summary/{s}.txt", s=["a", "b"])

module tools:
    snakefile: "../module/Snakefile"

use rule * from tools as tools_*

rule summarize:
    input: "counts/{s}.txt"
    output: "summary/{s}.txt"
    shell: "cat {input} > {output}"
"""


@pytest.fixture
def project():
    """project/module/Snakefile (the module) and project/analysis/Snakefile (the workflow), owned by the user."""
    root = owned_dir("singcontain-init-")
    (root / "module").mkdir()
    (root / "module" / "Snakefile").write_text(MODULE)
    (root / "analysis").mkdir()
    chown_tree(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def write_snakefile(project: Path, text: str) -> None:
    (project / "analysis" / "Snakefile").write_text(text)
    chown_tree(project)


def entries(policy_text: str) -> list[str]:
    return re.findall(r"^  # (\w+): \{\}$", policy_text, re.M)


def test_init_writes_beside_the_snakefile_with_module_rules_and_no_norun_rules(project):
    write_snakefile(project, SNAKEFILE)  # no contain(): run under SINGCONTAIN_POLICY later
    run = as_user([SINGCONTAIN, "init", "-s", "analysis/Snakefile"], cwd=project)
    assert run.returncode == 0, run
    policy = project / "analysis" / "containment.yaml"
    assert policy.is_file() and not (project / "containment.yaml").exists(), run
    text = policy.read_text()
    # The module's rules by their names in this workflow; `all` runs nothing and gets no entry.
    assert entries(text) == ["tools_align", "tools_count", "summarize"], text
    assert "Left out, as they run nothing: all." in run.output, run
    # Next: both ways to load it.
    assert 'contain(workflow, "containment.yaml")' in run.output, run
    assert "SINGCONTAIN_POLICY=analysis/containment.yaml snakemake" in run.output, run
    assert "--policy analysis/containment.yaml" in run.output, run
    # No path of this machine's Python environment in a file meant to be shared.
    assert "site-packages" not in text and "$schema=/" not in text, text
    assert "yaml-language-server: $schema=containment.schema.json" in text and "singcontain schema >" in text

    # The starter loads; with its DUST example switched on, DUST is bound at its own path (no second view
    # such as /dust of the same writable folder).
    assert load_policy(policy).defaults.containment == "contain"
    on = re.sub(r"^  # (binds:|  - \")", r"  \1", text, flags=re.M)
    policy.write_text(on)
    binds = load_policy(policy, env={"DUST": "/data/dust/alice", "USER": "alice"}).defaults.binds
    assert [(b.src, b.dst, b.mode) for b in binds] == [("/data/dust/alice", "/data/dust/alice", "rw")], on


def test_init_writes_where_contain_points_and_never_overwrites(project):
    write_snakefile(project, 'from snakemake_singcontain import contain\ncontain(workflow, "config/policy.yaml")\n\n'
                             + SNAKEFILE)
    (project / "analysis" / "config").mkdir()
    chown_tree(project)
    run = as_user([SINGCONTAIN, "init", "-s", "analysis/Snakefile"], cwd=project)
    assert run.returncode == 0, run
    policy = project / "analysis" / "config" / "policy.yaml"
    assert entries(policy.read_text()) == ["tools_align", "tools_count", "summarize"], run
    assert "the Snakefile's contain() already loads it" in run.output, run

    policy.write_text("version: 1\n")
    run = as_user([SINGCONTAIN, "init", "-s", "analysis/Snakefile"], cwd=project)
    assert run.returncode == 2 and "analysis/config/policy.yaml already exists" in run.output, run
    assert policy.read_text() == "version: 1\n" and "Traceback" not in run.output


def test_explain_a_rule_with_wildcards_names_them_with_an_example(project):
    write_snakefile(project, SNAKEFILE)
    (project / "analysis" / "containment.yaml").write_text("version: 1\n")
    chown_tree(project)
    run = as_user([SINGCONTAIN, "explain", "tools_count", "--policy", "containment.yaml"], cwd=project / "analysis")
    assert run.returncode == 2, run
    assert "rule tools_count has wildcards (s)" in run.output, run
    assert "singcontain explain tools_count --wildcards s=a" in run.output, run
    assert "singcontain explain --target counts/a.txt" in run.output, run
    assert "Target rules may not contain wildcards" not in run.output and "Traceback" not in run.output, run
    # The example works as given (exit 1 only for this policy's own finding: no image is named).
    run = as_user([SINGCONTAIN, "explain", "tools_count", "--wildcards", "s=a", "--policy", "containment.yaml"],
                  cwd=project / "analysis")
    assert run.returncode in (0, 1) and "job tools_count[s=a] (rule tools_count)" in run.output, run
