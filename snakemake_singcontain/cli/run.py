"""Snakemake's own dry run with the audit switched on (SINGCONTAIN_REPORT), and its output trimmed to the error."""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import fields

from ..findings import Finding, has_errors

PROG = "singcontain"

# The quietest spelling both Snakemake 8.30 and 9.27 accept: 9 ignores `--quiet all` in dry runs, 8 then
# prints no error either. A store_true option always follows it, so it never swallows a target.
QUIET = ["--quiet", "host", "progress", "rules"]


PROGRESS = "building the DAG with Snakemake…"


class CliError(Exception):
    """One message for the user, no traceback; `code` is the exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


class SnakemakeRun:
    def __init__(self, returncode: int, output: str, audit: dict | None):
        self.returncode, self.output, self.audit = returncode, output, audit

    def require_audit(self) -> dict:
        if self.audit is not None:
            return self.audit
        if self.returncode == 0:
            raise CliError("Snakemake built the DAG, but the containment check did not run: name the policy with\n"
                           "    --policy containment.yaml\nor load it in the Snakefile:\n"
                           "    from snakemake_singcontain import contain\n    contain(workflow, \"containment.yaml\")")
        raise CliError(trim_snakemake_output(self.output))

    @property
    def failed_after_check(self) -> bool:
        """Snakemake failed although the check found no error (the check's own refusal exits 1 by design)."""
        return self.returncode != 0 and self.audit is not None and not has_errors(findings_of(self.audit))


def snakemake_argv(extra: list[str], user_args: list[str]) -> list[str]:
    # Exactly the user's `snakemake -n` (no --sdm added: without it their run would not be contained either).
    # Our options first, each option-valued list closed by a store_true flag, then the user's as given.
    return [sys.executable, "-m", "snakemake", *QUIET, "--dry-run", *extra, *user_args]


def run_snakemake(extra: list[str], user_args: list[str], *, jobs: str | None = None, policy: str | None = None,
                  progress: str = PROGRESS) -> SnakemakeRun:
    """`jobs`: "each" or "grouped", the audit's rows of jobs (report.build). `policy`: a policy file for a
    workflow whose Snakefile does not call contain() (SINGCONTAIN_POLICY)."""
    with tempfile.TemporaryDirectory(prefix="singcontain-") as tmp:
        path = os.path.join(tmp, "audit.json")
        env = dict(os.environ, SINGCONTAIN_REPORT=path)
        if policy:
            env["SINGCONTAIN_POLICY"] = os.path.abspath(policy)
        env.pop("SINGCONTAIN_REPORT_JOBS", None)
        if jobs:
            env["SINGCONTAIN_REPORT_JOBS"] = jobs
        if progress:
            print(f"{PROG}: {progress}", file=sys.stderr, flush=True)
        try:
            done = subprocess.run(snakemake_argv(extra, user_args), env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        except OSError as err:
            raise CliError(f"cannot run Snakemake with {sys.executable}: {err.strerror}") from None
        try:
            with open(path) as f:
                audit = json.load(f)
        except (OSError, ValueError):
            audit = None
    return SnakemakeRun(done.returncode, done.stdout, audit)

# Lines of Snakemake's output that are never the error: progress, the banner (9.x), bare exception headers.
NOISE = re.compile(r"^(Assuming unrestricted shared filesystem usage|Building DAG of jobs|Using shell: |"
                   r"Provided cores|Rules claiming more threads|host: |Select jobs to execute|Complete log: |"
                   r"Job stats:|ContainmentRefused:$|WorkflowError:$|None$|SNAKEMAKE$|=+$|"
                   r"  (Date|Workflow ID|Platform|Host|User|Snakemake version|Python version|Command|Snakefile|"
                   r"Base directory|Run directory|Working directory|Config file\(s\)|Config MD5): )")

EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Refused|Interrupt)\b")


def _internal(file: str) -> bool:
    return file.startswith("<") or "/site-packages/" in file or "/lib/python3" in file


def _trim_traceback(output: str) -> str:
    chunks = re.split(r"\n\s*During handling of the above exception, another exception occurred:\s*\n", output)
    told = []
    for chunk in chunks:
        lines = chunk.splitlines()
        frames = [i for i, line in enumerate(lines) if re.match(r'^\s*File "', line)]
        tail = lines[frames[-1] + 1:] if frames else lines
        start = next((i for i, line in enumerate(tail) if EXCEPTION.match(line)), None)
        message = [line for line in tail[start:] if line.strip()] if start is not None else []
        where = []
        for i in frames:
            m = re.match(r'^\s*File "([^"]+)", line (\d+)', lines[i])
            if m and not _internal(m.group(1)):
                where.append(f"{m.group(1)}:{m.group(2)}")
        told.append((where, message))
    located = [(w, m) for w, m in told if w and m]
    if located:
        return "\n".join(line for w, m in located for line in [f"in {', '.join(w)}:", *m])
    return "\n".join(told[-1][1])


def trim_snakemake_output(output: str) -> str:
    """Snakemake's error, without its banner, progress lines, usage text or frames inside Python packages."""
    lines = output.splitlines()
    if any(line.startswith("usage: ") for line in lines):
        errors = [re.sub(r"^\S+: error: ", "snakemake: error: ", line)
                  for line in lines if re.match(r"^\S+: error: ", line)]
        if errors:
            return "\n".join(errors)
    if "Traceback (most recent call last):" in output:
        text = _trim_traceback(output)
    else:
        text = "\n".join(line.removeprefix("snakemake-singcontain: ")
                         for line in lines if line.strip() and not NOISE.match(line))
    told = text.strip() or output.strip() or "(no message; run the same arguments with snakemake -n)"
    return "Snakemake stopped before the containment check:\n" + told


def findings_of(audit: dict) -> list[Finding]:
    names = {f.name for f in fields(Finding)}
    return [Finding(**{k: v for k, v in d.items() if k in names}) for d in audit.get("findings", [])]


def exit_status(run: SnakemakeRun) -> int:
    return 1 if has_errors(findings_of(run.audit)) else 0


def finish(run: SnakemakeRun, status: int) -> int:
    if run.failed_after_check:
        told = trim_snakemake_output(run.output)
        print(told.replace("before the containment check", "after the containment check"), file=sys.stderr)
        return 2
    return status


def user_option(user_args: list[str], *names: str) -> str | None:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument(*names, dest="value")
    try:
        known, _ = parser.parse_known_args(user_args)
    except SystemExit:
        return None
    return known.value
