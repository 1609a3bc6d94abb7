"""Findings about the run that only its Snakemake process sees, and what happens around a job's container."""

import os

import pytest

from snakemake_singcontain import jobstart
from snakemake_singcontain.findings import ERROR, WARNING
from snakemake_singcontain.run_checks import image_findings, node_local_paths

from sc_unit import Site, job


@pytest.mark.parametrize("executor, severity", [("htcondor", ERROR), ("slurm", WARNING), ("cluster-generic", WARNING)])
def test_a_batch_job_needing_a_node_local_path_is_told(executor, severity):
    found = node_local_paths(executor, [("every rule", "the workdir", "/tmp/alice/work"),
                                        ("sim", "the scratch folder", "/var/tmp"),
                                        ("plot", "the writable bind of", "/tmpdata/plots")])  # not /tmp itself
    assert [(f.code, f.severity, f.rule) for f in found] == [("SC213", severity, "every rule"),
                                                            ("SC213", severity, "sim")]
    assert "/tmp/alice/work is under /tmp" in found[0].message and found[0].fix


@pytest.mark.parametrize("url, code", [
    ("/images/a b.sif", "SC210"),                    # a word break in Snakemake's host shell command
    ("/images/x.sif;touch$IFS/tmp/p;#", "SC210"),
    ("-o/x.sif", "SC210"),                            # read as an option
    ("instance://running", "SC210"),                  # joins an instance: the rule's flags would not apply
])
def test_unsafe_image_names_are_refused(url, code):
    (found,) = image_findings("a", url, url if "://" not in url else "/images/pulled.simg")
    assert (found.code, found.severity) == (code, ERROR) and found.fix


def test_a_missing_local_image_is_an_error_and_a_remote_one_is_not(tmp_path):
    (found,) = image_findings("a", str(tmp_path / "typo.sif"), str(tmp_path / "typo.sif"))
    assert (found.code, found.severity) == ("SC211", ERROR) and "typo.sif does not exist" in found.message
    assert image_findings("a", "docker://alpine:3.19", str(tmp_path / "not-pulled-yet.simg")) == []
    assert image_findings("a", "docker://alpine:3.19", None) == []  # without --sdm apptainer: no path


def test_a_symlink_planted_among_outputs_is_removed_when_it_leads_outside(tmp_path):
    site = Site(tmp_path)
    secret = tmp_path / "home" / "secret"
    secret.parent.mkdir()
    secret.write_text("s")
    plan = site.checker("version: 1\n").job_plan(job("a", inputs=["data/in.txt"],
                                                     outputs=["results/out.txt", "results/link.txt"]))
    results = tmp_path / "work" / "results"
    results.mkdir()
    (tmp_path / "work" / "data").mkdir()
    (tmp_path / "work" / "data" / "in.txt").write_text("in")
    os.symlink(secret, results / "out.txt")                        # outside what the job saw: removed
    os.symlink(tmp_path / "work" / "data" / "in.txt", results / "link.txt")  # an input it saw: kept
    planted = jobstart.remove_planted_symlinks(plan)
    assert planted == [f"{results / 'out.txt'} -> {secret}"]
    assert not (results / "out.txt").is_symlink() and (results / "link.txt").is_symlink() and secret.exists()
