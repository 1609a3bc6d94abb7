"""Fixtures, the prerequisite gate for tests that need the real Apptainer, test user and Slurm, and the groups
of tests that must share a worker when the suite runs in parallel."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import support
from support import ROOT, USER, runtime_binary, user_entry


BATCH_SYSTEMS = {"slurm": "Slurm", "htcondor": "HTCondor"}  # marker (and tools/MARKER.sh) -> name


def _missing(items) -> dict:
    """For each test that needs them, what of the real environment is missing."""
    base = []
    if not runtime_binary():
        base.append("no apptainer on PATH (run tools/install-apptainer.sh)")
    if user_entry() is None:
        base.append(f"no user {USER} (useradd -m {USER})")
    if os.geteuid() != 0:
        base.append("not root (tests switch to the ordinary test user)")
    down = {}  # batch system marker -> what is missing
    for marker, name in BATCH_SYSTEMS.items():
        if any(marker in item.keywords for item in items) and subprocess.run(
                ["bash", str(ROOT / f"tools/{marker}.sh"), "status"], capture_output=True).returncode:
            down[marker] = f"no {name} running (bash tools/{marker}.sh up)"
    missing = {}
    for item in items:
        markers = [m for m in ("apptainer", *BATCH_SYSTEMS) if m in item.keywords]
        needs = (base if markers else []) + [down[m] for m in markers if m in down]
        if needs:
            missing[item] = needs
    return missing


@pytest.hookimpl(tryfirst=True)   # before pytest-xdist reads the groups (its worker's hook of the same name)
def pytest_collection_modifyitems(config, items):
    _group_for_workers(items)
    _longest_first(items)
    missing = _missing(items)
    if missing and os.environ.get("CI"):
        # In CI the environment is set up by tools/test.sh: a missing piece is a failure, never a skip.
        raise pytest.UsageError("integration prerequisites missing: " + "; ".join(sorted({m for v in missing.values() for m in v})))
    for item, needs in missing.items():
        item.add_marker(pytest.mark.skip(reason="; ".join(needs)))


# --- Parallel runs (pytest-xdist: tools/test.sh runs `pytest -n N --dist loadgroup`) -------------------------
# Any test may run beside any other: each makes its own folders (support.owned_dir, tmp_path), names its host
# markers after its own process, and a batch test looks only at the jobs of its own work folder (other tests
# submit to the same Slurm meanwhile). What must stay on one worker is found from what the tests use, never
# from a list of files: tests that share a module- or class-scoped fixture (typically one Snakemake run that
# several tests read) form one group, so that the run happens once, not once per worker.
SHARED_SCOPES = ("module", "class", "package")


def _shared_instances(item) -> list[str]:
    """The fixture instances this test shares with other tests, each as "where::name" (+ "#param index")."""
    callspec = getattr(item, "callspec", None)
    shared = []
    for name in item.fixturenames:
        definitions = item._fixtureinfo.name2fixturedefs.get(name)   # pytest's own record of what it will use
        if not definitions or definitions[-1].scope not in SHARED_SCOPES:
            continue
        scope = definitions[-1].scope
        owner = (item.getparent(pytest.Class) if scope == "class" else None) or item.getparent(pytest.Module)
        where = definitions[-1].baseid if scope == "package" else owner.nodeid
        index = f"#{callspec.indices[name]}" if callspec and name in callspec.indices else ""
        shared.append(f"{where}::{name}{index}")
    return shared


def _group_for_workers(items) -> None:
    """Puts tests that share a fixture instance, directly or through others, in one xdist_group."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    keys_of = {item: _shared_instances(item) for item in items}
    for keys in keys_of.values():
        for key in keys[1:]:
            parent[root(key)] = root(keys[0])
    for item, keys in keys_of.items():
        if keys:
            item.add_marker(pytest.mark.xdist_group(root(keys[0])))


# pytest-xdist (--dist loadgroup) hands out the tests in collection order, a group at a time, to whichever
# worker asks next: a long group handed out late sets the end of the run. So the groups go longest first, by
# each test's duration in the earlier runs on this machine: tools/test.sh keeps them (setup, call and teardown,
# in seconds) in the file SINGCONTAIN_TEST_TIMINGS names, one per virtualenv. A test not timed yet is guessed
# from what it needs: a batch system's jobs wait for its polls, a test outside tests/unit starts Snakemake or
# Apptainer, a unit test takes next to nothing.
TIMINGS = os.environ.get("SINGCONTAIN_TEST_TIMINGS")


def _timings() -> dict[str, float]:
    try:
        return json.loads(Path(TIMINGS).read_text()) if TIMINGS else {}
    except (OSError, ValueError):
        return {}


def _longest_first(items) -> None:
    timed = _timings()

    def cost(item) -> float:
        if item.nodeid in timed:
            return timed[item.nodeid]
        if any(marker in item.keywords for marker in BATCH_SYSTEMS):
            return 30.0
        return 0.1 if "unit" in item.path.relative_to(ROOT).parts else 10.0

    groups: dict[str, list] = {}   # the group (or the test alone) -> its tests, in collection order
    for item in items:
        group = item.get_closest_marker("xdist_group")
        groups.setdefault(group.args[0] if group else item.nodeid, []).append(item)
    ordered = sorted(groups.values(), key=lambda tests: -sum(map(cost, tests)))   # stable: ties keep their order
    items[:] = [item for tests in ordered for item in tests]


_durations: dict[str, float] = {}


def pytest_runtest_logreport(report):
    # On the controller of a parallel run (or in a run without workers); a grouped test's id carries "@group".
    at = report.nodeid.rfind("@")
    nodeid = report.nodeid[:at] if at > report.nodeid.rfind("]") else report.nodeid
    _durations[nodeid] = _durations.get(nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    if not session.testsfailed:  # a failed test's folders stay, to be looked at
        for path in support.OWNED_DIRS:
            shutil.rmtree(path, ignore_errors=True)
    if not TIMINGS or hasattr(session.config, "workerinput") or not _durations:
        return
    timed = _timings() | {nodeid: round(seconds, 2) for nodeid, seconds in _durations.items()}
    new = Path(f"{TIMINGS}.{os.getpid()}")
    try:
        new.write_text(json.dumps(timed, indent=0, sort_keys=True))
        new.replace(TIMINGS)
    except OSError:
        new.unlink(missing_ok=True)


def pytest_configure(config):
    # pytest-xdist 3.8 puts a test in its group by renaming it through Node._nodeid, which pytest 9.2 replaced:
    # there the groups are silently ignored, and each worker would run a shared fixture again.
    if config.getoption("dist", "no") == "loadgroup" and not any(
            "_nodeid" in getattr(cls, "__slots__", ()) for cls in pytest.Item.__mro__):
        raise pytest.UsageError(f"pytest-xdist cannot group tests (xdist_group) under pytest {pytest.__version__}: "
                                "install the versions of pyproject.toml's test extra (bash tools/venv.sh 9)")


@pytest.fixture(scope="session")
def image():
    """The busybox + bash test image, built locally once per session, i.e. per worker in a parallel run (~0.2 s;
    no registry is reachable)."""
    out = Path(tempfile.mkdtemp(prefix="singcontain-image-", dir="/tmp"))
    out.chmod(0o755)
    sif = out / "test.sif"
    subprocess.run(["bash", str(ROOT / "tools/build-test-image.sh"), str(sif)], check=True,
                   stdout=subprocess.DEVNULL)
    sif.chmod(0o644)
    yield str(sif)
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def runtime_with_conf():
    """make({key: value}) -> a bin folder holding a copy of the installed Apptainer whose apptainer.conf has
    those keys changed, as a site admin might set them. Put it first on PATH."""
    from snakemake_singcontain.runtime import detect

    made = []

    def make(changes: dict) -> str:
        runtime = detect()
        prefix = Path(runtime.binary).resolve().parent.parent
        if not runtime.conf_file or not Path(runtime.conf_file).is_relative_to(prefix):
            pytest.skip("needs a relocatable Apptainer prefix (tools/install-apptainer.sh makes one)")
        copy = Path(tempfile.mkdtemp(prefix="singcontain-apptainer-", dir="/tmp"))
        copy.chmod(0o755)
        made.append(copy)
        shutil.copytree(prefix, copy / "prefix", symlinks=True)
        conf = copy / "prefix" / Path(runtime.conf_file).relative_to(prefix)
        lines = [line for line in conf.read_text().splitlines()
                 if line.split("=")[0].strip().lower() not in changes]
        conf.write_text("\n".join(lines + [f"{key} = {value}" for key, value in changes.items()]) + "\n")
        return str(copy / "prefix" / "bin")

    yield make
    for copy in made:
        shutil.rmtree(copy, ignore_errors=True)
