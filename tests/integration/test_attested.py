"""The probe in the real Apptainer, as the ordinary test user: what a site changes behind the checks' back (a
wrapper script that adds a bind, a runtime whose configuration drops the PID namespace, an image without
bash) is found where it is, and the same job line without the change shows nothing."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from support import as_user, chown_tree, owned_dir

pytestmark = pytest.mark.apptainer

# A contained job with its own PID namespace, a cleaned environment and the workdir read-only (as the plan of
# a `contain` rule with `namespaces: [pid]` and `cleanenv: true` binds it).
PROBE = """
import json, os, sys
from snakemake_singcontain.attest import Expectation, PlannedMount, compare, probe
from snakemake_singcontain.runtime import detect
workdir = os.getcwd()
flags = ["--contain", "--pid", "--cleanenv", "--bind", f"{workdir}:{workdir}:ro"]
plan = Expectation("align", workdir, (PlannedMount(workdir, workdir, "ro"),), namespaces=("pid",), contained=True,
                   cleanenv=True)
seen = [probe("apptainer", sys.argv[1], flags, workdir) for _ in range(int(sys.argv[2]))]
findings = compare(seen[0], plan, detect())
print(json.dumps({"attestation": seen[0].to_json(), "digests": [a.digest for a in seen],
                  "findings": [{"code": f.code, "severity": f.severity, "message": f.message, "fix": f.fix}
                               for f in findings]}))
"""


MADE: list[Path] = []


def folder(what: str) -> Path:
    """A fresh folder the test user owns, removed after the test."""
    MADE.append(owned_dir(f"singcontain-attest-{what}-"))
    return MADE[-1]


@pytest.fixture(autouse=True)
def _remove_folders():
    yield
    while MADE:
        shutil.rmtree(MADE.pop(), ignore_errors=True)


def attest(image, bin_dir=None, times=1) -> dict:
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"} if bin_dir else {}
    run = as_user([sys.executable, "-c", PROBE, image, str(times)], cwd=folder("work"), env=env)
    assert run.returncode == 0, run
    return json.loads(run.output.strip().splitlines()[-1])


def the(seen: dict, code: str) -> dict:
    hits = [f for f in seen["findings"] if f["code"] == code]
    assert len(hits) == 1, seen["findings"]
    return hits[0]


def test_control_the_planned_job_line_shows_nothing_else_and_attests_the_same_twice(image):
    seen = attest(image, times=2)
    assert seen["findings"] == []
    a = seen["attestation"]
    assert a["namespaces"]["pid"] == "own" and a["namespaces"]["net"] == "host" and a["tmp"] == "runtime"
    assert "SINGCONTAIN_PROBE_HOST_ONLY" not in a["env"] and "PATH" in a["env"]
    assert seen["digests"][0] == seen["digests"][1]  # two container starts, one attestation


def site_wrapper(exec_line: str) -> Path:
    """A bin folder with a site's wrapper script named apptainer; exec_line handles `exec` ($real: the runtime)."""
    wrapper = folder("wrapper")
    real = os.path.realpath(os.popen("command -v apptainer").read().strip())
    (wrapper / "apptainer").write_text(f"""#!/bin/sh
real={real}
if [ "$1" = exec ]; then shift; {exec_line}; fi
exec "$real" "$@"
""")
    (wrapper / "apptainer").chmod(0o755)
    chown_tree(wrapper)
    return wrapper


def test_a_wrapper_that_adds_a_bind_is_found(image):
    site = folder("site-folder")
    wrapper = site_wrapper(f'exec "$real" exec --bind {site} "$@"')
    seen = attest(image, bin_dir=wrapper)
    mounted = {m["dst"]: m for m in seen["attestation"]["mounts"]}
    assert mounted[str(site)]["source"] == str(site) and mounted[str(site)]["mode"] == "rw"
    found = the(seen, "SC601")
    assert found["severity"] == "error" and str(site) in found["message"] and "wrapper" in found["message"]
    assert f"{wrapper}/apptainer" in found["fix"] and "site admin" in found["fix"]
    assert [f["code"] for f in seen["findings"]] == ["SC601"]


def test_a_wrapper_that_drops_cleanenv_is_found(image):
    wrapper = site_wrapper('for a; do shift; [ "$a" = --cleanenv ] || set -- "$@" "$a"; done; exec "$real" exec "$@"')
    seen = attest(image, bin_dir=wrapper)
    found = the(seen, "SC604")
    assert found["severity"] == "error" and "LOGNAME" in found["message"] and "USER" in found["message"]
    assert [f["code"] for f in seen["findings"]] == ["SC604"]


def test_a_runtime_configured_without_pid_namespaces_is_found(image, runtime_with_conf):
    seen = attest(image, bin_dir=runtime_with_conf({"allow pid ns": "no"}))
    assert seen["attestation"]["namespaces"]["pid"] == "host"
    found = the(seen, "SC603")
    assert found["severity"] == "error" and "allow pid ns = no" in found["message"] and "apptainer.conf" in found["fix"]
    assert [f["code"] for f in seen["findings"]] == ["SC603"]


@pytest.mark.parametrize("programs, fault, told", [
    (("sh", "cat", "readlink", "id", "env", "true"), "shell", "has no `bash`"),
    (("bash", "sh", "cat", "id", "env", "true"), "image", "lacks readlink, so the probe cannot see what its jobs see"),
])
def test_an_image_without_what_the_probe_needs_is_the_images_fault(programs, fault, told):
    sandbox = folder("image")
    (sandbox / "bin").mkdir()
    for name in ("tmp", "proc", "sys", "dev", "etc", "root", "home"):
        (sandbox / name).mkdir()
    for name, source in (("busybox", "/bin/busybox"), ("bash-static", "/bin/bash-static")):
        (sandbox / "bin" / name).write_bytes(Path(source).read_bytes())
        (sandbox / "bin" / name).chmod(0o755)
    for program in programs:
        (sandbox / "bin" / program).symlink_to("bash-static" if program == "bash" else "busybox")
    chown_tree(sandbox)
    seen = attest(str(sandbox))
    assert seen["attestation"]["fault"] == fault
    found = the(seen, "SC606")
    assert found["severity"] == "error" and told in found["message"] and str(sandbox) in found["message"]


# A real plan: the checker's job plan, its exact flags (argv.apptainer_args) and its expectation.
PLAN_PROBE = """
import json, os, sys
from snakemake_singcontain.argv import apptainer_args
from snakemake_singcontain.attest import compare, expectation, probe
from snakemake_singcontain.checker import Checker
from snakemake_singcontain.plan import JobSpec
from snakemake_singcontain.plugins import plugin_manager
from snakemake_singcontain.policy import load_policy
from snakemake_singcontain.runtime import detect
workdir, runtime = os.getcwd(), detect()
checker = Checker(load_policy("containment.yaml", env=os.environ), runtime, plugin_manager(), workdir=workdir,
                  rule_kinds={"align": "shell"}, environ=os.environ)
told = []
# a job with its files, and the rule's flags without any job's own files (what a probe before submission can
# start: the job's output folders do not exist yet)
image = sys.argv[1]
for job in (JobSpec("align", ("data/x.txt",), ("results/y.txt",), image=image), JobSpec("align", image=image)):
    plan = checker.job_plan(job)
    seen = probe(runtime.binary, sys.argv[1], apptainer_args(plan, runtime, os.environ), workdir)
    told += [f.code + " " + f.message for f in compare(seen, expectation(plan), runtime)]
print(json.dumps(told))
"""


@pytest.mark.parametrize("policy", [
    "{containment: none}",
    "{containment: contain, namespaces: [pid], cleanenv: true, env: [LANG], binds: [/usr/share:/usr/share:ro]}",
    "{containment: containall, namespaces: [net, uts]}",
])
def test_a_real_plans_own_command_line_attests_clean(image, policy):
    work = folder("plan")
    (work / "data").mkdir()
    (work / "data" / "x.txt").write_text("x\n")
    (work / "results").mkdir()
    (work / "containment.yaml").write_text(f"version: 1\ndefaults: {policy}\n")
    chown_tree(work)
    run = as_user([sys.executable, "-c", PLAN_PROBE, image], cwd=work)
    assert run.returncode == 0, run
    assert json.loads(run.output.strip().splitlines()[-1]) == [], run


# --- the probe in a real run: before submission, and on a "node" ----------------------------------------------

RUN_SNAKEFILE = """\
from snakemake_singcontain import contain
contain(workflow, "containment.yaml")
container: config["image"]

rule all:
    input: "results/a.txt"

rule a:
    output: "results/a.txt"
    shell: "ls {config[extra]} > {output} 2>&1 || echo not-seen > {output}"
"""
CLUSTER = ["--executor", "cluster-generic", "--cluster-generic-submit-cmd", "bash", "-j", "1",
           "--seconds-between-status-checks", "1"]


def adding_wrapper(extra: Path) -> Path:
    """An `apptainer` first on PATH, as sites ship: it adds a bind of `extra` to every exec."""
    bin_dir = folder("bin")
    real = shutil.which("apptainer")
    for name in ("apptainer", "singularity"):
        (bin_dir / name).write_text(f'#!/bin/sh\nif [ "$1" = exec ]; then shift; exec {real} exec --bind {extra} "$@"; fi\n'
                                    f'exec {real} "$@"\n')
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_workflow(image: str, extra: Path, *args: str, path_first: Path | None = None, submit_path: Path | None = None):
    work = folder("wf")
    (work / "Snakefile").write_text(RUN_SNAKEFILE)
    (work / "containment.yaml").write_text("version: 1\ndefaults: {containment: contain}\n")
    chown_tree(work)
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    base = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    env = {"PATH": f"{path_first}:{base}" if path_first else base}
    extra_args = []
    if submit_path:  # only the job's own process (the "node") has the wrapper first on its PATH
        extra_args = ["--cluster-generic-submit-cmd", f"env PATH={submit_path}:{base} bash"]
    run = as_user([snakemake, "--sdm", "apptainer", "-c", "1", *args, *extra_args, "--config", f"image={image}",
                   f"extra={extra}"], cwd=work, env=env)
    return work, run


@pytest.mark.snakemake_internals
def test_a_wrapper_that_adds_a_bind_is_found_before_submission(image):
    extra = folder("extra")
    (extra / "site-secret.txt").write_text("s")
    chown_tree(extra)
    work, run = run_workflow(image, extra, path_first=adding_wrapper(extra))
    assert run.returncode != 0 and "SC601" in run.output and str(extra) in run.output, run
    assert not (work / "results" / "a.txt").exists()
    # Control: the same run without the wrapper runs, and the job does not see the folder.
    work, control = run_workflow(image, extra)
    assert control.returncode == 0, control
    assert (work / "results" / "a.txt").read_text().strip() == "not-seen"


@pytest.mark.snakemake_internals
def test_a_wrapper_only_on_the_node_refuses_the_job_there(image):
    extra = folder("extra")
    (extra / "site-secret.txt").write_text("s")
    chown_tree(extra)
    work, run = run_workflow(image, extra, *CLUSTER, submit_path=adding_wrapper(extra))
    assert run.returncode != 0 and "SC601" in run.output and "refused on" in run.output, run
    assert not (work / "results" / "a.txt").exists()
