"""A site's own policy file (an admin's, no Python): presets every workflow may use, protected paths added to
every rule, and a floor no workflow policy goes below, told with the site file's line."""

import pytest

from sc_unit import APPTAINER, codes, expect, job
from snakemake_singcontain.checker import Checker
from snakemake_singcontain.errors import PolicyError
from snakemake_singcontain.findings import ERROR
from snakemake_singcontain.plugins import plugin_manager
from snakemake_singcontain.policy import load_site, load_site_layers

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


# Two layers: the admin's file always applies; the one SINGCONTAIN_SITE names adds to it, never lowers it.
GROUP = """\
version: 1
presets:
  scratch: {binds: ["${ROOT}/scratch:rw"]}
protected: ["${ROOT}/group-keys"]
floor:
  containment: containall
"""


def layered(site, group_text: str, admin_text: str = SITE):
    for name in ("dust", "grid-security", "cvmfs", "scratch", "group-keys"):
        site.dir(name)
    admin = site.write(admin_text, "etc/site.yaml")
    group = site.write(group_text, "group/site.yaml")
    return load_site_layers(str(admin), str(group), env=site.env)


def layered_checker(site, policy: str, layers) -> Checker:
    return Checker(site.policy(policy), APPTAINER, plugin_manager(), workdir=site.workdir, rule_kinds={"a": "shell"},
                   environ={}, site=layers)


def test_an_empty_named_site_file_keeps_the_admins_floor(site):
    layers = layered(site, "version: 1\n")
    found = layered_checker(site, "version: 1\ndefaults: {containment: none}\n", layers).check([job("a", outputs=["x"])])
    expect([f for f in found if "containment" in f.message], "SC105", ERROR, "a", "'none'", "'contain'",
           "etc/site.yaml:5")


def test_the_named_site_file_adds_presets_protected_paths_and_a_higher_floor(site):
    layers = layered(site, GROUP)
    c = layered_checker(site, "version: 1\ndefaults: {use: [dust, scratch], containment: contain, namespaces: [pid]}\n",
                        layers)
    assert {b.src for b in c.settings("a").binds} == {site.dir("dust"), site.dir("scratch")}
    assert {site.path("grid-security"), site.path("group-keys")} <= set(c.settings("a").protected)
    found = c.check([job("a", outputs=["x"])])
    f = expect([x for x in found if "containment" in x.message], "SC105", ERROR, "a", "'contain'", "'containall'")
    assert "etc/site.yaml:5" in f.message and "group/site.yaml:5" in f.message  # both files named
    # The admin's never_writable still holds with the group's floor on top.
    c = layered_checker(site, "version: 1\ndefaults: {containment: containall, binds: ['${ROOT}/cvmfs:/cvmfs:rw']}\n",
                        layers)
    assert any(x.code == "SC105" and "cvmfs" in x.message for x in c.check([job("a", outputs=["x"])]))


def test_a_lower_floor_in_the_named_file_does_not_lower_the_admins(site):
    layers = layered(site, "version: 1\nfloor: {containment: none}\n")
    assert layers.floor.containment == "contain" and layers.floor.namespaces == ("pid",)


def test_the_named_file_cannot_redefine_the_admins_preset(site):
    with pytest.raises(PolicyError) as err:
        layered(site, "version: 1\npresets:\n  dust: {binds: ['/:rw']}\n")
    told = err.value.render()
    assert "group/site.yaml:3: preset 'dust' is already defined by the admin's site file" in told
    assert "SINGCONTAIN_SITE" in told and "give the preset another name" in told


def test_a_site_file_that_cannot_be_read_names_itself_and_how_it_was_chosen(site):
    admin = site.write(SITE, "etc/site.yaml")
    with pytest.raises(PolicyError) as err:
        load_site_layers(str(admin), site.path("nowhere.yaml"), env=site.env)
    told = err.value.render()
    assert "cannot read the site file SINGCONTAIN_SITE names" in told and "nowhere.yaml" in told
    assert "policy file" not in told and "contain()" not in told and "unset SINGCONTAIN_SITE" in told
    admin.write_text("version: 1\nfloor: {containment: sealed}\n")
    with pytest.raises(PolicyError) as err:
        load_site_layers(str(admin), None, env=site.env)
    told = err.value.render()
    assert "etc/site.yaml:2: unknown containment 'sealed' (in the admin's site file, read on every run)" in told
    assert "ask its owner" in told and "policy file" not in told


def test_without_an_admin_file_the_named_file_alone_applies(site):
    layers = load_site_layers(site.path("no-admin.yaml"), str(site.write(GROUP, "group/site.yaml")), env=site.env)
    assert layers.floor.containment == "containall" and "group/site.yaml" in layers.file
