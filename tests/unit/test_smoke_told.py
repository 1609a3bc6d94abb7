"""SC207's words blame what is at fault: the image (a program Snakemake starts is missing), the site's runtime
(a warning that it weakened the flags), or the flags themselves."""

from snakemake_singcontain.runtime import SmokeResult

ARGV = ("apptainer", "exec", "--home", "/w", "--pid", "img.sif", "bash", "-c", "true")


def test_a_missing_shell_blames_the_image_and_names_the_fix():
    message, fix = SmokeResult(False, fatal='FATAL:   "bash": executable file not found in $PATH', missing="bash",
                               argv=ARGV).told("docker://alpine")
    assert message.startswith("the image docker://alpine has no `bash`, which Snakemake starts every job with")
    assert fix.startswith("add bash to the image") and "admin" not in fix and "policy" not in fix


def test_a_weakened_flag_blames_the_site_configuration():
    message, fix = SmokeResult(False, weakened=("WARNING: Not virtualizing pid namespace by configuration",),
                               argv=ARGV).told("img.sif")
    assert "the site's configuration" in message and "Not virtualizing pid" in message
    assert "ask the site admin" in fix and "apptainer exec --home /w --pid img.sif bash -c true" in fix


def test_another_failure_shows_the_command_to_run_again():
    message, fix = SmokeResult(False, fatal="FATAL: container creation failed", argv=ARGV).told("img.sif")
    assert message == "starting the image with this rule's flags failed: FATAL: container creation failed"
    assert "run `apptainer exec --home /w --pid img.sif bash -c true`" in fix
