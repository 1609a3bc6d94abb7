"""Every check (SC101…SC405, but the bridge's own SC207 smoke test and SC209 --env check): a failing and a
passing case each, asserted as the user sees them: code, severity, rule, the offending path or flag named in the
message, and a fix."""

import pytest

from sc_unit import APPTAINER, CONF, conf, codes, expect, job, runtime
from snakemake_singcontain.findings import ERROR, NOTE, WARNING
from snakemake_singcontain.hooks import hookimpl
from snakemake_singcontain.plan import MAX_INPUT_BINDS
from snakemake_singcontain.policy import Floor


def floor_plugin(floor: Floor, name: str = "sitefloor"):
    class Plugin:
        @staticmethod
        @hookimpl
        def singcontain_floor():
            return floor

    Plugin.__name__ = name
    return Plugin


# --- SC1xx: what the policy asks -------------------------------------------------------------------------


def test_sc101_policy_key_that_matches_no_rule(site):
    c = site.checker("""
        version: 1
        rules:
          plto: {containment: none}
          'sim_*': {}
        """, rules=["plot", "sim_a"])
    f = expect(c.check([]), "SC101", ERROR, "plto", "'plto'")
    assert f.where == f"{site.root / 'containment.yaml'}:3"
    assert "plot" in f.fix  # the fix lists the real rule names


def test_sc101_passes_for_exact_names_and_matching_globs(site):
    c = site.checker("""
        version: 1
        rules:
          plot: {containment: none}
          'sim_*': {}
        """, rules=["plot", "sim_a"])
    assert "SC101" not in codes(c.check([]))


def test_sc101_not_reported_when_one_job_is_rechecked(site):
    c = site.checker("version: 1\nrules: {plto: {}}\n", rules=["plot"])
    assert "SC101" not in codes(c.check([], whole_workflow=False))


def test_sc102_contained_rule_without_image(site):
    c = site.checker("version: 1\nrules: {a: {containment: containall}}\n")
    f = expect(c.check([job("a", image=None)]), "SC102", ERROR, "a", "'containall'")
    assert "containment.yaml:2" in f.where


def test_sc102_passes_with_image_or_uncontained(site):
    c = site.checker("version: 1\nrules: {a: {containment: contain}, b: {containment: none}}\n", rules=["a", "b"])
    assert "SC102" not in codes(c.check([job("a"), job("b", image=None)]))


def test_sc102_builtin_containment_applies_without_any_setting(site):
    c = site.checker("version: 1\n")
    expect(c.check([job("a", image=None)]), "SC102", ERROR, "a", "'contain'")


@pytest.mark.parametrize("kind, named", [("run", "run:"), ("template", "template_engine:"), ("cwl", "cwl:")])
def test_sc103_contained_rule_whose_code_runs_on_the_host(site, kind, named):
    c = site.checker("version: 1\n", rules={"a": kind})
    f = expect(c.check([job("a")]), "SC103", ERROR, "a", named, "on the host")
    assert "shell:" in f.fix and "containment: none" in f.fix


@pytest.mark.parametrize("kind", ["run", "template", "cwl"])
def test_sc103_passes_for_uncontained_host_code_and_contained_shell_or_script(site, kind):
    c = site.checker("version: 1\nrules: {r: {containment: none}}\n", rules={"r": kind, "s": "shell", "p": "script"})
    assert "SC103" not in codes(c.check([job("r", image=None), job("s"), job("p")]))


@pytest.mark.parametrize("args, flag", [
    (["--bind=/x"], "--bind=/x"),
    (["-B", "/x:/y"], "-B"),
    (["--pid"], "--pid"),
    (["-cp"], "-cp"),  # combined short flags: -c (contain) and -p (pid)
    (["--no-home"], "--no-home"),
    (["-e"], "-e"),  # --cleanenv
    (["--network=bridge"], "--network=bridge"),
    (["--writable-tmpfs"], "--writable-tmpfs"),
    (["--pwd", "/data"], "--pwd"),  # Snakemake sets it
])
def test_sc104_owned_flag_in_args(site, args, flag):
    c = site.checker(f"version: 1\nrules:\n  a:\n    args: {args!r}\n")
    f = expect(c.check([job("a")]), "SC104", ERROR, "a", repr(flag))
    assert "policy" in f.fix


@pytest.mark.parametrize("args, flag", [
    (["--security", "seccomp:x.json"], "--security"),
    (["--containlibs", "/usr/lib/libx.so"], "--containlibs"),  # host libraries inside
    (["--overlay", "/data"], "--overlay"),
    (["--no-such-flag"], "--no-such-flag"),  # not classified: refused until someone does
])
def test_sc104_flag_not_on_the_allow_list_in_args(site, args, flag):
    c = site.checker(f"version: 1\nrules:\n  a:\n    args: {args!r}\n")
    f = expect(c.check([job("a")]), "SC104", ERROR, "a", repr(flag), "allow-list")
    assert "containment.yaml:4" in f.where


def test_sc104_passes_for_flags_on_the_allow_list(site):
    c = site.checker("version: 1\nrules:\n  a:\n    args: ['--no-init', '--hostname', 'h', '--memory', '1G']\n")
    assert "SC104" not in codes(c.check([job("a")]))


def test_sc105_containment_below_floor(site):
    plugin = floor_plugin(Floor(containment="contain"))
    c = site.checker("version: 1\nrules: {a: {containment: none}}\n", plugins=[plugin])
    f = expect(c.check([job("a")]), "SC105", ERROR, "a", "'none'", "'contain'", "sitefloor")
    assert "containment.yaml:2" in f.where


def test_sc105_namespace_missing_from_floor(site):
    plugin = floor_plugin(Floor(containment="contain", namespaces=("pid",)))
    c = site.checker("version: 1\nrules: {a: {containment: contain}}\n", plugins=[plugin])
    expect(c.check([job("a")]), "SC105", ERROR, "a", "pid", "sitefloor")


def test_sc105_writable_bind_of_never_writable_path(site):
    data = site.dir("data", "sub")
    plugin = floor_plugin(Floor(never_writable=(site.path("data"),)))
    c = site.checker("version: 1\nrules: {a: {binds: ['${ROOT}/data/sub:rw']}}\n", plugins=[plugin])
    expect(c.check([job("a")]), "SC105", ERROR, "a", data, "sitefloor")


def test_sc105_never_writable_path_is_compared_by_its_real_path(site):
    # The floor names a symlink; the policy binds the folder it leads to.
    real = site.dir("real", "data")
    (site.root / "data_link").symlink_to(real)
    plugin = floor_plugin(Floor(never_writable=(site.path("data_link"),)))
    c = site.checker("version: 1\nrules: {a: {binds: ['${ROOT}/real/data:/data:rw']}}\n", plugins=[plugin])
    expect(c.check([job("a")]), "SC105", ERROR, "a", real, "sitefloor")


def test_sc105_passes_at_or_above_the_floor(site):
    site.dir("data")
    plugin = floor_plugin(Floor(containment="contain", namespaces=("pid", "ipc"), never_writable=(site.path("data"),)))
    c = site.checker("""
        version: 1
        rules:
          a: {containment: containall, binds: ['${ROOT}/data:ro']}   # containall implies pid and ipc
          b: {namespaces: [pid, ipc]}
        """, rules=["a", "b"], plugins=[plugin])
    assert "SC105" not in codes(c.check([job("a"), job("b")]))


# --- SC2xx: what the runtime grants ----------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["{namespaces: [pid]}", "{containment: containall}"])
def test_sc201_pid_namespace_disabled_by_conf(site, layer):
    rt = runtime(conf=conf(allow_pid_ns="no"))
    c = site.checker(f"version: 1\nrules: {{a: {layer}}}\n", runtime=rt)
    expect(c.check([job("a")]), "SC201", ERROR, "a", CONF, "allow pid ns = no")


def test_sc201_passes_when_allowed_or_not_asked(site):
    c = site.checker("version: 1\nrules: {a: {namespaces: [pid]}, b: {}}\n", rules=["a", "b"],
                     runtime=runtime(conf=conf(allow_pid_ns="yes")))
    assert "SC201" not in codes(c.check([job("a")]))
    c = site.checker("version: 1\nrules: {b: {namespaces: [uts]}}\n", rules=["b"],
                     runtime=runtime(conf=conf(allow_pid_ns="no")))
    assert "SC201" not in codes(c.check([job("b")]))


@pytest.mark.parametrize("key, layer", [
    # Measured, Apptainer 1.4.5: 'allow ipc ns = no' / 'allow uts ns = no' only warn "Not virtualizing ipc
    # namespace by configuration" and run the job in the host's namespace.
    ("allow_ipc_ns", "{namespaces: [ipc]}"),
    ("allow_ipc_ns", "{containment: containall}"),  # containall implies ipc
    ("allow_uts_ns", "{namespaces: [uts]}"),
    ("allow_user_ns", "{namespaces: [user]}"),
])
def test_sc201_other_namespaces_disabled_by_conf(site, key, layer):
    c = site.checker(f"version: 1\nrules: {{a: {layer}}}\n", runtime=runtime(conf=conf(**{key: "no"})))
    expect(c.check([job("a")]), "SC201", ERROR, "a", key.replace("_", " "))


def test_sc202_user_bind_control_off(site):
    c = site.checker("version: 1\n", runtime=runtime(conf=conf(user_bind_control="no")))
    expect(c.check([job("a")]), "SC202", ERROR, "a", CONF, "user bind control = no")


def test_sc202_passes_when_user_binds_allowed(site):
    c = site.checker("version: 1\n", runtime=runtime(conf=conf(user_bind_control="yes")))
    assert "SC202" not in codes(c.check([job("a")]))


def test_sc203_no_user_namespaces_and_not_setuid(site):
    c = site.checker("version: 1\n", runtime=runtime(setuid=False, userns=False))
    expect(c.check([job("a")]), "SC203", ERROR, "a", "setuid")


def test_sc203_user_namespace_asked_but_unavailable(site):
    c = site.checker("version: 1\nrules: {a: {namespaces: [user]}}\n", runtime=runtime(setuid=True, userns=False))
    expect(c.check([job("a")]), "SC203", ERROR, "a", "user namespace")


def test_sc203_passes_with_setuid_runtime(site):
    c = site.checker("version: 1\n", runtime=runtime(setuid=True, userns=False))
    assert "SC203" not in codes(c.check([job("a")]))


def test_sc204_network_type_not_allowed(site):
    c = site.checker("version: 1\nrules: {a: {namespaces: [net], network: bridge}}\n",
                     runtime=runtime(conf={"allow net networks": ("bridge",)}, setuid=False))
    f = expect(c.check([job("a")]), "SC204", ERROR, "a", "'bridge'")
    assert "containment.yaml:2" in f.where


@pytest.mark.parametrize("layer, rt", [
    ("{namespaces: [net]}", APPTAINER),  # network: none (built-in) is loopback only: always available
    ("{namespaces: [net], network: bridge}", runtime(conf={"allow net networks": ("bridge, ptp",)}, setuid=True)),
])
def test_sc204_passes(site, layer, rt):
    c = site.checker(f"version: 1\nrules: {{a: {layer}}}\n", runtime=rt)
    assert "SC204" not in codes(c.check([job("a")]))


def test_sc205_mount_hostfs(site):
    c = site.checker("version: 1\n", runtime=runtime(conf=conf(mount_hostfs="yes")))
    expect(c.check([job("a")]), "SC205", WARNING, "a", CONF, "mount hostfs = yes")


def test_sc205_passes_without_hostfs_or_uncontained(site):
    assert "SC205" not in codes(site.checker("version: 1\n").check([job("a")]))
    c = site.checker("version: 1\nrules: {a: {containment: none}}\n", runtime=runtime(conf=conf(mount_hostfs="yes")))
    assert "SC205" not in codes(c.check([job("a")]))


@pytest.mark.parametrize("rt", [
    runtime("singularity", (3, 8, 7)),  # legacy Singularity: no --mount
    runtime("singularityce", (3, 8, 0)),
    runtime("apptainer", (1, 0, 3)),
    None,
], ids=["singularity-3.8.7", "singularityce-3.8.0", "apptainer-1.0.3", "no-runtime"])
@pytest.mark.parametrize("folder, bind", [
    ("a,b", "'${ROOT}/a,b:/ab:ro'"),
    ("c:d", "{src: '${ROOT}/c:d', dst: /cd}"),
])
def test_sc206_bind_path_that_bind_syntax_cannot_express(site, rt, folder, bind):
    path = site.dir(folder)
    c = site.checker(f"version: 1\nrules: {{a: {{binds: [{bind}]}}}}\n", runtime=rt)
    f = expect(c.check([job("a")]), "SC206", ERROR, "a", path)
    assert "containment.yaml:2" in f.where


@pytest.mark.parametrize("rt", [runtime("apptainer", (1, 1, 0)), runtime("singularityce", (3, 9, 0)),
                                runtime("singularityce", (4, 1, 2))])
def test_sc206_passes_where_mount_exists(site, rt):
    site.dir("a,b")
    c = site.checker("version: 1\nrules: {a: {binds: ['${ROOT}/a,b:/ab:ro']}}\n", runtime=rt)
    assert "SC206" not in codes(c.check([job("a", inputs=[site.path("x:y", "in.txt")])]))


def test_sc206_auto_bind_of_a_job_folder(site):
    c = site.checker("version: 1\n", runtime=runtime("singularity", (3, 8, 7)))
    f = expect(c.check([job("a", inputs=[site.path("x:y", "in.txt")], wildcards={"s": "1"})]),
               "SC206", ERROR, "a", site.path("x:y"))
    assert f.job == "a[s=1]"


def test_sc208_no_runtime(site):
    c = site.checker("version: 1\n", runtime=None)
    expect(c.check([job("a")]), "SC208", ERROR, "a", "apptainer")


def test_sc208_passes_with_runtime_or_for_host_rules(site):
    assert "SC208" not in codes(site.checker("version: 1\n").check([job("a")]))
    c = site.checker("version: 1\nrules: {a: {containment: none}}\n", runtime=None)
    assert codes(c.check([job("a", image=None)])) == []


# --- SC3xx: binds ----------------------------------------------------------------------------------------


def test_sc301_required_bind_source_missing(site):
    c = site.checker("version: 1\nrules:\n  a:\n    binds:\n      - ${ROOT}/ref:/ref\n")
    f = expect(c.check([job("a")]), "SC301", ERROR, "a", site.path("ref"))
    assert f.where == f"rules['a'] ({site.root / 'containment.yaml'}:5)"


def test_sc301_passes_when_source_exists(site):
    site.dir("ref")
    c = site.checker("version: 1\nrules:\n  a:\n    binds: ['${ROOT}/ref:/ref']\n")
    assert codes(c.check([job("a")])) == []


def test_sc302_optional_bind_source_missing_is_skipped(site):
    c = site.checker("version: 1\nrules: {a: {binds: [{src: '${ROOT}/scratch', dst: /scratch, required: false}]}}\n")
    findings = c.check([job("a")])
    expect(findings, "SC302", NOTE, "a", site.path("scratch"))
    assert "SC301" not in codes(findings)
    assert [b.dst for b in c.job_plan(job("a")).binds] == [site.workdir]  # skipped: no --bind of a missing folder


def test_sc302_passes_when_optional_source_exists(site):
    site.dir("scratch")
    c = site.checker("version: 1\nrules: {a: {binds: [{src: '${ROOT}/scratch', dst: /scratch, required: false}]}}\n")
    assert codes(c.check([job("a")])) == []
    assert [b.dst for b in c.job_plan(job("a")).binds] == ["/scratch", site.workdir]


@pytest.mark.parametrize("bind, hit", [
    ("/usr/share:/usr/share:rw", "/usr"),
    ("/usr/share:/opt/share:rw", "/usr"),  # source under a protected path
    ("/opt:/etc/opt:rw", "/etc"),  # destination under a protected path
    ("/:/host:rw", "/"),
])
def test_sc306_writable_bind_on_protected_path(site, bind, hit):
    c = site.checker(f"version: 1\nrules: {{a: {{binds: ['{bind}']}}}}\n")
    f = expect(c.check([job("a")]), "SC306", ERROR, "a", f"protected {hit}")
    assert "containment.yaml:2" in f.where


def test_sc306_user_protected_path(site):
    raw = site.dir("raw", "run1")
    c = site.checker("""
        version: 1
        defaults:
          protected: ['${ROOT}/raw']
        rules:
          a: {binds: ['${ROOT}/raw/run1:rw']}
        """)
    expect(c.check([job("a")]), "SC306", ERROR, "a", raw, f"protected {site.path('raw')}")


def test_sc306_output_auto_bind_under_protected_path(site):
    site.dir("work", "raw")
    c = site.checker("version: 1\ndefaults: {protected: ['${ROOT}/work/raw']}\n")
    f = expect(c.check([job("a", outputs=["raw/new/x.txt"], wildcards={"n": "1"})]),
               "SC306", ERROR, "a", site.path("work", "raw", "new"))
    assert f.job == "a[n=1]"


def test_sc306_passes_for_read_only_or_unprotected(site):
    site.dir("raw")
    site.dir("out")
    c = site.checker("""
        version: 1
        defaults: {protected: ['${ROOT}/raw']}
        rules:
          a: {binds: ['/usr/share:ro', '${ROOT}/raw:ro', '${ROOT}/out:rw']}
        """)
    assert codes(c.check([job("a", inputs=[site.path("raw", "x")], outputs=[site.path("out", "y")])])) == []


def test_sc306_double_slash_does_not_escape_protection(site):
    c = site.checker("version: 1\nrules: {a: {binds: ['//etc:rw']}}\n")
    expect(c.check([job("a")]), "SC306", ERROR, "a", "/etc")


def test_sc306_writable_parent_of_protected_path(site):
    site.dir("data", "raw")
    c = site.checker("version: 1\ndefaults: {protected: ['${ROOT}/data/raw']}\nrules: {a: {binds: ['${ROOT}/data:rw']}}\n")
    expect(c.check([job("a")]), "SC306", ERROR, "a", site.path("data"))


def test_sc306_protected_path_is_compared_by_its_real_path(site):
    # The policy protects a symlink; a bind of the folder it leads to exposes the same files.
    real = site.dir("archive", "raw")
    (site.root / "raw").symlink_to(real)
    c = site.checker("version: 1\ndefaults: {protected: ['${ROOT}/raw']}\n"
                     "rules: {a: {binds: ['${ROOT}/archive:rw']}}\n")
    expect(c.check([job("a")]), "SC306", ERROR, "a", site.path("archive"), f"protected {real}")


def test_sc407_output_folder_leading_out_of_the_workdir_through_a_symlink(site):
    # results/ is a symlink to the raw data (or $HOME): binding it would make that writable. Judged by real path.
    raw = site.dir("raw")
    (site.root / "work" / "results").symlink_to(raw)
    c = site.checker("version: 1\n")
    spec = job("a", outputs=["results/x.txt"])
    f = expect(c.check([spec]), "SC407", ERROR, "a", f"really lies at {raw}/x.txt")
    assert f.job == "a" and raw not in {b.src for b in c.job_plan(spec).binds}


def test_sc407_passes_for_an_output_folder_leading_under_a_writable_policy_bind(site):
    dust = site.dir("dust", "results")
    (site.root / "work" / "results").symlink_to(dust)
    c = site.checker("version: 1\ndefaults: {binds: ['${ROOT}/dust:rw']}\n")
    assert codes(c.check([job("a", outputs=["results/x.txt"])])) == []


def test_sc407_absolute_output_built_from_data(site):
    # A sample named "/home/user": an absolute output makes no host folder writable by itself.
    home = site.dir("home")
    c = site.checker("version: 1\n")
    spec = job("a", outputs=[f"{home}/x.txt"], wildcards={"sample": home})
    expect(c.check([spec]), "SC407", ERROR, "a", home)
    assert c.job_plan(spec).access(f"{home}/x.txt") is None


def test_sc411_output_where_the_host_reads_configuration_or_code(site):
    # '..' that stays in the workdir reaches profiles/, from which Snakemake loads a profile on the next run.
    profiles = site.path("work", "profiles")
    c = site.checker("version: 1\n", host_reads=(profiles, site.path("work", "Snakefile")))
    expect(c.check([job("a", outputs=["results/../profiles/default/config.yaml"])]), "SC411", ERROR, "a", profiles)
    expect(c.check([job("a", outputs=["Snakefile"])]), "SC411", ERROR, "a", "Snakefile")
    assert codes(c.check([job("a", outputs=["results/x.txt", "all.done"])])) == []


def test_sc412_link_a_job_left_leading_elsewhere_in_the_workdir(site):
    # results/c2 -> ../data: the next job's output folder would be the raw data.
    data = site.dir("work", "data")
    site.dir("work", "results")
    (site.root / "work" / "results" / "c2").symlink_to(data)
    c = site.checker("version: 1\n")
    expect(c.check([job("a", outputs=["results/c2/x.txt"])]), "SC412", ERROR, "a", "results/c2")


def test_sc412_link_a_job_left_leading_out_of_the_workdir_for_an_input(site):
    secret = site.dir("home", ".ssh")
    site.dir("work", "results")
    (site.root / "work" / "results" / "c2").symlink_to(secret)
    c = site.checker("version: 1\n")
    spec = job("a", inputs=["results/c2/id_rsa"])
    expect(c.check([spec]), "SC412", ERROR, "a", "results/c2")
    assert secret not in {b.src for b in c.job_plan(spec).binds}


def test_sc412_passes_for_the_users_links_at_the_workdirs_top(site):
    big = site.dir("big", "data")
    site.dir("work", "scratch", "results")
    (site.root / "work" / "data").symlink_to(big)
    (site.root / "work" / "results").symlink_to(site.path("work", "scratch", "results"))
    c = site.checker("version: 1\n")
    assert codes(c.check([job("a", inputs=["data/x.fq"], outputs=["results/x.txt"])])) == []


def test_sc306_writable_workdir_containing_a_protected_path(site):
    c = site.checker("version: 1\ndefaults: {protected: ['${ROOT}/work/raw']}\nrules: {a: {workdir: rw}}\n")
    f = expect(c.check([job("a", outputs=["x.txt"])]), "SC306", ERROR, "a", site.workdir, "(workdir)",
               f"protected {site.path('work', 'raw')}")
    assert f.job == "a"


def test_sc306_passes_for_the_read_only_workdir_containing_a_protected_path(site):
    c = site.checker("version: 1\ndefaults: {protected: ['${ROOT}/work/raw']}\n")
    assert codes(c.check([job("a", inputs=["raw/x.fq"], outputs=["results/x.txt"])])) == []


def test_sc306_shadow_folder_under_a_protected_path(site):
    shadow = site.dir("work", ".snakemake", "shadow", "tmp1")
    c = site.checker("version: 1\ndefaults: {protected: ['${ROOT}/work/.snakemake']}\n")
    expect(c.check([job("a", outputs=["x.txt"], shadow=shadow)]), "SC306", ERROR, "a", shadow, "(shadow)")


@pytest.mark.parametrize("bind, kernel", [
    ("/proc:/hostproc:ro", "/proc"),
    ("/sys/fs/cgroup:/cg:ro", "/sys"),  # under it
    ("/dev:/dev:ro", "/dev"),
    ("${ROOT}/data:/dev/shm:rw", "/dev"),  # the destination
    ("/:/host:ro", "/proc"),  # a parent shows them too
])
def test_sc307_bind_of_a_kernel_file_system(site, bind, kernel):
    site.dir("data")
    c = site.checker(f"version: 1\nrules:\n  a:\n    containment: containall\n    binds: ['{bind}']\n")
    f = expect(c.check([job("a")]), "SC307", ERROR, "a", kernel)
    assert f.job is None and "drop" in f.fix and "containment.yaml:5" in f.where


def test_sc307_bind_whose_source_leads_to_a_kernel_file_system(site):
    (site.root / "stats").symlink_to("/proc")
    c = site.checker("version: 1\nrules: {a: {binds: ['${ROOT}/stats:/stats:ro']}}\n")
    expect(c.check([job("a")]), "SC307", ERROR, "a", site.path("stats"), "/proc")


def test_sc307_passes_for_names_that_only_share_a_prefix(site):
    for name in ("device", "procedures", "system"):
        site.dir(name)
    c = site.checker("version: 1\nrules: {a: {binds: ['${ROOT}/device:/device', '${ROOT}/procedures:/procs', "
                     "'${ROOT}/system:/sysdata']}}\n")
    assert "SC307" not in codes(c.check([job("a")]))


def test_sc105_output_auto_bind_under_never_writable(site):
    plugin = floor_plugin(Floor(never_writable=(site.path("work", "data"),)))
    c = site.checker("version: 1\n", plugins=[plugin])
    expect(c.check([job("a", outputs=["data/out/x.txt"])]), "SC105", ERROR, "a", "sitefloor")


def test_sc105_writable_workdir_under_never_writable(site):
    # `workdir: rw` makes the whole workdir writable: a never-writable folder inside it is exposed.
    plugin = floor_plugin(Floor(never_writable=(site.path("work", "raw"),)))
    c = site.checker("version: 1\nrules: {a: {workdir: rw}}\n", plugins=[plugin])
    f = expect(c.check([job("a", outputs=["results/x.txt"])]), "SC105", ERROR, "a", site.workdir, "(workdir)",
               "sitefloor")
    assert f.job == "a"
    read_only = site.checker("version: 1\n", plugins=[plugin])
    assert "SC105" not in codes(read_only.check([job("a", outputs=["results/x.txt"])]))


# --- SC4xx: the job's files ------------------------------------------------------------------------------


def test_sc401_input_shown_under_a_different_host_folder(site):
    site.dir("v2")
    c = site.checker("version: 1\nrules: {a: {binds: [{src: '${ROOT}/v2', dst: '${ROOT}/ref'}]}}\n")
    path = site.path("ref", "genome.fa")
    f = expect(c.check([job("a", inputs=[path], wildcards={"s": "x"})]), "SC401", ERROR, "a", path, site.path("v2"))
    assert f.job == "a[s=x]"


def test_sc401_input_outside_with_auto_binds_off(site):
    c = site.checker("version: 1\ndefaults: {auto_binds: {inputs: false}}\n")
    path = site.path("ref", "genome.fa")
    expect(c.check([job("a", inputs=[path])]), "SC401", ERROR, "a", path)


def test_sc401_passes_for_bound_auto_bound_and_workdir_inputs(site):
    site.dir("ref")
    c = site.checker("version: 1\nrules: {a: {binds: ['${ROOT}/ref:ro']}}\n")
    inputs = [site.path("ref", "g.fa"), site.path("elsewhere", "x"), "in/local.txt"]
    assert codes(c.check([job("a", inputs=inputs)])) == []


def test_sc40x_not_checked_for_jobs_on_the_host(site):
    c = site.checker("version: 1\nrules: {a: {containment: none, auto_binds: false}}\n")
    assert codes(c.check([job("a", inputs=[site.path("x", "in")], outputs=[site.path("y", "out")], image=None)])) == []


def test_sc402_output_under_read_only_bind(site):
    site.dir("ref")
    c = site.checker("version: 1\nrules: {a: {binds: ['${ROOT}/ref:ro']}}\n")
    path = site.path("ref", "index", "g.idx")
    expect(c.check([job("a", outputs=[path])]), "SC402", ERROR, "a", path, "read-only")


def test_sc402_output_with_auto_binds_off(site):
    c = site.checker("version: 1\ndefaults: {auto_binds: {outputs: false}}\n")
    expect(c.check([job("a", outputs=["results/x.txt"])]), "SC402", ERROR, "a", f"{site.workdir}/results/x.txt")


def test_sc402_passes_for_rw_bind_workdir_and_auto_bind(site):
    site.dir("ref", "index")
    c = site.checker("version: 1\nrules: {a: {binds: ['${ROOT}/ref:ro', '${ROOT}/ref/index:rw']}}\n")
    outputs = [site.path("ref", "index", "g.idx"), "results/x.txt"]
    assert codes(c.check([job("a", outputs=outputs)])) == []


def test_sc403_symlink_resolving_outside_what_is_visible(site):
    link = "data/sample.fq"
    c = site.checker("version: 1\n")
    f = expect(c.check([job("a", inputs=[link], symlinks={link: "/srv/archive/sample.fq"})]),
               "SC403", ERROR, "a", f"{site.workdir}/data/sample.fq", "/srv/archive/sample.fq")
    assert "read-only" in f.fix


def test_sc403_passes_when_target_is_bound(site):
    site.dir("archive")
    link = "data/sample.fq"
    c = site.checker("version: 1\ndefaults: {binds: ['${ROOT}/archive:ro']}\n")
    target = site.path("archive", "sample.fq")
    assert codes(c.check([job("a", inputs=[link], symlinks={link: target})])) == []


def test_sc403_passes_when_target_is_auto_bound_for_another_input(site):
    c = site.checker("version: 1\n")
    target = site.path("archive", "b.fq")
    assert codes(c.check([job("a", inputs=["a.fq", target], symlinks={"a.fq": target})])) == []


def test_sc404_ipc_namespace_without_containment(site):
    c = site.checker("version: 1\nrules: {a: {containment: none, namespaces: [ipc]}}\n")
    f = expect(c.check([job("a")]), "SC404", WARNING, "a", "/dev/shm")
    assert "contain" in f.fix and "containment.yaml:2" in f.where


def test_sc404_passes_with_containment(site):
    c = site.checker("version: 1\nrules: {a: {containment: contain, namespaces: [ipc]}}\n")
    assert codes(c.check([job("a")])) == []


@pytest.mark.parametrize("path, folder", [("/etc/hosts", "/etc"), ("/usr/share/dict/words", "/usr/share/dict")])
def test_sc405_input_under_a_system_folder_is_bound_over_the_image(site, path, folder):
    c = site.checker("version: 1\n")
    spec = job("a", inputs=[path], wildcards={"s": "x"})
    f = expect(c.check([spec]), "SC405", WARNING, "a", folder)
    assert f.job == "a[s=x]"
    assert [(b.src, b.dst, b.mode) for b in c.job_plan(spec).binds if b.origin.layer == "auto-bind"] == [
        (folder, folder, "ro")]


def test_sc405_input_under_a_user_protected_folder(site):
    raw = site.dir("raw")
    c = site.checker("version: 1\ndefaults: {protected: ['${ROOT}/raw']}\n")
    expect(c.check([job("a", inputs=[site.path("raw", "x.fq")])]), "SC405", WARNING, "a", raw)


def test_sc405_passes_for_inputs_elsewhere_or_under_a_policy_bind(site):
    c = site.checker("version: 1\nrules: {a: {binds: ['/usr/share:ro']}}\n")
    inputs = [site.path("ref", "g.fa"), "in/local.txt", "/usr/share/dict/words"]
    assert codes(c.check([job("a", inputs=inputs)])) == []


# --- SC406–SC409: what a contained job may write ---------------------------------------------------------


@pytest.mark.parametrize("output, name", [("x.txt", "x.txt"), ("{w}/log.txt", "log.txt"), ("logs/../y.txt", "y.txt")])
def test_an_output_at_the_workdirs_top_is_bound_alone(site, output, name):
    output = output.format(w=site.workdir)
    c = site.checker("version: 1\n")
    spec = job("a", outputs=[output], wildcards={"s": "1"})
    assert codes(c.check([spec])) == []
    plan = c.job_plan(spec)
    assert plan.access(f"{site.workdir}/{name}") == "rw" and plan.access(f"{site.workdir}/beside.txt") == "ro"
    assert [(b.src, b.mode) for b in plan.binds if b.origin.layer == "top-level file"] == [
        (f"{site.workdir}/{name}", "rw")]


def test_sc406_output_in_snakemakes_state_folder(site):
    c = site.checker("version: 1\n")
    spec = job("a", outputs=[".snakemake/x"], wildcards={"s": "1"})
    f = expect(c.check([spec]), "SC406", ERROR, "a", f"{site.workdir}/.snakemake/x")
    assert f.job == "a[s=1]" and "results/" in f.fix
    assert c.job_plan(spec).access(".snakemake/x") == "ro"  # nothing made writable for it


def test_sc406_passes_in_a_folder_of_its_own_or_with_a_writable_workdir(site):
    c = site.checker("version: 1\nrules: {b: {workdir: rw}, n: {containment: none}}\n", rules=["a", "b", "n"])
    assert codes(c.check([job("a", outputs=["results/x.txt", "logs/a.log"]), job("b", outputs=["x.txt"]),
                          job("n", outputs=["x.txt"])])) == []


def test_sc406_state_folder_stays_read_only_under_a_writable_workdir(site):
    c = site.checker("version: 1\nrules: {a: {workdir: rw}}\n")
    expect(c.check([job("a", outputs=[".snakemake/metadata/x"])]), "SC406", ERROR, "a", ".snakemake")


@pytest.mark.parametrize("raw, kind", [("../outside/x.txt", "outputs"), ("data/../../outside/in.txt", "inputs"),
                                       ("{w}/../outside/in.txt", "inputs")])
def test_sc407_path_leaving_the_workdir_through_dotdot(site, raw, kind):
    # e.g. a wildcard value "../outside": the job would reach a folder the workflow never meant to.
    raw = raw.format(w=site.workdir)
    c = site.checker("version: 1\n")
    spec = job("a", **{kind: [raw]}, wildcards={"sample": "../outside"})
    f = expect(c.check([spec]), "SC407", ERROR, "a", site.path("outside"), "'..'" if kind == "inputs" else "really")
    assert f.job == "a[sample=../outside]" and "wildcard" in f.fix
    assert site.path("outside") not in {b.src for b in c.job_plan(spec).binds}  # nothing bound for it


def test_sc407_passes_inside_the_workdir_or_under_a_policy_bind_or_without_containment(site):
    site.dir("ref")
    c = site.checker("version: 1\nrules:\n  a: {binds: ['${ROOT}/ref:ro']}\n  n: {containment: none}\n",
                     rules=["a", "n"])
    assert codes(c.check([job("a", inputs=["../ref/g.fa", "data/../in.txt"], outputs=["results/sub/../x.txt"]),
                          job("n", inputs=["../elsewhere/in.txt"])])) == []


def test_sc408_benchmark_in_a_folder_the_job_can_write(site):
    c = site.checker("version: 1\n")
    spec = job("a", outputs=["results/x.txt"], benchmarks=("results/x.bench.tsv",))
    f = expect(c.check([spec]), "SC408", ERROR, "a", f"{site.workdir}/results/x.bench.tsv", "symlink")
    assert f.job == "a" and "benchmarks/" in f.fix
    assert "{{" not in f.fix  # the example pattern reads as the user writes it in a Snakefile


def test_sc408_under_a_writable_workdir(site):
    c = site.checker("version: 1\nrules: {a: {workdir: rw}}\n")
    expect(c.check([job("a", outputs=["results/x"], benchmarks=("benchmarks/a.tsv",))]), "SC408", ERROR, "a")


def test_sc408_passes_for_a_benchmark_folder_of_its_own_or_without_containment(site):
    c = site.checker("version: 1\nrules: {n: {containment: none}}\n", rules=["a", "n"])
    assert codes(c.check([job("a", outputs=["results/x"], benchmarks=("benchmarks/a.tsv",)),
                          job("n", outputs=["results/x"], benchmarks=("results/n.tsv",))])) == []


def test_sc409_too_many_inputs_in_the_jobs_writable_output_folder(site):
    inputs = [f"results/part{i}.txt" for i in range(MAX_INPUT_BINDS + 1)]
    c = site.checker("version: 1\n")
    spec = job("a", inputs=inputs, outputs=["results/merged.txt"])
    f = expect(c.check([spec]), "SC409", ERROR, "a", str(MAX_INPUT_BINDS + 1), f"{site.workdir}/results/part0.txt")
    assert "folder of its own" in f.fix and "auto_binds: {inputs: rw}" in f.fix
    assert not any(b.origin.layer == "input" for b in c.job_plan(spec).binds)  # none bound, the job is refused


def test_sc409_passes_at_the_limit_or_with_writable_inputs(site):
    at_limit = [f"results/part{i}.txt" for i in range(MAX_INPUT_BINDS)]
    over = at_limit + ["results/one_more.txt"]
    c = site.checker("version: 1\nrules: {b: {auto_binds: {inputs: rw}}}\n", rules=["a", "b"])
    assert codes(c.check([job("a", inputs=at_limit, outputs=["results/m.txt"]),
                          job("b", inputs=over, outputs=["results/m.txt"])])) == []
    plan = c.job_plan(job("a", inputs=at_limit, outputs=["results/m.txt"]))
    assert sum(b.origin.layer == "input" for b in plan.binds) == MAX_INPUT_BINDS


def test_sc412_links_at_the_top_are_a_jobs_too_when_a_rule_writes_the_workdir(site):
    # With `workdir: rw` for some rule, its jobs can leave links at the workdir's top as well.
    big = site.dir("big", "data")
    (site.root / "work" / "data").symlink_to(big)
    trusting = site.checker("version: 1\n", rules=["a", "b"])
    assert codes(trusting.check([job("a", inputs=["data/x.fq"])])) == []
    c = site.checker("version: 1\nrules: {b: {workdir: rw}}\n", rules=["a", "b"])
    expect(c.check([job("a", inputs=["data/x.fq"])]), "SC412", ERROR, "a", "data")
