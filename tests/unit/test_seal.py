"""The seal: what the submit host checked, written once and read by every job's own Snakemake process.

A job on a node must run exactly the settings checked on the submit host, and refuse when a file the check
read, an image, or a writable folder changed since (SC501, SC502)."""

import json
import os
import time

import pytest

from sc_unit import APPTAINER, codes, job
from snakemake_singcontain import records, seal
from snakemake_singcontain.checker import Checker
from snakemake_singcontain.errors import PolicyError
from snakemake_singcontain.plugins import plugin_manager

POLICY = """
    version: 1
    defaults:
      cleanenv: true
      env: [LANG]
      protected: ['${ROOT}/raw']
      binds: ['${ROOT}/ref:/ref', {src: '${ROOT}/scratch', dst: '/scr:atch', mode: rw, required: false}]
    rules:
      a: {containment: containall, namespaces: [uts], workdir: rw, args: [--no-init]}
      b: {containment: none, auto_binds: false, gpu: true}
    """


@pytest.fixture
def checked(site):
    site.dir("ref")
    c = site.checker(POLICY, rules=["a", "b"])
    return site, c, {rule: c.settings(rule) for rule in ("a", "b")}


def test_round_trip_keeps_the_settings_exactly(checked):
    site, _, settings = checked
    sealed = seal.Seal(settings, "docker://alpine:3.19", {site.path("containment.yaml"): "ab" * 32},
                       {"/images/x.sif": ("/images/x.sif", 123, 456, 789, 10)})
    text = seal.dumps(sealed)
    json.loads(text)  # plain JSON, written by the main process and read on a node
    back = seal.loads(text)
    assert back == sealed
    # repr shows every field, also those left out of ==: the layers' origins and each bind's file:line.
    assert repr(back) == repr(sealed)
    assert back.settings["a"].origins == settings["a"].origins
    assert [b.origin for b in back.settings["a"].binds] == [b.origin for b in settings["a"].binds]
    assert back.settings["b"].auto_binds == settings["b"].auto_binds  # auto_binds: false (None, None)


def test_a_seal_of_another_format_is_refused():
    data = json.loads(seal.dumps(seal.Seal({})))
    data["format"] = seal.FORMAT + 1
    with pytest.raises(ValueError, match="another version"):
        seal.loads(json.dumps(data))


def test_changed_files_names_files_changed_or_gone(tmp_path):
    same, edited, gone = (tmp_path / name for name in ("policy.yaml", "config.yaml", "extra.yaml"))
    for path in (same, edited, gone):
        path.write_text("a: 1\n")
    sealed = seal.Seal({}, files={str(p): records.sha256(str(p)) for p in (same, edited, gone)})
    assert seal.changed_files(sealed) == []
    edited.write_text("a: 2\n")
    gone.unlink()
    assert seal.changed_files(sealed) == [str(edited), str(gone)]


def test_changed_image_also_when_size_and_times_are_restored(tmp_path):
    image = tmp_path / "x.sif"
    image.write_bytes(b"sif")
    sealed = seal.Seal({}, images={str(image): records.image_identity(str(image))})
    assert seal.changed_image(sealed, str(image)) is None
    # Rewritten in place at the same size, its times put back as they were (touch -r): the ctime moved.
    before = image.stat()
    time.sleep(0.05)  # the kernel's file times tick in milliseconds
    image.write_bytes(b"SIF")
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert image.stat().st_size == before.st_size and image.stat().st_mtime_ns == before.st_mtime_ns
    assert "changed since the check" in seal.changed_image(sealed, str(image))
    assert "not among the images checked" in seal.changed_image(sealed, str(tmp_path / "other.sif"))


def test_a_checker_from_sealed_settings_plans_what_the_policy_checker_planned(checked):
    site, c, settings = checked
    node = Checker(None, APPTAINER, plugin_manager(), workdir=site.workdir, rule_kinds={"a": "shell", "b": "shell"},
                   environ={}, sealed=seal.loads(seal.dumps(seal.Seal(settings))).settings)
    spec = job("a", inputs=[site.path("ref", "g.fa")], outputs=["x.txt"])
    assert node.settings("a") == settings["a"]
    assert node.job_plan(spec).binds == c.job_plan(spec).binds
    assert codes(node.check([spec], whole_workflow=False)) == codes(c.check([spec], whole_workflow=False))


def test_a_sealed_checker_never_reads_a_policy_again(checked):
    # The node's environment may differ (another ${ROOT}): the sealed settings are used as checked.
    site, _, settings = checked
    node = Checker(None, APPTAINER, plugin_manager(), workdir=site.workdir, rule_kinds={"a": "shell"},
                   environ={"ROOT": "/elsewhere"}, sealed=settings)
    assert node.settings("a").binds[0].src == site.path("ref")
    with pytest.raises(PolicyError, match="rule c was not among the rules checked") as err:
        node.settings("c")
    assert err.value.fix


def test_a_writable_bind_source_replaced_by_a_link_since_the_check(tmp_path):
    scratch, home = tmp_path / "scratch", tmp_path / "home"
    scratch.mkdir()
    home.mkdir()
    sealed = seal.Seal({}, sources={str(scratch): str(scratch)})
    assert seal.moved_sources(sealed, [str(scratch)]) == []
    scratch.rmdir()
    scratch.symlink_to(home)  # by anything that could write its parent
    assert seal.moved_sources(sealed, [str(scratch)]) == [(str(scratch), str(home))]


def test_a_node_takes_only_the_seal_whose_digest_its_command_line_carries(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    written = seal.Seal({}, image="/images/a.sif", run_id="20260101-000000-abcd")
    digest = seal.write(written)
    words = ["--cleanenv", seal.MARKER + digest]
    assert seal.read(seal.carried_digest(words), "node1") == written
    path = tmp_path / seal.FOLDER / seal.NAME
    path.write_text(path.read_text().replace("/images/a.sif", "/images/b.sif"))  # rewritten by a job or a user
    with pytest.raises(seal.SealError, match="^SC501 .* differ from those the main process sealed .* on node1$"):
        seal.read(digest, "node1")
    with pytest.raises(seal.SealError, match="^SC501"):
        seal.read(seal.carried_digest(["--cleanenv"]), "node1")  # a command line without the digest
    path.write_text("{not json")  # a seal replaced by anything at all is the wrong seal, before it is parsed
    with pytest.raises(seal.SealError, match="^SC501 .* differ from those the main process sealed"):
        seal.read(digest, "node1")
    path.unlink()
    with pytest.raises(seal.SealError, match="cannot be read on node1: No such file or directory; the workdir must"):
        seal.read(digest, "node1")
