"""The `apptainer exec` flags of a plan, for Apptainer and SingularityCE where they differ."""

import csv

import pytest

from sc_unit import codes, expect, job, runtime
from snakemake_singcontain.argv import apptainer_args, bind_args, env_pair, needs_mount, settings_args
from snakemake_singcontain.findings import ERROR
from snakemake_singcontain.policy import Bind

APPTAINER_1_4 = runtime("apptainer", (1, 4, 5))
APPTAINER_1_0 = runtime("apptainer", (1, 0, 3))
SINGULARITYCE_4 = runtime("singularityce", (4, 1, 2))
SINGULARITYCE_3_9 = runtime("singularityce", (3, 9, 0))
SINGULARITYCE_3_8 = runtime("singularityce", (3, 8, 0))
SINGULARITY_3_8 = runtime("singularity", (3, 8, 7))


def flags(site, layer: str, environ=None) -> list[str]:
    s = site.checker(f"version: 1\nrules:\n  a: {layer}\n").settings("a")
    return settings_args(s, environ or {})


@pytest.mark.parametrize("layer, argv", [
    ("{}", ["--contain"]),
    ("{containment: none}", []),
    ("{containment: containall}", ["--containall"]),
    ("{namespaces: [pid, uts]}", ["--contain", "--pid", "--uts"]),
    ("{namespaces: [user, ipc]}", ["--contain", "--userns", "--ipc"]),
    # containall implies pid and ipc: no duplicate --pid/--ipc
    ("{containment: containall, namespaces: [pid, ipc, uts]}", ["--containall", "--uts"]),
    ("{namespaces: [net]}", ["--contain", "--net", "--network", "none"]),
    ("{namespaces: [net], network: bridge}", ["--contain", "--net", "--network", "bridge"]),
    ("{network: bridge}", ["--contain"]),  # a network type alone asks for no namespace
    ("{writable_tmpfs: true}", ["--contain", "--writable-tmpfs"]),
    ("{gpu: true}", ["--contain", "--nv"]),
    ("{containment: none, gpu: true, writable_tmpfs: true}", ["--writable-tmpfs", "--nv"]),
])
def test_settings_flags(site, layer, argv):
    assert flags(site, layer) == argv


ENVIRON = {"LANG": "C.UTF-8", "OMP_NUM_THREADS": "4", "SECRET": "x"}


@pytest.mark.parametrize("layer, argv", [
    ("{cleanenv: true, env: [LANG, OMP_NUM_THREADS, UNSET]}",
     ["--contain", "--cleanenv", "--env", "LANG=C.UTF-8", "--env", "OMP_NUM_THREADS=4"]),
    # containall cleans the environment itself: no --cleanenv, but the allow-list still applies; Snakemake's
    # per-job thread counts cross without being listed (the rule's `threads:`, not a host secret)
    ("{containment: containall, env: [LANG]}", ["--containall", "--env", "LANG=C.UTF-8", "--env", "OMP_NUM_THREADS=4"]),
    ("{containment: containall, cleanenv: true, env: [LANG]}",
     ["--containall", "--env", "LANG=C.UTF-8", "--env", "OMP_NUM_THREADS=4"]),
    # without a clean environment every host variable crosses anyway: no --env
    ("{env: [LANG]}", ["--contain"]),
    ("{cleanenv: true}", ["--contain", "--cleanenv", "--env", "OMP_NUM_THREADS=4"]),
])
def test_cleanenv_and_env_allow_list(site, layer, argv):
    assert flags(site, layer, ENVIRON) == argv


def go_csv(line: str) -> list[str]:
    """The first record as Go's encoding/csv reads it (strict: a '"' inside an unquoted field is an error; a
    newline outside quotes ends the record)."""
    fields, i = [], 0
    while True:
        if line.startswith('"', i):
            buf, j = [], i + 1
            while True:
                k = line.find('"', j)
                if k < 0:
                    raise ValueError('extraneous or missing " in quoted-field')
                buf.append(line[j:k])
                if line.startswith('"', k + 1):
                    buf.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            if i < len(line) and line[i] not in ",\n":
                raise ValueError('extraneous " in field')
            fields.append("".join(buf))
        else:
            end = min((k for k in (line.find(",", i), line.find("\n", i)) if k >= 0), default=len(line))
            if '"' in line[i:end]:
                raise ValueError('bare " in non-quoted-field')
            fields.append(line[i:end])
            i = end
        if i >= len(line) or line[i] == "\n":
            return fields
        i += 1


def apptainer_env(word: str) -> dict:
    """How Apptainer reads one --env value (pflag's stringToString, measured with Apptainer 1.4.5): with one
    '=' the whole word is one pair, '"' trimmed from both ends; with more it is CSV, one pair per field, and
    a bare '"' makes Apptainer refuse to start."""
    fields = [word.strip('"')] if word.count("=") == 1 else go_csv(word)
    return dict(field.split("=", 1) for field in fields)


def passed_env(argv) -> dict:
    passed = {}
    for i, word in enumerate(argv):
        if word == "--env":
            passed.update(apptainer_env(argv[i + 1]))
    return passed


def test_apptainer_env_emulation_matches_measurements():
    # Measured with Apptainer 1.4.5 (apptainer exec --cleanenv --env WORD … sh -c 'echo $X'):
    assert apptainer_env("X=a,b") == {"X": "a,b"}
    assert apptainer_env("X=a=1,b=2") == {"X": "a=1", "b": "2"}
    assert apptainer_env('"X=a=1,b=2"') == {"X": "a=1,b=2"}
    assert apptainer_env('X="q"') == {"X": '"q'}
    assert apptainer_env('X=ends"') == {"X": "ends"}
    with pytest.raises(ValueError):
        apptainer_env('X=a="b"')  # "bare \" in non-quoted-field": the container does not start
    # ... and for newlines (printf "%s" "$X" | od -c): CSV stops at the first newline outside quotes.
    assert apptainer_env("X=a\nb") == {"X": "a\nb"}
    assert apptainer_env("X=a=1\nB=2") == {"X": "a=1"}
    assert apptainer_env("X=\na=1") == {"X": ""}
    assert apptainer_env('"X=a=1\nB=2"') == {"X": "a=1\nB=2"}


@pytest.mark.parametrize("value", ["a,b", "-Dx=1,LD_PRELOAD=/x.so", "a=1,b=2", "k=v", "plain", "", "a\nb", "a,b\nc=d",
                                   "a=1\nB=2", "\na=1", "k=v\n"])
def test_env_values_reach_the_container_intact(site, value):
    argv = flags(site, "{cleanenv: true, env: [X]}", {"X": value})
    assert passed_env(argv) == {"X": value}  # and, above all, no other variable crosses


@pytest.mark.parametrize("value", ['say "hi"', '-Dopt="v w"', 'a="b"'])
def test_env_values_with_quotes_are_refused(site, value):
    # Apptainer trims or rejects a '"' in --env (measured); the bridge reports the ValueError as SC209.
    with pytest.raises(ValueError, match="X"):
        flags(site, "{cleanenv: true, env: [X]}", {"X": value})


def test_env_pair_quotes_a_comma_and_refuses_a_quote():
    # Apptainer reads --env as CSV: a ',' in the value needs a quoted field, and a '"' cannot cross intact.
    assert env_pair("X", "plain") == "X=plain"
    assert env_pair("X", "a,b") == '"X=a,b"'
    assert next(csv.reader([env_pair("X", "ok,INJECTED=x")])) == ["X=ok,INJECTED=x"]
    with pytest.raises(ValueError, match="X"):
        env_pair("X", 'say "hi"')


# --- binds -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rt", [APPTAINER_1_4, SINGULARITY_3_8, None])
def test_plain_bind(rt):
    assert bind_args(Bind("/data/ref", "/ref", "ro"), rt) == ["--bind", "/data/ref:/ref:ro"]
    assert bind_args(Bind("/scratch", "/scratch", "rw"), rt) == ["--bind", "/scratch:/scratch:rw"]


@pytest.mark.parametrize("rt", [APPTAINER_1_4, SINGULARITYCE_4, SINGULARITYCE_3_9])
@pytest.mark.parametrize("bind, value", [
    (Bind("/data/a,b", "/ab", "ro"), 'type=bind,"src=/data/a,b",dst=/ab,ro'),
    (Bind("/data/c:d", "/data/c:d", "rw"), "type=bind,src=/data/c:d,dst=/data/c:d"),
    (Bind("/data/x", "/in/p,q", "rw"), 'type=bind,src=/data/x,"dst=/in/p,q"'),
    (Bind('/data/say "hi", ok', "/hi", "ro"), 'type=bind,"src=/data/say ""hi"", ok",dst=/hi,ro'),
])
def test_mount_for_paths_bind_cannot_express(rt, bind, value):
    argv = bind_args(bind, rt)
    assert argv == ["--mount", value]
    fields = next(csv.reader([argv[1]], strict=True))  # Apptainer reads --mount as CSV
    assert f"src={bind.src}" in fields and f"dst={bind.dst}" in fields
    assert ("ro" in fields) == (bind.mode == "ro")


@pytest.mark.parametrize("rt", [SINGULARITY_3_8, SINGULARITYCE_3_8, APPTAINER_1_0, None])
def test_no_mount_flag_refuses_paths_bind_cannot_express(rt):
    with pytest.raises(ValueError, match="/data/a,b"):
        bind_args(Bind("/data/a,b", "/ab", "ro"), rt)


@pytest.mark.parametrize("rt, ok", [(SINGULARITYCE_3_8, False), (SINGULARITY_3_8, False), (APPTAINER_1_0, False),
                                    (APPTAINER_1_4, True), (SINGULARITYCE_3_9, True)])
def test_sc206_exactly_where_bind_args_would_refuse(site, rt, ok):
    folder = site.dir("a,b")
    c = site.checker("version: 1\nrules: {a: {binds: ['${ROOT}/a,b:/ab:ro']}}\n", runtime=rt)
    spec = job("a")
    findings = c.check([spec])
    if ok:
        assert "SC206" not in codes(findings)
        assert "--mount" in apptainer_args(c.job_plan(spec), rt, {})
    else:
        expect(findings, "SC206", ERROR, "a", folder)
        with pytest.raises(ValueError):
            apptainer_args(c.job_plan(spec), rt, {})


@pytest.mark.parametrize("policy, inputs", [
    ("version: 1\n", ["../ref.fa"]),  # an auto-bind of the workdir's parent
    ("version: 1\ndefaults: {binds: ['${ROOT}:ro']}\n", []),
])
def test_sc206_exactly_where_bind_args_would_refuse_the_workdir(site, policy, inputs):
    site.workdir = site.dir("work,dir")
    c = site.checker(policy, runtime=APPTAINER_1_0)
    spec = job("a", inputs=inputs, outputs=["res/x.txt"])
    try:
        apptainer_args(c.job_plan(spec), APPTAINER_1_0, {})
        refused = False
    except ValueError:
        refused = True
    assert ("SC206" in codes(c.check([spec]))) == refused


@pytest.mark.parametrize("path, needed", [("/a/b", False), ("/a b/c", False), ("/a,b", True), ("/a:b", True),
                                          ('/a"b', False), ("/a=b", False)])
def test_needs_mount(path, needed):
    assert needs_mount(path) is needed


def test_apptainer_args_order_settings_binds_then_args(site):
    site.dir("ref")
    c = site.checker("""
        version: 1
        rules:
          a:
            containment: containall
            binds: ['${ROOT}/ref:/ref']
            args: ['--no-init', '--pwd', '/ref']
        """)
    plan = c.job_plan(job("a", inputs=[site.path("in", "x")], outputs=["res/y"]))
    w, res = site.workdir, f"{site.workdir}/res"
    # Binds parents before children: the read-only workdir before the writable folder of the output.
    assert apptainer_args(plan, APPTAINER_1_4, {}) == [
        "--containall", "--bind", f"{site.path('ref')}:/ref:ro", "--bind", f"{site.path('in')}:{site.path('in')}:ro",
        "--bind", f"{w}:{w}:ro", "--bind", f"{res}:{res}:rw", "--no-init", "--pwd", "/ref"]


def test_missing_optional_bind_is_not_passed(site):
    c = site.checker("version: 1\nrules: {a: {binds: [{src: '${ROOT}/nope', dst: /n, required: false}]}}\n")
    w = site.workdir
    assert apptainer_args(c.job_plan(job("a")), APPTAINER_1_4, {}) == ["--contain", "--bind", f"{w}:{w}:ro"]
