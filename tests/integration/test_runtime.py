"""The runtime facts and the start of an image with a rule's flags (the probe run before submission, which
tells SC207), against the real Apptainer with site settings changed."""

import json
import os
import sys

import pytest

from support import as_user, owned_dir

pytestmark = pytest.mark.apptainer

PROBE = """
import json, os, sys
from snakemake_singcontain.attest import probe
from snakemake_singcontain.runtime import detect
runtime = detect()
result = probe(runtime.binary, sys.argv[1], sys.argv[2:], os.getcwd())
print(json.dumps({"conf": runtime.conf_file, "pid_allowed": runtime.allows("allow pid ns"),
                  "binds_allowed": runtime.allows("user bind control"),
                  "ok": not result.failure and not result.warnings, "weakened": result.warnings,
                  "fatal": result.failure}))
"""


def probe(image, *flags, bin_dir=None) -> dict:
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"} if bin_dir else {}
    run = as_user([sys.executable, "-c", PROBE, image, *flags], cwd=owned_dir("singcontain-probe-"), env=env)
    assert run.returncode == 0, run
    return json.loads(run.output.strip().splitlines()[-1])


def test_plain_start_passes(image):
    seen = probe(image, "--contain", "--pid")
    assert seen["ok"] and seen["pid_allowed"] and seen["conf"].endswith("apptainer.conf")


def test_pid_namespace_silently_dropped_by_site_is_caught(image, runtime_with_conf):
    seen = probe(image, "--pid", bin_dir=runtime_with_conf({"allow pid ns": "no"}))
    assert not seen["pid_allowed"]  # the static check (SC201) reads it ...
    assert not seen["ok"] and any("Not virtualizing" in line for line in seen["weakened"])  # ... and so does the start


def test_user_bind_control_off_is_caught(image, runtime_with_conf):
    seen = probe(image, "--contain", bin_dir=runtime_with_conf({"user bind control": "no"}))
    assert not seen["binds_allowed"]
    assert not seen["ok"] and "user bind control" in seen["fatal"]  # Snakemake's --home is refused


def test_first_bind_of_a_destination_wins(image):
    # The plugin's second line: it drops Snakemake's own writable binds (source cache, a Python script's import
    # paths) and binds them read-only in the plan's flags; should a Snakemake still append one after those
    # flags, the plan's read-only bind of that destination, given first, is what the job gets.
    src = owned_dir("singcontain-dup-")
    run = as_user(["apptainer", "exec", "--bind", f"{src}:/mnt/snakemake_searchpaths/item_0:ro",
                   "--bind", f"{src}:/mnt/snakemake_searchpaths/item_0", image,
                   "touch", "/mnt/snakemake_searchpaths/item_0/planted"], cwd=src)
    assert run.returncode != 0 and "Read-only file system" in run.output, run
    assert not (src / "planted").exists()
