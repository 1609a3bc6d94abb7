"""What a job's container actually sees, told from inside it, and compared with what the plan asked for.

The checks before a run infer what a job will see from the policy and the runtime's configuration. A site's
wrapper script named `apptainer` that adds a bind, a configuration key they do not know, another runtime on
the nodes: each changes what the job sees without changing anything they read. So the probe starts the
real image with exactly the job's command line (`RUNTIME exec --home WORKDIR FLAGS IMAGE bash -c PROBE`, as
Snakemake starts a job) and prints what the container sees; `probe()` reads the same facts of the calling
process (its namespaces and mounts) and keeps what differs: an Attestation. `compare()` tells where it is
weaker than the plan (an error) or stricter (a note), and who to ask when it is the site's doing.

`probe()` is an edge (one container start); `expectation()` reads where bind sources lead; `compare()` and
`changes()` are pure.
"""

import glob
import hashlib
import json
import os
import posixpath
import re
import shlex
import shutil
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property

from .argv import JOB_VARIABLES, apptainer_args
from .findings import ERROR, NOTE, Finding
from .paths import under
from .plan import JobPlan, JobSpec
from .runtime import WEAKENED, RuntimeInfo

SHELL = "bash"  # Snakemake starts every job as `bash -c '…'` inside the image (its own shell's basename)
NAMESPACES = ("pid", "ipc", "net", "uts", "user", "mnt")
CANARY = "SINGCONTAIN_PROBE_HOST_ONLY"  # set only on the host: seen inside, the environment was not cleaned

# Only sh, readlink and env (a busybox image with bash has them) and the shell's own builtins: each program
# started costs a fork and exec. Values of variables never leave the container, only names. The image's own
# variables (Docker ENV, %environment) are listed apart, so a host variable of the same name is no leak.
PROBE = r"""
echo @ns
for n in pid ipc net uts user mnt; do printf '%s ' "$n"; readlink "/proc/self/ns/$n" || echo; done
echo @mountinfo
while IFS= read -r line; do echo "$line"; done < /proc/self/mountinfo
echo @env
env | while IFS= read -r line; do
  name=${line%%=*}
  case $name in ''|[0-9]*|*[!A-Za-z0-9_]*) continue ;; esac
  [ "$name" != "$line" ] && eval "[ -n \"\${$name+x}\" ]" && echo "$name"
done
echo @image-env
for f in /.singularity.d/env/10-docker2singularity.sh /.singularity.d/env/90-environment.sh; do
  [ -r "$f" ] || continue
  while IFS= read -r line; do
    line=${line#"${line%%[! ]*}"}
    line=${line#export }
    name=${line%%=*}
    case $name in ''|[0-9]*|*[!A-Za-z0-9_]*) continue ;; esac
    [ "$name" != "$line" ] && echo "$name"
  done < "$f"
done
echo @user
while read -r key real rest; do
  case $key in Uid:) echo "uid $real" ;; Gid:) echo "gid $real" ;; esac
done < /proc/self/status
echo "home $HOME"
printf 'cwd '; pwd
echo @end
"""

# Variables Apptainer itself sets in a cleaned environment (measured, 1.4.5 --cleanenv/--containall), and the
# shell's own.
RUNTIME_VARIABLES = frozenset({"HOME", "LANG", "PATH", "PWD", "TERM", "LD_LIBRARY_PATH", "PROMPT_COMMAND", "PS1",
                               "SHLVL", "_"})
RUNTIME_PREFIXES = ("APPTAINER_", "SINGULARITY_")
# What Apptainer mounts in every container, contained or not (measured, 1.4.5): its own /proc, /sys and /dev
# (with the host's device nodes), the files of the stock `bind path` entries and those it writes itself;
# /.singularity.d is its own folder (where --nv binds the host's driver libraries).
RUNTIME_TREES = ("/proc", "/sys", "/dev", "/.singularity.d")
RUNTIME_FILES = frozenset({"/etc/hosts", "/etc/localtime", "/etc/resolv.conf", "/etc/passwd", "/etc/group",
                           "/etc/hostname"})
KERNEL_FILESYSTEMS = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "devtmpfs", "overlay",
                                "securityfs", "debugfs", "tracefs", "fusectl", "bpf", "pstore", "configfs"})


@dataclass(frozen=True)
class SeenMount:
    """One mount the job sees: `source` is the host folder or file it shows, or None for the runtime's own
    file systems (its tmpfs, proc, the image)."""

    dst: str
    source: str | None
    mode: str  # ro | rw
    fstype: str


@dataclass(frozen=True)
class Attestation:
    """What the container saw with one command line on one host. Namespaces are `own` or `host` (compared
    with the process that started it), mounts are those the job sees (not those hidden below others)."""

    command: tuple[str, ...]  # the runtime's argv up to the shell, the probe left out
    runtime_script: bool  # the runtime on PATH is a script (a site's wrapper), not the runtime's binary
    namespaces: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[SeenMount, ...] = ()
    env: tuple[str, ...] = ()  # names of the variables inside
    env_from_host: tuple[str, ...] = ()  # of those, set on the host and not by the image
    uid: int | None = None
    gid: int | None = None
    home: str = ""
    cwd: str = ""
    tmp: str = ""  # what /tmp is: a host path, `runtime` (its own tmpfs) or `image`
    warnings: tuple[str, ...] = ()  # the runtime's WARNING lines that mean it dropped part of the request
    failure: str = ""  # why the probe did not run to its end
    fault: str = ""  # shell (the image lacks it) | image (it lacks what the probe needs) | runtime, when it failed

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> "Attestation":
        data = dict(data)
        data["mounts"] = tuple(SeenMount(**m) for m in data.get("mounts") or ())
        for key in ("command", "env", "env_from_host", "warnings"):
            data[key] = tuple(data.get(key) or ())
        return cls(**data)

    @cached_property
    def digest(self) -> str:
        """sha256 of the canonical JSON: equal for equal observations, on any host and in any process."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def image(self) -> str:
        """The image as the probe started it: the command ends IMAGE bash -c."""
        return self.command[-3] if len(self.command) >= 3 else ""

    @property
    def told_command(self) -> str:
        """The probe's start with `true` instead of the probe: what the user runs to see the runtime's message."""
        return shlex.join([*self.command, "true"])

    def mount_at(self, path: str) -> SeenMount | None:
        """The mount serving container `path`: the deepest one whose destination holds it."""
        found = [m for m in self.mounts if under(path, m.dst)]
        return max(found, key=lambda m: len(m.dst)) if found else None


# --- reading /proc ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MountLine:
    id: int
    parent: int
    device: str
    root: str
    dst: str
    mode: str
    fstype: str


def _unescape(field_: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


def parse_mountinfo(text: str) -> list[MountLine]:
    lines = []
    for line in text.splitlines():
        words = line.split()
        if " - " not in line or len(words) < 9:
            continue
        sep = words.index("-")
        lines.append(MountLine(int(words[0]), int(words[1]), words[2], _unescape(words[3]), _unescape(words[4]),
                               words[5].split(",")[0], words[sep + 1]))
    return lines


def visible(mounts: Sequence[MountLine]) -> list[MountLine]:
    """The mounts not hidden by a later mount on the same place or on a folder above it (in mount order)."""
    shown: list[MountLine] = []
    for m in mounts:
        shown = [s for s in shown if not under(s.dst, m.dst)]
        shown.append(m)
    return shown


def host_source(mount: MountLine, host: Sequence[MountLine]) -> str | None:
    """The host path a container mount shows: a host mount of the same file system whose root holds the
    container mount's root. None for a file system the host does not have mounted (the runtime's own)."""
    if mount.fstype in KERNEL_FILESYSTEMS:
        return None
    candidates = [h for h in host if h.device == mount.device and under(mount.root, h.root)]
    if not candidates:
        return None
    best = max(candidates, key=lambda h: len(h.root))
    rest = mount.root[len(best.root):].lstrip("/") if best.root != "/" else mount.root.lstrip("/")
    return posixpath.join(best.dst, rest) if rest else best.dst


def host_namespaces() -> dict[str, str]:
    found = {}
    for name in NAMESPACES:
        try:
            found[name] = os.readlink(f"/proc/self/ns/{name}")
        except OSError:
            found[name] = ""
    return found


def _host_mounts() -> list[MountLine]:
    try:
        with open("/proc/self/mountinfo") as f:
            return parse_mountinfo(f.read())
    except OSError:
        return []


# --- the probe -------------------------------------------------------------------------------------------

def _sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@") and " " not in line:
            current = sections.setdefault(line[1:], [])
        elif current is not None:
            current.append(line)
    return sections


def _is_script(binary: str) -> bool:
    try:
        with open(binary, "rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def _failure(returncode: int, stderr: str) -> tuple[str, str]:
    """The runtime's FATAL line (or the last), and who is at fault: `shell` where the image lacks the shell
    Snakemake starts every job with (Apptainer 1.4.5: `FATAL:   "bash": executable file not found in $PATH`),
    else `runtime`."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = next((line for line in lines if "FATAL" in line), lines[-1] if lines else f"exit status {returncode}")
    return fatal, "shell" if re.search(rf'"?{SHELL}"?:? .*(not found|no such file)', fatal, re.I) else "runtime"


def observe(stdout: str, host_ns: Mapping[str, str], host_mounts: Sequence[MountLine],
            host_env: Sequence[str]) -> dict:
    """The probe's output, with the host's facts, as Attestation fields (pure: testable without a container)."""
    sections = _sections(stdout)
    inside = dict(line.split(" ", 1) for line in sections.get("ns", []) if " " in line)
    namespaces = {n: ("unknown" if not inside.get(n) or not host_ns.get(n) else
                      "host" if inside[n] == host_ns[n] else "own") for n in NAMESPACES}
    mounts = tuple(SeenMount(m.dst, host_source(m, host_mounts), m.mode, m.fstype)
                   for m in visible(parse_mountinfo("\n".join(sections.get("mountinfo", [])))))
    env = sorted(set(sections.get("env", [])))
    image_env = set(sections.get("image-env", []))
    user = dict(line.split(" ", 1) for line in sections.get("user", []) if " " in line)
    tmp_mount = next((m for m in mounts if m.dst == "/tmp"), None)  # else /tmp is the image's own folder
    tmp = "image" if tmp_mount is None else tmp_mount.source or "runtime"
    return {"namespaces": namespaces, "mounts": mounts, "env": tuple(env),
            "env_from_host": tuple(n for n in env if n in set(host_env) and n not in image_env),
            "uid": int(user["uid"]) if user.get("uid", "").isdigit() else None,
            "gid": int(user["gid"]) if user.get("gid", "").isdigit() else None,
            "home": user.get("home", ""), "cwd": user.get("cwd", ""), "tmp": tmp}


def probe(runtime_binary: str, image: str, args: Sequence[str], workdir: str,
          environ: Mapping[str, str] | None = None, timeout: float = 300) -> Attestation:
    """Start `image` once with a job's flags, as Snakemake starts the job, and attest what it sees.

    runtime_binary: the program Snakemake runs (`apptainer`, found on environ's PATH, or a path); args: the
    job's flags after `--home WORKDIR`; environ: the job's environment (default: this process's)."""
    environ = dict(os.environ if environ is None else environ)
    binary = shutil.which(runtime_binary, path=environ.get("PATH")) or runtime_binary
    command = (binary, "exec", "--home", workdir, *args, image, SHELL, "-c")
    script = _is_script(binary)
    host_ns, host_mounts = host_namespaces(), _host_mounts()
    try:
        done = subprocess.run([*command, PROBE], capture_output=True, text=True, timeout=timeout, cwd=workdir,
                              env={**environ, CANARY: "1"}, stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.TimeoutExpired) as err:
        return Attestation(command, script, failure=f"{runtime_binary}: {err}", fault="runtime")
    warnings = tuple(line.strip() for line in done.stderr.splitlines() if "WARNING" in line and WEAKENED.search(line))
    if done.returncode != 0:
        failure, fault = _failure(done.returncode, done.stderr)
        return Attestation(command, script, warnings=warnings, failure=failure, fault=fault)
    sections = _sections(done.stdout)
    # bash ran; without readlink or env inside, the probe would see no namespace or no variable at all
    missing = [tool for tool, seen in (("readlink", [line for line in sections.get("ns", []) if ":[" in line]),
                                       ("env", sections.get("env"))) if not seen]
    if missing or "end" not in sections:
        what = " and ".join(missing) or "what the probe needs"
        return Attestation(command, script, warnings=warnings, fault="image",
                           failure=f"the image {image} lacks {what}, so the probe cannot see what its jobs see")
    seen = observe(done.stdout, host_ns, host_mounts, [*environ, CANARY])
    return Attestation(command, script, warnings=warnings, **seen)


def cached_probe(folder: str, runtime_binary: str, image: str, args: Sequence[str], workdir: str,
                 environ: Mapping[str, str] | None = None) -> Attestation:
    """probe() once per host and command line for all Snakemake processes of a run (a cluster job's process
    on a node is one of many): kept in `folder` (e.g. the run's under .snakemake/singcontain, which contained
    jobs cannot write) as HOST-SHA256.json. A failed probe is not kept: each job tells its own failure."""
    key = hashlib.sha256(json.dumps([runtime_binary, image, list(args), workdir]).encode()).hexdigest()
    path = os.path.join(folder, f"{re.sub(r'[^A-Za-z0-9._-]', '_', socket.gethostname())}-{key}.json")
    try:
        with open(path) as f:
            return Attestation.from_json(json.load(f))
    except (OSError, ValueError, TypeError):
        pass  # not probed yet on this host (or cut short): probe
    attestation = probe(runtime_binary, image, args, workdir, environ)
    if not attestation.failure:
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}"  # rules probed side by side may share a command line
        try:
            os.makedirs(folder, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump(attestation.to_json(), f)
            os.replace(tmp, path)  # whole or not at all, for the other processes reading it
        except OSError:
            pass  # a read-only or full workdir: the attestation is still right, only not kept for others
    return attestation


# --- the plan's side -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedMount:
    src: str  # host path as the plan names it
    dst: str
    mode: str
    real: str = ""  # where src really leads on the host (Apptainer follows symlinks), when it differs


@dataclass(frozen=True)
class Expectation:
    """What a job's container should see, from plain data (see expectation() for a plan's)."""

    rule: str
    workdir: str
    mounts: tuple[PlannedMount, ...]  # every mount the plan makes, the workdir (--home) included
    namespaces: tuple[str, ...] = ()  # asked for: pid ipc net uts user
    contained: bool = False  # --contain/--containall: the runtime's own /tmp, /var/tmp and /dev
    cleanenv: bool = False
    env: tuple[str, ...] = ()  # host variables allowed into a cleaned environment
    job: str | None = None


def expectation(plan: JobPlan) -> Expectation:
    """What a job's plan expects its container to show; probe it with that plan's own flags
    (argv.apptainer_args), which bind the workdir again in the rule's mode after Snakemake's --home."""
    rule, settings = plan.rule, plan.rule.settings
    mounts = []
    for m in plan.mounts.values():
        src = posixpath.join(rule.workdir, m.src)
        real = os.path.realpath(src)  # read on the host that probes: Apptainer follows the same links
        mounts.append(PlannedMount(src, m.dst, m.mode, real if real != src else ""))
    return Expectation(rule.rule, rule.workdir, tuple(mounts), settings.effective_namespaces,
                       settings.containment != "none", settings.effective_cleanenv, (*settings.env, *JOB_VARIABLES),
                       plan.job.label)


# --- comparing -------------------------------------------------------------------------------------------

def _shows(planned: PlannedMount, dst: str, source: str) -> bool:
    """Whether the host `source` seen at container `dst` is what `planned` puts there."""
    rest = posixpath.relpath(dst, planned.dst)
    return any(source == (posixpath.normpath(posixpath.join(src, rest)) if rest != "." else src)
               for src in (planned.src, planned.real) if src)


def _planned_for(expected: Expectation, mount: SeenMount) -> PlannedMount | None:
    covering = [p for p in expected.mounts if under(mount.dst, p.dst) and _shows(p, mount.dst, mount.source)]
    return max(covering, key=lambda p: len(p.dst)) if covering else None


def _runtime_own(mount: SeenMount, expected: Expectation) -> bool:
    if mount.source is None or mount.dst == "/" or mount.dst in RUNTIME_FILES:
        return True
    if any(under(mount.dst, tree) for tree in RUNTIME_TREES):
        return True
    # without --contain Apptainer shows the host's /tmp and /var/tmp (when `mount tmp` allows)
    return not expected.contained and mount.dst in ("/tmp", "/var/tmp") and mount.source == mount.dst


def _conf_binds(runtime: RuntimeInfo | None) -> list[tuple[str, str]]:
    """(source, destination) of the configuration's `bind path` entries."""
    pairs = []
    for entry in (runtime.conf.get("bind path", ()) if runtime else ()):
        src, _, dst = entry.partition(":")
        pairs.append((src.strip(), (dst.split(":")[0] or src).strip()))
    return pairs


def _binary(attestation: Attestation) -> str:
    return attestation.command[0] if attestation.command else "the runtime"


def _who_mounts(mount: SeenMount, attestation: Attestation, runtime: RuntimeInfo | None) -> tuple[str, str]:
    """(why, fix) for a host folder nothing asked for: the configuration's bind path, a wrapper, or unknown."""
    for src, dst in _conf_binds(runtime):
        if dst == mount.dst or under(mount.source or "", src):
            return (f"the runtime's configuration {runtime.conf_file} binds it (`bind path = {src}`)",
                    f"ask the site admin why every container gets {src} (`bind path` in {runtime.conf_file}); if "
                    "this rule may see it, add it to the rule's binds (read-only)")
    binary = _binary(attestation)
    if attestation.runtime_script:
        return (f"`{binary}` is a script, not the runtime itself: a site wrapper that adds the bind",
                f"ask the site admin why the wrapper `{binary}` binds {mount.source} into every container, or to "
                "leave it out for this workflow; if this rule may see it, add it to the rule's binds (read-only)")
    return ("neither the plan nor the runtime's configuration asks for it (an APPTAINER_BIND variable, a wrapper "
            "or a configuration the checks do not know)",
            "ask the site admin what binds it into every container; if this rule may see it, add it to the "
            "rule's binds (read-only)")


def _why_shared(ns: str, attestation: Attestation, runtime: RuntimeInfo | None) -> tuple[str, str]:
    key = f"allow {ns} ns"
    if runtime and not runtime.allows(key):
        return (f"the runtime's configuration {runtime.conf_file} says `{key} = no`",
                f"ask the site admin to set `{key} = yes` in {runtime.conf_file}, or run this rule where it is allowed")
    told, binary = "; ".join(attestation.warnings), _binary(attestation)
    if attestation.runtime_script:
        return (f"`{binary}` is a script, not the runtime itself: a site wrapper may drop the flag" +
                (f" ({told})" if told else ""),
                f"ask the site admin whether the wrapper `{binary}` or the runtime's configuration drops it")
    return (f"the runtime did not make it{f' ({told})' if told else ''}",
            f"ask the site admin which setting of `{binary}` keeps the {ns} namespace from being made")


def failure_told(attestation: Attestation, image: str) -> tuple[str, str] | None:
    """Message and fix for a start that failed (SC207 before the run, SC606 at a job's start), blaming what is at
    fault: the image (`image`, as the workflow names it), or the site's runtime or the rule's flags; None where
    the probe ran."""
    if attestation.fault == "shell":
        return (f"the image {image} has no `{SHELL}`, which Snakemake starts every job with (`{SHELL} -c '…'`): "
                f"{attestation.failure}", f"add {SHELL} to the image (in its build: e.g. `apt-get install {SHELL}`, "
                f"`apk add {SHELL}`), or point container: at an image that has it")
    if attestation.fault == "image":
        return (attestation.failure,
                f"use an image that has `{SHELL}`, readlink and env (a static bash and busybox will do)")
    if attestation.failure:
        return (f"starting the image with this rule's flags failed: {attestation.failure}",
                f"run `{attestation.told_command}` to see the runtime's message; ask the site admin, or change the "
                "rule's policy")
    return None


def compare(attestation: Attestation, expected: Expectation, runtime: RuntimeInfo | None = None) -> list[Finding]:
    """Weaker than planned: errors; stricter than planned: notes. `runtime` (of the host the probe ran on)
    only says who to ask."""
    rule, job = expected.rule, expected.job

    def finding(code, severity, message, fix):
        return Finding(code, severity, rule, message, fix, job=job)

    told = failure_told(attestation, attestation.image)
    if told:
        return [finding("SC606", ERROR, *told)]
    findings = []
    for mount in attestation.mounts:
        if _runtime_own(mount, expected):
            continue
        planned = _planned_for(expected, mount)
        if planned is None:
            why, fix = _who_mounts(mount, attestation, runtime)
            findings.append(finding("SC601", ERROR, f"the job's container shows the host's {mount.source} at "
                                    f"{mount.dst} ({mount.mode}), which the plan does not bind: {why}", fix))
        elif mount.mode == "rw" and planned.mode == "ro":
            findings.append(finding("SC602", ERROR, f"the job's container shows {mount.source} at {mount.dst} "
                                    "writable; the plan binds it read-only",
                                    "ask the site admin whether a wrapper or the runtime's configuration binds it "
                                    "again writable; until then do not run this rule here"))
    for planned in expected.mounts:
        seen = attestation.mount_at(planned.dst)
        shown = seen and seen.source and posixpath.normpath(
            posixpath.join(seen.source, posixpath.relpath(planned.dst, seen.dst)))
        if not shown or not _shows(planned, planned.dst, shown):
            findings.append(finding("SC605", NOTE, f"the plan binds {planned.src} at {planned.dst}, which the job's "
                                    "container does not show", "the job fails if it needs it: ask the site admin "
                                    "whether user binds are allowed (`user bind control`)"))
        elif seen.mode == "ro" and planned.mode == "rw":
            findings.append(finding("SC605", NOTE, f"the plan binds {planned.src} at {planned.dst} writable; the "
                                    "job's container shows it read-only", "the job fails if it writes there: ask the "
                                    "site admin what makes it read-only"))
    for ns in ("pid", "ipc", "net", "uts", "user"):
        state = attestation.namespaces.get(ns)
        if ns in expected.namespaces and state == "host":
            why, fix = _why_shared(ns, attestation, runtime)
            findings.append(finding("SC603", ERROR, f"the plan asks for a {ns} namespace of the job's own, but its "
                                    f"container shares the host's: {why}", fix))
        elif ns not in expected.namespaces and state == "own" and ns != "user":  # non-setuid: always its own
            findings.append(finding("SC605", NOTE, f"the job's container has a {ns} namespace of its own, which the "
                                    "plan does not ask for", "nothing to do; ask the site admin if a job needs the "
                                    "host's"))
    if expected.cleanenv:
        allowed = set(expected.env) | RUNTIME_VARIABLES
        leaked = [n for n in attestation.env_from_host if n not in allowed and not n.startswith(RUNTIME_PREFIXES)]
        if leaked:
            shown = ", ".join(n for n in leaked if n != CANARY) or "none but the probe's own test variable"
            findings.append(finding("SC604", ERROR, f"the plan cleans the job's environment, but host variables "
                                    f"reach its container: {shown}",
                                    f"ask the site admin whether a wrapper `{_binary(attestation)}` or the runtime "
                                    "drops --cleanenv/--containall; a variable the job needs goes into the rule's env"))
    elif CANARY not in attestation.env:
        findings.append(finding("SC605", NOTE, "the job's container has a cleaned environment, which the plan does "
                                "not ask for", "list the variables the job needs in the rule's env, or ask the site "
                                "admin what cleans it"))
    return findings


# --- telling two attestations apart ----------------------------------------------------------------------

def _shown(mount: SeenMount) -> str:
    return f"{mount.source or 'its own ' + mount.fstype} ({mount.mode})"


def changes(before: Attestation, after: Attestation) -> list[str]:
    """What the container saw differently, in words (for `singcontain diff` of two records' attestations)."""
    told = []
    if before.failure != after.failure:
        told.append(f"probe: {before.failure or 'looked'} -> {after.failure or 'looked'}")
    told += [f"{ns} namespace: {before.namespaces.get(ns)} -> {after.namespaces.get(ns)}"
             for ns in NAMESPACES if before.namespaces.get(ns) != after.namespaces.get(ns)]
    a, b = {m.dst: m for m in before.mounts}, {m.dst: m for m in after.mounts}
    for dst in sorted(a.keys() | b.keys()):
        if a.get(dst) == b.get(dst):
            continue
        if dst not in a:
            told.append(f"now shows {_shown(b[dst])} at {dst}")
        elif dst not in b:
            told.append(f"no longer shows {_shown(a[dst])} at {dst}")
        else:
            told.append(f"{dst}: {_shown(a[dst])} -> {_shown(b[dst])}")
    added, removed = sorted(set(after.env) - set(before.env)), sorted(set(before.env) - set(after.env))
    told += [f"variables now set: {', '.join(added)}"] if added else []
    told += [f"variables no longer set: {', '.join(removed)}"] if removed else []
    told += [f"{what}: {x} -> {y}" for what, x, y in (("/tmp", before.tmp, after.tmp), ("uid", before.uid, after.uid),
             ("gid", before.gid, after.gid), ("home", before.home, after.home)) if x != y]
    return told


def kept(workdir: str) -> dict[str, Attestation]:
    """Every attestation the runs in `workdir` kept (cached_probe), by digest: what `singcontain diff` tells
    in words when two records' digests differ."""
    found = {}
    for path in glob.glob(os.path.join(workdir, ".snakemake", "singcontain", "attestations", "*", "*.json")):
        try:
            with open(path) as f:
                attestation = Attestation.from_json(json.load(f))
        except (OSError, ValueError, TypeError):
            continue  # cut short or foreign: the digest alone is told
        found[attestation.digest] = attestation
    return found


def rule_flags(checker, spec: JobSpec, environ: Mapping[str, str]) -> tuple[JobPlan, list[str]]:
    """A job of `spec`'s rule as the probe starts it: its plan without the job's own files (the rule's flags and
    Snakemake's binds), and that plan's flags. Rules with the same settings share the flags, and so one start."""
    plan = checker.job_plan(replace(spec, inputs=(), outputs=(), directories=frozenset(), protected=frozenset(),
                                    benchmarks=(), shadow=None, scratch=None))
    return plan, apptainer_args(plan, checker.runtime, environ)


def observed(runtime: RuntimeInfo, image: str, args: Sequence[str], folder: str | None, workdir: str) -> Attestation:
    """probe(), kept in `folder` for the run's other processes (cached_probe), or afresh where it is None (a dry
    run keeps nothing)."""
    return (cached_probe(folder, runtime.binary, image, args, workdir) if folder
            else probe(runtime.binary, image, args, workdir))


_attested: dict[tuple, tuple[Attestation, list[Finding]]] = {}  # this process's: a run's probes, compared


def attest_rule(checker, spec: JobSpec, folder: str | None, workdir: str,
                environ: Mapping[str, str]) -> tuple[Attestation, list[Finding]]:
    """What the container of a job of `spec`'s rule really shows on this host, with the rule's own flags and
    Snakemake's binds (not the job's files), and its comparison with that plan: observed() once per host,
    command line and run for every process of the run, compared once per process and rule."""
    key = (folder, spec.rule, spec.image, spec.support, workdir)
    if folder and key in _attested:
        return _attested[key]
    plan, args = rule_flags(checker, spec, environ)
    found = observed(checker.runtime, spec.image, args, folder, workdir)
    result = found, compare(found, expectation(plan), checker.runtime)
    if folder and not found.failure:
        _attested[key] = result
    return result
