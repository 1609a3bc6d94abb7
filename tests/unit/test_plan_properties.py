"""Properties of plans and their flags over generated paths, policies and jobs (hypothesis; few examples,
derandomized, so fast and repeatable). test_properties.py covers the loader and more of the same ground."""

import csv
import shlex
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sc_unit import job, mounted, runtime, seen
from snakemake_singcontain.argv import apptainer_args
from snakemake_singcontain.checker import Checker
from snakemake_singcontain.findings import ERROR
from snakemake_singcontain.plan import JobSpec, job_plan, rule_plan
from snakemake_singcontain.plugins import plugin_manager
from snakemake_singcontain.policy import Bind, Layer, Origin, Policy, merge
from snakemake_singcontain.policy.resolve import BUILTIN

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
APPTAINER = runtime("apptainer", (1, 4, 5))
PM = plugin_manager()


def under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


# Any character but NUL, '/' and newlines (a policy refuses them; a job path holding one is not supported).
segment = st.text(st.characters(blacklist_characters="\x00/\n\r", blacklist_categories=("Cs",)), min_size=1,
                  max_size=6).filter(lambda s: s not in (".", ".."))
abspath = st.lists(segment, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))


def decode(argv):
    """--bind/--mount words back to (src, dst, mode), as Apptainer reads them."""
    out = []
    for i, word in enumerate(argv):
        if word == "--bind":
            parts = argv[i + 1].split(":")
            assert len(parts) == 3 and "," not in argv[i + 1], argv[i + 1]  # ',' would split it into two binds
            out.append(tuple(parts))
        elif word == "--mount":
            fields = next(csv.reader([argv[i + 1]], strict=True))
            kv = dict(f.split("=", 1) for f in fields if "=" in f)
            assert set(fields) - {"ro"} == {"type=bind", f"src={kv['src']}", f"dst={kv['dst']}"}, fields
            out.append((kv["src"], kv["dst"], "ro" if "ro" in fields else "rw"))
    return out


@FAST
@given(binds=st.lists(st.tuples(abspath, abspath, st.sampled_from(["ro", "rw"])), max_size=4),
       inputs=st.lists(abspath, max_size=3), outputs=st.lists(abspath, max_size=3))
def test_argv_round_trips_through_a_shell_and_apptainer(binds, inputs, outputs):
    layer = Layer(Origin("rules['a']", "p.yaml", 1), binds=tuple(Bind(s, d, m) for s, d, m in binds))
    s = merge([BUILTIN, layer])
    plan = job_plan(rule_plan("a", "shell", "/img.sif", "/work", s), JobSpec("a", tuple(inputs), tuple(outputs)))
    argv = apptainer_args(plan, APPTAINER, {})
    assert shlex.split(shlex.join(argv)) == argv
    assert decode(argv) == [(b.src, b.dst, b.mode) for b in plan.binds]


# --- generated policies and jobs over real folders -------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("props")
    for parts in (("work", "sub"), ("data", "raw", "sub"), ("out",), ("ref",)):
        root.joinpath(*parts).mkdir(parents=True, exist_ok=True)
    return root


def scenario(root: Path, system: bool):
    # root is the workdir's parent: a bind of it would hide Snakemake's --home, unless the plan binds the workdir again
    local = [str(root)] + [str(root / p) for p in ("data", "data/raw", "data/raw/sub", "out", "ref", "elsewhere",
                                                   "work/sub")]
    places = st.sampled_from(local + (["/", "/usr", "/usr/share", "/etc", "/opt/sw"] if system
                                      else ["/usr/share", "/etc", "/opt/sw"]))
    files = st.lists(st.tuples(places, st.sampled_from(["x.txt", "y/z.txt"])).map(lambda t: f"{t[0]}/{t[1]}"),
                     max_size=3)
    return st.fixed_dictionaries({
        "binds": st.lists(st.tuples(places, st.sampled_from(["ro", "rw"])), max_size=4),
        "containment": st.sampled_from(["contain", "containall", "none"]),
        "inputs": files, "outputs": files,
    })


def check(root: Path, case: dict):
    layer = Layer(Origin("rules['a']", "p.yaml", 1), containment=case["containment"],
                  binds=tuple(Bind(p, p, m, required=False) for p, m in case["binds"]),
                  protected=(str(root / "data" / "raw"),))
    policy = Policy("p.yaml", 1, "auto", None, Layer(Origin("defaults", "p.yaml")), {}, (("a", layer),))
    checker = Checker(policy, APPTAINER, PM, workdir=str(root / "work"), rule_kinds={"a": "shell"}, environ={})
    spec = job("a", inputs=case["inputs"], outputs=case["outputs"])
    return checker, checker.job_plan(spec), checker.check([spec])


def test_every_writable_bind_of_an_approved_plan_is_outside_protected_paths(root):
    @FAST
    @given(case=scenario(root, system=True))
    def prop(case):
        checker, plan, findings = check(root, case)
        if any(f.severity == ERROR for f in findings):
            return
        protected = checker.settings("a").protected
        for b in plan.binds:
            if b.mode == "rw":
                assert "/" not in (b.src, b.dst)
                assert not any(under(b.src, p) or under(b.dst, p) for p in protected), (b, protected)

    prop()


def test_an_approved_plan_shows_inputs_and_lets_outputs_be_written(root):
    # Parents of the workdir are among the places (root); "/" and system folders are left to the test above.
    @FAST
    @given(case=scenario(root, system=False))
    @example(case={"binds": [(str(root), "ro")], "containment": "contain", "inputs": [],  # --home under a parent
                   "outputs": [f"{root}/work/sub/x.txt"]})
    @example(case={"binds": [], "containment": "contain", "inputs": [f"{root}/x.txt"],  # auto-bound parent
                   "outputs": [f"{root}/work/sub/y/z.txt"]})
    @example(case={"binds": [], "containment": "contain", "inputs": [f"{root}/out/x.txt"],  # input beside an output
                   "outputs": [f"{root}/out/y.txt"]})
    def prop(case):
        checker, plan, findings = check(root, case)
        if any(f.code in ("SC401", "SC402", "SC406", "SC407") for f in findings):
            return
        table = mounted(apptainer_args(plan, APPTAINER, {}), plan.rule.workdir)
        # Without --contain the runtime shows /tmp itself (the table models only --home and the binds).
        simulated = case["containment"] != "none"
        for path in set(case["outputs"]) - set(case["inputs"]):  # Snakemake refuses a job whose output is its input
            assert plan.access(path) == "rw"
            assert not simulated or seen(table, path) == (path, "rw")
        for path in case["inputs"]:
            assert plan.access(path) in ("ro", "rw")
            assert not simulated or seen(table, path) == (path, plan.access(path))

    prop()


# --- plans shared between jobs: the same as a plan made afresh -----------------------------------------------

@pytest.fixture(scope="module")
def family_root(tmp_path_factory):
    """A workdir with what makes one output folder differ from its sibling: a link, a folder a policy binds, a
    place the host reads, Snakemake's state."""
    root = tmp_path_factory.mktemp("families")
    work = root / "work"
    for parts in (("work", "out", "a"), ("work", "out", "bound"), ("work", "profiles"), ("work", ".snakemake"),
                  ("ref",), ("elsewhere",)):
        root.joinpath(*parts).mkdir(parents=True, exist_ok=True)
    (work / "out" / "link").symlink_to(root / "elsewhere")
    (work / "out" / "inner").symlink_to(work / "out" / "a")
    return root


def test_a_plan_reused_for_a_job_of_the_same_shape_or_family_is_the_plan_made_afresh(family_root):
    # One checker plans a run's jobs (reusing plans of jobs of the same shape, or with sibling output folders);
    # each plan must be what a checker that never saw another job makes.
    root, work = family_root, family_root / "work"
    names = st.sampled_from(["a", "b", "c", "link", "inner", "bound", ".snakemake", "profiles"])
    output = st.tuples(st.sampled_from(["out", ".", "out/a", "out/b"]), names, st.sampled_from(["x.txt", "y.txt"]))
    an_input = st.sampled_from([f"{root}/ref/r.fa", "out/a/in.txt", "out/b/in.txt", "data/in.txt",
                                f"{root}/elsewhere/e.txt"])
    jobs = st.lists(st.tuples(st.lists(output, min_size=1, max_size=2), st.lists(an_input, max_size=2)),
                    min_size=2, max_size=6)
    layer = Layer(Origin("rules['a']", "p.yaml", 1), containment="contain",
                  binds=(Bind(str(work / "out" / "bound"), str(work / "out" / "bound"), "rw", required=False),
                         Bind(str(root / "ref"), str(root / "ref"), "ro", required=False)))
    policy = Policy("p.yaml", 1, "auto", None, Layer(Origin("defaults", "p.yaml")), {}, (("a", layer),))

    def checker():
        return Checker(policy, APPTAINER, PM, workdir=str(work), rule_kinds={"a": "shell"}, environ={},
                       host_reads=(str(work / "profiles"),))

    @FAST
    @given(jobs=jobs)
    @example(jobs=[([("out", "b", "x.txt")], []), ([("out", "link", "x.txt")], [])])  # a link as a sibling
    @example(jobs=[([("out", "b", "x.txt")], []), ([("out", "inner", "x.txt")], [])])  # a link inside the workdir
    @example(jobs=[([("out", "b", "x.txt")], []), ([("out", "bound", "x.txt")], [])])  # a folder a policy binds
    @example(jobs=[([(".", "b", "x.txt")], []), ([(".", "profiles", "x.txt")], [])])  # where the host reads
    @example(jobs=[([(".", "b", "x.txt")], []), ([(".", ".snakemake", "x.txt")], [])])  # Snakemake's state
    @example(jobs=[([("out", "b", "x.txt")], ["out/c/in.txt"]),  # an input in its sibling, then in its own folder
                   ([("out", "c", "x.txt")], ["out/c/in.txt"])])
    @example(jobs=[([("out", "b", "x.txt"), ("out/a", "b", "y.txt")], []),  # two folders, then one inside the other
                   ([("out", "a", "x.txt"), ("out/a", "b", "y.txt")], [])])
    @example(jobs=[([("out", "b", "x.txt"), ("out", "c", "y.txt")], []),  # two folders, then one
                   ([("out", "a", "x.txt"), ("out", "a", "y.txt")], [])])
    def prop(jobs):
        shared = checker()
        for outputs, inputs in jobs:
            spec = job("a", inputs=inputs, outputs=["/".join(parts).removeprefix("./") for parts in outputs])
            reused, afresh = shared.job_plan(spec), checker().job_plan(spec)
            assert (reused.binds, dict(reused.mounts), reused.problems) == \
                (afresh.binds, dict(afresh.mounts), afresh.problems), spec

    prop()
