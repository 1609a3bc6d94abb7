"""The installed Apptainer against the allow-list in snakemake_singcontain/apptainer_flags.py.

Fails when the installed binary has an `exec` (or global) flag, a short letter or an environment key the
table does not classify, or when the table is wrong about whether a flag takes a value (then a value could
hide a flag from our parser, or a flag be taken for a value).

Hidden flags (--containlibs, --pwd, --tmpdir ...) do not show in `exec --help`, and `strings` on the binary
is no help: Go stores its string literals back to back, without separators. What is reliable: every flag
is a `cmdline.Flag` struct in the binary's data (ID, Value, DefaultValue, Name, ShortHand, Usage, Tag,
Deprecated, Hidden, Required, EnvKeys, ...), whose string fields point into the binary. Reading those
records gives every flag name of every command, hidden or not, with its env keys; asking the binary itself
(`apptainer exec --NAME`: "unknown flag" or "flag needs an argument" or neither) then tells which of them
`exec` accepts and whether it takes a value. Short letters are asked for one by one. If Apptainer changes
that struct, the records are not found and the test says so rather than passing.
"""

import json
import re
import string
import struct
import sys
from pathlib import Path

import pytest

from snakemake_singcontain.apptainer_flags import (ENV_PREFIXES, EXEC_FLAGS, GLOBAL_FLAGS, OTHER_ENV, SAFE,
                                                   SAFE_ENV, TABLE_VERSION)
from support import as_user, runtime_binary

pytestmark = pytest.mark.apptainer

PROBE = """
import json, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
binary, command, words = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
def kind(word):
    err = subprocess.run([binary, *command, word], capture_output=True, text=True, stdin=subprocess.DEVNULL).stderr
    return ("unknown" if ("unknown flag" in err or "unknown shorthand flag" in err)
            else "value" if "flag needs an argument" in err else "bool")
with ThreadPoolExecutor(4) as pool:
    print(json.dumps(dict(zip(words, pool.map(kind, words)))))
"""


def probe(command: list[str], words: list[str]) -> dict[str, str]:
    """How the binary takes each word after `apptainer COMMAND`, asked as the ordinary test user."""
    run = as_user([sys.executable, "-c", PROBE, BINARY, json.dumps(command), json.dumps(words)],
                  cwd="/", timeout=300)
    assert run.returncode == 0, run
    return json.loads(run.output.strip().splitlines()[-1])


def flag_records(path: str) -> list[dict]:
    """The cmdline.Flag structs in a Go (x86-64, little-endian) ELF binary; their strings are in .rodata."""
    data = Path(path).read_bytes()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_at = sections[shstrndx][4]
    by_name = {data[names_at + s[0]:data.index(b"\0", names_at + s[0])].decode(): s for s in sections}

    def raw(addr, size, limit):
        """size bytes at virtual address addr, or None when they are not in the file."""
        for _, kind, _, start, offset, length in sections:
            if 0 <= size <= limit and kind != 8 and start and start <= addr and addr + size <= start + length:
                return data[offset + addr - start:offset + addr - start + size]  # kind 8: NOBITS (.bss)
        return None

    def text(addr, size, limit=4096):
        """The Go string (pointer, length), or None when it is not in the file or not text."""
        if size == 0:
            return ""
        try:
            return (raw(addr, size, limit) or b"\xff").decode()
        except UnicodeDecodeError:
            return None

    ident, flag_name, env_key = (re.compile(p + r"\Z")
                                 for p in (r"[A-Za-z]\w*", r"[a-z0-9][a-z0-9-]*", r"[A-Z][A-Z0-9_]*"))
    records = []
    for section in (".data", ".data.rel.ro", ".noptrdata"):
        _, _, _, _, offset, length = by_name[section]
        for at in range(offset, offset + length - 176, 8):  # sizeof(cmdline.Flag) is 176 on 64-bit
            w = struct.unpack_from("<22Q", data, at)
            fid, name, short = text(w[0], w[1], 100), text(w[6], w[7], 60), text(w[8], w[9], 1)
            if not (fid and name and short is not None and ident.match(fid) and flag_name.match(name)):
                continue
            if text(w[10], w[11]) is None or text(w[14], w[15]) is None or w[18] > 10:  # Usage, Deprecated
                continue
            array = raw(w[17], 16 * w[18], 160) if w[18] else b""  # EnvKeys: (pointer, length) pairs
            if array is None:
                continue
            pairs = struct.unpack(f"<{2 * w[18]}Q", array)
            keys = [text(pairs[2 * i], pairs[2 * i + 1], 60) for i in range(w[18])]
            if all(k and env_key.match(k) for k in keys):
                records.append({"id": fid, "name": name, "short": short, "env": keys})
    return records


BINARY = runtime_binary() or "apptainer"


@pytest.fixture(scope="module")
def installed():
    """What the installed binary accepts: exec and global long flags (value or bool), exec short letters,
    and the env keys of each flag name (the union over all commands' flags of that name)."""
    records = flag_records(str(Path(BINARY).resolve()))
    names = sorted({r["name"] for r in records} | {"help"})  # cobra adds --help itself
    env = {}
    for r in records:
        env.setdefault(r["name"], set()).update(r["env"])
    letters = [f"-{c}" for c in string.ascii_letters + string.digits]
    exec_long = {w[2:]: k for w, k in probe(["exec"], [f"--{n}" for n in names]).items() if k != "unknown"}
    exec_short = {w[1:] for w, k in probe(["exec"], letters).items() if k != "unknown"}
    global_long = {w[2:]: k for w, k in probe([], [f"--{n}" for n in names]).items() if k != "unknown"}
    global_long.pop("help", None)
    return {"records": records, "exec": exec_long, "short": exec_short, "global": global_long, "env": env}


def test_the_binary_is_read_completely(installed):
    """The record reader sees every flag `exec --help` lists, and the hidden ones we know of."""
    help_text = as_user([BINARY, "exec", "--help"], cwd="/").output
    listed = set(re.findall(r"^ {2,6}(?:-\w, )?--([a-z0-9-]+)", help_text, re.M))
    assert len(listed) > 50, help_text
    assert listed <= set(installed["exec"]), listed - set(installed["exec"])
    assert {"containlibs", "pwd", "tmpdir"} <= set(installed["exec"])


def test_every_exec_flag_of_the_installed_apptainer_is_classified(installed):
    table = {f.name: f for f in EXEC_FLAGS}
    missing = sorted(set(installed["exec"]) - set(table))
    assert not missing, (f"{version()} has exec flags the table ({TABLE_VERSION}) does not classify: "
                         f"{missing}; add them to EXEC_FLAGS in snakemake_singcontain/apptainer_flags.py")
    wrong = sorted(n for n, kind in installed["exec"].items() if table[n].value != (kind == "value"))
    assert not wrong, f"the table is wrong about which of these take a value: {wrong}"


def test_the_table_has_no_flag_its_version_lacks(installed):
    if version().split()[-1].split("-")[0] != TABLE_VERSION:
        pytest.skip(f"the table describes Apptainer {TABLE_VERSION}, this is {version()}")
    assert {f.name for f in EXEC_FLAGS} == set(installed["exec"])
    assert {f.name for f in GLOBAL_FLAGS} == set(installed["global"])


def test_every_short_letter_is_classified(installed):
    table = {f.short for f in EXEC_FLAGS if f.short}
    assert installed["short"] == table, installed["short"] ^ table


def test_every_global_flag_is_classified(installed):
    table = {f.name: f for f in GLOBAL_FLAGS}
    assert set(installed["global"]) <= set(table), set(installed["global"]) - set(table)


def test_every_env_key_is_classified(installed):
    """Each flag's variables are those the table lists, and no variable the table calls safe sets a flag
    that is not safe."""
    for flags, accepted in ((EXEC_FLAGS, installed["exec"]), (GLOBAL_FLAGS, installed["global"])):
        table = {f.name: f for f in flags}
        unlisted = {n: sorted(installed["env"].get(n, set()) - set(table[n].env)) for n in accepted if n in table}
        assert not any(unlisted.values()), {n: k for n, k in unlisted.items() if k}
    unsafe_keys = {k for flags, accepted in ((EXEC_FLAGS, installed["exec"]), (GLOBAL_FLAGS, installed["global"]))
                   for f in flags if f.name in accepted and f.cls != SAFE for k in installed["env"].get(f.name, ())}
    safe_keys = {name.removeprefix(p) for name in SAFE_ENV for p in ENV_PREFIXES if name.startswith(p)}
    assert not safe_keys & unsafe_keys, safe_keys & unsafe_keys
    flag_keys = {k for keys in installed["env"].values() for k in keys}
    assert not set(OTHER_ENV) & flag_keys, "a variable read directly is now also a flag's key: classify it there"


def version() -> str:
    return as_user([BINARY, "--version"], cwd="/").output.strip()
