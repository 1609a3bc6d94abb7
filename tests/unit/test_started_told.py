"""SC207's words blame what is at fault when a rule's image is started with its flags before the run: the image
(the shell Snakemake starts every job with is missing), the site's runtime (a warning that it weakened the
flags), or the flags themselves; a start as asked tells what the probe found instead."""

from snakemake_singcontain.attest import Attestation
from snakemake_singcontain.findings import ERROR, NOTE, Finding
from snakemake_singcontain.preflight import started_findings

COMMAND = ("apptainer", "exec", "--home", "/w", "--pid", "/images/img.sif", "bash", "-c")


def told(**seen) -> Finding:
    [finding] = started_findings("plot", "docker://alpine", Attestation(COMMAND, False, **seen), [])
    assert (finding.code, finding.severity, finding.rule) == ("SC207", ERROR, "plot")
    return finding


def test_a_missing_shell_blames_the_image_as_the_workflow_names_it():
    found = told(failure='FATAL:   "bash": executable file not found in $PATH', fault="shell")
    assert found.message.startswith("the image docker://alpine has no `bash`, which Snakemake starts every job with")
    assert found.fix.startswith("add bash to the image") and "admin" not in found.fix and "policy" not in found.fix


def test_a_weakened_flag_blames_the_site_configuration():
    found = told(warnings=("WARNING: Not virtualizing pid namespace by configuration",))
    assert "the site's configuration" in found.message and "Not virtualizing pid" in found.message
    assert "ask the site admin" in found.fix
    assert "apptainer exec --home /w --pid /images/img.sif bash -c true" in found.fix


def test_another_failure_shows_the_command_to_run_again():
    found = told(failure="FATAL: container creation failed", fault="runtime")
    assert found.message == "starting the image with this rule's flags failed: FATAL: container creation failed"
    assert "run `apptainer exec --home /w --pid /images/img.sif bash -c true`" in found.fix


def test_a_start_as_asked_tells_what_the_probe_found():
    note = Finding("SC605", NOTE, "plot", "stricter than planned", "nothing to do")
    assert started_findings("plot", "img.sif", Attestation(COMMAND, False), [note]) == [note]
