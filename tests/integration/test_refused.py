"""A wrong choice fails before any job runs, with a clear message; and nothing ever runs less contained
than its policy says (fail closed)."""

import os
import pwd
import sys
from pathlib import Path

import pytest

from support import SNAKEMAKE, USER, as_user, chown_tree, owned_dir, snakemake

pytestmark = [pytest.mark.apptainer, pytest.mark.snakemake_internals]

SNAKEFILE = """\
from snakemake_singcontain import contain
contain(workflow, "containment.yaml")
{extra}
rule all:
    input: "{output}"

rule work:
    output: "{output}"
    log: "logs/work.log"
    {container}
    {action}
"""


def workflow(policy: str, *, output="results/out.txt", extra="", container='container: config["image"]',
             action='shell: "echo ran > {output}; echo ran > {log}"') -> Path:
    work = owned_dir("singcontain-refused-")
    (work / "Snakefile").write_text(SNAKEFILE.format(output=output, extra=extra, container=container, action=action))
    (work / "containment.yaml").write_text(policy)
    chown_tree(work)
    return work


def assert_nothing_ran(work: Path, run, *needles):
    assert run.returncode != 0, run
    for needle in needles:
        assert needle in run.output, run
    assert "Traceback" not in run.output and 'File "' not in run.output, run
    assert not (work / "logs").exists() and not (work / "results").exists()


def test_output_under_readonly_bind_is_refused(image):
    site = owned_dir("singcontain-ro-")
    work = workflow(f"version: 1\ndefaults:\n  binds: ['{site}:ro']\n", output=f"{site}/out.txt")
    run = snakemake(work, "--config", f"image={image}")
    assert_nothing_ran(work, run, "SC402", f"output {site}/out.txt is not writable", "nothing was submitted")
    assert not (site / "out.txt").exists()


def test_missing_required_bind_source_is_refused(image):
    work = workflow("version: 1\ndefaults:\n  binds: ['/nonexistent/sft:/cvmfs:ro']\n")
    run = snakemake(work, "--config", f"image={image}")
    assert_nothing_ran(work, run, "SC301", "/nonexistent/sft does not exist", "containment.yaml:3")


def test_dry_run_checks_too(image):
    work = workflow("version: 1\ndefaults:\n  binds: ['/nonexistent/sft:/cvmfs:ro']\n")
    run = snakemake(work, "-n", "--config", f"image={image}")
    assert_nothing_ran(work, run, "SC301")


def test_namespace_disabled_by_site_config_is_refused(image, runtime_with_conf):
    path = runtime_with_conf({"allow pid ns": "no"})
    work = workflow("version: 1\ndefaults:\n  namespaces: [pid]\n")
    run = snakemake(work, "--config", f"image={image}", env={"PATH": f"{path}:{os.environ['PATH']}"})
    assert_nothing_ran(work, run, "SC201", "allow pid ns = no")


def test_policy_without_sdm_apptainer_is_refused(image):
    work = workflow("version: 1\n")
    run = as_user([SNAKEMAKE, "-c1", "--config", f"image={image}"], cwd=work)
    assert_nothing_ran(work, run, "without --sdm apptainer")


def test_contained_run_block_is_refused(image):
    work = workflow("version: 1\n", action='run:\n        shell("echo ran > {output}")')
    run = snakemake(work, "--config", f"image={image}")
    assert_nothing_ran(work, run, "SC103", "run:")


def test_contained_rule_without_image_is_refused():
    work = workflow("version: 1\n", container="")
    run = snakemake(work)
    assert_nothing_ran(work, run, "SC102", "has no image")


def test_contain_called_twice_is_refused(image):
    work = workflow("version: 1\n", extra='contain(workflow, "containment.yaml")')
    run = snakemake(work, "--config", f"image={image}")
    assert_nothing_ran(work, run, "contain() was called twice")


def test_unknown_snakemake_version_is_refused(image):
    work = workflow("version: 1\n")
    fake = "import snakemake, sys; snakemake.__version__ = '10.0.0'; from snakemake.cli import main; sys.exit(main())"
    run = as_user([sys.executable, "-c", fake, "--sdm", "apptainer", "-c1", "--config", f"image={image}"], cwd=work)
    assert_nothing_ran(work, run, "Snakemake 10.0.0 is not supported")


def test_policy_syntax_error_names_file_and_line(image):
    work = workflow("version: 1\nrules:\n  work:\n    containment: sealed\n")
    run = snakemake(work, "--config", f"image={image}")
    assert_nothing_ran(work, run, "containment.yaml:4", "unknown containment 'sealed'", "use one of: none, contain, containall")


def test_snakemakes_own_source_cache_is_read_only_in_the_job(image):
    # Snakemake 9 binds its source cache writable into every container; a contained job could plant code
    # there that later host-side runs use. The plugin drops that bind and binds it read-only, without the
    # duplicate bind Apptainer would warn about on the job's stderr.
    cache = Path(pwd.getpwnam(USER).pw_dir) / ".cache/snakemake/snakemake/source-cache"
    work = workflow("version: 1\ndefaults:\n  containment: containall\n",
                    action=f'shell: "touch {cache}/planted 2>/dev/null && echo wrote > {{output}} || echo refused > {{output}}"')
    run = snakemake(work, "--config", f"image={image}")
    assert run.returncode == 0, run
    assert (work / "results" / "out.txt").read_text() == "refused\n" and not (cache / "planted").exists()
    assert not [line for line in run.output.splitlines() if line.lstrip().startswith("WARNING:")], run
