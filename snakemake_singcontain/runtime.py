"""The container runtime as facts (RuntimeInfo), read once per run.

This is an edge: it runs `apptainer --version`/`buildcfg`, reads apptainer.conf and /proc. Everything that
decides anything works on the RuntimeInfo it returns.
"""

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# Warnings with which a runtime drops part of a request but still runs the job (measured, Apptainer 1.4.5):
# "Not virtualizing pid namespace by configuration", "Ignoring ... bind mount: user bind control disabled".
WEAKENED = re.compile(r"not virtualizing|ignoring|disabled by|not allowed|disallowed|will not be|skipping", re.I)


@dataclass(frozen=True)
class RuntimeInfo:
    flavour: str  # apptainer | singularityce | singularity (legacy)
    version: tuple[int, ...]
    binary: str
    conf: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # apptainer.conf, key -> values
    conf_file: str | None = None
    setuid: bool = False
    userns: bool = True  # unprivileged user namespaces available
    conf_error: str = ""  # why apptainer.conf could not be read: then nothing it grants can be verified

    def allows(self, key: str, default: bool = True) -> bool:
        values = self.conf.get(key)
        return default if not values else values[-1].lower() == "yes"

    @property
    def supports_mount(self) -> bool:
        """--mount (which can express ',' and ':' in paths): Apptainer >= 1.1, SingularityCE >= 3.9."""
        minimum = {"apptainer": (1, 1), "singularityce": (3, 9)}.get(self.flavour)
        return minimum is not None and self.version >= minimum

    @property
    def default_mounts(self) -> tuple[str, ...]:
        """Host folders shown without --contain (besides the --home that Snakemake sets)."""
        return ("/tmp", "/var/tmp") if self.allows("mount tmp") else ()


def parse_version(text: str) -> tuple[str, tuple[int, ...]]:
    """'apptainer version 1.4.5-2' -> ('apptainer', (1, 4, 5)); likewise singularity-ce and singularity."""
    match = re.search(r"(apptainer|singularity-ce|singularity)\s+version\s+v?(\d+(?:\.\d+)*)", text.strip(), re.I)
    if not match:
        return "unknown", ()
    flavour = match.group(1).lower().replace("-", "")
    return flavour, tuple(int(n) for n in match.group(2).split("."))


def parse_conf(text: str) -> dict[str, tuple[str, ...]]:
    conf: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        conf.setdefault(key.lower(), []).append(value)
    return {k: tuple(v) for k, v in conf.items()}


def detect(preference: str = "auto", environ: Mapping[str, str] | None = None) -> RuntimeInfo | None:
    """Find the runtime on PATH and read its facts; None when there is none."""
    environ = os.environ if environ is None else environ
    names = {"auto": ("apptainer", "singularity"), "apptainer": ("apptainer",), "singularity": ("singularity",)}[preference]
    binary = next((found for name in names if (found := shutil.which(name, path=environ.get("PATH")))), None)
    if binary is None:
        return None
    flavour, version = parse_version(_run([binary, "--version"]).stdout)
    conf_file, setuid = _locate_conf(binary, flavour)
    conf, conf_error = {}, "" if conf_file else "the runtime did not say which configuration file it reads"
    if conf_file:
        try:
            with open(conf_file) as f:
                conf = parse_conf(f.read())
        except OSError as err:
            conf_error = err.strerror or str(err)
    return RuntimeInfo(flavour, version, binary, conf, conf_file, setuid, _userns_available(), conf_error)


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return subprocess.CompletedProcess(argv, 1, "", "")


def _locate_conf(binary: str, flavour: str) -> tuple[str | None, bool]:
    # A relocated install reads PREFIX/etc/…/apptainer.conf while `buildcfg` still prints the compiled-in
    # SYSCONFDIR (measured, Apptainer 1.4.5), so ask the runtime which file it parses (-d logs it).
    done = _run([binary, "-d", "buildcfg"])
    cfg = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    name = "apptainer" if flavour == "apptainer" else "singularity"
    parsed = re.search(r"Parsing configuration file (\S+)", done.stderr)
    sysconf, libexec = cfg.get("SYSCONFDIR"), cfg.get("LIBEXECDIR")
    conf_file = parsed.group(1) if parsed else os.path.join(sysconf, name, f"{name}.conf") if sysconf else None
    starter = os.path.join(libexec, name, "bin", "starter-suid") if libexec else ""
    setuid = bool(starter) and os.path.exists(starter) and bool(os.stat(starter).st_mode & 0o4000)
    return conf_file, setuid


def _userns_available() -> bool:
    for path, minimum in (("/proc/sys/user/max_user_namespaces", 1), ("/proc/sys/kernel/unprivileged_userns_clone", 1)):
        try:
            with open(path) as f:
                if int(f.read().strip()) < minimum:
                    return False
        except (OSError, ValueError):
            continue
    return True
