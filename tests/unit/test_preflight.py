"""Findings about the run that only its Snakemake process sees, and what happens around a job's container."""

import os
import time

import pytest

from snakemake_singcontain import jobstart
from snakemake_singcontain.findings import ERROR, WARNING
from snakemake_singcontain.preflight import image_findings, node_local_paths

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


def test_links_planted_among_outputs_are_removed_where_snakemake_would_follow_them(tmp_path):
    site = Site(tmp_path)
    secret = tmp_path / "home" / "secret"
    secret.parent.mkdir()
    secret.write_text("s")
    out = tmp_path / "work" / "results"
    spec = job("a", inputs=["data/in.txt"], outputs=["results/out.txt", "results/link.txt", "results/kept.txt"],
               protected=frozenset({str(out / "kept.txt")}))
    plan = site.checker("version: 1\n").job_plan(spec)
    out.mkdir()
    (tmp_path / "work" / "data").mkdir()
    (tmp_path / "work" / "data" / "in.txt").write_text("in")
    os.symlink(secret, out / "out.txt")                               # out of the job's view: removed
    os.symlink(tmp_path / "work" / "data" / "in.txt", out / "link.txt")  # `ln -s {input}`: Snakemake only reads it
    os.symlink(tmp_path / "work" / "data" / "in.txt", out / "kept.txt")  # protected(): Snakemake would chmod the input
    planted = jobstart.remove_planted_links(plan)
    assert sorted(planted) == sorted([f"{out / 'out.txt'} -> {secret}", f"{out / 'kept.txt'} -> {tmp_path}/work/data/in.txt"])
    assert not (out / "out.txt").is_symlink() and (out / "link.txt").is_symlink() and secret.exists()
    assert not (out / "kept.txt").is_symlink()


def test_a_folder_on_the_way_to_an_output_swapped_for_a_link_is_removed(tmp_path):
    # A job (this one, or one before it) replaced results/sub by a link to a host folder: Snakemake's chmod of
    # the protected() output would follow it. The user's own links at the workdir's top are followed.
    site = Site(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    (home / "x.txt").write_text("host")
    spec = job("a", outputs=["results/sub/x.txt"], protected=frozenset({str(tmp_path / "work/results/sub/x.txt")}))
    plan = site.checker("version: 1\n").job_plan(spec)
    (tmp_path / "work" / "results").mkdir(parents=True)
    os.symlink(home, tmp_path / "work" / "results" / "sub")
    assert jobstart.remove_planted_links(plan) == [f"{tmp_path}/work/results/sub -> {home}"]
    assert not (tmp_path / "work" / "results" / "sub").is_symlink() and (home / "x.txt").exists()
    scratch = tmp_path / "scratch"
    (scratch / "sub").mkdir(parents=True)
    (tmp_path / "work" / "results").rmdir()
    os.symlink(scratch, tmp_path / "work" / "results")  # the user's, at the top
    assert jobstart.remove_planted_links(plan) == [] and (tmp_path / "work" / "results").is_symlink()


def test_a_top_level_output_the_job_never_wrote_goes_again(tmp_path):
    # Made empty and bound alone for the job; if the job never wrote it, Snakemake must see it missing.
    site = Site(tmp_path)
    plan = site.checker("version: 1\n").job_plan(job("a", outputs=["all.done", "report.html"]))
    (tmp_path / "work").mkdir(exist_ok=True)
    resolved, made = jobstart.resolved(plan)
    assert sorted(made) == [f"{tmp_path}/work/all.done", f"{tmp_path}/work/report.html"]
    time.sleep(0.05)  # the kernel's file times tick in milliseconds
    (tmp_path / "work" / "report.html").write_text("<html></html>")
    assert jobstart.finish(jobstart.Started("/images/x.sif", [], resolved, made)) == []
    assert not (tmp_path / "work" / "all.done").exists() and (tmp_path / "work" / "report.html").exists()
