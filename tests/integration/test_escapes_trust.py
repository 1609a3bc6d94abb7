"""Nothing a job can write is trusted (issue 19), in the real Apptainer, as an ordinary user: links a job
leaves, grants judged by real path, Snakemake's own host-side steps after a job, the seal, the policy's name,
the image's identity, and a runtime configuration that cannot be read.

Each class has a probe from inside the job, the evidence on the host (file modes, moved files, what the
terminal shows) and a control that shows the escape with the protection off (the plugin off, or the rule
uncontained), so that a probe that cannot see an escape proves nothing.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support import SNAKEMAKE, chown_tree, no_traceback, owned_dir, snakemake, user_entry

WORKFLOWS = Path(__file__).parent / "workflows" / "escapes_trust"
pytestmark = [pytest.mark.apptainer, pytest.mark.snakemake_internals]

REFUSED = "the containment policy failed its checks"
# cluster-generic with `bash` as the submit command: each job script runs at once, as on a node that shares
# the workdir (a Snakemake of its own parses the Snakefile again and runs the sealed settings).
CLUSTER = ["--executor", "cluster-generic", "--cluster-generic-submit-cmd", "bash", "-j", "1",
           "--seconds-between-status-checks", "1"]
HOME = Path(user_entry().pw_dir) if user_entry() else Path("/nonexistent")


def copy_workflow(name: str) -> tuple[Path, Path]:
    """(parent, workdir): the workflow under a folder of its own, with a site folder beside it."""
    parent = owned_dir("singcontain-esctrust-")
    work = parent / "wf"
    shutil.copytree(WORKFLOWS / name, work)
    (parent / "site").mkdir()
    chown_tree(parent)
    return parent, work


def owned(path: Path, text: str | None = None, mode: int = 0o600) -> Path:
    """A file (text given) or folder of the test user's, with this mode."""
    user = user_entry()
    if text is None:
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(mode)
    return path




class HomeFiles:
    """Files and folders of the test user's home that no job may reach, removed afterwards."""

    def __init__(self, tag: str):
        self.tag = f"{tag}-{os.getpid()}"
        self.made: list[Path] = []

    def path(self, name: str) -> Path:
        path = HOME / f".singcontain-{self.tag}-{name}"
        self.made.append(path)
        return path

    def close(self):
        for path in self.made:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@pytest.fixture
def home_files():
    made = HomeFiles("trust")
    yield made
    made.close()


# --- 1. links a job left are trusted later --------------------------------------------------------------------


def links_runs(image: str, policy: str, *executor: str) -> dict:
    """Two runs of one copy: the first leaves the links (results/p2, results/c2 -> the home), the next finds
    them there. What landed in the home after each run, judged on the host."""
    parent, work = copy_workflow("links")
    control = [f"--apptainer-args=--bind={HOME}"] if policy == "off" else []
    outcome = {}
    try:
        for attempt in ("first", "next"):
            tag = f"{policy.removesuffix('.yaml')}-{attempt}-{os.getpid()}"
            planted = [HOME / f"escaped-p-{tag}.txt", HOME / f"escaped-c-{tag}.txt"]
            try:
                # --rerun-incomplete: Snakemake 8 may leave a job that ran beside a refused one marked incomplete
                run = snakemake(work, "--keep-going", "--rerun-incomplete", *executor, *control, "--config",
                                f"image={image}", f"policy={policy}", f"home={HOME}", f"tag={tag}")
                outcome[attempt] = {"run": run, "landed": [p.name for p in planted if p.exists()]}
            finally:
                for path in planted:
                    path.unlink(missing_ok=True)
        return outcome
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.parametrize("where", ["local", "cluster-generic"])
def test_links_a_job_left_are_refused_in_this_run_and_the_next(image, where):
    contained = links_runs(image, "containment.yaml", *(CLUSTER if where != "local" else ()))
    for attempt, seen in contained.items():
        run = seen["run"]
        assert not seen["landed"], f"{attempt} run: a job wrote the home through a link a job left\n{run}"
        assert run.returncode != 0 and "SC412" in run.output, f"{attempt} run\n{run}"
        no_traceback(run)
    if where == "local":
        control = links_runs(image, "off")
        assert len(control["first"]["landed"]) == 2, f"control: {control['first']['run']}"


# --- 2. writable grants judged by real path -------------------------------------------------------------------


def grants_run(image: str, policy: str, home: HomeFiles, *targets: str) -> dict:
    parent, work = copy_workflow("grants")
    tag = f"{policy.removesuffix('.yaml')}-{os.getpid()}"
    secret_text = f"singcontain-trust-grants-{tag}"
    secret = owned(home.path(f"grants-secret-{tag}"), secret_text + "\n", 0o600)
    data = owned(home.path(f"grants-data-{tag}"), mode=0o700)
    owned(data / "table.txt", "1 2 3\n", 0o600)
    linked = owned(home.path(f"grants-linked-{tag}"), mode=0o700)
    (work / "home-link").symlink_to(linked)  # the user's own link in the workdir, to a folder of the home
    chown_tree(work)
    folders = json.dumps([str(HOME), "results/../profiles/default", "conf", "home-link"])
    control = [f"--apptainer-args=--bind={HOME}"] if policy == "off" else []
    landed = [HOME / f"escaped-{tag}.txt", work / "profiles/default" / f"escaped-{tag}.txt",
              work / "conf" / f"escaped-{tag}.txt", linked / f"escaped-{tag}.txt"]
    try:
        run = snakemake(work, *control, *targets, "--config", f"image={image}", f"policy={policy}", f"tag={tag}",
                        f"folders={folders}", f"data={data}", f"secret={secret}")
        listing = work / "results/listing.txt"
        return {"run": run, "absolute": landed[0].exists(), "profiles": landed[1].exists(),
                "configfile_folder": landed[2].exists(), "symlinked_folder": landed[3].exists(),
                "home_read": listing.exists() and secret_text in listing.read_text(),
                "listing": listing.read_text() if listing.exists() else ""}
    finally:
        landed[0].unlink(missing_ok=True)
        shutil.rmtree(parent, ignore_errors=True)


def test_writable_grants_are_judged_by_real_path(image, home_files):
    """An output folder from data that is an absolute host path (SC407), a '..' that stays in the workdir but
    reaches profiles/ (SC411), the folder of a configfile (SC411), a folder of the workdir that is a link into
    the home (SC407, naming the real path): refused before anything runs. An input folder of the home with no
    policy bind is bound itself, read-only, not the whole home."""
    contained = grants_run(image, "containment.yaml", home_files)
    run = contained.pop("run")
    contained.pop("listing")
    escaped = [name for name, happened in contained.items() if happened]
    assert not escaped, f"escaped: {escaped}\n{run}"
    assert run.returncode != 0 and REFUSED in run.output, run
    lines = run.output.splitlines()
    # The terminal shows one line per rule and code, with the count of the rule's other jobs.
    assert [line for line in lines if "SC407" in line and "rule write" in line and str(HOME) in line
            and "(and 1 more jobs of this rule)" in line], run
    assert [line for line in lines if "SC411" in line and "rule write" in line and ("profiles" in line or "/conf" in line)
            and "(and 1 more jobs of this rule)" in line], run
    assert not [line for line in lines if "rule read_folder" in line], run
    no_traceback(run)
    reader = grants_run(image, "containment.yaml", home_files, "results/listing.txt")
    assert reader["run"].returncode == 0, reader["run"]
    assert "table.txt" in reader["listing"] and not reader["home_read"], reader["listing"]
    control = grants_run(image, "off", home_files)
    control.pop("listing")
    missed = [name for name, happened in control.items() if name != "run" and not happened]
    assert not missed, f"control: no escape seen for {missed}\n{control['run']}"


# --- 3. Snakemake's host-side steps after a job ---------------------------------------------------------------


def host_steps_run(image: str, policy: str, home: HomeFiles, *executor: str) -> dict:
    parent, work = copy_workflow("hoststeps")
    run_tag = f"{policy.removesuffix('.yaml')}{'-cluster' if executor else ''}"
    secret_text = f"singcontain-trust-secret-{run_tag}-{os.getpid()}"
    secret = owned(home.path(f"secret-{run_tag}"), secret_text + "\n", 0o600)
    secret_file = owned(home.path(f"secret-file-{run_tag}"), secret_text + "\n", 0o600)
    victim = owned(home.path(f"victim-{run_tag}"), mode=0o700)
    owned(victim / "sh", mode=0o700)
    victim_text = f"a host file the job never saw {run_tag}\n"
    owned(victim / "sh" / "out.txt", victim_text, 0o600)
    bench = owned(home.path(f"bench-{run_tag}"), mode=0o700)
    try:
        run = snakemake(work, "--keep-going", "--show-failed-logs", *executor, "--config", f"image={image}",
                        f"policy={policy}", f"secret={secret}", f"secret_file={secret_file}", f"victim={victim}", f"bench={bench}")
        copied_logs = "".join(p.read_text(errors="replace") for p in (work / ".snakemake/log").rglob("*")
                              if p.is_file()) if (work / ".snakemake/log").exists() else ""
        moved = work / "results/sh/out.txt"
        return {
            "run": run,
            "chmod_in_directory": secret.stat().st_mode & 0o777 != 0o600,  # protected() walks directory()
            "chmod_file": secret_file.stat().st_mode & 0o777 != 0o600,
            "benchmark": (bench / "b.tsv").exists(),
            "shadow_move": not (victim / "sh/out.txt").exists()
                           or (moved.exists() and not moved.is_symlink() and moved.read_text() == victim_text),
            "failed_log_shown": secret_text in run.output,
            "failed_log_copied": secret_text in copied_logs,
        }
    finally:
        secret.chmod(0o600), secret_file.chmod(0o600)
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.parametrize("where", ["local", "cluster-generic"])
def test_snakemakes_host_steps_do_not_follow_links_a_job_left(image, home_files, where):
    contained = host_steps_run(image, "containment.yaml", home_files, *(CLUSTER if where != "local" else ()))
    run = contained.pop("run")
    escaped = [name for name, happened in contained.items() if happened]
    assert not escaped, f"Snakemake's host-side steps followed the job's links: {escaped}\n{run}"
    assert run.returncode != 0 and "SC410" in run.output, run  # the planting jobs failed, named
    no_traceback(run)
    if where == "local":  # the control does not depend on the executor
        control = host_steps_run(image, "off", home_files)
        missed = [name for name, happened in control.items() if name != "run" and not happened]
        assert not missed, f"control: no escape seen for {missed}\n{control['run']}"



# --- 4. the seal ------------------------------------------------------------------------------------------------


def seal_run(image: str, policy: str, attack: str, *executor: str) -> dict:
    parent, work = copy_workflow("seal")
    marker = Path(f"/tmp/singcontain-seal-{attack}-{policy.removesuffix('.yaml')}-{os.getpid()}")
    try:
        run = snakemake(work, *executor, "--config", f"image={image}", f"policy={policy}", f"attack={attack}",
                        f"marker={marker}")
        probe = work / "results/b/probe.txt"
        processes = probe.read_text().partition("processes=")[2].strip() if probe.exists() else ""
        report = work / "results" / attack / "report.txt"
        return {"run": run, "host_tmp": marker.exists(), "host_processes": processes.isdigit() and int(processes) > 10,
                "report": report.read_text() if report.exists() else ""}
    finally:
        marker.unlink(missing_ok=True)
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.parametrize("where", ["local", "cluster-generic"])
def test_uncontained_job_cannot_rewrite_the_seal(image, where):
    """A `containment: none` job in its container sees the workdir read-only beyond its own outputs: it cannot
    rewrite the seal, and the later containall job (a shadow job's own process, or the node) stays contained."""
    seen = seal_run(image, "containment.yaml", "tamper", *(CLUSTER if where != "local" else ()))
    run = seen["run"]
    assert not seen["host_tmp"] and not seen["host_processes"], f"rule b ran uncontained\n{run}"
    assert "Read-only file system" in seen["report"], f"the seal was writable: {seen['report']}\n{run}"
    no_traceback(run)
    if where == "local":
        control = seal_run(image, "control.yaml", "tamper")
        assert control["host_tmp"] and control["host_processes"], f"control: {control}"


def test_edited_seal_is_refused(image):
    """The seal edited on the host during the run (by a `run:` rule, host code): the shadow job's own process
    tells it from the one the main process wrote and refuses the job (SC501)."""
    seen = seal_run(image, "containment.yaml", "forge")
    run = seen["run"]
    assert seen["report"] == "rewritten\n", run  # the edit happened
    assert not seen["host_tmp"] and not seen["host_processes"], f"rule b ran with the edited seal\n{run}"
    assert run.returncode != 0 and "SC501" in run.output, run
    no_traceback(run)


# --- 5. two names for the policy ------------------------------------------------------------------------------


def profile_run(image: str, env: dict) -> dict:
    parent, work = copy_workflow("profile")
    marker = Path(f"/tmp/singcontain-profile-{len(env)}-{os.getpid()}")
    try:
        run = snakemake(work, "--config", f"image={image}", f"marker={marker}",
                        env={k: str(work / v) for k, v in env.items()})
        return {"run": run, "host_tmp": marker.exists(), "ran": (work / "results/probe.txt").exists()}
    finally:
        marker.unlink(missing_ok=True)
        shutil.rmtree(parent, ignore_errors=True)


def test_two_policies_named_from_two_sources_are_refused(image):
    """SINGCONTAIN_POLICY names strict.yaml; the workflow profile's apptainer-args name weak.yaml."""
    seen = profile_run(image, {"SINGCONTAIN_POLICY": "strict.yaml"})
    run = seen["run"]
    assert not seen["host_tmp"] and not seen["ran"], f"a job ran under one of the two policies\n{run}"
    assert run.returncode != 0 and "two policies" in run.output, run
    no_traceback(run)
    # Control: the profile alone puts its policy in force (the job sees the host's /tmp): replacing the
    # user's policy silently is an escape the probe can see.
    control = profile_run(image, {})
    assert control["ran"] and control["host_tmp"], f"control: {control['run']}"


# --- 6. image identity ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_images(image):
    """(sandbox folder, another SIF of the same size as the test image: with /evil-marker)."""
    folder = Path(owned_dir("singcontain-esctrust-images-"))
    sandbox, other = folder / "sandbox", folder / "other.sif"
    subprocess.run(["apptainer", "build", "--sandbox", str(sandbox), image], check=True, capture_output=True)
    (sandbox / "evil-marker").write_text("evil\n")
    subprocess.run(["apptainer", "build", str(other), str(sandbox)], check=True, capture_output=True)
    (sandbox / "evil-marker").unlink()
    size = max(os.path.getsize(image), other.stat().st_size)
    os.truncate(other, size)  # a SIF reads its partitions by offset: trailing zeros change nothing
    chown_tree(folder)
    yield sandbox, other, size
    shutil.rmtree(folder, ignore_errors=True)


def image_run(image: str, other_images, policy: str, target: str = "results/second.txt", executor=()) -> dict:
    sandbox, other, size = other_images
    parent, work = copy_workflow("image")
    local = parent / "site" / "analysis.sif"
    shutil.copy(image, local)
    os.truncate(local, size)
    ref = parent / "site" / "analysis.sif.time"
    ref.touch()
    shutil.copystat(local, ref)
    chown_tree(parent)
    before = local.stat()
    try:
        run = snakemake(work, "--keep-going", *executor, "--config", f"image={local}", f"other={other}", f"ref={ref}",
                        f"sandbox={sandbox}", f"policy={policy}", "--", target)
        after = local.stat()
        probe = work / "results/second.txt"
        return {"run": run, "restored": (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns),
                "swapped": (work / "results/swap.txt").exists(),
                "other_ran": probe.exists() and "other image" in probe.read_text(),
                "sandbox_ran": (work / "results/sandbox.txt").exists()}
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.parametrize("where", ["local", "cluster-generic"])
def test_image_rewritten_at_the_same_size_and_time_is_refused(image, other_images, where):
    seen = image_run(image, other_images, "containment.yaml", executor=CLUSTER if where != "local" else ())
    run = seen["run"]
    assert seen["swapped"] and seen["restored"], f"the image was not rewritten as planned: {seen}\n{run}"
    assert not seen["other_ran"], f"the next job ran another image than the one checked\n{run}"
    assert run.returncode != 0 and [line for line in run.output.splitlines()
                                    if "SC501" in line and "analysis.sif" in line], run
    no_traceback(run)
    if where != "local":
        return  # the control does not depend on the executor
    control = image_run(image, other_images, "off")
    assert control["restored"] and control["other_ran"], f"control: {control}"


def test_sandbox_image_runs_and_is_recorded(image, other_images):
    seen = image_run(image, other_images, "containment.yaml", "results/sandbox.txt")
    run = seen["run"]
    assert run.returncode == 0 and seen["sandbox_ran"], run
    no_traceback(run)


# --- 7. fail open ---------------------------------------------------------------------------------------------


# An image not pulled yet: no smoke test can start it before the run, so what apptainer.conf allows is all
# the check has (as on a first run of a catalogue workflow).
REMOTE_IMAGE = "docker://registry.invalid/never-pulled:1"


def namespaces_dry_run(bin_dir: str):
    parent, work = copy_workflow("namespaces")
    try:
        path = f"{bin_dir}:{Path(SNAKEMAKE).parent}:/usr/local/bin:/usr/bin:/bin"
        return snakemake(work, "-n", "--config", f"image={REMOTE_IMAGE}", env={"PATH": path})
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_namespaces_are_refused_when_apptainer_conf_cannot_be_read(runtime_with_conf):
    from snakemake_singcontain.runtime import detect

    bin_dir = runtime_with_conf({"allow pid ns": "no"})
    conf = Path(bin_dir).parent / Path(detect().conf_file).relative_to(Path(detect().binary).resolve().parent.parent)
    conf.chmod(0o600)  # root's: the test user cannot read it
    run = namespaces_dry_run(bin_dir)
    assert run.returncode != 0 and "cannot be verified" in run.output, run
    assert [line for line in run.output.splitlines() if "cannot be verified" in line and "pid" in line], run
    no_traceback(run)
    # Control: the same configuration readable is refused by what it says (SC201), so an unreadable one
    # that passes silently would hide exactly this.
    conf.chmod(0o644)
    control = namespaces_dry_run(bin_dir)
    assert control.returncode != 0 and "SC201" in control.output, control
