"""RuntimeInfo from the runtime's words: its version line and its apptainer.conf."""

import pytest

from sc_unit import runtime
from snakemake_singcontain.runtime import WEAKENED, RuntimeInfo, parse_conf, parse_version


@pytest.mark.parametrize("text, expected", [
    ("apptainer version 1.4.5-2", ("apptainer", (1, 4, 5))),
    ("apptainer version 1.4.5-2\n", ("apptainer", (1, 4, 5))),
    ("singularity-ce version 4.1.2-jammy", ("singularityce", (4, 1, 2))),
    ("singularity-ce version 3.9.0", ("singularityce", (3, 9, 0))),
    ("singularity version 3.8.7", ("singularity", (3, 8, 7))),
    ("singularity version 3.8.7-1.el7", ("singularity", (3, 8, 7))),
    ("apptainer version 1.1.0-rc.3", ("apptainer", (1, 1, 0))),
    ("Apptainer version v1.3.0", ("apptainer", (1, 3, 0))),
    ("", ("unknown", ())),
    ("bash: apptainer: command not found", ("unknown", ())),
])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


def test_parse_conf_repeated_keys_comments_and_spacing():
    text = """
# SINGULARITY.CONF
# allow pid ns = no
allow pid ns = yes
    Allow PID NS=no
bind path = /etc/localtime
bind path = /etc/hosts
bind path = /data:/mnt/data
mount hostfs = no   

not a setting
allow net networks = bridge, ptp
"""
    conf = parse_conf(text)
    assert conf == {
        "allow pid ns": ("yes", "no"),
        "bind path": ("/etc/localtime", "/etc/hosts", "/data:/mnt/data"),
        "mount hostfs": ("no",),
        "allow net networks": ("bridge, ptp",),
    }


def test_allows_reads_the_last_value_and_defaults():
    rt = runtime(conf=parse_conf("allow pid ns = yes\nallow pid ns = no\nuser bind control = YES\nmount hostfs = yes\n"))
    assert rt.allows("allow pid ns") is False  # the last one wins, as in apptainer.conf
    assert rt.allows("user bind control") is True
    assert rt.allows("mount hostfs", default=False) is True
    assert rt.allows("allow ipc ns") is True  # absent: the default
    assert rt.allows("allow ipc ns", default=False) is False
    assert runtime(conf={"x": ()}).allows("x", default=False) is False


@pytest.mark.parametrize("flavour, version, ok", [
    ("apptainer", (1, 0, 3), False),
    ("apptainer", (1, 1), True),
    ("apptainer", (1, 1, 0), True),
    ("apptainer", (1, 4, 5), True),
    ("singularityce", (3, 8, 0), False),
    ("singularityce", (3, 9, 0), True),
    ("singularityce", (4, 1, 2), True),
    ("singularity", (3, 8, 7), False),  # legacy Singularity has no --mount
    ("unknown", (), False),
])
def test_supports_mount(flavour, version, ok):
    assert RuntimeInfo(flavour, version, "/bin/x").supports_mount is ok


def test_default_mounts():
    assert runtime().default_mounts == ("/tmp", "/var/tmp")
    assert runtime(conf=parse_conf("mount tmp = no")).default_mounts == ()


@pytest.mark.parametrize("line, weakened", [
    ("WARNING: Not virtualizing pid namespace by configuration", True),
    ("WARNING: Ignoring --bind /x bind mount: user bind control disabled by system administrator", True),
    ("INFO:    Converting SIF file to temporary sandbox...", False),
])
def test_weakened_warnings(line, weakened):
    assert bool(WEAKENED.search(line)) is weakened
