"""The allow-list of Apptainer flags and variables: what a user may pass in `args`, --apptainer-args or the
environment, parsed as Apptainer (pflag) parses it."""

from collections import Counter

import pytest

from snakemake_singcontain.apptainer_flags import (DENIED, EXEC_FLAGS, GLOBAL_FLAGS, OWNED, SAFE, TABLE_VERSION,
                                                   owned, unsafe_args, unsafe_environment)


@pytest.mark.parametrize("args", [
    ["--no-init"], ["--no-eval", "--no-umask"], ["--app", "tool"], ["--app=tool"], ["--cpus", "2", "--memory=1G"],
    ["--no-init=true"], ["--hostname", "node"], ["--tmpdir", "/scratch/me"], ["--pids-limit", "100"], [],
])
def test_safe_flags_pass(args):
    assert unsafe_args(args) == []


@pytest.mark.parametrize("args, refused", [
    # owned: the policy says these
    (["--bind", "/data:/data"], ["--bind"]),
    (["-B", "/data"], ["-B"]),
    (["--containall"], ["--containall"]),
    (["--home=/h"], ["--home=/h"]),
    (["--pwd", "/x"], ["--pwd"]),
    (["--no-pid", "--no-nv", "--compat"], ["--no-pid", "--no-nv", "--compat"]),
    # denied: host files, programs, layers, writes or privileges the policy does not describe
    (["--containlibs", "/lib/x.so"], ["--containlibs"]),
    (["--containlibs=/lib/x.so"], ["--containlibs=/lib/x.so"]),
    (["--overlay", "/host/dir"], ["--overlay"]),
    (["--fusemount", "host:/usr/bin/evil /mnt"], ["--fusemount"]),
    (["--writable", "--fakeroot", "--workdir", "/w", "--sharens"],
     ["--writable", "--fakeroot", "--workdir", "--sharens"]),
    (["--rocm", "--nvccli", "--no-mount", "tmp", "--security", "seccomp:x"],
     ["--rocm", "--nvccli", "--no-mount", "--security"]),
    (["--help"], ["--help"]),
])
def test_owned_and_denied_flags_are_refused(args, refused):
    assert unsafe_args(args) == refused


@pytest.mark.parametrize("word", ["--no-such-flag", "--NV", "--quiet", "--debug", "---no-init", "--no-ini", "-x", "-q"])
def test_unknown_flags_are_refused(word):
    """Not in the table: refused (the global flags are not accepted after `exec` either)."""
    assert unsafe_args([word]) == [word]


@pytest.mark.parametrize("args, refused", [
    (["-cB", "/x"], ["-cB"]),  # -c and -B with its value in the next word
    (["-Cp"], ["-Cp"]),
    (["-B/x"], ["-B/x"]),  # the rest of the word is the value
    (["-B=/x", "--no-init"], ["-B=/x"]),
    (["-Bc"], ["-Bc"]),  # "c" is -B's value here, but -B alone is refused
    (["-c=false"], ["-c=false"]),
    (["-zB", "/x"], ["-zB", "/x"]),  # an unknown letter: nothing after it is understood
])
def test_short_clusters(args, refused):
    assert unsafe_args(args) == refused


@pytest.mark.parametrize("args", [
    ["--app", "--containlibs=/lib/x.so"],  # pflag takes the next word as the value, whatever it looks like
    ["--memory", "-B"],
    ["--dns", "--fusemount", "--no-init"],
    ["--app=--containall"],
])
def test_a_value_is_never_taken_for_a_flag(args):
    assert unsafe_args(args) == []


@pytest.mark.parametrize("args, refused", [
    (["--no-init", "docker://evil"], ["docker://evil"]),  # would end the options: the image
    (["--no-init", "--", "--containlibs=/x"], ["--", "--containlibs=/x"]),
    (["-"], ["-"]),
    ([""], [""]),
    (["--app"], ["--app"]),  # a value flag at the end would swallow the next word (the image)
    (["--no-init", "--cpus"], ["--cpus"]),
    (["--nv;", "touch", "/tmp/x"], ["--nv;", "touch", "/tmp/x"]),
])
def test_words_that_are_no_flag_are_refused(args, refused):
    assert unsafe_args(args) == refused


@pytest.mark.parametrize("word, expected", [
    ("--bind", True), ("--bind=/x", True), ("-B", True), ("-cB", True), ("bind", True), ("--containall", True),
    ("--env", True), ("--containlibs", False), ("--overlay", False), ("-o", False), ("--no-init", False),
    ("--no-such-flag", False), ("-x", False),
])
def test_owned(word, expected):
    assert owned(word) is expected


@pytest.mark.parametrize("name", [
    "APPTAINER_CONTAINLIBS", "SINGULARITY_CONTAINLIBS", "APPTAINER_OVERLAYIMAGE", "SINGULARITY_OVERLAY",
    "APPTAINER_FUSESPEC", "APPTAINER_BINDPATH", "SINGULARITY_BIND", "APPTAINER_CONTAIN", "APPTAINER_NO_MOUNT",
    "APPTAINER_CONFIG_FILE", "APPTAINER_CONFIGDIR", "APPTAINER_NOSUCHTHING", "APPTAINER_TARGET_PWD", "APPTAINER_",
])
def test_apptainer_variables_not_classified_safe_are_refused(name):
    assert unsafe_environment({name: "", "PATH": "/usr/bin"}) == [name]


@pytest.mark.parametrize("name", [
    "APPTAINER_CACHEDIR", "SINGULARITY_CACHEDIR", "APPTAINER_TMPDIR", "APPTAINER_MESSAGELEVEL", "APPTAINER_DEBUG",
    "APPTAINER_DISABLE_CACHE", "APPTAINER_DOCKER_USERNAME", "APPTAINER_DOCKER_PASSWORD", "APPTAINER_NOSHIMINIT",
    "APPTAINERENV_FOO", "SINGULARITYENV_FOO",  # variables for inside the container: the caller's own check
    "HOME", "TMPDIR",
])
def test_safe_and_other_variables_pass(name):
    assert unsafe_environment({name: "1"}) == []


def test_unsafe_environment_is_sorted():
    environ = {"SINGULARITY_CONTAINLIBS": "x", "APPTAINER_OVERLAYIMAGE": "/o", "APPTAINER_CACHEDIR": "/c",
               "APPTAINER_FUSESPEC": "host:x /m"}
    assert unsafe_environment(environ) == ["APPTAINER_FUSESPEC", "APPTAINER_OVERLAYIMAGE", "SINGULARITY_CONTAINLIBS"]


def test_the_table_is_consistent():
    """One line per flag, each short letter once, and a variable never both safe and not safe."""
    names = Counter(f.name for f in EXEC_FLAGS)
    assert [n for n, c in names.items() if c > 1] == []
    shorts = Counter(f.short for f in EXEC_FLAGS if f.short)
    assert [s for s, c in shorts.items() if c > 1] == []
    assert {f.cls for f in EXEC_FLAGS + GLOBAL_FLAGS} == {OWNED, SAFE, DENIED}
    classes = {}
    for f in EXEC_FLAGS + GLOBAL_FLAGS:
        for key in f.env:
            classes.setdefault(key, set()).add(f.cls == SAFE)
    assert [k for k, c in classes.items() if len(c) > 1] == []
    assert not any(f.cls == SAFE and f.short for f in EXEC_FLAGS)  # so every short letter is refused
    assert TABLE_VERSION.count(".") == 2
