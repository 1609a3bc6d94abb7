"""Per-job plans: bind order, auto-binds, the problems behind SC401–SC403, and JobPlan.access()."""

import pytest

from sc_unit import codes, conf, job, mounted, runtime, seen
from snakemake_singcontain.argv import apptainer_args


def dsts(plan):
    return [b.dst for b in plan.binds]


def test_binds_parents_before_children(site):
    for parts in (("d", "a", "b"), ("e",)):
        site.dir(*parts)
    c = site.checker("version: 1\nrules:\n  a:\n    binds: ['${ROOT}/d/a/b:ro', '${ROOT}/e', '${ROOT}/d:ro', '${ROOT}/d/a:rw']\n")
    plan = c.job_plan(job("a"))
    # The workdir (bound read-only for a contained rule) sorts among them by depth, after the policy's own.
    assert dsts(plan) == [site.path("e"), site.path("d"), site.workdir, site.path("d", "a"), site.path("d", "a", "b")]
    order = dsts(plan)
    for i, outer in enumerate(order):  # no bind is mounted after one below it
        assert not any(inner.startswith(outer + "/") for inner in order[:i])


def test_auto_binds_sorted_among_policy_binds(site):
    site.dir("d", "a", "b")
    c = site.checker("version: 1\nrules:\n  a:\n    binds: ['${ROOT}/d/a/b:ro']\n")
    plan = c.job_plan(job("a", inputs=[site.path("d", "x.txt")]))
    assert [(b.dst, b.mode, b.origin.layer) for b in plan.binds] == [
        (site.path("d"), "ro", "auto-bind"), (site.workdir, "ro", "workdir"),
        (site.path("d", "a", "b"), "ro", "rules['a']")]


def test_auto_binds_one_per_folder_and_outputs_win(site):
    c = site.checker("version: 1\n")
    out = f"{site.workdir}/out"
    plan = c.job_plan(job("a", inputs=[f"{out}/in.txt", site.path("ref", "g.fa"), site.path("ref", "g.fai"),
                                       f"{out}/sub/deeper.txt"],
                          outputs=[f"{out}/x.txt", f"{out}/y.txt"]))
    auto = [(b.src, b.dst, b.mode) for b in plan.binds if b.origin.layer == "auto-bind"]
    assert auto == [(site.path("ref"), site.path("ref"), "ro"), (out, out, "rw")]
    assert all(b.required is False for b in plan.binds)
    # Inputs inside the output's writable folder are bound read-only, file by file, after the folder.
    inputs = [(b.dst, b.mode) for b in plan.binds if b.origin.layer == "input"]
    assert inputs == [(f"{out}/in.txt", "ro"), (f"{out}/sub/deeper.txt", "ro")]
    assert dsts(plan).index(out) < dsts(plan).index(f"{out}/in.txt")
    assert (plan.access(f"{out}/in.txt"), plan.access(f"{out}/sub/deeper.txt"), plan.access(f"{out}/x.txt")) == (
        "ro", "ro", "rw")
    assert plan.problems == ()


def test_inputs_in_the_workdir_need_no_bind_and_outputs_get_their_folder(site):
    c = site.checker("version: 1\n")
    w = site.workdir
    plan = c.job_plan(job("a", inputs=["data/in.txt", f"{w}/data/b.txt", "./c.txt"],
                          outputs=["results/deep/x.txt", f"{w}/logs/a.log"]))
    assert [(b.dst, b.mode, b.origin.layer) for b in plan.binds] == [
        (w, "ro", "workdir"), (f"{w}/logs", "rw", "auto-bind"), (f"{w}/results/deep", "rw", "auto-bind")]
    assert plan.problems == ()
    assert [plan.access(p) for p in ("data/in.txt", "c.txt", "Snakefile", "results/x.txt", "results/deep/x.txt")] == [
        "ro", "ro", "ro", "ro", "rw"]


def test_without_containment_the_workdir_is_read_only_too(site):
    # Snakemake's --home would give a `containment: none` job the workdir writable: what it wrote there (the
    # seal, a profile) later jobs and runs would trust.
    c = site.checker("version: 1\ndefaults: {containment: none}\n")
    plan = c.job_plan(job("a", inputs=["data/in.txt"], outputs=["out.txt", "results/x.txt"]))
    w = site.workdir
    assert [(b.dst, b.mode, b.origin.layer) for b in plan.binds] == [
        (w, "ro", "workdir"), (f"{w}/out.txt", "rw", "top-level file"), (f"{w}/results", "rw", "auto-bind")]
    assert plan.problems == ()
    assert (plan.access("out.txt"), plan.access("results/y"), plan.access("Snakefile")) == ("rw", "rw", "ro")


def test_auto_binds_modes_follow_the_policy(site):
    c = site.checker("version: 1\ndefaults: {auto_binds: {inputs: rw}}\n")
    plan = c.job_plan(job("a", inputs=[site.path("ref", "g.fa")]))
    assert [(b.dst, b.mode) for b in plan.binds if b.origin.layer == "auto-bind"] == [(site.path("ref"), "rw")]


def test_auto_binds_off(site):
    c = site.checker("version: 1\ndefaults: {auto_binds: false}\n")
    plan = c.job_plan(job("a", inputs=[site.path("ref", "g.fa")], outputs=["results/x"]))
    assert [b.origin.layer for b in plan.binds] == ["workdir"]
    assert [(kind, path) for kind, path, _ in plan.problems] == [("output", f"{site.workdir}/results/x"),
                                                                  ("input", site.path("ref", "g.fa"))]


def test_output_under_read_only_policy_bind(site):
    site.dir("ref")
    c = site.checker("version: 1\ndefaults: {binds: ['${ROOT}/ref:ro']}\n")
    plan = c.job_plan(job("a", outputs=[site.path("ref", "idx", "g.idx")]))
    ((kind, path, why),) = plan.problems
    assert (kind, path) == ("output", site.path("ref", "idx", "g.idx")) and "read-only" in why
    assert dsts(plan) == [site.path("ref"), site.workdir]  # no auto-bind is added to cure it


def test_input_shown_under_a_different_host_folder(site):
    site.dir("v2")
    c = site.checker("version: 1\ndefaults: {binds: [{src: '${ROOT}/v2', dst: '${ROOT}/ref'}]}\n")
    plan = c.job_plan(job("a", inputs=[site.path("ref", "g.fa")]))
    ((kind, path, why),) = plan.problems
    assert (kind, path) == ("input", site.path("ref", "g.fa")) and site.path("v2") in why


def test_input_in_a_workdir_folder_shadowed_by_a_bind(site):
    site.dir("shared")
    c = site.checker("version: 1\ndefaults: {binds: [{src: '${ROOT}/shared', dst: '${ROOT}/work/ref'}]}\n")
    plan = c.job_plan(job("a", inputs=["ref/g.fa", "other/ok.txt"]))
    assert [(k, p) for k, p, _ in plan.problems] == [("input", f"{site.workdir}/ref/g.fa")]


def test_symlink_input_resolving_outside_what_is_visible(site):
    c = site.checker("version: 1\n")
    plan = c.job_plan(job("a", inputs=["in/a.fq", "in/b.fq"], symlinks={"in/a.fq": "/srv/archive/a.fq",
                                                                         "in/b.fq": f"{site.workdir}/real/b.fq"}))
    ((kind, path, why),) = plan.problems
    assert (kind, path) == ("symlink", f"{site.workdir}/in/a.fq") and "/srv/archive/a.fq" in why


def test_rule_plan_is_shared_by_jobs_of_a_rule_and_image(site):
    c = site.checker("version: 1\n", rules=["a"])
    assert c.job_plan(job("a", inputs=["x"])).rule is c.job_plan(job("a", inputs=["y"])).rule
    assert c.job_plan(job("a")).rule is not c.job_plan(job("a", image="/images/other.sif")).rule


# --- JobPlan.access --------------------------------------------------------------------------------------


@pytest.fixture
def access_plan(site):
    for parts in (("ref", "idx"), ("v2",), ("d", "ab"), ("out",)):
        site.dir(*parts)
    c = site.checker("""
        version: 1
        defaults:
          binds:
            - ${ROOT}/out:rw
            - ${ROOT}/ref:ro
            - ${ROOT}/ref/idx:rw
            - {src: '${ROOT}/v2', dst: '${ROOT}/shown'}
            - ${ROOT}/d/ab
        """)
    return site, c.job_plan(job("a", inputs=[site.path("in", "x")], outputs=[site.path("out", "y"), "results/x.txt"]))


@pytest.mark.parametrize("parts, mode", [
    (("work", "results", "x.txt"), "rw"),  # an output's folder
    (("work", "results", "other.txt"), "rw"),
    (("work",), "ro"),  # the rest of the workdir is read-only to a contained job
    (("work", "Snakefile"), "ro"),
    (("work", "notes", "x.txt"), "ro"),
    (("work", ".snakemake", "log"), "ro"),
    (("ref",), "ro"),
    (("ref", "g.fa"), "ro"),
    (("ref", "idx"), "rw"),  # a writable bind nested in a read-only one
    (("ref", "idx", "g.idx"), "rw"),
    (("ref", "idxx"), "ro"),  # a sibling that only shares a prefix with the nested bind
    (("shown", "a"), None),  # the container shows v2 there, not this host folder
    (("v2", "a"), None),  # v2 is visible, but at another path
    (("d", "ab", "f"), "ro"),
    (("d", "abc", "f"), None),  # a name prefix is not a parent
    (("in", "x"), "ro"),  # auto-bound input folder
    (("out", "y"), "rw"),  # an output under a writable policy bind
    (("elsewhere", "z"), None),
])
def test_access(access_plan, parts, mode):
    site, plan = access_plan
    assert plan.access(site.path(*parts)) == mode


def test_access_relative_paths_are_in_the_workdir(access_plan):
    site, plan = access_plan
    assert plan.access("results/x.txt") == "rw"
    assert plan.access("config.yaml") == "ro"
    assert plan.access("../ref/g.fa") == "ro"
    assert plan.access("/") is None


def test_access_runtime_default_mounts_only_without_containment(site):
    job_a = job("a")
    plan = site.checker("version: 1\nrules: {a: {containment: none}}\n").job_plan(job_a)
    assert plan.access("/var/tmp/x") == "rw"
    plan = site.checker("version: 1\nrules: {a: {containment: none}}\n",
                        runtime=runtime(conf=conf(mount_tmp="no"))).job_plan(job_a)
    assert plan.access("/var/tmp/x") is None
    plan = site.checker("version: 1\n").job_plan(job_a)  # --contain: an empty /tmp, /var/tmp
    assert plan.access("/var/tmp/x") is None


# --- the plan as Apptainer mounts it ---------------------------------------------------------------------


def test_mount_simulation_agrees_with_access_for_an_ordinary_job(access_plan):
    site, plan = access_plan
    table = mounted(apptainer_args(plan, runtime(), {}), plan.rule.workdir)
    for parts in (("work", "r", "x"), ("work", "results", "x.txt"), ("ref", "g"), ("ref", "idx", "g"), ("in", "x"),
                  ("out", "y"), ("d", "ab", "f")):
        path = site.path(*parts)
        assert seen(table, path) == (path, plan.access(path)), path


@pytest.mark.parametrize("policy, inputs", [
    ("version: 1\n", ["${ROOT}/ref.fa"]),  # auto-bind of the workdir's parent, read-only
    ("version: 1\ndefaults: {binds: ['${ROOT}:ro']}\n", []),
])
def test_output_folder_is_bound_writable_after_the_read_only_workdir_and_its_parent(site, policy, inputs):
    # A parent bind is mounted after Snakemake's --home WORKDIR and would hide it (measured, Apptainer 1.4.5):
    # the plan binds the workdir again read-only after the parent, then the output's folder writable.
    c = site.checker(policy)
    spec = job("a", inputs=[p.replace("${ROOT}", str(site.root)) for p in inputs], outputs=["results/x.txt"])
    plan = c.job_plan(spec)
    out, snakefile = f"{site.workdir}/results/x.txt", f"{site.workdir}/Snakefile"
    assert (plan.access(out), plan.access(snakefile)) == ("rw", "ro")
    assert not {"SC402", "SC406"} & set(codes(c.check([spec])))
    table = mounted(apptainer_args(plan, runtime(), {}), site.workdir)
    assert (seen(table, out), seen(table, snakefile)) == ((out, "rw"), (snakefile, "ro"))
    results = f"{site.workdir}/results"
    assert [(b.src, b.dst, b.mode, b.origin.layer) for b in plan.binds][1:] == [
        (site.workdir, site.workdir, "ro", "workdir"), (results, results, "rw", "auto-bind")]
    assert (plan.binds[0].dst, plan.binds[0].mode) == (str(site.root), "ro")


def test_without_containment_the_workdir_is_bound_read_only_after_a_parent_bind(site):
    c = site.checker("version: 1\ndefaults: {containment: none, binds: ['${ROOT}:ro']}\n")
    spec = job("a", outputs=["out.txt"])
    plan = c.job_plan(spec)
    out = f"{site.workdir}/out.txt"
    assert plan.access(out) == "rw" and plan.access("Snakefile") == "ro" and plan.problems == ()
    assert seen(mounted(apptainer_args(plan, runtime(), {}), site.workdir), out) == (out, "rw")
    parent, again, alone = plan.binds
    assert (parent.dst, parent.mode) == (str(site.root), "ro")
    assert (again.src, again.dst, again.mode, again.origin.layer) == (site.workdir, site.workdir, "ro", "workdir")
    assert (alone.dst, alone.mode) == (out, "rw")


def test_a_contained_job_always_gets_the_workdir_read_only_after_its_parents(site):
    site.dir("work", "sub")
    c = site.checker("version: 1\ndefaults: {binds: ['${ROOT}/work/sub:ro', '${ROOT}:ro']}\n")
    plan = c.job_plan(job("a"))
    assert [(b.dst, b.mode) for b in plan.binds] == [
        (str(site.root), "ro"), (site.workdir, "ro"), (f"{site.workdir}/sub", "ro")]


def test_workdir_rw_opts_a_contained_rule_into_a_writable_workdir_but_not_state(site):
    c = site.checker("version: 1\nrules: {a: {workdir: rw}}\n")
    spec = job("a", outputs=["out.txt"])
    plan = c.job_plan(spec)
    w, state = site.workdir, f"{site.workdir}/.snakemake"
    assert [(b.dst, b.mode, b.origin.layer) for b in plan.binds] == [(w, "rw", "workdir"), (state, "ro", "state")]
    assert plan.problems == () and codes(c.check([spec])) == []
    table = mounted(apptainer_args(plan, runtime(), {}), w)
    for path, mode in ((f"{w}/out.txt", "rw"), (f"{w}/Snakefile", "rw"), (f"{state}/metadata/x", "ro")):
        assert (plan.access(path), seen(table, path)) == (mode, (path, mode)), path


def test_inputs_in_the_output_folder_are_read_only_in_the_container(site):
    # Apptainer mounts in argv order: the folder writable, then each input read-only on top of it.
    c = site.checker("version: 1\n")
    res = f"{site.workdir}/results"
    plan = c.job_plan(job("a", inputs=["results/a.txt", "data/b.txt"], outputs=["results/merged.txt"]))
    table = mounted(apptainer_args(plan, runtime(), {}), site.workdir)
    assert seen(table, f"{res}/a.txt") == (f"{res}/a.txt", "ro")
    assert seen(table, f"{res}/merged.txt") == (f"{res}/merged.txt", "rw")
    assert seen(table, f"{site.workdir}/data/b.txt") == (f"{site.workdir}/data/b.txt", "ro")
    assert [(b.dst, b.origin.layer) for b in plan.binds if b.mode == "ro"] == [
        (site.workdir, "workdir"), (f"{res}/a.txt", "input")]


def test_inputs_may_be_writable_when_the_policy_says_so(site):
    c = site.checker("version: 1\ndefaults: {auto_binds: {inputs: rw}}\n")
    plan = c.job_plan(job("a", inputs=["results/a.txt"], outputs=["results/merged.txt"]))
    assert plan.access("results/a.txt") == "rw" and all(b.origin.layer != "input" for b in plan.binds)


def test_a_directory_output_binds_itself_not_its_parent(site):
    c = site.checker("version: 1\n")
    d = f"{site.workdir}/results/index"
    plan = c.job_plan(job("a", outputs=["results/index", "logs/a.log"], directories=frozenset({d})))
    assert [(b.dst, b.mode) for b in plan.binds if b.origin.layer == "auto-bind"] == [
        (f"{site.workdir}/logs", "rw"), (d, "rw")]
    assert (plan.access(f"{d}/part1"), plan.access("results/other.txt")) == ("rw", "ro")


def test_a_directory_output_directly_in_the_workdir_binds_itself(site):
    c = site.checker("version: 1\n")
    d = f"{site.workdir}/index"
    plan = c.job_plan(job("a", outputs=["index"], directories=frozenset({d})))
    assert plan.problems == () and plan.access(f"{d}/x") == "rw" and plan.access("y") == "ro"


def test_a_shadow_job_writes_its_shadow_folder_and_nothing_else(site):
    shadow = site.dir("work", ".snakemake", "shadow", "tmp1")
    c = site.checker("version: 1\n")
    spec = job("a", inputs=["in.txt"], outputs=["out.txt"], shadow=shadow)
    plan = c.job_plan(spec)
    assert [(b.dst, b.mode, b.origin.layer) for b in plan.binds] == [
        (site.workdir, "ro", "workdir"), (shadow, "rw", "shadow")]
    assert plan.problems == () and codes(c.check([spec])) == []  # out.txt lies in the shadow folder, not the root
    assert (plan.access(f"{shadow}/out.txt"), plan.access("out.txt")) == ("rw", "ro")


def test_a_bind_covering_a_dotdot_path_makes_it_usable(site):
    site.dir("ref")
    c = site.checker("version: 1\ndefaults: {binds: ['${ROOT}/ref:ro']}\n")
    plan = c.job_plan(job("a", inputs=["../ref/g.fa"], outputs=["../ref/out.txt"]))
    # The input is shown; the output lies under the read-only bind: told as such, not as a '..' path.
    assert [(k, p) for k, p, _ in plan.problems] == [("output", site.path("ref", "out.txt"))]
    assert plan.access("../ref/g.fa") == "ro"


class Hung(Exception):
    pass


def test_symlink_target_with_a_double_slash_does_not_hang(site):
    # '//srv' (which posixpath.dirname never shortens past '//') is /srv to the kernel and to Apptainer.
    import signal

    def alarm(signum, frame):
        raise Hung("job_plan() still running after 0.3 s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        plan = site.checker("version: 1\n").job_plan(job("a", inputs=["in/a.fq"], symlinks={"in/a.fq": "//srv/a.fq"}))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert [kind for kind, _, _ in plan.problems] == ["symlink"]


@pytest.mark.parametrize("policy", ["version: 1\n", "version: 1\ndefaults: {binds: ['${ROOT}/home:ro']}\n"])
def test_snakemakes_own_binds_are_read_only(site, policy):
    # Snakemake appends writable binds of its source cache and import paths; the plan binds them read-only
    # first, also when they lie inside a read-only policy bind (Snakemake's own would be mounted on top).
    cache = site.dir("home", ".cache", "snakemake")
    c = site.checker(policy)
    plan = c.job_plan(job("a", support=((cache, cache), ("/usr/lib/python3/dist-packages", "/mnt/snakemake_searchpaths/item_0"))))
    own = {(b.src, b.dst, b.mode) for b in plan.binds if b.origin.layer == "snakemake"}
    searchpath = ("/usr/lib/python3/dist-packages", "/mnt/snakemake_searchpaths/item_0", "ro")
    # The bridge drops Snakemake's own (writable) binds; where a read-only bind shows the folder already,
    # nothing more is needed.
    assert own == ({searchpath} if "home:ro" in policy else {(cache, cache, "ro"), searchpath})
    assert plan.access(cache) == "ro"
    assert seen(mounted(apptainer_args(plan, runtime(), {}), site.workdir), cache) == (cache, "ro")


def test_snakemakes_own_binds_inside_the_workdir_need_nothing(site):
    storage = site.dir("work", ".snakemake", "storage")
    plan = site.checker("version: 1\n").job_plan(job("a", support=((storage, storage),)))
    assert all(b.origin.layer != "snakemake" for b in plan.binds)
