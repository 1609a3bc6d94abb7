"""Run records: one JSON line per job, appended by every process that runs jobs; read back, grouped and compared
per output; image digests hashed once and shared through the workdir's cache."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from snakemake_singcontain import records
from snakemake_singcontain.cli import records as cli

ROOT = Path(__file__).resolve().parents[2]
SHA_A, SHA_B = "a" * 64, "b" * 64


def job(rule="align", sample="brain", **changes) -> dict:
    """A record as the bridge passes it: the job's own folder is bound writable (auto-bind)."""
    out = f"/w/results/{sample}"
    record = {"rule": rule, "wildcards": {"sample": sample}, "jobid": 1, "host": "node1", "image": "img.sif",
              "image_path": "/w/img.sif", "image_sha256": SHA_A, "runtime": "apptainer", "runtime_version": "1.4.5",
              "argv": ["--contain", "--pid", "--bind", "/cvmfs:/cvmfs:ro", "--bind", f"{out}:{out}:rw",
                       "--bind", "/w:/w:ro"],
              "job_binds": [out], "policy_sha256": "p" * 64,
              "settings": {"containment": "contain", "origins": {"containment": "defaults (containment.yaml:3)"}},
              "outputs": [f"results/{sample}/hits.tsv"], "start": 10.0, "end": 20.0, "exit_status": 0}
    return record | changes


def test_a_record_is_one_json_line_in_the_writers_own_file(tmp_path):
    recorder = records.Recorder(str(tmp_path), "run1")
    recorder.write(job())
    recorder.write(job(sample="liver", start=5.0))
    files = list((tmp_path / ".snakemake/singcontain/records/run1").iterdir())
    assert [f.name for f in files] == [f"{re.sub(r'[^A-Za-z0-9._-]', '_', os.uname().nodename)}-{os.getpid()}.jsonl"]
    lines = files[0].read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == {"format": 1, "kind": "job", **job()}
    # Read back in start order.
    assert [r["wildcards"]["sample"] for r in records.load(str(tmp_path), "run1")] == ["liver", "brain"]


def test_a_run_id_is_a_plain_name(tmp_path):
    with pytest.raises(ValueError, match="plain name"):
        records.Recorder(str(tmp_path), "../elsewhere")
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", records.new_run_id())


WRITER = """
import os, sys, threading, time
from snakemake_singcontain import records
recorder = records.Recorder(sys.argv[1], "run1")
while not os.path.exists(os.path.join(sys.argv[1], "go")):  # all writers start together
    time.sleep(0.001)
def write(thread):
    for i in range(1000):
        recorder.write({"rule": "r", "outputs": [f"out/{sys.argv[2]}-{thread}-{i}"], "argv": ["--bind", "x:x:ro"] * 40,
                        "start": float(i), "end": float(i), "exit_status": 0})
threads = [threading.Thread(target=write, args=(t,)) for t in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
"""


def python(code: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_several_processes_writing_at_once_lose_no_record(tmp_path):
    writers = [python(WRITER, tmp_path, n) for n in range(4)]
    time.sleep(1)
    (tmp_path / "go").touch()
    assert [w.wait(timeout=120) for w in writers] == [0] * 4
    found = records.load(str(tmp_path), "run1")
    outputs = [r["outputs"][0] for r in found]
    assert len(outputs) == 4 * 3 * 1000 and len(set(outputs)) == len(outputs)
    assert records.runs(str(tmp_path))[0]["unreadable_lines"] == 0


def test_a_killed_writer_keeps_every_record_it_wrote(tmp_path):
    code = ("import os, signal, sys\nfrom snakemake_singcontain import records\n"
            "r = records.Recorder(sys.argv[1], 'run1')\n"
            "for i in range(5): r.write({'rule': 'r', 'outputs': [f'o{i}'], 'exit_status': 0})\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    assert python(code, tmp_path).wait(timeout=60) == -signal.SIGKILL
    # And a line cut short (a node that died mid-write) is skipped and counted, not fatal.
    with open(next((tmp_path / ".snakemake/singcontain/records/run1").iterdir()), "a") as f:
        f.write('{"format": 1, "kind": "job", "rule": "r", "outp')
    assert [r["outputs"] for r in records.load(str(tmp_path), "run1")] == [[f"o{i}"] for i in range(5)]
    assert records.runs(str(tmp_path))[0]["unreadable_lines"] == 1


def test_a_newer_record_format_is_refused_with_the_fix(tmp_path):
    folder = tmp_path / ".snakemake/singcontain/records/run1"
    folder.mkdir(parents=True)
    (folder / "h-1.jsonl").write_text('{"format": 99, "kind": "job"}\n')
    with pytest.raises(records.RecordsError, match="newer snakemake-singcontain .*upgrade"):
        records.load(str(tmp_path), "run1")


def write_run(workdir, run_id, jobs, start=None, end=None):
    recorder = records.Recorder(str(workdir), run_id)
    if start is not None:
        recorder._append({"format": 1, "kind": "run", "event": "start", "time": start})
    for record in jobs:
        recorder.write(record)
    if end is not None:
        recorder._append({"format": 1, "kind": "run", "event": "end", "time": 99.0, "exit_status": end})


def test_runs_tell_status_times_and_counts(tmp_path):
    write_run(tmp_path, "b-finished", [job(start=30.0, end=40.0), job(sample="liver", exit_status=1)], start=25.0,
              end=0)
    write_run(tmp_path, "a-interrupted", [job(start=1.0, end=2.0)], start=0.5)
    write_run(tmp_path, "c-failed", [job(start=50.0, end=60.0, host="node2")], start=45.0, end=1)
    write_run(tmp_path, "d-unmarked", [job(start=70.0, end=80.0)])
    write_run(tmp_path, "e-ctrl-c", [], start=90.0, end=130)
    found = records.runs(str(tmp_path))
    assert [(r["run"], r["status"]) for r in found] == [
        ("a-interrupted", "interrupted or running"), ("b-finished", "finished"), ("c-failed", "failed"),
        ("d-unmarked", "unknown"), ("e-ctrl-c", "interrupted")]
    assert found[1] | {"unreadable_lines": 0} == {
        "run": "b-finished", "status": "finished", "start": 10.0, "end": 99.0, "jobs": 2, "failed": 1,
        "rules": {"align": 2}, "hosts": ["node1"], "unreadable_lines": 0}
    assert records.runs(str(tmp_path / "nothing")) == []


def test_a_run_is_named_by_id_prefix_latest_or_previous(tmp_path):
    write_run(tmp_path, "20250101-100000-aaaa", [job(start=1.0)])
    write_run(tmp_path, "20250102-100000-bbbb", [job(start=2.0)])
    assert records.resolve(str(tmp_path), "20250101") == "20250101-100000-aaaa"
    assert records.resolve(str(tmp_path), "latest") == "20250102-100000-bbbb"
    assert records.resolve(str(tmp_path), "previous") == "20250101-100000-aaaa"
    with pytest.raises(records.RecordsError, match="matches several runs"):
        records.resolve(str(tmp_path), "2025")
    with pytest.raises(records.RecordsError, match="'x' is not a recorded run; recorded: 20250101-100000-aaaa"):
        records.resolve(str(tmp_path), "x")
    with pytest.raises(records.RecordsError, match="no run is recorded"):
        records.resolve(str(tmp_path / "empty"), "latest")


def test_jobs_group_by_rule_and_identical_containment_whatever_their_own_folders():
    jobs = [job(sample=s) for s in ("brain", "kidney", "liver")]
    jobs.append(job(sample="old", image_sha256=SHA_B))  # another image behind the same path
    jobs.append(job(rule="plot", sample="all"))
    groups = records.group(jobs)
    assert [(g["rule"], g["jobs"], g["image_sha256"]) for g in groups] == [
        ("align", 3, SHA_A), ("align", 1, SHA_B), ("plot", 1, SHA_A)]
    first = groups[0]
    assert first["flags"] == ["--contain", "--pid", "--bind /cvmfs:/cvmfs:ro", "--bind /w:/w:ro"]
    assert [w["sample"] for w in first["wildcards"]] == ["brain", "kidney", "liver"]
    assert first["images"] == ["img.sif"] and first["hosts"] == ["node1"] and first["failed"] == 0


def test_without_job_binds_a_jobs_output_folders_are_its_own():
    a, b = job(), job(sample="liver")
    for record in (a, b):
        del record["job_binds"]
        out = os.path.abspath(os.path.dirname(record["outputs"][0]))
        record["argv"] = ["--contain", "--bind", f"{out}:{out}:rw"]
    assert [g["jobs"] for g in records.group([a, b])] == [2]


def test_diff_names_per_output_the_changed_image_digest_and_flags():
    a = [job(sample="brain"), job(sample="liver"), job(sample="gone")]
    b = [job(sample="brain", image_sha256=SHA_B),
         job(sample="liver", argv=job()["argv"][:1] + ["--containall"] + job(sample="liver")["argv"][2:]),
         job(sample="new")]
    found = {o["output"]: o for o in records.diff(a, b)}
    assert found["results/brain/hits.tsv"] == {
        "output": "results/brain/hits.tsv", "rule": "align", "status": "changed",
        "changes": [{"what": "image digest", "a": SHA_A, "b": SHA_B}]}
    assert found["results/liver/hits.tsv"]["changes"] == [
        {"what": "flags", "removed": ["--pid"], "added": ["--containall"], "order": False}]
    assert found["results/gone/hits.tsv"]["status"] == "only in A"
    assert found["results/new/hits.tsv"]["status"] == "only in B"


def test_diff_compares_a_retried_jobs_last_attempt_and_tells_a_reordering():
    first_try = job(image_sha256=SHA_B, end=15.0, exit_status=1)
    argv = job()["argv"]
    swapped = argv[:2] + argv[4:6] + argv[2:4] + argv[6:]
    assert records.diff([job()], [first_try, job(end=30.0)])[0]["status"] == "same"
    assert records.diff([job()], [job(argv=swapped)])[0]["changes"] == [
        {"what": "flags", "removed": [], "added": [], "order": True}]
    policy = records.diff([job()], [job(policy_sha256="q" * 64)])[0]["changes"]
    assert policy == [{"what": "policy digest", "a": "p" * 64, "b": "q" * 64}]


def test_settings_digest_ignores_origins():
    settings = job()["settings"]
    moved = settings | {"origins": {"containment": "defaults (containment.yaml:9)"}}
    assert records.settings_digest(settings) == records.settings_digest(moved)
    assert records.settings_digest(settings) != records.settings_digest(settings | {"containment": "containall"})


@pytest.fixture
def hashed(monkeypatch):
    """Which files image_digest really read, in a process without digests in memory."""
    monkeypatch.setattr(records, "_digests", {})
    read = []
    real = records.sha256
    monkeypatch.setattr(records, "sha256", lambda path: read.append(path) or real(path))
    return read


def test_an_image_is_hashed_once_and_shared_with_other_processes(tmp_path, hashed):
    image = tmp_path / "img.sif"
    image.write_bytes(b"image one" * 1000)
    expected = hashlib.sha256(image.read_bytes()).hexdigest()
    assert [records.image_digest(str(image), str(tmp_path)) for _ in range(3)] == [expected] * 3
    assert hashed == [str(image)]
    records._digests.clear()  # another process, e.g. a node's: the workdir's cache answers
    assert records.image_digest(str(tmp_path / "." / "img.sif"), str(tmp_path)) == expected
    assert hashed == [str(image)]
    cache = json.loads((tmp_path / ".snakemake/singcontain/digests.json").read_text())
    assert cache["digests"][str(image)]["sha256"] == expected


def test_an_image_replaced_at_the_same_path_is_hashed_again_even_with_the_old_size_and_mtime(tmp_path, hashed):
    image = tmp_path / "img.sif"
    image.write_bytes(b"1" * 4096)
    first = records.image_digest(str(image), str(tmp_path))
    st = image.stat()
    replacement = tmp_path / "new.sif"
    replacement.write_bytes(b"2" * 4096)
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))  # as `cp -p` or a careless rebuild leaves it
    replacement.replace(image)
    records._digests.clear()
    assert records.image_digest(str(image), str(tmp_path)) == hashlib.sha256(b"2" * 4096).hexdigest() != first
    assert len(hashed) == 2


def test_a_broken_digest_cache_means_hashing_again(tmp_path, hashed):
    image = tmp_path / "img.sif"
    image.write_bytes(b"x")
    cache = tmp_path / ".snakemake/singcontain/digests.json"
    cache.parent.mkdir(parents=True)
    cache.write_text('{"format": 1, "digests": {')
    assert records.image_digest(str(image), str(tmp_path)) == hashlib.sha256(b"x").hexdigest()
    assert json.loads(cache.read_text())["format"] == 1


def test_runs_and_diff_commands(tmp_path, capsys):
    write_run(tmp_path, "20250101-100000-aaaa", [job(), job(sample="liver")], start=1.0, end=0)
    write_run(tmp_path, "20250102-100000-bbbb", [job(image_sha256=SHA_B), job(sample="liver")], start=100.0, end=0)
    assert cli.main(["runs", "-d", str(tmp_path)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["RUN", "STATUS", "START", "END", "JOBS", "FAILED", "HOSTS"]
    latest = listing[2].split()
    assert latest[:2] == ["20250102-100000-bbbb", "finished"] and latest[-3:] == ["2", "0", "node1"]

    assert cli.main(["runs", "-d", str(tmp_path), "--run", "latest"]) == 0
    shown = capsys.readouterr().out
    assert "rule align: 2 job(s) (sample=brain, sample=liver)" not in shown  # two images: two groups
    assert f"rule align: 1 job(s) (sample=brain)\n  image    img.sif\n  sha256   {SHA_B}" in shown
    assert "  flags    --contain --pid --bind /cvmfs:/cvmfs:ro --bind /w:/w:ro" in shown

    assert cli.main(["diff", "-d", str(tmp_path), "previous", "latest"]) == 1
    out = capsys.readouterr().out
    assert "results/brain/hits.tsv (rule align): changed\n  image digest: aaaaaaaaaaaa… -> bbbbbbbbbbbb…" in out
    assert "results/liver" not in out
    assert out.endswith("2 outputs: 1 changed, 1 made the same way, 0 made in one run only\n")

    assert cli.main(["diff", "-d", str(tmp_path), "latest", "latest", "--format", "json"]) == 0
    assert {o["status"] for o in json.loads(capsys.readouterr().out)["outputs"]} == {"same"}

    assert cli.main(["diff", "-d", str(tmp_path), "latest", "nosuchrun"]) == 2
    assert capsys.readouterr().err.startswith("singcontain: 'nosuchrun' is not a recorded run")


def docs_template() -> str:
    text = (ROOT / "docs" / "records.md").read_text()
    return textwrap.dedent(re.search(r"```yaml\n( *__definitions__:.*?) *```", text, re.S)[1])


def test_the_report_metadata_template_in_the_docs_renders_the_latest_run(tmp_path, monkeypatch):
    yte = pytest.importorskip("yte")
    write_run(tmp_path, "run1", [job(), job(rule="plot", argv=["--containall"]), job(image_sha256=SHA_B)],
              start=1.0, end=0)
    monkeypatch.chdir(tmp_path)
    meta = yte.process_yaml(docs_template())
    assert meta["containment run"] == "run1 (finished, 3 jobs)"
    assert list(meta) == ["containment run", "containment align", "containment align (2)", "containment plot"]
    assert meta["containment align"].startswith(f"1 job(s), image ``img.sif`` sha256 ``{SHA_A}``, apptainer 1.4.5")
    assert meta["containment plot"].endswith(f"flags ``--containall``, policy sha256 ``{'p' * 64}``")
