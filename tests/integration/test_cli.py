"""The `singcontain` command, run as the ordinary user on real workflows: it runs Snakemake's own dry run, so
each call here costs one Snakemake start (~1-2 s); the workflows are made once per module."""

import json
import re
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from snakemake_singcontain.policy import load_policy
from support import as_user, chown_tree, no_traceback, owned_dir, user_entry

pytestmark = pytest.mark.apptainer

SINGCONTAIN = str(Path(sys.executable).with_name("singcontain"))

SNAKEFILE = """\
from snakemake_singcontain import contain
contain(workflow, "containment.yaml")

container: config["image"]
SCRATCH = config["scratch"]

rule all:
    input: "results/plot.txt"

rule simulate_mc:
    output: SCRATCH + "/sim_{sample}.txt"
    log: "logs/simulate_{sample}.log"
    shell: "cat /site/conf.txt > {output}; echo {wildcards.sample} >> {output}; echo ok > {log}"

rule plot:
    input: expand(SCRATCH + "/sim_{sample}.txt", sample=["a", "b"])
    output: "results/plot.txt"
    shell: "cat {input} > {output}"
"""

POLICY = """\
version: 1
defaults:
  containment: contain
  namespaces: [pid]
  binds: ["{site}:/site:ro"]
presets:
  scratch: {{binds: ["{scratch}:rw"]}}
rules:
  "simulate_*": {{use: [scratch], containment: containall, namespaces: [ipc]}}
  plot: {{containment: none}}
"""


def singcontain(work: Path, *args: str):
    return as_user([SINGCONTAIN, *args], cwd=work)


def make_workflow(prefix: str, policy: str | None, snakefile: str = SNAKEFILE) -> tuple[Path, Path, Path]:
    work, site, scratch = owned_dir(prefix), owned_dir(prefix + "site-"), owned_dir(prefix + "scratch-")
    (site / "conf.txt").write_text("conditions\n")
    (work / "Snakefile").write_text(snakefile)
    if policy is not None:
        (work / "containment.yaml").write_text(policy.format(site=site, scratch=scratch))
    chown_tree(work), chown_tree(site)
    return work, site, scratch


@pytest.fixture(scope="module")
def clean():
    return make_workflow("singcontain-cli-", POLICY)


def config(image: str, scratch: Path) -> list[str]:
    # The user's own Snakemake options, as for their run (a run without --sdm apptainer is not contained).
    return ["--sdm", "apptainer", "--config", f"image={image}", f"scratch={scratch}"]


def snakemakes_own_binds() -> str:
    """Snakemake 9 binds its source cache into every job (8.x does not); the plugin binds it read-only."""
    if version("snakemake").startswith("8."):
        return ""
    cache = f"{user_entry().pw_dir}/.cache/snakemake/snakemake/source-cache"
    return f" --bind {cache}:{cache}:ro"




@pytest.mark.snakemake_internals   # the DAG from Snakemake's own dry run
def test_check_clean_workflow(image, clean):
    work, _, scratch = clean
    run = singcontain(work, "check", *config(image, scratch))
    assert run.returncode == 0, run
    assert "building the DAG with Snakemake" in run.output
    rows = {line.split()[0]: line.split() for line in run.output.splitlines()
            if line.startswith(("plot ", "simulate_mc "))}
    assert rows["simulate_mc"][1:3] == ["containall", "pid,ipc"], run
    assert rows["simulate_mc"][-1] == "2" and rows["plot"][-1] == "1", run
    assert rows["plot"][1] == "none", run
    assert "3 jobs of 2 rules checked: no findings." in run.output, run
    assert not list(scratch.iterdir()) and not (work / "results/plot.txt").exists()


def test_check_output_under_readonly_bind(image):
    """exit 1, the finding with its fix, and nothing ran; --format json carries the same finding."""
    policy = "version: 1\ndefaults:\n  binds: ['{site}:/site:ro', '{scratch}:ro']\n"
    work, _, scratch = make_workflow("singcontain-cli-ro-", policy)
    run = singcontain(work, "check", *config(image, scratch))
    assert run.returncode == 1, run
    assert re.search(rf"^error SC402 rule simulate_mc: output {scratch}/sim_\w\.txt is not writable",
                     run.output, re.M), run
    assert "(and 1 more jobs of this rule)" in run.output and "job: simulate_mc[sample=" in run.output, run
    assert "fix: write it elsewhere, or bind its folder writable (`:rw` after the bind, or `mode: rw` in the long form)" in run.output, run
    assert "1 error." in run.output, run
    no_traceback(run)

    run = singcontain(work, "check", "--format", "json", *config(image, scratch))
    assert run.returncode == 1, run
    audit, _ = json.JSONDecoder().raw_decode(run.output, run.output.index("{"))  # stderr's progress line follows
    assert {f["code"] for f in audit["findings"]} == {"SC402"}
    assert set(audit["rules"]) == {"simulate_mc", "plot"}
    assert not list(scratch.iterdir()) and not (work / "logs").exists() and not (work / "results/plot.txt").exists()


def test_policy_syntax_error(image):
    policy = "version: 1\nrules:\n  plot:\n    containment: sealed\n"
    work, _, scratch = make_workflow("singcontain-cli-syntax-", policy)
    run = singcontain(work, "check", *config(image, scratch))
    assert run.returncode == 2, run
    assert f"{work}/containment.yaml:4: unknown containment 'sealed'" in run.output, run
    assert "fix: use one of: none, contain, containall" in run.output, run
    no_traceback(run)


def test_explain_a_job(image, clean):
    work, site, scratch = clean
    run = singcontain(work, "explain", "--target", f"{scratch}/sim_a.txt", *config(image, scratch))
    assert run.returncode == 0, run
    assert "job simulate_mc[sample=a] (rule simulate_mc)" in run.output, run
    assert re.search(r"containment +containall +rules\['simulate_\*'\] \(containment\.yaml:9\)", run.output), run
    assert re.search(rf"{site} +/site +ro +defaults \(containment\.yaml:5\)", run.output), run
    assert re.search(rf"{scratch} +{scratch} +rw +preset scratch \(containment\.yaml:7\)", run.output), run
    assert re.search(r"^  workdir +ro +built-in$", run.output, re.M), run
    command = next(line.strip() for line in run.output.splitlines() if " exec --home " in line)
    # The workdir read-only after the binds of its parents, only the log's folder in it writable.
    # containall cleans the environment: the job's own thread counts cross it, shown as {threads}.
    threads = "".join(f" --env '{name}_THREADS={{threads}}'" for name in
                      ("OMP_NUM", "GOTO_NUM", "OPENBLAS_NUM", "MKL_NUM", "VECLIB_MAXIMUM", "NUMEXPR_NUM"))
    assert re.fullmatch(rf"(apptainer|singularity) exec --home {work} --containall{re.escape(threads)} --bind {site}:/site:ro "
                        rf"--bind {scratch}:{scratch}:rw --bind {work}:{work}:ro --bind {work}/logs:{work}/logs:rw"
                        rf"{snakemakes_own_binds()} {image} bash -c '…'", command), run

    run = singcontain(work, "explain", "plot", *config(image, scratch))  # a rule without wildcards
    assert run.returncode == 0, run
    assert re.search(r"containment +none +rules\['plot'\] \(containment\.yaml:10\)", run.output), run
    assert re.search(r"namespaces +pid +defaults \(containment\.yaml:4\)", run.output), run
    # containment none: the runtime's default /tmp mount shows the inputs in scratch (under /tmp), no auto-bind;
    # the workdir read-only but for the output's folder, as in every container
    assert re.search(rf" exec --home {work} --pid --bind {site}:/site:ro --bind {work}:{work}:ro --bind "
                     rf"{work}/results:{work}/results:rw{snakemakes_own_binds()} {image} bash -c '…'$",
                     run.output, re.M), run

    run = singcontain(work, "explain", "simulate_mc", "--wildcards", "sample=b", *config(image, scratch))
    assert run.returncode == 0 and "job simulate_mc[sample=b] (rule simulate_mc)" in run.output, run
    run = singcontain(work, "explain", "simulate_mc", "--wildcards", "sample=zz", *config(image, scratch))
    assert run.returncode == 2 and "no job of rule simulate_mc has sample=zz (2 jobs in this DAG)" in run.output, run


def test_init_writes_a_starter_and_never_overwrites(image):
    work, _, scratch = make_workflow("singcontain-cli-init-", None)  # contain() names a file not there yet
    run = singcontain(work, "init", *config(image, scratch))
    assert run.returncode == 0, run
    assert "Left out, as they run nothing: all." in run.output, run
    text = (work / "containment.yaml").read_text()
    assert [line for line in text.splitlines() if re.match(r"  # \w+: \{\}$", line)] == [
        "  # simulate_mc: {}", "  # plot: {}"]
    assert "version: 1" in text and "containment: contain" in text and "namespaces: [pid]" in text

    (work / "containment.yaml").write_text("version: 1\n")
    run = singcontain(work, "init", *config(image, scratch))
    assert run.returncode == 2 and "containment.yaml already exists" in run.output, run
    assert (work / "containment.yaml").read_text() == "version: 1\n"
    no_traceback(run)


@pytest.mark.snakemake_internals   # the DAG from Snakemake's own dry run
def test_init_lists_rules_with_snakemake(image, clean):
    """The starter loads as a policy, and `singcontain check` passes with it."""
    work, _, scratch = clean
    run = singcontain(work, "init", "--policy", "starter.yaml", *config(image, scratch))
    assert run.returncode == 0, run
    assert "2 rules (simulate_mc, plot)" in run.output, run
    policy = load_policy(work / "starter.yaml")
    assert policy.defaults.containment == "contain" and policy.rules == ()


def test_report_groups_jobs_with_the_same_flags(image, clean):
    work, _, scratch = clean
    run = singcontain(work, "report", "-o", "grouped.md", *config(image, scratch))
    assert run.returncode == 0, run
    text = (work / "grouped.md").read_text()
    assert re.search(r"^\| simulate_mc\[sample=[ab]\] \(and 1 more with the same flags\) \| containall \|", text, re.M), text


def test_report_lists_every_job(image, clean):
    work, _, scratch = clean
    run = singcontain(work, "report", "--jobs", "-o", "audit.md", *config(image, scratch))
    assert run.returncode == 0, run
    text = (work / "audit.md").read_text()
    jobs_section = text.split("## Jobs")[1].split("\n## ")[0]
    jobs = [line.split(" | ")[0].removeprefix("| ") for line in jobs_section.splitlines()
            if line.startswith("| ") and not line.startswith("| Job ")]
    assert sorted(jobs) == ["plot", "simulate_mc[sample=a]", "simulate_mc[sample=b]"], text
    assert "| simulate_mc[sample=a] | containall | pid, ipc |" in text
    # containall cleans the environment: each job's thread counts cross it (the run passes the job's number).
    assert "`--containall --env 'OMP_NUM_THREADS={threads}'" in text and "`--pid --bind" in text
    assert "`{threads}`: each job's own thread count" in text


def test_schema_and_module_entry_point(clean):
    work, _, _ = clean
    run = singcontain(work, "schema")
    assert run.returncode == 0, run
    schema = json.loads(run.output)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "containment" in schema["$defs"]["layer"]["properties"]

    run = as_user([sys.executable, "-m", "snakemake_singcontain", "schema", "--path"], cwd=work)
    assert run.returncode == 0 and run.output.strip().endswith("snakemake_singcontain/schema.json"), run
    assert json.loads(Path(run.output.strip()).read_text()) == schema


@pytest.mark.snakemake_internals   # the DAG from Snakemake's own dry run
def test_snakefile_error_is_snakemakes_message(image):
    broken = SNAKEFILE.replace('output: "results/plot.txt"', 'output "results/plot.txt"')
    work, _, scratch = make_workflow("singcontain-cli-smk-", POLICY, snakefile=broken)
    run = singcontain(work, "check", *config(image, scratch))
    assert run.returncode == 2, run
    assert f"{work}/Snakefile" in run.output and "Colon expected after keyword output" in run.output, run
    no_traceback(run)


def test_snakemake_output_is_trimmed_to_its_error():
    """Pure: what is kept of Snakemake's output when it stops before the check (no Snakemake run)."""
    from snakemake_singcontain.cli.run import snakemake_argv, trim_snakemake_output

    site = "/venv/lib/python3.11/site-packages/snakemake"
    crash = (f'Traceback (most recent call last):\n\n  File "{site}/parser.py", line 164, in error\n'
             '    raise SyntaxError(msg)\n\n  File "/work/Snakefile", line 2\n\nSyntaxError: Colon expected.\n\n\n'
             'During handling of the above exception, another exception occurred:\n\n\n'
             f'Traceback (most recent call last):\n\n  File "{site}/exceptions.py", line 20, in format_error\n'
             '    lineno = linemaps[snakefile][lineno]\n\nKeyError: 2\n')
    assert trim_snakemake_output(crash).splitlines()[1:] == ["in /work/Snakefile:2:", "SyntaxError: Colon expected."]
    usage = ("usage: __main__.py [-h] [--dry-run]\n                   [targets ...]\n"
             "__main__.py: error: unrecognized arguments: --bogus\n")
    assert trim_snakemake_output(usage) == "snakemake: error: unrecognized arguments: --bogus"
    refused = ("Assuming unrestricted shared filesystem usage.\nBuilding DAG of jobs...\nContainmentRefused:\n"
               "snakemake-singcontain: /w/containment.yaml:4: unknown containment 'sealed'\n  fix: use one of: none\n")
    assert trim_snakemake_output(refused).splitlines()[1:] == ["/w/containment.yaml:4: unknown containment 'sealed'",
                                                               "  fix: use one of: none"]
    # Our options come first, each list-valued one closed by a flag, so the user's first word may be a target.
    argv = snakemake_argv(["--force", "out.txt"], ["out.txt", "--config", "a=b"])
    # Exactly the user's dry run: no --sdm added (their run would not be contained without it either).
    assert argv[3:] == ["--quiet", "host", "progress", "rules", "--dry-run",
                        "--force", "out.txt", "out.txt", "--config", "a=b"]
