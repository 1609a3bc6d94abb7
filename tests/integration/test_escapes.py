"""Escape attempts in the real Apptainer, as an ordinary user: rules that each TRY to break their policy.

One Snakemake run of workflows/escapes (policy containment.yaml) in which every rule's probes (probes.sh) try
to see host processes, host files, host variables, the host's /dev/shm and SysV shared memory, and to write
through read-only binds, into the (read-only) workdir, or outside the declared writable ones. The host side
holds a marker for each. Then the same probes run uncontained (control.yaml) as the control: a probe that
cannot see an escape there proves nothing, so the control must show every probe that can be shown without
containment.
"""

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest


from support import USER, chown_tree, owned_dir, snakemake, user_entry

WORKFLOW = Path(__file__).parent / "workflows" / "escapes"
pytestmark = [pytest.mark.apptainer, pytest.mark.snakemake_internals]

IPC_CREAT, IPC_EXCL, IPC_RMID = 0o1000, 0o2000, 0

# Attempts judged inside the container (what a probe saw) ...
READS = ("ps_sees_host_process", "proc_lists_host_process", "proc_reads_host_pid", "kill_reaches_host_process",
         "read_home_marker", "read_tmp_marker", "read_shadow_marker", "read_dev_shm_marker", "list_dev_shm_marker",
         "env_has_secret", "proc_environ_has_secret", "sysv_shm_key_visible")
# ... and attempts judged on the host (did the write land there?).
WRITES = ("write_unbound_host_folder", "write_host_home", "write_host_tmp_via_workdir_parent", "write_host_var_tmp",
          "write_ro_new_file", "write_ro_append", "write_ro_delete", "write_ro_workdir_new_file",
          "write_ro_workdir_snakefile", "write_ro_via_workdir_symlink",
          "write_ro_via_rw_symlink", "write_ro_via_dotdot", "write_ro_via_hardlink", "write_ro_after_remount")


def shm_segment(key: int) -> int:
    """A host SysV shared memory segment with a fixed key (libc shmget through ctypes; no C, no sysv_ipc)."""
    libc = ctypes.CDLL(None, use_errno=True)
    shmid = libc.shmget(ctypes.c_int(key), ctypes.c_size_t(4096), IPC_CREAT | IPC_EXCL | 0o644)
    if shmid < 0:
        raise OSError(ctypes.get_errno(), f"shmget({key:#x})")
    return shmid


def shm_remove(shmid: int) -> None:
    ctypes.CDLL(None, use_errno=True).shmctl(shmid, IPC_RMID, None)


def host_file_changed(path: Path, original: str) -> bool:
    return not path.exists() or path.read_text() != original


class Host:
    """Markers on the host that no contained job may see, and the places no contained job may write."""

    def __init__(self):
        self.user = user_entry()
        self.pid = os.getpid()
        self.marker = f"singcontain-escape-{self.pid}"
        self.secret = f"singcontain-secret-{self.pid}"
        self.home = Path(self.user.pw_dir)
        self.shm_key = 0x5C000000 + (self.pid & 0xFFFF)
        self.files = [self.home / self.marker, Path("/tmp") / self.marker, Path("/dev/shm") / self.marker]
        self.shadow = Path("/var/tmp") / self.marker
        self.shmid = self.sleeper = None

    def start(self):
        for path in self.files:
            path.write_text(self.secret + "\n")
            os.chown(path, self.user.pw_uid, self.user.pw_gid)  # the user's own: only containment hides it
        self.shadow.mkdir()
        (self.shadow / "shadow").write_text(f"root:{self.secret}:19000:0:99999:7:::\n")
        chown_tree(self.shadow)
        self.shmid = shm_segment(self.shm_key)
        # A host process of the same user, as a job's neighbour on a shared node would be.
        self.sleeper = subprocess.Popen(["sleep", "4322"], user=self.user.pw_uid, group=self.user.pw_gid,
                                        extra_groups=[])

    def close(self):
        if self.sleeper is not None:
            self.sleeper.kill()
            self.sleeper.wait()
        if self.shmid is not None:
            shm_remove(self.shmid)
        shutil.rmtree(self.shadow, ignore_errors=True)
        written = [*self.home.glob(f"{self.marker}-written-*"), *Path("/tmp").glob(f"{self.marker}-written-*")]
        for path in [*self.files, *written]:
            path.unlink(missing_ok=True)


def run_probes(host: Host, image: str, policy: str) -> dict:
    """One Snakemake run of the escape workflow; returns {attempt: escaped?} and the sanity lines."""
    run_name = policy.removesuffix(".yaml")
    work, site = owned_dir("singcontain-esc-wf-"), owned_dir("singcontain-esc-site-")
    try:
        shutil.copytree(WORKFLOW, work, dirs_exist_ok=True)
        snakefile = (work / "Snakefile").read_text()
        for folder in ("shared/ro", "shared/rw", "unbound"):
            (site / folder).mkdir(parents=True)
        ro = site / "shared" / "ro"
        originals = {name: f"original {name}\n" for name in ("target-append.txt", "target-delete.txt",
                                                              "target-hardlink.txt")}
        for name, text in originals.items():
            (ro / name).write_text(text)
        chown_tree(work), chown_tree(site)  # the user's own and writable on the host: only the binds protect them
        run = snakemake(work, "--config", f"image={image}", f"policy={policy}", f"site={site}", f"run={run_name}",
                        f"home={host.home}", f"marker={host.marker}", f"secret={host.secret}",
                        f"sleeper={host.sleeper.pid}", f"shm_key={host.shm_key}",
                        env={"ESC_SITE": str(site), "ESC_HOME": str(host.home), "ALLOWED_VAR": "yes",
                             "SECRET_VAR": f"leaked-{host.pid}"})
        assert run.returncode == 0, run
        seen = {}
        for name in ("pid", "contain", "ro", "containall_env", "sysv"):
            for line in (work / "results" / f"{name}.txt").read_text().splitlines():
                key, _, value = line.partition("=")
                seen[key] = value
        missing = [name for name in READS if name not in seen]
        assert not missing, f"probes did not report {missing}: {seen}"
        written = {  # judged on the host
            "write_unbound_host_folder": (site / "unbound" / f"escape-{run_name}").exists(),
            "write_host_home": (host.home / f"{host.marker}-written-{run_name}").exists(),
            "write_host_tmp_via_workdir_parent": (work.parent / f"{host.marker}-written-{run_name}").exists(),
            "write_host_var_tmp": (host.shadow / f"written-{run_name}").exists(),
            "write_ro_new_file": (ro / f"new-{run_name}").exists(),
            "write_ro_append": host_file_changed(ro / "target-append.txt", originals["target-append.txt"]),
            "write_ro_delete": not (ro / "target-delete.txt").exists(),
            "write_ro_workdir_new_file": (work / f"new-{run_name}").exists(),
            "write_ro_workdir_snakefile": host_file_changed(work / "Snakefile", snakefile),
            "write_ro_via_workdir_symlink": (ro / f"via-workdir-symlink-{run_name}").exists(),
            "write_ro_via_rw_symlink": (ro / f"via-rw-symlink-{run_name}").exists(),
            "write_ro_via_dotdot": (ro / f"via-dotdot-{run_name}").exists(),
            "write_ro_via_hardlink": host_file_changed(ro / "target-hardlink.txt", originals["target-hardlink.txt"]),
            "write_ro_after_remount": (ro / f"via-remount-{run_name}").exists(),
        }
        assert set(written) == set(WRITES)
        return {"escaped": {name: seen[name] == "yes" for name in READS} | written, "seen": seen,
                "output": run.output}
    finally:
        shutil.rmtree(work, ignore_errors=True), shutil.rmtree(site, ignore_errors=True)


@pytest.fixture(scope="module")
def runs(image):
    host = Host()
    try:
        host.start()
        yield {policy: run_probes(host, image, policy) for policy in ("containment.yaml", "control.yaml")}
    finally:
        host.close()


def table(runs) -> str:
    main, control = runs["containment.yaml"]["escaped"], runs["control.yaml"]["escaped"]
    rows = [f"  {name:36s} contained: {'ESCAPED' if main[name] else 'held':8s} control: "
            f"{'seen' if control[name] else 'not seen'}" for name in (*READS, *WRITES)]
    return "\n".join(rows)


def test_no_escape(runs):
    escaped = runs["containment.yaml"]["escaped"]
    attempts, escapes = len(escaped), sorted(name for name, yes in escaped.items() if yes)
    print(f"\n{attempts} attempts, {len(escapes)} escapes\n{table(runs)}")
    assert attempts == len(READS) + len(WRITES) >= 20
    assert not escapes, f"escapes: {escapes}\n{table(runs)}"


def test_probes_worked_on_real_binds(runs):
    """The refusals come from the policy: the ro bind was there and readable, the rw bind writable, the symlink
    into the ro bind made in the job's own output folder, the allowed variable passed, /proc/sysvipc/shm
    readable, and the pid namespace left only a handful of processes."""
    seen = runs["containment.yaml"]["seen"]
    assert seen["ok_ro_readable"] == seen["ok_rw_writable"] == seen["ok_workdir_symlink_made"] == "yes", seen
    assert seen["ok_allowed_var_passed"] == seen["ok_proc_sysvipc_readable"] == "yes", seen
    assert int(seen["ok_processes_counted"]) < 10, seen
    assert "SC404" in runs["containment.yaml"]["output"]  # ipc without contain: the documented warning


def test_control_shows_each_probe_can_detect_an_escape(runs):
    escaped = runs["control.yaml"]["escaped"]
    shown = {name for name, yes in escaped.items() if yes}
    print(f"\ncontrol (containment: none): {len(shown)} of {len(escaped)} probes saw the host")
    assert shown == set(escaped), table(runs)


def test_apptainer_bind_in_environment_is_refused_or_ignored(image):
    work, site = owned_dir("singcontain-esc-wf-"), owned_dir("singcontain-esc-site-")
    try:
        shutil.copytree(WORKFLOW, work, dirs_exist_ok=True)
        (site / "unbound").mkdir()
        chown_tree(work), chown_tree(site)
        target = site / "unbound"
        run = snakemake(work, "results/contain.txt", "--config", f"image={image}", f"site={site}", "run=envbind",
                        f"home={Path(os.path.expanduser(f'~{USER}'))}", "marker=none", "secret=none", "sleeper=1",
                        "shm_key=1",
                        env={"ESC_SITE": str(site), "APPTAINER_BIND": f"{target}:{target}:rw"})
        escaped = (target / "escape-envbind").exists()
        assert not escaped, f"the job wrote {target}, which only APPTAINER_BIND made writable\n{run}"
        assert run.returncode != 0 and "SC104" in run.output and "APPTAINER_BIND" in run.output, run
    finally:
        shutil.rmtree(work, ignore_errors=True), shutil.rmtree(site, ignore_errors=True)
