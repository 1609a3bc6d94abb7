"""A third-party site plugin found through its `singcontain` entry point: its preset, validator, floor and
rule adjustment are all used.

The plugin is tests/unit/fixtures/site_demo: a package plus a hand-written .dist-info, put on sys.path for
the test, so importlib.metadata (and so pluggy) discovers the entry point exactly as for a pip-installed one.
"""

import sys
from pathlib import Path

import pytest

from sc_unit import codes, expect, job
from snakemake_singcontain.argv import apptainer_args
from snakemake_singcontain.findings import ERROR, WARNING
from snakemake_singcontain.plugins import plugin_manager

FIXTURE = Path(__file__).parent / "fixtures" / "site_demo"


@pytest.fixture
def installed(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURE))  # also invalidates importlib's caches
    yield
    sys.modules.pop("singcontain_site_demo", None)


@pytest.fixture
def scratch(site):
    return site.dir("scratch")


def checker(site, scratch, text, rules=("a",)):
    return site.checker(text, rules=rules, environ={"SITE_DEMO_SCRATCH": scratch})


def test_registered_under_its_entry_point_name(installed):
    pm = plugin_manager()
    plugin = pm.get_plugin("site_demo")
    assert plugin is not None and plugin.__name__ == "singcontain_site_demo"
    assert [dist.project_name for _, dist in pm.list_plugin_distinfo()] == ["singcontain-site-demo"]
    assert {"builtin.presets", "builtin.policy_checks", "builtin.runtime_checks", "builtin.path_checks",
            "site_demo"} <= {name for name, _ in pm.list_name_plugin()}


def test_not_registered_when_not_installed():
    assert plugin_manager().get_plugin("site_demo") is None


def test_its_preset_is_usable_from_a_policy(installed, site, scratch):
    c = checker(site, scratch, "version: 1\nrules:\n  a: {use: [site_strict]}\n")
    s = c.settings("a")
    assert (s.containment, s.namespaces, s.env) == ("containall", ("uts",), ("SITE_DEMO_TOKEN",))
    assert s.origins["containment"] == "preset site_strict (plugin site_demo)"
    assert codes(c.check([job("a")])) == []


def test_its_validator_reports(installed, site, scratch):
    c = checker(site, scratch, "version: 1\ndefaults: {containment: containall}\nrules:\n  a: {writable_tmpfs: true}\n",
                rules=["a", "b"])
    findings = c.check([job("a"), job("b")])
    expect(findings, "SD001", WARNING, "a", "writable_tmpfs")
    assert codes(findings) == ["SD001"]


def test_its_floor_refuses_a_rule_below_it(installed, site, scratch):
    c = checker(site, scratch, "version: 1\nrules:\n  a: {containment: none, namespaces: [pid]}\n")
    f = expect(c.check([job("a")]), "SC105", ERROR, "a", "'none'", "site_demo")
    assert "containment: contain" in f.fix


def test_its_floor_namespaces_and_never_writable(installed, site, scratch):
    c = checker(site, scratch, "version: 1\nrules:\n  a: {containment: contain, binds: ['/data:rw']}\n")
    findings = [f for f in c.check([job("a")]) if f.code == "SC105"]
    assert sorted(("pid" in f.message, "/data" in f.message) for f in findings) == [(False, True), (True, False)]
    assert all("site_demo" in f.message for f in findings)


def test_its_adjustment_adds_a_bind(installed, site, scratch):
    c = checker(site, scratch, "version: 1\ndefaults: {containment: containall}\n")
    s = c.settings("a")
    assert [(b.src, b.dst, b.mode) for b in s.binds] == [(scratch, "/scratch", "rw")]
    assert s.origins["binds"] == "plugin site_demo (plugin site_demo)"
    spec = job("a")
    assert codes(c.check([spec])) == []
    assert f"{scratch}:/scratch:rw" in apptainer_args(c.job_plan(spec), c.runtime, {})


def test_a_policy_preset_replacing_the_plugins_cannot_go_below_its_floor(installed, site, scratch):
    c = checker(site, scratch, "version: 1\npresets:\n  site_strict: {containment: none}\nrules:\n  a: {use: [site_strict]}\n")
    assert "SC105" in codes(c.check([job("a")]))
