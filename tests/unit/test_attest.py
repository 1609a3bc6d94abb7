"""What a job's container saw (an attestation) against what its plan asked for: weaker is an error, stricter a
note, nothing differs nothing told. The probe's output here is what Apptainer 1.4.5 showed (measured with
`--contain --pid --home W --bind W:W:ro --bind /cvmfs:/cvmfs:ro`), with the host's own mount table."""

import json
from pathlib import Path

from sc_unit import codes, conf, expect, job, runtime

from snakemake_singcontain.attest import (CANARY, PROBE, Attestation, Expectation, PlannedMount, cached_probe,
                                          changes, compare, expectation, observe, parse_mountinfo)
from snakemake_singcontain.findings import CODES, ERROR, NOTE

W = "/home/alice/work"
HOST_NS = {"pid": "pid:[1]", "ipc": "ipc:[2]", "net": "net:[3]", "uts": "uts:[4]", "user": "user:[5]", "mnt": "mnt:[6]"}
HOST_MOUNTS = parse_mountinfo("""\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
28 27 254:1 / /home rw,relatime - ext4 /dev/vdb rw
29 27 0:50 / /cvmfs ro,relatime - fuse cvmfs2 ro
""")
# What Apptainer mounts itself in a contained container (its session tmpfs is 0:40, the image 0:42).
RUNTIME_OWN = """\
95 66 0:42 / / rw,nodev,relatime unbindable - overlay overlay ro,lowerdir=/session/overlay-lowerdir
104 95 0:40 /dev /dev rw,nosuid,relatime master:21 - tmpfs tmpfs rw,size=65536k
105 104 0:46 / /dev/shm rw,nosuid,nodev,relatime - tmpfs tmpfs rw
106 104 0:47 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,mode=620
107 104 0:6 /tty /dev/tty rw,relatime master:16 - devtmpfs devtmpfs rw
108 104 0:6 /null /dev/null rw,relatime master:16 - devtmpfs devtmpfs rw
112 95 254:0 /etc/hosts /etc/hosts rw,nosuid,nodev,relatime master:1 - ext4 /dev/vda rw
113 95 254:0 /usr/share/zoneinfo/Etc/UTC /etc/localtime rw,nosuid,nodev,relatime master:1 - ext4 /dev/vda rw
114 95 0:60 / /proc rw,relatime - proc proc rw
115 95 0:22 / /sys rw,relatime master:4 - sysfs sysfs rw
128 95 254:1 /alice/work /home/alice/work rw,nosuid,nodev,relatime master:1 - ext4 /dev/vdb rw
129 95 0:40 /tmp /tmp rw,nosuid,nodev,relatime master:21 - tmpfs tmpfs rw
131 95 0:40 /var/tmp /var/tmp rw,nosuid,nodev,relatime master:21 - tmpfs tmpfs rw
132 95 0:40 /etc/resolv.conf /etc/resolv.conf rw,nosuid,relatime master:21 - tmpfs tmpfs rw
133 95 0:40 /etc/passwd /etc/passwd rw,nosuid,relatime master:21 - tmpfs tmpfs rw
"""
PLANNED = """\
140 95 0:50 / /cvmfs ro,nosuid,nodev,relatime master:30 - fuse cvmfs2 ro
141 128 254:1 /alice/work /home/alice/work ro,nosuid,nodev,relatime master:1 - ext4 /dev/vdb rw
"""
IMAGE_ENV = ["PATH", "JAVA_HOME"]  # the image's Docker ENV


def output(mounts=RUNTIME_OWN + PLANNED, ns=None, env=("HOME", "PATH", "LANG", "PWD", "SHLVL", "_", "APPTAINER_NAME"),
           image_env=IMAGE_ENV) -> str:
    """What the probe prints inside the container."""
    ns = {**HOST_NS, "user": "user:[9]", "mnt": "mnt:[10]", "pid": "pid:[11]", **(ns or {})}
    return "\n".join(["@ns", *(f"{k} {v}" for k, v in ns.items()), "@mountinfo", mounts.rstrip("\n"), "@env", *env,
                      "@image-env", *image_env, "@user", "uid 1000", "gid 1000", f"home {W}", f"cwd {W}", "@end"])


def attest(stdout=None, host_env=("HOME", "PATH", "LANG", "PWD", "SHLVL", "_", "SSH_AUTH_SOCK", "JAVA_HOME", CANARY),
           **kw) -> Attestation:
    command = ("apptainer", "exec", "--home", W, "--contain", "--pid", "/images/test.sif", "bash", "-c")
    return Attestation(command, kw.pop("runtime_script", False),
                       **{**observe(output() if stdout is None else stdout, HOST_NS, HOST_MOUNTS, host_env), **kw})


PLAN = Expectation("align", W, (PlannedMount(W, W, "ro"), PlannedMount("/cvmfs", "/cvmfs", "ro")),
                   namespaces=("pid",), contained=True, cleanenv=True, env=("OMP_NUM_THREADS",))


def test_nothing_differs_nothing_is_told():
    assert compare(attest(), PLAN) == []


def test_the_attestation_says_what_the_container_saw():
    a = attest()
    assert a.namespaces == {"pid": "own", "ipc": "host", "net": "host", "uts": "host", "user": "own", "mnt": "own"}
    assert (a.mount_at(W + "/results").source, a.mount_at(W).mode) == (W, "ro")  # the later read-only bind wins
    assert a.mount_at("/tmp").source is None and a.tmp == "runtime"
    assert a.mount_at("/etc/localtime").source == "/usr/share/zoneinfo/Etc/UTC"
    assert (a.uid, a.home, a.cwd) == (1000, W, W)
    assert a.env_from_host == ("HOME", "LANG", "PWD", "SHLVL", "_")  # PATH is also the image's own


def test_a_host_folder_nothing_asked_for_is_an_error_naming_a_wrapper():
    extra = "150 95 254:1 /shared/secrets /some/host/folder rw,relatime - ext4 /dev/vdb rw\n"
    f = expect(compare(attest(output(RUNTIME_OWN + PLANNED + extra), runtime_script=True), PLAN),
               "SC601", ERROR, "align", "/home/shared/secrets", "/some/host/folder", "wrapper")
    assert "ask the site admin" in f.fix and "apptainer" in f.fix


def test_a_host_folder_from_the_runtimes_bind_path_names_the_configuration():
    extra = "150 95 254:0 /data/reference /data/reference rw,relatime - ext4 /dev/vda rw\n"
    site = runtime(conf={"bind path": ("/etc/localtime", "/etc/hosts", "/data/reference")})
    f = expect(compare(attest(output(RUNTIME_OWN + PLANNED + extra)), PLAN, site), "SC601", ERROR, "align",
               "/data/reference", "/etc/apptainer/apptainer.conf", "bind path")
    assert "bind path" in f.fix


def test_the_hosts_tmp_in_a_contained_container_is_an_extra_folder():
    host_tmp = RUNTIME_OWN.replace("129 95 0:40 /tmp /tmp", "129 95 254:0 /tmp /tmp")
    a = attest(output(host_tmp + PLANNED))
    assert a.tmp == "/tmp"
    expect(compare(a, PLAN), "SC601", ERROR, "align", "/tmp")


def test_uncontained_the_hosts_tmp_is_the_runtimes_default():
    host_tmp = RUNTIME_OWN.replace("129 95 0:40 /tmp /tmp", "129 95 254:0 /tmp /tmp")
    plan = Expectation("align", W, (PlannedMount(W, W, "rw"),), contained=False)
    stdout = output(host_tmp, env=("HOME", "PATH", CANARY), ns={"pid": HOST_NS["pid"]})
    assert compare(attest(stdout), plan) == []


def test_a_planned_folder_shown_through_a_mount_above_it_is_shown():
    # Without --contain the host's /tmp is mounted after --home and hides it; a workdir under /tmp is still the
    # host's own folder there.
    workdir = "/tmp/work"
    mounts = (RUNTIME_OWN.replace("129 95 0:40 /tmp /tmp", "129 95 254:0 /tmp /tmp")
              .replace("254:1 /alice/work /home/alice/work", "254:0 /tmp/work /tmp/work"))
    plan = Expectation("align", workdir, (PlannedMount(workdir, workdir, "rw"),))
    assert compare(attest(output(mounts, env=("HOME", CANARY), ns={"pid": HOST_NS["pid"]})), plan) == []


def test_a_bind_writable_that_the_plan_has_read_only_is_an_error():
    writable = PLANNED.replace("/cvmfs ro,nosuid", "/cvmfs rw,nosuid")
    expect(compare(attest(output(RUNTIME_OWN + writable)), PLAN), "SC602", ERROR, "align", "/cvmfs", "read-only")


def test_a_writable_folder_below_a_read_only_bind_is_an_error():
    below = "150 141 254:1 /alice/work/results /home/alice/work/results rw,relatime - ext4 /dev/vdb rw\n"
    expect(compare(attest(output(RUNTIME_OWN + PLANNED + below)), PLAN), "SC602", ERROR, "align",
           "/home/alice/work/results")


def test_a_symlinked_bind_source_matches_where_it_leads():
    linked = PlannedMount("/cvmfs-link", "/cvmfs", "ro", real="/cvmfs")
    plan = Expectation("align", W, (PlannedMount(W, W, "ro"), linked), namespaces=("pid",), contained=True,
                       cleanenv=True)
    assert compare(attest(), plan) == []


def test_a_namespace_asked_for_but_shared_is_an_error_naming_the_configuration():
    warned = ("WARNING: Not virtualizing pid namespace by configuration",)
    a = attest(output(ns={"pid": HOST_NS["pid"]}), warnings=warned)
    f = expect(compare(a, PLAN, runtime(conf=conf(allow_pid_ns="no"))), "SC603", ERROR, "align", "pid",
               "allow pid ns = no")
    assert "ask the site admin" in f.fix
    f = expect(compare(a, PLAN), "SC603", ERROR, "align", "pid", "Not virtualizing pid namespace")


def test_host_variables_in_a_cleaned_environment_are_an_error_with_names_only():
    leaked = output(env=("HOME", "PATH", "SSH_AUTH_SOCK", "JAVA_HOME", CANARY, "OMP_NUM_THREADS"))
    a = attest(leaked, host_env=("HOME", "PATH", "SSH_AUTH_SOCK", "JAVA_HOME", "OMP_NUM_THREADS", CANARY))
    f = expect(compare(a, PLAN), "SC604", ERROR, "align", "SSH_AUTH_SOCK")
    assert "JAVA_HOME" not in f.message and "OMP_NUM_THREADS" not in f.message  # the image's own; allowed


def test_stricter_than_planned_is_a_note():
    missing_cvmfs = attest(output(RUNTIME_OWN + PLANNED.splitlines(keepends=True)[1], ns={"ipc": "ipc:[12]"},
                                  env=("HOME", "PATH")))
    plan = Expectation("align", W, PLAN.mounts, namespaces=("pid",), contained=True, cleanenv=False)
    found = compare(missing_cvmfs, plan)
    assert codes(found) == ["SC605"] * 3 and all(f.severity == NOTE for f in found)
    told = " ".join(f.message for f in found)
    assert "/cvmfs" in told and "ipc namespace" in told and "cleaned environment" in told
    read_only = Expectation("align", W, (PlannedMount(W, W, "rw"), PlannedMount("/cvmfs", "/cvmfs", "ro")),
                            namespaces=("pid",), contained=True, cleanenv=True)
    expect(compare(attest(), read_only), "SC605", NOTE, "align", W, "read-only")


def test_an_image_without_bash_is_told_as_the_images_fault():
    failed = Attestation(("apptainer", "exec"), False, failure="the image /images/busybox.sif has no `bash`, which "
                         "Snakemake starts every job with: its jobs cannot start", fault="image")
    f = expect(compare(failed, PLAN), "SC606", ERROR, "align", "/images/busybox.sif", "bash")
    assert "image" in f.fix


def test_a_runtime_failure_gives_the_command_to_rerun():
    failed = Attestation(("apptainer", "exec", "--home", W, "/images/t.sif", "bash", "-c"), False,
                         failure="FATAL: configuration disallows users from running unencrypted SIF containers",
                         fault="runtime")
    f = expect(compare(failed, PLAN), "SC606", ERROR, "align", "disallows")
    assert "apptainer exec --home" in f.fix


def test_the_digest_is_stable_and_survives_json():
    a = attest()
    again = Attestation.from_json(json.loads(json.dumps(a.to_json())))
    assert again == a and again.digest == a.digest == attest().digest and len(a.digest) == 64
    extra = "150 95 254:1 /shared /shared rw,relatime - ext4 /dev/vdb rw\n"
    assert attest(output(RUNTIME_OWN + PLANNED + extra)).digest != a.digest


def test_mountinfo_paths_with_spaces_and_optional_fields():
    [m] = parse_mountinfo(r"36 35 98:0 /my\040data /mnt/my\040data ro,noatime master:1 shared:2 - ext3 /dev/root rw")
    assert (m.root, m.dst, m.mode, m.fstype) == ("/my data", "/mnt/my data", "ro", "ext3")


def test_the_probe_uses_only_what_a_busybox_image_has():
    words = {w for line in PROBE.splitlines() for w in line.replace("$(", " ").replace(";", " ").split()}
    assert {"grep", "sed", "awk", "cut", "ls", "stat", "printenv"}.isdisjoint(words)
    assert 'readlink "/proc/self/ns/$n"' in PROBE
    assert "< /proc/self/mountinfo" in PROBE and "< /proc/self/status" in PROBE


def test_a_plans_expectation(site):
    site.dir("cvmfs")
    checker = site.checker(f"""
        version: 1
        defaults: {{containment: containall, env: [LANG], binds: ["{site.path('cvmfs')}:/cvmfs:ro"]}}
    """)
    plan = checker.job_plan(job("a", inputs=["data/x.txt"], outputs=["results/y.txt"]))
    e = expectation(plan)
    assert (e.rule, e.workdir, e.job, e.contained, e.cleanenv) == ("a", site.workdir, "a", True, True)
    assert set(e.namespaces) == {"pid", "ipc"} and "LANG" in e.env and "OMP_NUM_THREADS" in e.env
    modes = {m.dst: m.mode for m in e.mounts}
    assert (modes["/cvmfs"], modes[site.workdir], modes[f"{site.workdir}/results"]) == ("ro", "ro", "rw")


def test_every_code_is_documented_in_checks_md():
    text = (Path(__file__).resolve().parents[2] / "docs" / "checks.md").read_text()
    assert all(f"## {code} — " in text for code in CODES if code.startswith("SC6"))


def test_two_attestations_told_apart_in_words():
    extra = "150 95 254:1 /shared/secrets /some/host/folder rw,relatime - ext4 /dev/vdb rw\n"
    node = attest(output(RUNTIME_OWN + PLANNED + extra, ns={"pid": HOST_NS["pid"]},
                         env=("HOME", "PATH", "SSH_AUTH_SOCK")))
    assert changes(attest(), attest()) == []
    assert changes(attest(), node) == [
        "pid namespace: own -> host", "now shows /home/shared/secrets (rw) at /some/host/folder",
        "variables now set: SSH_AUTH_SOCK",
        "variables no longer set: APPTAINER_NAME, LANG, PWD, SHLVL, _"]


def test_a_probe_is_kept_per_host_and_command_line_and_a_failure_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no runtime: every real probe fails
    failed = cached_probe(str(tmp_path / "cache"), "apptainer", "/images/t.sif", ["--contain"], W)
    assert failed.fault == "runtime" and not (tmp_path / "cache").exists()
    calls = []
    monkeypatch.setattr("snakemake_singcontain.attest.probe", lambda *a: calls.append(a) or attest())
    first = cached_probe(str(tmp_path / "cache"), "apptainer", "/images/t.sif", ["--contain"], W)
    again = cached_probe(str(tmp_path / "cache"), "apptainer", "/images/t.sif", ["--contain"], W)
    other = cached_probe(str(tmp_path / "cache"), "apptainer", "/images/t.sif", ["--containall"], W)
    assert first == again == other == attest() and len(calls) == 2  # one start per command line


def test_diff_tells_a_changed_attestation_in_words(tmp_path):
    # Two runs of one output: the second on a host whose container also showed a site folder.
    import dataclasses

    from snakemake_singcontain import records
    from snakemake_singcontain.attest import SeenMount, kept
    from snakemake_singcontain.cli.records import render_diff

    before = attest()
    after = dataclasses.replace(before, mounts=before.mounts + (SeenMount("/site/tools", "/site/tools", "rw", "ext4"),))
    folder = tmp_path / ".snakemake" / "singcontain" / "attestations" / "run1"
    folder.mkdir(parents=True)
    for name, a in (("a", before), ("b", after)):
        (folder / f"host-{name}.json").write_text(json.dumps(a.to_json()))
    record = {"rule": "align", "outputs": ["results/x.txt"], "argv": ["--contain"], "start": 1.0, "end": 2.0,
              "exit_status": 0}
    outputs = records.diff([{**record, "attestation_sha256": before.digest}],
                           [{**record, "attestation_sha256": after.digest}])
    text = render_diff({"run": "A", "status": "finished"}, {"run": "B", "status": "finished"}, outputs,
                       seen=kept(str(tmp_path)))
    assert "what the container showed (attestation)" in text
    assert "now shows /site/tools (rw) at /site/tools" in text, text
    # Without the kept attestations only the digests are told.
    assert "now shows" not in render_diff({"run": "A", "status": "f"}, {"run": "B", "status": "f"}, outputs)
