"""A site's own policy file (an admin's, no Python): presets every workflow may use, protected paths added to
every rule, and a floor no workflow policy goes below, told with the site file's line."""

import pytest

from sc_unit import APPTAINER, codes, expect, job
from snakemake_singcontain.checker import Checker
from snakemake_singcontain.errors import PolicyError
from snakemake_singcontain.findings import ERROR
from snakemake_singcontain.plugins import plugin_manager
from snakemake_singcontain.policy import load_site

SITE = """\
version: 1
presets:
  dust: {binds: ["${ROOT}/dust:rw"]}
protected: ["${ROOT}/grid-security"]
floor:
  containment: contain
  namespaces: [pid]
  never_writable: ["${ROOT}/cvmfs"]
"""


def checker(site, policy: str, site_text: str = SITE) -> Checker:
    for name in ("dust", "grid-security", "cvmfs"):
        site.dir(name)
    site_file = site.write(site_text, "site.yaml")
    return Checker(site.policy(policy), APPTAINER, plugin_manager(), workdir=site.workdir, rule_kinds={"a": "shell"},
                   environ={}, site=load_site(str(site_file), env=site.env))


def test_a_policy_uses_the_sites_preset_and_its_origin_names_the_site_file(site):
    settings = checker(site, "version: 1\ndefaults: {use: [dust], namespaces: [pid]}\n").settings("a")
    (bind,) = settings.binds
    assert (bind.src, bind.mode) == (site.dir("dust"), "rw") and "site.yaml" in str(bind.origin)


def test_going_below_the_floor_is_an_error_naming_the_site_file_and_line(site):
    c = checker(site, "version: 1\ndefaults: {containment: none}\n")
    found = c.check([job("a", outputs=["results/x"])])
    f = expect([x for x in found if "containment" in x.message], "SC105", ERROR, "a", "'none'", "'contain'")
    assert "site.yaml:5" in f.message  # the floor's line
    assert "SC105" in codes(x for x in found if "namespaces" in x.message)


def test_never_writable_and_protected_paths_of_the_site_hold_for_every_rule(site):
    c = checker(site, "version: 1\ndefaults:\n  namespaces: [pid]\n  binds: ['${ROOT}/cvmfs:/cvmfs:rw', "
                      "'${ROOT}/grid-security:/gs:rw']\n")
    found = c.check([job("a", outputs=["results/x"])])
    assert any(f.code == "SC105" and "cvmfs" in f.message for f in found), found
    assert any(f.code == "SC306" and "grid-security" in f.message for f in found), found
    assert site.path("grid-security") in c.settings("a").protected  # added to the rule, never removable


def test_a_bad_site_file_is_told_with_its_line(site):
    with pytest.raises(PolicyError, match=r"site file .*site.yaml:2: unknown containment 'sealed'"):
        checker(site, "version: 1\n", "version: 1\nfloor: {containment: sealed}\n")
