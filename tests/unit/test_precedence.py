"""Which layer wins: built-ins < defaults < presets in `use` (a preset's own `use` first) < matching globs (file
order) < the exact rule name < plugin adjustments; and how each kind of key merges. Asserted through
Checker.settings(rule) and its `origins` (layer and file:line)."""

import pytest

from sc_unit import expect, job
from snakemake_singcontain.errors import PolicyError
from snakemake_singcontain.findings import ERROR
from snakemake_singcontain.hooks import hookimpl
from snakemake_singcontain.policy.resolve import BUILTIN_PROTECTED

BUILT_IN = "built-in (snakemake-singcontain)"

POLICY = """\
version: 1
defaults:
  use: [base]
  containment: contain
  cleanenv: true
  env: [LANG, TZ]
  namespaces: [pid, uts]
  binds: ['${ROOT}/ref1:/ref', '${ROOT}/cache:/cache']
  protected: ['${ROOT}/raw']
  args: [--a-defaults]
presets:
  root:
    gpu: true
    network: bridge
    args: [--a-root]
  base:
    use: [root]
    gpu: false
    containment: containall
    args: [--a-base]
  extra:
    containment: none
    env: ['-TZ', EXTRA]
    args: [--a-extra]
rules:
  sim_big:
    containment: containall
    auto_binds: {inputs: ro}
    args: [--a-exact]
  'sim_*':
    use: [extra]
    network: loopback
    auto_binds: {inputs: false}
    binds: ['${ROOT}/ref2:/ref:rw']
    args: [--a-glob1]
  '*_big':
    namespaces: ['-pid', ipc]
    containment: contain
    args: [--a-glob2]
"""


def adjust_plugin(rule_name: str, data: dict, name: str = "site"):
    class Plugin:
        @staticmethod
        @hookimpl
        def singcontain_adjust_rule(rule):
            return data if rule == rule_name else None

    Plugin.__name__ = name
    return Plugin


@pytest.fixture
def layered(site):
    for folder in ("ref1", "ref2", "cache", "raw"):
        site.dir(folder)
    plugin = adjust_plugin("sim_big", {"writable_tmpfs": True, "args": ["--a-plugin"]})
    c = site.checker(POLICY, rules=["sim_big", "sim_small", "other"], plugins=[plugin])
    return site, c, f"{site.root / 'containment.yaml'}"


def test_every_layer_in_order(layered):
    site, c, file = layered
    s = c.settings("sim_big")
    # args accumulate in layer order: defaults, presets (root before base, which uses it; then the glob's
    # extra), globs in file order, the exact name, plugin adjustments.
    assert s.args == ("--a-defaults", "--a-root", "--a-base", "--a-extra", "--a-glob1", "--a-glob2",
                      "--a-exact", "--a-plugin")
    assert (s.containment, s.origins["containment"]) == ("containall", f"rules['sim_big'] ({file}:27)")
    assert (s.network, s.origins["network"]) == ("loopback", f"rules['sim_*'] ({file}:32)")
    assert (s.gpu, s.origins["gpu"]) == (False, f"preset base ({file}:18)")  # base overrides the root it uses
    assert (s.cleanenv, s.origins["cleanenv"]) == (True, f"defaults ({file}:5)")
    assert (s.writable_tmpfs, s.origins["writable_tmpfs"]) == (True, "plugin site (plugin site)")
    assert s.auto_binds.inputs == "ro" and s.origins["auto_binds"] == f"rules['sim_big'] ({file}:28)"
    assert s.namespaces == ("uts", "ipc") and s.origins["namespaces"] == f"rules['*_big'] ({file}:37)"
    assert s.env == ("LANG", "EXTRA") and s.origins["env"] == f"preset extra ({file}:23)"


def test_glob_only_rule(layered):
    site, c, file = layered
    s = c.settings("sim_small")
    assert (s.containment, s.origins["containment"]) == ("none", f"preset extra ({file}:22)")
    assert s.auto_binds.inputs is None and s.namespaces == ("pid", "uts")
    assert s.args == ("--a-defaults", "--a-root", "--a-base", "--a-extra", "--a-glob1")
    assert not s.writable_tmpfs and s.origins["writable_tmpfs"] == BUILT_IN


def test_rule_matched_by_no_key_gets_defaults_and_their_presets(layered):
    site, c, file = layered
    s = c.settings("other")
    assert (s.containment, s.origins["containment"]) == ("containall", f"preset base ({file}:19)")
    assert (s.network, s.origins["network"]) == ("bridge", f"preset root ({file}:14)")
    assert s.args == ("--a-defaults", "--a-root", "--a-base")
    assert [(b.src, b.dst, b.mode) for b in s.binds] == [(site.path("ref1"), "/ref", "ro"),
                                                         (site.path("cache"), "/cache", "ro")]


def test_binds_accumulate_and_a_later_bind_replaces_the_same_destination(layered):
    site, c, file = layered
    s = c.settings("sim_big")
    assert [(b.src, b.dst, b.mode) for b in s.binds] == [(site.path("cache"), "/cache", "ro"),
                                                         (site.path("ref2"), "/ref", "rw")]
    assert str(s.binds[1].origin) == f"rules['sim_*'] ({file}:34)"
    assert str(s.binds[0].origin) == f"defaults ({file}:8)"
    assert s.origins["binds"] == f"rules['sim_*'] ({file}:34)"


def test_protected_accumulates(layered):
    site, c, file = layered
    assert c.settings("sim_big").protected == (*BUILTIN_PROTECTED, site.path("raw"))


def test_builtin_layer_alone(site):
    s = site.checker("version: 1\n").settings("a")
    assert (s.containment, s.network, s.cleanenv, s.gpu, s.writable_tmpfs) == ("contain", "none", False, False, False)
    assert s.namespaces == () and s.env == () and s.binds == () and s.args == ()
    assert s.protected == BUILTIN_PROTECTED
    assert (s.auto_binds.inputs, s.auto_binds.outputs) == ("ro", "rw")
    assert s.workdir == "ro"  # a contained job sees the workdir read-only unless a layer says rw
    assert s.origins["containment"] == BUILT_IN


def test_exact_name_beats_a_glob_written_after_it(site):
    s = site.checker("version: 1\nrules:\n  plot: {network: exact}\n  'pl*': {network: glob}\n", rules=["plot"]).settings("plot")
    assert s.network == "exact"


@pytest.mark.parametrize("first, second", [("'a*'", "'*z'"), ("'*z'", "'a*'")])
def test_globs_apply_in_file_order(site, first, second):
    c = site.checker(f"version: 1\nrules:\n  {first}: {{network: one}}\n  {second}: {{network: two}}\n", rules=["abz"])
    s = c.settings("abz")
    assert s.network == "two" and s.origins["network"].endswith("containment.yaml:4)")


@pytest.mark.parametrize("pattern", ["'sample_?'", "'sample_[ab]'", "'*'"])
def test_glob_syntax(site, pattern):
    c = site.checker(f"version: 1\nrules:\n  {pattern}: {{gpu: true}}\n", rules=["sample_a", "Sample_a"])
    assert c.settings("sample_a").gpu is True
    assert c.settings("Sample_a").gpu is (pattern == "'*'")  # case-sensitive, like rule names


def test_presets_in_use_apply_in_order(site):
    c = site.checker("""
        version: 1
        presets:
          x: {network: x, gpu: true}
          y: {network: y}
        rules:
          a: {use: [x, y]}
          b: {use: [y, x]}
        """, rules=["a", "b"])
    assert (c.settings("a").network, c.settings("a").gpu) == ("y", True)
    assert c.settings("b").network == "x"


def test_a_preset_used_twice_applies_once_at_its_first_place(site):
    c = site.checker("""
        version: 1
        defaults: {use: [shared]}
        presets:
          shared: {network: shared, args: [--shared]}
          mid: {network: mid, args: [--mid]}
          b: {use: [shared], args: [--b]}
          c: {use: [shared], args: [--c]}
        rules:
          a: {use: [b, mid, c]}
          x: {use: [mid, shared]}
        """, rules=["a", "x"])
    file = site.root / "containment.yaml"
    a = c.settings("a")
    # shared comes with defaults' use; b and c use it again (a diamond), which applies nothing more: mid still wins.
    assert a.args == ("--shared", "--b", "--mid", "--c")
    assert (a.network, a.origins["network"]) == ("mid", f"preset mid ({file}:5)")
    x = c.settings("x")
    assert x.args == ("--shared", "--mid") and x.network == "mid"


def test_rule_layer_beats_the_presets_it_uses(site):
    c = site.checker("version: 1\npresets:\n  x: {network: x}\nrules:\n  a: {use: [x], network: own}\n")
    assert c.settings("a").network == "own"


def test_defaults_presets_come_before_rule_presets(site):
    c = site.checker("version: 1\ndefaults: {use: [d]}\npresets:\n  d: {network: d}\n  r: {network: r}\n"
                     "rules:\n  a: {use: [r]}\n")
    assert c.settings("a").network == "r"


def test_plugin_adjustment_beats_the_exact_rule(site):
    plugin = adjust_plugin("a", {"containment": "containall", "namespaces": ["-uts"]})
    c = site.checker("version: 1\nrules:\n  a: {containment: none, namespaces: [uts, ipc]}\n", plugins=[plugin])
    s = c.settings("a")
    assert s.containment == "containall" and s.namespaces == ("ipc",)
    assert s.origins["containment"] == "plugin site (plugin site)"


def test_policy_preset_replaces_a_plugin_preset_of_the_same_name(site):
    s = site.checker("version: 1\npresets:\n  cvmfs: {gpu: true}\ndefaults: {use: [cvmfs]}\n").settings("a")
    assert s.gpu is True and s.binds == ()


def test_builtin_cvmfs_preset_uses_the_environment(site):
    cvmfs = site.dir("cvmfs")
    c = site.checker("version: 1\nrules:\n  a: {use: [cvmfs]}\n", environ={"CVMFS_ROOT": cvmfs})
    (bind,) = c.settings("a").binds
    assert (bind.src, bind.dst, bind.mode) == (cvmfs, "/cvmfs", "ro")
    assert str(bind.origin).startswith("preset cvmfs (plugin builtin.presets")


@pytest.mark.parametrize("earlier, later, result", [
    ("[pid, uts]", "['-pid']", ("uts",)),
    ("[pid]", "['-pid', pid]", ("pid",)),
    ("[pid]", "['-ipc']", ("pid",)),  # removing what is not there is harmless
    ("[pid, uts]", "[ipc, pid]", ("uts", "ipc", "pid")),
])
def test_namespaces_accumulate_and_minus_removes(site, earlier, later, result):
    s = site.checker(f"version: 1\ndefaults: {{namespaces: {earlier}}}\nrules:\n  a: {{namespaces: {later}}}\n").settings("a")
    assert s.namespaces == result


def test_env_accumulates_and_minus_removes(site):
    s = site.checker("version: 1\ndefaults: {env: [LANG, TZ, HOME]}\nrules:\n  a: {env: ['-TZ', OMP_NUM_THREADS, LANG]}\n").settings("a")
    assert s.env == ("HOME", "OMP_NUM_THREADS", "LANG")


def test_a_protected_path_cannot_be_removed(site):
    with pytest.raises(PolicyError) as err:
        site.checker("version: 1\nrules:\n  a: {protected: ['-/usr']}\n")
    assert err.value.line == 3


def test_scalars_later_layer_wins_even_when_false(site):
    s = site.checker("version: 1\ndefaults: {gpu: true, cleanenv: true, auto_binds: {inputs: ro}}\n"
                     "rules:\n  a: {gpu: false, cleanenv: false, auto_binds: false}\n").settings("a")
    assert (s.gpu, s.cleanenv, s.auto_binds.inputs, s.auto_binds.outputs) == (False, False, None, None)


def test_workdir_later_layer_wins(site):
    c = site.checker("version: 1\ndefaults: {workdir: rw}\npresets:\n  strict: {workdir: ro}\n"
                     "rules:\n  a: {use: [strict]}\n  b: {}\n", rules=["a", "b"])
    assert (c.settings("a").workdir, c.settings("b").workdir) == ("ro", "rw")
    assert c.settings("a").origins["workdir"].startswith("preset strict")


def test_args_origin_is_recorded_and_shown_by_sc104(site):
    c = site.checker("version: 1\nrules:\n  a:\n    args: ['--pid']\n")
    file = site.root / "containment.yaml"
    assert c.settings("a").origins["args"] == f"rules['a'] ({file}:4)"
    f = expect(c.check([job("a")]), "SC104", ERROR, "a", "--pid")
    assert f.where == f"rules['a'] ({file}:4)"


def test_a_rule_drops_an_inherited_bind_and_preset(site):
    """A site-wide /cvmfs and DUST for every rule, but not for the one that runs on the host (issue: `binds: []`
    and `use: []` removed nothing)."""
    checker = site.checker("""\
        version: 1
        defaults: {use: [cvmfs], binds: ['${ROOT}/dust:rw']}
        rules:
          host_step: {containment: none, use: [-cvmfs], binds: ['-${ROOT}/dust']}
        """, rules=("host_step", "other"), env={**site.env, "CVMFS_ROOT": site.dir("cvmfs")})
    assert checker.settings("host_step").binds == ()
    assert not checker.settings("host_step").isolates  # so it may run on the host
    assert [b.dst for b in checker.settings("other").binds] == [site.dir("dust"), "/cvmfs"]


def test_dropping_an_unknown_preset_is_an_error_naming_the_line(site):
    with pytest.raises(PolicyError, match=r"containment.yaml:3: rules\['a'\] drops unknown preset 'cvmf'"):
        site.checker("version: 1\nrules:\n  a: {use: [-cvmf]}\n")
