"""Messages a new user met in their first hour, read as they see them."""

from sc_unit import codes, expect, job
from snakemake_singcontain.findings import ERROR
from snakemake_singcontain.policy.expand import defaulted


def test_a_missing_source_from_an_unset_variables_default_names_the_variable(site):
    policy = "version: 1\ndefaults:\n  binds: ['${CVMFS_ROOT:-${ROOT}/cvmfs}:/cvmfs']\n"
    f = expect(site.checker(policy).check([job("a")]), "SC301", ERROR, "a", site.path("cvmfs"),
               "CVMFS_ROOT is not set, so the default was taken")
    assert f.fix.startswith("export CVMFS_ROOT=")
    # Control: set, the variable's own value is what is missing, and the message says only that.
    set_env = {**site.env, "CVMFS_ROOT": site.path("elsewhere")}
    f = expect(site.checker(policy, env=set_env).check([job("a")]), "SC301", ERROR, "a", site.path("elsewhere"))
    assert "CVMFS_ROOT" not in f.message + f.fix
    site.dir("cvmfs")
    assert "SC301" not in codes(site.checker(policy).check([job("a")]))


def test_defaulted_names_only_the_variables_whose_default_was_taken():
    assert defaulted("${A:-/x}/${B:-${C:-/y}}", {"B": "/b"}) == ("A",)
    assert defaulted("${A:-${C:-/y}}", {}) == ("A", "C")
    assert defaulted("${A:-/x}", {"A": ""}) == ("A",) and defaulted("/plain", {}) == ()


# Records a reviewer can read.

def test_diff_tells_a_change_of_flags_in_effective_terms_first():
    from snakemake_singcontain.cli.records import render_diff

    threads = [w for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") for w in ("--env", f"{name}=1")]
    before = ["--contain", "--pid", "--bind", "/w:/w:ro"]
    after = ["--containall", *threads, "--bind", "/w:/w:ro"]
    outputs = [{"output": "/w/out/a.txt", "rule": "make", "status": "changed",
                "changes": [{"what": "flags", "removed": ["--contain", "--pid"],
                             "added": ["--containall", "--env OMP_NUM_THREADS=1", "--env MKL_NUM_THREADS=1"],
                             "order": False}]}]
    text = render_diff({"run": "A1", "status": "ok"}, {"run": "B1", "status": "ok"}, outputs,
                       argv={"/w/out/a.txt": (before, after)})
    lines = text.splitlines()
    assert lines[2] == ("  in effect: containment contain → containall; PID namespace kept; IPC namespace gained; "
                        "clean environment on; per-job thread counts now passed")
    assert lines[3] == "  flags:" and "    - --pid" in lines and "    + --containall" in lines  # raw, below


def test_diff_says_a_namespace_lost_when_it_is():
    from snakemake_singcontain.cli.records import in_effect

    assert in_effect(["--containall"], ["--contain"]) == ("containment containall → contain; PID namespace lost; "
                                                          "IPC namespace lost; clean environment off")
    assert in_effect(["--contain", "--env", "LANG=C"], ["--contain"]) == "LANG no longer passed"


def test_runs_outside_a_workflow_says_where_it_looked(tmp_path):
    from snakemake_singcontain.cli.records import render_run, render_runs

    told = render_runs([], str(tmp_path))
    assert told.startswith(f"no recorded runs in {tmp_path}/.snakemake/singcontain/records") and "-d WORKDIR" in told
    info = {"run": "r1", "status": "ok", "jobs": 1, "failed": 0, "hosts": ["h"], "start": 1.0, "end": 2.0,
            "unreadable_lines": 0}
    group = {"rule": "plot", "jobs": 1, "failed": 0, "wildcards": [{}], "images": ["i.sif"], "image_sha256": "x",
             "runtime": "apptainer", "runtime_version": "1.4.5", "flags": ["--contain"], "policy_sha256": "y",
             "hosts": ["h"]}
    assert "rule plot: 1 job(s)\n" in render_run(info, [group]) + "\n"
    with_wildcards = dict(group, rule="make", wildcards=[{"x": "a"}])
    assert "rule make: 1 job(s) (x=a)" in render_run(info, [with_wildcards])


def test_binds_one_level_too_shallow_under_presets_is_told_as_that_slip(site):
    import pytest

    from snakemake_singcontain.errors import PolicyError

    text = "version: 1\npresets:\n  dust:\n    containment: contain\n  binds: ['/data:rw']\n"
    with pytest.raises(PolicyError) as err:
        site.policy(text)
    told = err.value.render()
    assert "containment.yaml:5: 'binds:' under 'presets:' is read as a preset named 'binds'" in told
    assert "indent 'binds:' under the preset it belongs to" in told and "key: value" not in told
    with pytest.raises(PolicyError, match="'env:' under 'rules:' is read as a rule named 'env'"):
        site.policy("version: 1\nrules:\n  plot: {}\n  env: [LANG]\n")
    # Control: a preset of another name whose value is not a mapping keeps the general message.
    with pytest.raises(PolicyError, match="'dust' must be a mapping"):
        site.policy("version: 1\npresets:\n  dust: ['/data:rw']\n")


def test_set_at_of_a_relative_bind_source_has_no_nested_parentheses(site):
    site.dir("data")
    (bind,) = site.policy("version: 1\ndefaults: {binds: ['data:/data']}\n").defaults.binds
    told = str(bind.origin)
    assert told.count("(") == 1 and "relative to" in told and "the policy's folder" in told, told


# Presets: dropping one drops everything it brought.

def test_dropping_a_preset_drops_the_presets_it_uses(site):
    site.dir("cvmfs"), site.dir("afs"), site.dir("dust")
    policy = """\
version: 1
presets:
  cvmfs: {binds: ['${ROOT}/cvmfs:/cvmfs']}
  afs: {binds: ['${ROOT}/afs:/afs']}
  dust: {binds: ['${ROOT}/dust:/dust:rw']}
  site: {use: [cvmfs, afs]}
defaults: {use: [site, dust]}
rules:
  summarize: {containment: none, use: [-site]}
  keep_afs: {use: [-site, afs]}
"""
    c = site.checker(policy, rules=("summarize", "keep_afs", "other"))
    assert [b.dst for b in c.settings("summarize").binds] == ["/dust"]  # nothing of site: neither /cvmfs nor /afs
    assert [b.dst for b in c.settings("keep_afs").binds] == ["/dust", "/afs"]  # named again itself
    assert [b.dst for b in c.settings("other").binds] == ["/cvmfs", "/afs", "/dust"]  # control: all of it
