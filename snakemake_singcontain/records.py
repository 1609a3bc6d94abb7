"""The record of a run: how every job was actually contained, written when its container exits.

Where: `<workdir>/.snakemake/singcontain/records/<run id>/<host>-<pid>.jsonl`, one JSON object per line.
Every Snakemake process that runs jobs (the main process for local jobs, each node's Snakemake process for
cluster jobs) appends to a file of its own, so writers on several NFS clients never share a file (O_APPEND
is not atomic across NFS clients). Each line is one write() on a file opened for that line and closed
again: close() sends it to the NFS server, and a crashed run keeps every record written before the crash.
Readers merge the files and skip a line cut short. The format is documented in docs/records.md.

Image digests are cached in `<workdir>/.snakemake/singcontain/digests.json`, shared by processes, keyed by
the file's real path, size, mtime, ctime and inode: a replaced or rewritten file changes its ctime (which
no user can set back), so a cached digest is never stale, and an image is hashed once, not once per job.
"""

import csv
import hashlib
import json
import os
import re
import secrets
import socket
import threading
import time
from collections import Counter

from .plan import AUTO, INPUT, SHADOW, SOURCE, TOPLEVEL, JobPlan

FORMAT = 1
FOLDER = os.path.join(".snakemake", "singcontain", "records")
DIGESTS = os.path.join(".snakemake", "singcontain", "digests.json")
# Apptainer options that take a value: an option and its value are one unit when flags are compared.
VALUE_OPTIONS = frozenset({
    "--bind", "-B", "--mount", "--env", "--env-file", "--network", "--network-args", "--home", "-H", "--pwd",
    "--cwd", "--security", "--overlay", "-o", "--workdir", "-W", "--scratch", "-S", "--hostname", "--dns",
    "--add-caps", "--drop-caps", "--fusemount", "--app", "--apply-cgroups", "--containlibs"})
JOB_BINDS = (AUTO, INPUT, SHADOW, TOPLEVEL, SOURCE)  # the binds a record lists as the job's own
# What `diff` compares for one output, in the order it tells them.
COMPARED = (("rule", "rule"), ("image", "image as written"), ("image_path", "image file"),
            ("image_sha256", "image digest"), ("runtime", "runtime"), ("runtime_version", "runtime version"),
            ("policy_sha256", "policy digest"), ("attestation_sha256", "what the container showed (attestation)"))


class RecordsError(Exception):
    """One message for the user (no such run, an unreadable folder, a newer format)."""


def new_run_id() -> str:
    """Sortable by start time (UTC), unique without coordination: 20250102-130405-3fa9."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "host"


class Recorder:
    """Appends this process's records of one run. Thread-safe (Snakemake runs local jobs in threads)."""

    def __init__(self, workdir: str, run_id: str):
        if not run_id or _safe(run_id) != run_id or run_id.startswith("."):
            raise ValueError(f"run id {run_id!r} must be a plain name ([A-Za-z0-9._-])")
        self.folder = os.path.join(os.path.abspath(workdir), FOLDER, run_id)
        self.run_id = run_id
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        # Named at each write: a forked process gets a file of its own.
        return os.path.join(self.folder, f"{_safe(socket.gethostname())}-{os.getpid()}.jsonl")

    def write(self, record: dict) -> None:
        """Append one job's record (rule, wildcards, jobid, host, image, image_path, image_sha256, runtime,
        runtime_version, argv, job_binds, policy_sha256, settings, inputs, outputs, attestation_sha256, start,
        end, exit_status)."""
        self._append({"format": FORMAT, "kind": "job", **record})

    def start(self, **info) -> None:
        """The main process, when the run starts: lets `runs` tell a finished run from an interrupted one."""
        self._append({"format": FORMAT, "kind": "run", "event": "start", "time": time.time(),
                      "host": socket.gethostname(), **info})

    def refusal(self, **info) -> None:
        """A job refused right before its container started (on a node: told on the user's terminal by the
        main process, which reads these when the run ends)."""
        self._append({"format": FORMAT, "kind": "refusal", "time": time.time(), **info})

    def end(self, exit_status: int, **info) -> None:
        self._append({"format": FORMAT, "kind": "run", "event": "end", "time": time.time(),
                      "exit_status": exit_status, **info})

    def _append(self, data: dict) -> None:
        # ensure_ascii: a path that is not UTF-8 (kept by Python as surrogates) still makes one valid line.
        line = (json.dumps(data, default=str, separators=(",", ":")) + "\n").encode()
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except FileNotFoundError:  # the run's first record
                os.makedirs(self.folder, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                while line:  # one write() for a line of any usual size; the loop only for a short write
                    line = line[os.write(fd, line):]
            finally:
                os.close(fd)


def job_record(plan: JobPlan, image: str, argv: list[str], attestation: str | None, settings: dict, outputs: list[str],
               jobid, runtime, policy_sha256: str, start: float, exit_status: int) -> dict:
    """One job's record (Recorder.write) from its plan as it was bound, its image and flags;
    `settings`: its rule's, as plain data (seal.settings_data); `runtime`: runtime.RuntimeInfo or None."""
    job = plan.job
    return {"rule": job.rule, "wildcards": dict(job.wildcards), "jobid": jobid, "host": os.uname().nodename,
            "image": image, "image_path": os.path.abspath(image),
            "image_sha256": image_digest(image, plan.rule.workdir) if os.path.isfile(image) else None,
            "runtime": runtime.flavour if runtime else None, "runtime_binary": runtime.binary if runtime else None,
            "runtime_version": ".".join(map(str, runtime.version)) if runtime else None, "argv": argv,
            "job_binds": [b.src for b in plan.binds if b.origin in JOB_BINDS],
            "policy_sha256": policy_sha256, "settings": settings, "inputs": [str(p) for p in job.inputs],
            "outputs": [str(p) for p in outputs], "attestation_sha256": attestation, "start": start,
            "end": time.time(), "exit_status": exit_status}


# --- image digests ---------------------------------------------------------------------------------------

_digests: dict[tuple, str] = {}  # this process's: identity -> sha256
_digests_lock = threading.Lock()


def _identity(path: str) -> tuple:
    real = os.path.realpath(path)
    st = os.stat(real)
    return real, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def image_identity(path: str) -> tuple | None:
    """What tells a local image file apart from any other, without reading it: its real path, size, mtime,
    ctime and inode. Its owner can restore size and mtime (`touch -r`), never ctime; a replaced file has
    another inode. None where it does not exist."""
    try:
        return _identity(path)
    except OSError:
        return None


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_digests(cache: str) -> dict:
    try:
        with open(cache) as f:
            data = json.load(f)
        return data["digests"] if data.get("format") == FORMAT else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # missing, half-written by a crashed older version, or foreign: hash again


def image_digest(path: str, workdir: str | None = None) -> str | None:
    """sha256 of an image file: from this process's memory, else the workdir's shared cache, else hashed
    (and cached). Warm the cache in the main process before submitting, so nodes never hash. None for a
    sandbox (a folder image has no single content digest; its identity is its folder's)."""
    if os.path.isdir(path):
        return None
    identity = _identity(path)
    with _digests_lock:
        if identity in _digests:
            return _digests[identity]
        cache = os.path.join(workdir or os.getcwd(), DIGESTS)
        real, *stat = identity
        entry = _read_digests(cache).get(real)
        if entry and entry.get("stat") == stat:
            _digests[identity] = entry["sha256"]
            return entry["sha256"]
        digest = sha256(real)
        if _identity(path) != identity:  # changed while hashed: use it once, cache nothing
            return digest
        _digests[identity] = digest
        entries = _read_digests(cache)  # again: another process may have added one meanwhile
        entries[real] = {"stat": stat, "sha256": digest}
        tmp = f"{cache}.{_safe(socket.gethostname())}-{os.getpid()}"
        try:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            with open(tmp, "w") as f:
                json.dump({"format": FORMAT, "digests": entries}, f)
            os.replace(tmp, cache)  # whole or not at all; a lost race only costs one more hash later
        except OSError:
            pass  # a read-only workdir: the digest is still right, only not shared
        return digest


def settings_digest(settings: dict) -> str:
    """sha256 of a rule's resolved settings without their origins (file:line moves when a policy is edited
    elsewhere): what changes the job's containment, for the opt-in rerun trigger."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("origin", "origins")}
        if isinstance(value, (list, tuple)):
            return [strip(v) for v in value]
        return value

    return hashlib.sha256(json.dumps(strip(settings), sort_keys=True, default=str).encode()).hexdigest()


# --- reading ---------------------------------------------------------------------------------------------

def _run_folder(workdir: str, run_id: str) -> str:
    return os.path.join(workdir, FOLDER, run_id)


def _read(folder: str) -> tuple[list[dict], int]:
    """Every line of every writer's file; lines that are not a JSON object (cut short by a crash) counted."""
    lines, bad = [], 0
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".jsonl"))
    except OSError as err:
        raise RecordsError(f"cannot read {folder}: {err.strerror}") from None
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            for raw in f:
                try:
                    data = json.loads(raw)
                except ValueError:
                    bad += 1
                    continue
                if not isinstance(data, dict):
                    bad += 1
                elif data.get("format", 0) > FORMAT:
                    raise RecordsError(f"{os.path.join(folder, name)} was written by a newer snakemake-singcontain "
                                       f"(record format {data['format']}); upgrade it to read this run")
                else:
                    lines.append(data)
    return lines, bad


def _jobs(lines: list[dict]) -> list[dict]:
    jobs = [d for d in lines if d.get("kind") == "job"]
    return sorted(jobs, key=lambda r: (r.get("start") or 0, r.get("end") or 0))


def load(workdir: str, run_id: str) -> list[dict]:
    """The job records of one run, in start order."""
    return _jobs(_read(_run_folder(workdir, run_id))[0])


def refusals(workdir: str, run_id: str) -> list[dict]:
    """The jobs of one run refused where they were to start, in time order."""
    try:
        lines = _read(_run_folder(workdir, run_id))[0]
    except RecordsError:
        return []
    return sorted((d for d in lines if d.get("kind") == "refusal"), key=lambda d: d.get("time") or 0)


def run_ids(workdir: str) -> list[str]:
    folder = os.path.join(workdir, FOLDER)
    try:
        return sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n)))
    except FileNotFoundError:
        return []
    except OSError as err:
        raise RecordsError(f"cannot read {folder}: {err.strerror}") from None


def summary(run_id: str, lines: list[dict], bad: int = 0) -> dict:
    jobs = _jobs(lines)
    starts = [d["time"] for d in lines if d.get("event") == "start"]
    ends = [d for d in lines if d.get("event") == "end"]
    if ends:
        code = ends[-1].get("exit_status")
        status = "finished" if code == 0 else "interrupted" if code == 130 else "failed"  # 130: Ctrl-C
    elif starts:
        status = "interrupted or running"  # no end written: killed, crashed, or not finished yet
    else:
        status = "unknown"  # written without run markers
    times = [t for r in jobs for t in (r.get("start"), r.get("end")) if t]
    return {"run": run_id, "status": status,
            "start": min(starts + times, default=None), "end": max([d["time"] for d in ends] + times, default=None),
            "jobs": len(jobs), "failed": sum(1 for r in jobs if r.get("exit_status") != 0),
            "rules": dict(sorted(Counter(r.get("rule") for r in jobs).items())),
            "hosts": sorted({r.get("host") or "?" for r in jobs}), "unreadable_lines": bad}


def runs(workdir: str) -> list[dict]:
    """Every recorded run with its status, start, end and counts, oldest first."""
    found = [summary(run_id, *_read(_run_folder(workdir, run_id))) for run_id in run_ids(workdir)]
    return sorted(found, key=lambda r: (r["start"] or 0, r["run"]))


def resolve(workdir: str, name: str) -> str:
    """A run id from what a user typed: the id, a unique prefix of it, `latest` or `previous`."""
    ids = [r["run"] for r in runs(workdir)]
    if not ids:
        raise RecordsError(f"no run is recorded in {os.path.join(os.path.abspath(workdir), FOLDER)}: records are "
                           "written by runs of a Snakefile that calls contain(), without --dry-run")
    aliases = {"latest": ids[-1:], "previous": ids[-2:-1]}
    if name in aliases:
        matches = aliases[name]
    else:
        matches = [i for i in ids if i == name] or [i for i in ids if i.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    what = "matches several runs" if matches else "is not a recorded run"
    raise RecordsError(f"{name!r} {what}; recorded: {', '.join(ids[-5:])}{' …' if len(ids) > 5 else ''} "
                       "(or say latest, previous)")


# --- grouping and comparing ------------------------------------------------------------------------------

def units(argv: list[str]) -> list[str]:
    """Flags as units: an option that takes a value together with it ('--bind a:a:ro')."""
    out, i = [], 0
    while i < len(argv):
        word = argv[i]
        if word in VALUE_OPTIONS and i + 1 < len(argv):
            out.append(f"{word} {argv[i + 1]}")
            i += 2
        else:
            out.append(word)
            i += 1
    return out


def _bind_sources(unit: str) -> list[str]:
    option, _, value = unit.partition(" ")
    if option in ("--bind", "-B"):
        return [b.split(":")[0] for b in value.split(",")]
    if option == "--mount":
        fields = next(csv.reader([value]), [])
        return [f.split("=", 1)[1] for f in fields if f.startswith(("src=", "source="))]
    return []


def _job_paths(record: dict) -> set[str]:
    """The host paths of the binds made for this job's own files: given by the writer, else its outputs
    and their folders (what varies from job to job)."""
    if record.get("job_binds") is not None:
        return set(record["job_binds"])
    paths = {os.path.abspath(o) for o in record.get("outputs") or ()}
    return paths | {os.path.dirname(p) for p in paths}


def flags(record: dict) -> list[str]:
    """The record's argv as units, without the binds of its own files: equal for jobs of equal settings."""
    job = _job_paths(record)
    return [u for u in units(record.get("argv") or []) if not ((sources := _bind_sources(u)) and set(sources) <= job)]


def group(records: list[dict]) -> list[dict]:
    """Jobs by rule and identical containment: image digest, flags without job paths, policy digest and
    runtime. One entry per group, in rule order, with its jobs' wildcards, outputs, hosts and failures."""
    groups: dict[tuple, dict] = {}
    for r in records:
        fl = flags(r)
        key = (r.get("rule"), r.get("image_sha256"), tuple(fl), r.get("policy_sha256"), r.get("runtime"),
               r.get("runtime_version"))
        g = groups.setdefault(key, {
            "rule": r.get("rule"), "images": [], "image_sha256": r.get("image_sha256"), "runtime": r.get("runtime"),
            "runtime_version": r.get("runtime_version"), "flags": fl, "policy_sha256": r.get("policy_sha256"),
            "settings": r.get("settings"), "jobs": 0, "failed": 0, "hosts": [], "wildcards": [], "outputs": []})
        g["jobs"] += 1
        g["failed"] += r.get("exit_status") != 0
        for name, value in (("images", r.get("image")), ("hosts", r.get("host"))):
            if value not in g[name]:
                g[name].append(value)
        g["wildcards"].append(r.get("wildcards") or {})
        g["outputs"] += r.get("outputs") or []
    return sorted(groups.values(), key=lambda g: (str(g["rule"]), -g["jobs"]))


def by_output(records: list[dict]) -> dict[str, dict]:
    """Each output's record; of a job run twice in one run (a retry), the last to end."""
    found = {}
    for r in sorted(records, key=lambda r: r.get("end") or 0):
        for output in r.get("outputs") or ():
            found[os.path.normpath(output)] = r
    return found


def compare(a: dict, b: dict) -> list[dict]:
    """What differs between two records of the same output: [{what, a, b}], flags as removed/added units."""
    changes = [{"what": label, "a": a.get(key), "b": b.get(key)} for key, label in COMPARED if a.get(key) != b.get(key)]
    ua, ub = units(a.get("argv") or []), units(b.get("argv") or [])
    if ua != ub:
        removed = [u for u in ua if u not in ub]
        added = [u for u in ub if u not in ua]
        changes.append({"what": "flags", "removed": removed, "added": added,
                        "order": not removed and not added})  # same flags, another order: a later bind wins
    return changes


def diff(records_a: list[dict], records_b: list[dict]) -> list[dict]:
    """Per output of either run: {output, rule, status: same|changed|only in A|only in B, changes}."""
    a, b = by_output(records_a), by_output(records_b)
    result = []
    for output in sorted(a.keys() | b.keys()):
        ra, rb = a.get(output), b.get(output)
        if ra is None or rb is None:
            result.append({"output": output, "rule": (ra or rb).get("rule"),
                           "status": "only in A" if rb is None else "only in B", "changes": []})
            continue
        changes = compare(ra, rb)
        result.append({"output": output, "rule": rb.get("rule"), "status": "changed" if changes else "same",
                       "changes": changes})
    return result


def report_metadata(workdir: str = ".", run: str = "latest") -> dict:
    """A run's groups as the flat key/value metadata Snakemake 9's HTML report shows on its landing page
    (`--report-metadata`, a YTE template: docs/records.md). One string per key: Snakemake 9.27 turns each
    item of a list into an object the page shows as "[object Object]". Strings are reStructuredText."""
    run_id = resolve(workdir, run)
    info = summary(run_id, *_read(_run_folder(workdir, run_id)))
    meta = {"containment run": f"{run_id} ({info['status']}, {info['jobs']} jobs)"}
    for g in group(load(workdir, run_id)):
        key = base = f"containment {g['rule']}"
        n = 1
        while key in meta:  # a rule with several groups
            n += 1
            key = f"{base} ({n})"
        failed = f", {g['failed']} failed" if g["failed"] else ""
        meta[key] = (f"{g['jobs']} job(s){failed}, image ``{', '.join(map(str, g['images']))}`` sha256 "
                     f"``{g['image_sha256']}``, {g['runtime']} {g['runtime_version']}, flags "
                     f"``{' '.join(g['flags']) or '(none)'}``, policy sha256 ``{g['policy_sha256']}``")
    return meta
