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
