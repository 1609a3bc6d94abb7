"""A job's start and end in the process that starts its container, without Snakemake: refused before anything
is made for it, or started with its rule's flags; what it may not leave behind goes when it ends."""

import os
from dataclasses import replace

import pytest

from sc_unit import IMAGE, Site, job
from snakemake_singcontain import attest, jobstart, seal

POLICY = """
    version: 1
    defaults:
      containment: contain
      scratch: ${ROOT}/scratch
    """


@pytest.fixture
def started_job(tmp_path, monkeypatch):
    """start() with the probe a run keeps for each rule stood in for: no container starts in a unit test."""
    site = Site(tmp_path)
    site.dir("scratch")
    image = site.path("image.sif")
    open(image, "wb").close()
    checker = site.checker(POLICY)
    sealed = seal.of_check({"a": checker.settings("a")}, image, [image], "20260101-000000-abcd", False)
    monkeypatch.setattr(attest, "attest_rule", lambda *a, **k: (attest.Attestation(("apptainer",), False), []))
    monkeypatch.chdir(site.workdir)

    def start(spec, resources=None, global_args=("--no-umask",)):
        spec = replace(spec, image=image) if spec.image == IMAGE else spec  # the checked image, unless named
        return jobstart.start(checker, spec, sealed, [], list(global_args), {}, 2,
                              resources or {}, None, site.workdir)

    return site, start


def scratch_folders(site) -> list[str]:
    return os.listdir(site.path("scratch"))


def test_a_job_starts_with_its_rules_flags_its_own_tmp_and_the_global_args_last(started_job):
    site, start = started_job
    started = start(job("a", outputs=["results/x.txt"]))
    assert started.argv[-1] == "--no-umask" and "--contain" in started.argv
    assert started.scratch and os.path.dirname(started.scratch) == site.path("scratch")
    assert f"{started.scratch}:/tmp:rw" in started.argv
    assert os.path.isdir(site.path("work", "results"))  # its output folder is made, to be bound writable
    assert jobstart.finish(started) == [] and scratch_folders(site) == []


def test_a_job_writing_outside_its_view_is_refused_and_leaves_nothing(started_job):
    site, start = started_job
    with pytest.raises(jobstart.Refused, match=rf"^SC40\d output {site.path('elsewhere', 'x.txt')} is not writable"):
        start(job("a", outputs=[site.path("elsewhere", "x.txt")]))
    assert scratch_folders(site) == []  # its /tmp folder went with the refusal


def test_an_image_that_was_not_checked_is_refused(started_job):
    site, start = started_job
    other = site.path("other.sif")
    open(other, "wb").close()
    with pytest.raises(jobstart.Refused, match=f"SC501 image {other} was not among the images checked"):
        start(job("a", outputs=["results/x.txt"], image=other))


def test_a_shell_exec_resource_is_refused_at_the_start(started_job):
    _, start = started_job
    with pytest.raises(jobstart.Refused, match="^SC108 its shell_exec resource"):
        start(job("a", outputs=["results/x.txt"]), resources={"shell_exec": "/bin/sh -c 'touch /host'"})


def test_a_global_flag_outside_the_allow_list_is_refused(started_job):
    _, start = started_job
    with pytest.raises(jobstart.Refused, match="SC104 .*--writable-tmpfs"):
        start(job("a", outputs=["results/x.txt"]), global_args=["--writable-tmpfs"])
