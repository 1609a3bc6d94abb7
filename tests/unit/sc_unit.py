"""Helpers shared by the unit tests: hand-made runtimes, policies written to a temp folder, checkers, jobs.

Pure: no Snakemake run and no Apptainer. Bind sources are folders made under pytest's tmp_path.
"""

import csv
import posixpath
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

from snakemake_singcontain.checker import Checker
from snakemake_singcontain.findings import Finding
from snakemake_singcontain.plan import JobSpec
from snakemake_singcontain.plugins import plugin_manager
from snakemake_singcontain.policy import load_policy
from snakemake_singcontain.runtime import RuntimeInfo

IMAGE = "/images/test.sif"  # never opened by the checks
CONF = "/etc/apptainer/apptainer.conf"


def runtime(flavour: str = "apptainer", version: tuple = (1, 4, 5), **kw) -> RuntimeInfo:
    kw.setdefault("conf_file", CONF)
    return RuntimeInfo(flavour, tuple(version), f"/usr/bin/{flavour}", **kw)


def conf(**pairs) -> dict:
    """conf(allow_pid_ns="no") -> {"allow pid ns": ("no",)}, as parse_conf returns it."""
    return {key.replace("_", " "): (value,) for key, value in pairs.items()}


APPTAINER = runtime()


class Site:
    """A temp folder holding a workdir, bind sources and policy files."""

    def __init__(self, root: Path):
        self.root = root
        self.workdir = str(root / "work")
        Path(self.workdir).mkdir(exist_ok=True)
        self.env = {"ROOT": str(root), "USER": "alice"}

    def dir(self, *parts: str) -> str:
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def path(self, *parts: str) -> str:
        return str(self.root.joinpath(*parts))

    def write(self, text: str, name: str = "containment.yaml") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def policy(self, text: str, env: Mapping[str, str] | None = None, name: str = "containment.yaml"):
        return load_policy(self.write(text, name), env=self.env if env is None else env)

    def checker(self, text: str, rules: Iterable[str] | Mapping[str, str] = ("a",), runtime=APPTAINER,
                env: Mapping[str, str] | None = None, plugins=(), environ: Mapping[str, str] | None = None,
                name: str = "containment.yaml", host_reads: tuple[str, ...] = (), source: str | None = None) -> Checker:
        kinds = dict(rules) if isinstance(rules, Mapping) else {rule: "shell" for rule in rules}
        return Checker(self.policy(text, env, name), runtime, plugin_manager(plugins), workdir=self.workdir,
                       rule_kinds=kinds, environ={} if environ is None else environ, host_reads=host_reads,
                       source=source)


def job(rule: str = "a", inputs=(), outputs=(), image: str | None = IMAGE, **kw) -> JobSpec:
    return JobSpec(rule, tuple(inputs), tuple(outputs), image=image, **kw)


def codes(findings: Iterable[Finding]) -> list[str]:
    return sorted(f.code for f in findings)


def expect(findings: Iterable[Finding], code: str, severity: str, rule: str, *names: str) -> Finding:
    """The one finding with `code`, checked as a user sees it: severity, rule, the offending path/flag in the
    message, a fix."""
    hits = [f for f in findings if f.code == code]
    assert len(hits) == 1, f"expected one {code}, got {hits or list(findings)}"
    f = hits[0]
    assert (f.severity, f.rule) == (severity, rule), f
    for name in names:
        assert name in f.message, f"{name!r} not named in {f.message!r}"
    assert f.fix.strip(), f
    return f


def mounted(argv, workdir):
    """The mount table Apptainer builds from Snakemake's `--home WORKDIR` and these flags, in order.

    Measured with Apptainer 1.4.5: --home is mounted first, then every --bind/--mount in argv order; a later
    mount at or above a path hides what an earlier one showed there."""
    table = [(workdir, workdir, "rw")]
    words = iter(argv)
    for word in words:
        if word == "--bind":
            src, dst, mode = next(words).split(":")
            table.append((src, dst, mode))
        elif word == "--mount":
            fields = dict((f.split("=", 1) + [""])[:2] for f in next(csv.reader([next(words)])))
            table.append((fields["src"], fields["dst"], "ro" if "ro" in fields else "rw"))
    return table


def seen(table, path):
    """(host path, mode) the container shows at `path`, or None."""
    hit = None
    for src, dst, mode in table:
        if path == dst or path.startswith(dst.rstrip("/") + "/"):
            hit = (posixpath.normpath(src + path[len(dst):]), mode)
    return hit
