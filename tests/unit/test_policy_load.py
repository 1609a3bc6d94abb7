"""The policy file: environment expansion, relative bind sources, and every loader error told as file:line."""

import pytest

from sc_unit import job, runtime
from snakemake_singcontain.checker import Checker
from snakemake_singcontain.errors import PolicyError
from snakemake_singcontain.findings import render as render_findings
from snakemake_singcontain.plugins import plugin_manager
from snakemake_singcontain.policy import Bind, load_policy
from snakemake_singcontain.policy.expand import BadSyntax, UnsetVariable, expand
from snakemake_singcontain.policy.yaml_lines import MAX_BYTES

# --- ${VAR} expansion ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, env, out", [
    ("${HOME}/x", {"HOME": "/home/a"}, "/home/a/x"),
    ("${DUST:-/nfs/dust}", {}, "/nfs/dust"),
    ("${DUST:-/nfs/dust}", {"DUST": "/d"}, "/d"),
    ("${DUST:-/nfs/dust}", {"DUST": ""}, "/nfs/dust"),  # like the shell's :- an empty value takes the default
    ("${DUST:-/nfs/dust/${USER}}", {"USER": "alice"}, "/nfs/dust/alice"),
    ("${A:-${B:-${C:-deep}}}/x", {}, "deep/x"),
    ("${EMPTY:-}", {}, ""),
    ("cost$$5", {}, "cost$5"),
    ("$${NOT_A_VAR}", {}, "${NOT_A_VAR}"),
    ("/plain/path", {}, "/plain/path"),
    ("${A}${B}", {"A": "1", "B": "2"}, "12"),
])
def test_expand(text, env, out):
    assert expand(text, env) == out


def test_expand_unused_default_may_name_an_unset_variable():
    # As in the shell: a default that is not taken is parsed, but its variables need not be set.
    assert expand("${DUST:-/nfs/dust/${USER}}", {"DUST": "/d"}) == "/d"
    assert expand("${A:-${B:-${C}}}/x", {"A": "/a"}) == "/a/x"
    with pytest.raises(BadSyntax):
        expand("${DUST:-/nfs/${USER}", {"DUST": "/d"})  # still parsed: an unclosed default is an error


def test_expand_unset_variable_names_it():
    with pytest.raises(UnsetVariable) as err:
        expand("/nfs/${GROUP}/x", {})
    assert err.value.name == "GROUP"
    with pytest.raises(UnsetVariable) as err:
        expand("${DUST:-/nfs/dust/${USER}}", {})  # the nested default needs USER
    assert err.value.name == "USER"


@pytest.mark.parametrize("text", ["a$b", "$", "${", "${A", "${A:-x", "${1A}", "${}", "${A-x}", "${A:=x}"])
def test_expand_bad_syntax(text):
    with pytest.raises(BadSyntax):
        expand(text, {"A": "1"})


def test_policy_values_are_expanded(site):
    site.dir("dust", "alice")
    policy = site.policy("""
        version: 1
        image: ${IMAGES:-/images}/base.sif
        defaults:
          binds:
            - ${DUST:-${ROOT}/dust/${USER}}:/dust:rw
            - {src: '${ROOT}/dust', dst: '/price$$'}
        """)
    assert policy.image == "/images/base.sif"
    assert policy.defaults.binds == (Bind(site.path("dust", "alice"), "/dust", "rw"), Bind(site.path("dust"), "/price$", "ro"))


def test_unset_variable_is_an_error_naming_variable_and_line(site):
    path = site.write("version: 1\ndefaults:\n  binds:\n    - ${SCRATCH}/tmp:/scratch\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path, env={})
    assert err.value.line == 4
    assert f"{path}:4" in str(err.value)
    assert "SCRATCH" in err.value.message
    assert "${SCRATCH:-" in err.value.fix


def test_bad_variable_syntax_is_an_error_with_line(site):
    path = site.write("version: 1\nimage: /img/$x.sif\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path, env={})
    assert err.value.line == 2 and "$x" in err.value.message


def test_environment_defaults_to_os_environ(site, monkeypatch):
    monkeypatch.setenv("SC_UNIT_IMAGES", "/from/env")
    path = site.write("version: 1\nimage: ${SC_UNIT_IMAGES}/a.sif\n")
    assert load_policy(path).image == "/from/env/a.sif"


def test_relative_bind_sources_resolve_against_the_policy_folder(site):
    policy = site.policy("""
        version: 1
        defaults:
          binds:
            - ref:/ref
            - ../shared/db:/db:rw
            - {src: ./cache, dst: /cache}
            - {src: data}
        """, name="config/containment.yaml")
    config = site.path("config")
    assert [(b.src, b.dst, b.mode) for b in policy.defaults.binds] == [
        (f"{config}/ref", "/ref", "ro"),
        (site.path("shared", "db"), "/db", "rw"),
        (f"{config}/cache", "/cache", "ro"),
        (f"{config}/data", f"{config}/data", "ro"),  # no dst: the resolved source, at the same path
    ]


def test_bind_forms_and_defaults(site):
    policy = site.policy("""
        version: 1
        defaults:
          binds:
            - /cvmfs
            - /opt/sw:ro
            - /scratch:rw
            - /data/x/../y/:/in/./y
            - {src: /a, dst: /b, mode: rw, required: false}
        """)
    assert [(b.src, b.dst, b.mode, b.required) for b in policy.defaults.binds] == [
        ("/cvmfs", "/cvmfs", "ro", True),
        ("/opt/sw", "/opt/sw", "ro", True),
        ("/scratch", "/scratch", "rw", True),
        ("/data/y", "/in/y", "ro", True),
        ("/a", "/b", "rw", False),
    ]
    assert policy.defaults.binds[0].origin.line == 4 and policy.defaults.binds[4].origin.line == 8


@pytest.mark.parametrize("item, env, bind", [
    # A variable's value is data: a ':' in it never adds a destination or a mode.
    ("${V}", {"V": "/home/u:rw"}, ("/home/u:rw", "/home/u:rw", "ro")),
    ("${V}:/dst", {"V": "/home/u:rw"}, ("/home/u:rw", "/dst", "ro")),
    ("${V}:/dst:rw", {"V": "/a:b"}, ("/a:b", "/dst", "rw")),
    ("/src:${D}", {"D": "/d:rw"}, ("/src", "/d:rw", "ro")),
    ("${A:-/x}:/dst:rw", {}, ("/x", "/dst", "rw")),  # ':' inside ${...} does not split
    ("${A:-/x:y}", {}, ("/x:y", "/x:y", "ro")),
    ("${V}/sub:ro", {"V": "/data"}, ("/data/sub", "/data/sub", "ro")),
])
def test_short_bind_splits_before_variables_are_expanded(site, item, env, bind):
    policy = site.policy(f"version: 1\ndefaults:\n  binds: ['{item}']\n", env=env)
    (b,) = policy.defaults.binds
    assert (b.src, b.dst, b.mode) == bind


def test_a_variables_colon_cannot_make_a_bind_writable(site):
    # The value "/etc:rw" is one (missing) source path, bound read-only: never /etc writable.
    c = site.checker("version: 1\nrules: {a: {binds: ['${V}']}}\n", env={"V": "/etc:rw"})
    (b,) = c.settings("a").binds
    assert (b.src, b.mode) == ("/etc:rw", "ro")
    findings = c.check([job("a")])
    assert "SC306" not in {f.code for f in findings}
    assert any(f.code == "SC301" and "/etc:rw" in f.message for f in findings)


def test_workdir_key_is_read_per_layer(site):
    policy = site.policy("version: 1\ndefaults: {workdir: ro}\nrules:\n  a: {workdir: rw}\n")
    assert policy.defaults.workdir == "ro" and policy.rules[0][1].workdir == "rw"


def test_identical_bind_twice_in_one_list_is_kept_once(site):
    policy = site.policy("version: 1\ndefaults:\n  binds: [/a:ro, '/a']\n")
    assert [b.dst for b in policy.defaults.binds] == ["/a"]


def test_empty_sections_are_allowed(site):
    policy = site.policy("version: 1\ndefaults:\npresets:\nrules:\n  a:\n")
    assert policy.rules[0][0] == "a" and policy.presets == {}


# --- loader errors: file:line, message, fix --------------------------------------------------------------

ERRORS = [
    # (policy text, line, words in the message)
    ("version: 1\nrulez: {}\n", 2, ["'rulez'", "top level"]),
    ("version: 1\ndefaults:\n  containmnet: contain\n", 3, ["'containmnet'"]),
    ("version: 1\nrules:\n  a:\n    namespace: [pid]\n", 4, ["'namespace'"]),
    ("version: 1\ndefaults:\n  binds:\n    - {src: /a, dest: /b}\n", 4, ["'dest'", "bind"]),
    ("version: 1\ndefaults:\n  binds:\n    - {dst: /b}\n", 4, ["'src'"]),
    ("version: 1\ndefaults:\n  cleanenv: 'yes'\n", 3, ["cleanenv", "true or false"]),
    ("version: 1\ndefaults:\n  gpu: 1\n", 3, ["gpu", "true or false"]),
    ("version: 1\ndefaults:\n  namespaces: pid\n", 3, ["namespaces", "list"]),
    ("version: 1\ndefaults:\n  binds: /cvmfs\n", 3, ["binds", "list"]),
    ("version: 1\ndefaults:\n  env: [LANG, 5]\n", 3, ["env.1", "text"]),
    ("version: 1\nrules: [a, b]\n", 2, ["rules", "mapping"]),
    ("version: 1\nrules:\n  a: contain\n", 3, ["'a'", "mapping"]),
    ("version: 1\nimage: 5\n", 2, ["image", "text"]),
    ("version: 1\nimage: ''\n", 2, ["image", "text"]),
    ("version: 1\nruntime: docker\n", 2, ["'docker'"]),
    ("version: 1\nrules:\n  a:\n    containment: full\n", 4, ["'full'", "containment"]),
    ("version: 1\nrules:\n  a:\n    namespaces:\n      - pid\n      - mnt\n", 6, ["'mnt'", "namespace"]),
    ("version: 1\ndefaults:\n  env: [LANG, 'A-B']\n", 3, ["'A-B'"]),
    ("version: 1\ndefaults:\n  env: ['1X']\n", 3, ["'1X'"]),
    ("version: 1\ndefaults:\n  protected: [data/raw]\n", 3, ["'data/raw'", "absolute"]),
    ("version: 1\ndefaults:\n  auto_binds: {outputs: ro}\n", 3, ["auto_binds.outputs", "'ro'"]),
    ("version: 1\ndefaults:\n  auto_binds: {inputs: yes}\n", 3, ["auto_binds.inputs"]),
    ("version: 1\ndefaults:\n  auto_binds: {input: ro}\n", 3, ["'input'"]),
    ("version: 1\ndefaults:\n  auto_binds: true\n", 3, ["auto_binds", "mapping"]),
    ("version: 1\ndefaults:\n  binds:\n    - /a:/b:/c:ro\n", 4, ["bad bind", "/a:/b:/c:ro"]),
    ("version: 1\ndefaults:\n  binds:\n    - '/a::ro'\n", 4, ["bad bind"]),
    ("version: 1\ndefaults:\n  binds:\n    - ':/b'\n", 4, ["bad bind"]),
    ("version: 1\ndefaults:\n  binds:\n    - /a:rx\n", 4, ["'rx'", "not absolute"]),
    ("version: 1\ndefaults:\n  binds:\n    - /a:b\n", 4, ["'b'", "not absolute"]),
    ("version: 1\ndefaults:\n  binds:\n    - {src: /a, dst: rel/dir}\n", 4, ["'rel/dir'", "not absolute"]),
    ("version: 1\ndefaults:\n  binds:\n    - {src: /a, mode: rx}\n", 4, ["'rx'"]),
    ("version: 1\nrules:\n  a:\n    workdir: writable\n", 4, ["workdir", "'writable'"]),
    ("version: 1\ndefaults:\n  workdir: true\n", 3, ["workdir"]),
    ("version: 1\ndefaults:\n  binds:\n    - {src: /a, required: 'no'}\n", 4, ["required", "true or false"]),
    ("version: 1\ndefaults:\n  binds:\n    - /a:/x\n    - /b:/c\n    - /b2:/x:rw\n", 6, ["/x", "twice"]),
    ("version: 1\ndefaults: {}\ndefaults: {}\n", 3, ["duplicate key 'defaults'"]),
    ("version: 1\nrules:\n  a: {}\n  b: {}\n  a: {}\n", 5, ["duplicate key 'a'"]),
    ("version: 1\npresets:\n  p: &p {gpu: true}\nrules:\n  a: *p\n", 5, ["alias"]),
    ("version: 1\ndefaults:\n\tgpu: true\n", 3, ["invalid YAML"]),
    ("version: 1\n1: x\n", 2, ["keys must be plain text"]),
    ("version: 1\nrules:\n  a: {containment: [contain}\n", 3, ["invalid YAML"]),
    ("version: 2\n", 1, ["version 2"]),
    ("version: '1'\n", 1, ["version '1'"]),
    ("runtime: apptainer\nrules: {}\n", 1, ["version None"]),
]


@pytest.mark.parametrize("text, line, words", ERRORS, ids=[f"{i:02d}" for i in range(len(ERRORS))])
def test_loader_error_names_file_line_and_fix(site, text, line, words):
    path = site.write(text)
    with pytest.raises(PolicyError) as err:
        load_policy(path, env={})
    assert err.value.file == str(path)
    assert err.value.line == line, str(err.value)
    assert str(err.value).startswith(f"{path}:{line}: ")
    for word in words:
        assert word in err.value.message, (word, err.value.message)
    assert err.value.fix.strip() and f"fix: {err.value.fix}" in str(err.value)


def test_tab_indentation_fix_says_spaces(site):
    path = site.write("version: 1\ndefaults:\n\tgpu: true\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path, env={})
    assert "tab" in err.value.fix


@pytest.mark.parametrize("value", ["true", "1.0", "'1'", "[1]"])
def test_version_must_be_the_integer_1(site, value):
    with pytest.raises(PolicyError) as err:
        load_policy(site.write(f"version: {value}\n"), env={})
    assert err.value.line == 1 and "version" in err.value.message


def test_alias_bomb_is_refused_quickly(site):
    lines = ["version: 1", "x0: &a0 [1, 1]"] + [f"x{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 40)]
    with pytest.raises(PolicyError) as err:
        load_policy(site.write("\n".join(lines) + "\n"), env={})
    assert "alias" in err.value.message and err.value.line == 3


def test_non_utf8_file_names_the_line(site):
    path = site.root / "containment.yaml"
    path.write_bytes(b"version: 1\ndefaults:\n  binds: ['/caf\xe9']\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path, env={})
    assert err.value.line == 3 and "UTF-8" in err.value.message and f"{path}:3" in str(err.value)


def test_too_large_file_is_refused(site):
    path = site.root / "containment.yaml"
    path.write_bytes(b"version: 1\n" + b"# padding\n" * (MAX_BYTES // 10 + 1))
    with pytest.raises(PolicyError) as err:
        load_policy(path, env={})
    assert str(MAX_BYTES) in err.value.message and err.value.fix


def test_missing_file(site):
    with pytest.raises(PolicyError) as err:
        load_policy(site.path("nope.yaml"), env={})
    assert err.value.file == site.path("nope.yaml") and "cannot read" in err.value.message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "just text\n"])
def test_not_a_mapping(site, text):
    with pytest.raises(PolicyError) as err:
        load_policy(site.write(text), env={})
    assert "version: 1" in err.value.fix


def checker_for(site, text):
    return Checker(site.policy(text, env={}), runtime(), plugin_manager(), workdir=site.workdir,
                   rule_kinds={"a": "shell"}, environ={})


def test_unknown_preset_is_found_when_the_checker_is_built(site):
    path = site.root / "containment.yaml"
    with pytest.raises(PolicyError) as err:
        checker_for(site, "version: 1\npresets:\n  lab: {}\nrules:\n  a:\n    gpu: true\n    use: [lab, cvfms]\n")
    assert err.value.line == 7 and f"{path}:7" in str(err.value)
    assert "'cvfms'" in err.value.message and "rules['a']" in err.value.message
    assert "cvmfs" in err.value.fix and "lab" in err.value.fix  # built-in and policy presets are offered


def test_unknown_preset_in_an_unused_preset_is_still_an_error(site):
    with pytest.raises(PolicyError) as err:
        checker_for(site, "version: 1\npresets:\n  lab:\n    use: [nope]\n")
    assert err.value.line == 4 and "'nope'" in err.value.message


def test_preset_cycle_is_an_error_naming_the_chain(site):
    with pytest.raises(PolicyError) as err:
        checker_for(site, "version: 1\npresets:\n  p: {use: [q]}\n  q: {use: [r]}\n  r: {use: [p]}\n")
    assert "cycle" in err.value.message and "q -> r -> p -> q" in err.value.message
    assert err.value.line == 3 and err.value.fix  # p's `use`, where the chain closes


def test_preset_using_itself(site):
    with pytest.raises(PolicyError) as err:
        checker_for(site, "version: 1\npresets:\n  p:\n    gpu: true\n    use: [p]\n")
    assert "cycle" in err.value.message and err.value.line == 5


def test_diamond_use_is_not_a_cycle(site):
    c = checker_for(site, "version: 1\npresets:\n  base: {gpu: true}\n  l: {use: [base]}\n  r: {use: [base]}\n"
                          "rules:\n  a: {use: [l, r]}\n")
    assert c.settings("a").gpu is True


# --- messages a first-time user meets ---------------------------------------------------------------------


@pytest.mark.parametrize("item", ["/data:RW", "/data:Ro", "/data:/d:RW", "/data:rW"])
def test_a_wrong_case_mode_says_modes_are_lower_case(site, item):
    path = site.write(f"version: 1\ndefaults:\n  binds:\n    - {item}\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path, env={})
    assert err.value.line == 4 and "lower case" in err.value.message and "not absolute" not in err.value.message
    assert f":{item.rsplit(':', 1)[1].lower()}" in err.value.fix and "ro or rw" in err.value.fix


def test_a_short_non_path_destination_hints_at_the_mode(site):
    path = site.write("version: 1\ndefaults:\n  binds:\n    - /data:w\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path, env={})
    assert "'w'" in err.value.message and "ro or rw" in err.value.fix


def test_a_relative_sources_finding_says_what_it_was_relative_to(site):
    policy = "version: 1\nrules:\n  a:\n    binds: ['refdata:/ref']\n"
    c = Checker(site.policy(policy, name="config/containment.yaml", env={}), runtime(), plugin_manager(),
                workdir=site.workdir, rule_kinds={"a": "shell"}, environ={})
    missing = [f for f in c.check([job("a")]) if f.code == "SC301"]
    assert missing, c.check([job("a")])
    config = site.path("config")
    told = render_findings(missing)
    assert f"{config}/refdata does not exist" in told
    assert f"'refdata' relative to {config}, the policy's folder" in told and "containment.yaml:4" in told


@pytest.mark.parametrize("text, line, meant", [
    ("version: 1\nrulez: {}\n", 2, "rules"),
    ("version: 1\nDefaults: {}\n", 2, "defaults"),
    ("version: 1\ndefaults:\n  containmnet: contain\n", 3, "containment"),
    ("version: 1\nrules:\n  a:\n    namespace: [pid]\n", 4, "namespaces"),
    ("version: 1\ndefaults:\n  binds:\n    - {src: /a, dest: /b}\n", 4, "dst"),
    ("version: 1\ndefaults:\n  auto_binds: {input: ro}\n", 3, "inputs"),
    ("version: 1\nrules:\n  a:\n    containment: containal\n", 4, "containall"),
    ("version: 1\nruntime: apptainr\n", 2, "apptainer"),
    ("version: 1\ndefaults:\n  namespaces: [ipcs]\n", 3, "ipc"),
])
def test_unknown_names_get_a_did_you_mean(site, text, line, meant):
    path = site.write(text)
    with pytest.raises(PolicyError) as err:
        load_policy(path, env={})
    assert err.value.line == line and err.value.fix.startswith(f"did you mean {meant!r}?"), str(err.value)


def test_no_did_you_mean_for_a_name_like_none_of_them(site):
    path = site.write("version: 1\ndefaults:\n  zzzzzz: 1\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path, env={})
    assert "did you mean" not in err.value.fix and "containment" in err.value.fix
