"""`singcontain`: check a workflow's containment, explain one job, audit every job, start a policy.

The command never imports Snakemake. It runs Snakemake's own command line as a dry run, so Snakefile,
config, profile, targets and every other argument mean exactly what they mean to `snakemake -n`; with
SINGCONTAIN_REPORT set, the bridge's preflight (the same check a real run makes) writes its audit there
(report.py) before it refuses a run with errors. No audit means Snakemake stopped before the check
(a Snakefile or policy syntax error, a usage error): its own message is shown, trimmed, with exit 2.

Exit codes: 0 clean (warnings allowed), 1 a finding is an error, 2 usage, Snakefile or policy syntax error.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import fields
from importlib import metadata
from pathlib import Path

from . import __version__
from .findings import ERROR, WARNING, Finding, group, has_errors, render

PROG = "singcontain"
# The quietest spelling both Snakemake 8.30 and 9.27 accept: 9 ignores `--quiet all` in dry runs, 8 then
# prints no error either. A store_true option always follows it, so it never swallows a target.
QUIET = ["--quiet", "host", "progress", "rules"]
SDM_OPTIONS = ("--sdm", "--software-deployment-method", "--deployment-method", "--deployment", "--use-apptainer",
               "--use-singularity")
PROGRESS = "building the DAG with Snakemake…"
EPILOG = ("Every other argument goes to Snakemake unchanged (-s SNAKEFILE, --configfile, --config, --profile, "
          "-d, targets …), as for `snakemake -n`; put them after `--` if one looks like an option of this command.")


class CliError(Exception):
    """One message for the user, no traceback; `code` is the exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


# --- running Snakemake -------------------------------------------------------------------------------------


class SnakemakeRun:
    def __init__(self, returncode: int, output: str, audit: dict | None):
        self.returncode, self.output, self.audit = returncode, output, audit

    def require_audit(self) -> dict:
        if self.audit is not None:
            return self.audit
        if self.returncode == 0:
            raise CliError("Snakemake built the DAG, but the containment check did not run: the Snakefile must call\n"
                           "    from snakemake_singcontain import contain\n    contain(workflow, \"containment.yaml\")")
        raise CliError(trim_snakemake_output(self.output))

    @property
    def failed_after_check(self) -> bool:
        """Snakemake failed although the check found no error (the check's own refusal exits 1 by design)."""
        return self.returncode != 0 and self.audit is not None and not has_errors(findings_of(self.audit))


def snakemake_argv(extra: list[str], user_args: list[str]) -> list[str]:
    sdm = [] if any(a.split("=", 1)[0] in SDM_OPTIONS for a in user_args) else ["--sdm", "apptainer"]
    # Our options first, each option-valued list closed by a store_true flag, then the user's as given.
    return [sys.executable, "-m", "snakemake", *sdm, *QUIET, "--dry-run", *extra, *user_args]


def run_snakemake(extra: list[str], user_args: list[str], *, jobs: bool = False,
                  progress: str = PROGRESS) -> SnakemakeRun:
    with tempfile.TemporaryDirectory(prefix="singcontain-") as tmp:
        path = os.path.join(tmp, "audit.json")
        env = dict(os.environ, SINGCONTAIN_REPORT=path)
        env.pop("SINGCONTAIN_REPORT_JOBS", None)
        if jobs:
            env["SINGCONTAIN_REPORT_JOBS"] = "1"
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


# --- the audit as the user sees it ------------------------------------------------------------------------


def findings_of(audit: dict) -> list[Finding]:
    names = {f.name for f in fields(Finding)}
    return [Finding(**{k: v for k, v in d.items() if k in names}) for d in audit.get("findings", [])]


def short_origin(origin: str | None, cwd: str) -> str:
    """"rules['plot'] (/work/containment.yaml:7)" -> "rules['plot'] (containment.yaml:7)"; none set -> built-in."""
    if not origin or origin.startswith("built-in"):
        return "built-in"
    return re.sub(r"(?<=\()" + re.escape(cwd.rstrip("/") + "/"), "", origin)


def table(header: list[str], rows: list[list[str]], indent: str = "") -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(indent + "  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def _namespaces(rule: dict) -> str:
    return ",".join(rule.get("namespaces") or []) or "-"


def _count_summary(audit: dict) -> str:
    groups = group(findings_of(audit))
    errors = sum(g.first.severity == ERROR for g in groups)
    warnings = sum(g.first.severity == WARNING for g in groups)
    notes = len(groups) - errors - warnings
    jobs = sum(r.get("jobs", 0) for r in audit["rules"].values())
    counted = [_plural(n, word) for n, word in ((errors, "error"), (warnings, "warning"), (notes, "note")) if n]
    return (f"{_plural(jobs, 'job')} of {_plural(len(audit['rules']), 'rule')} checked: "
            f"{', '.join(counted) if counted else 'no findings'}.")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def render_findings_by_rule(findings: list[Finding]) -> str:
    by_rule: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_rule[f.rule].append(f)
    order = sorted(by_rule, key=lambda r: (not has_errors(by_rule[r]), r))
    return "\n\n".join(render(by_rule[rule]) for rule in order)


def render_check(audit: dict) -> str:
    findings = findings_of(audit)
    rules = audit["rules"]
    parts = []
    if findings:
        parts.append(render_findings_by_rule(findings))
    if rules:
        header = ["rule", "containment", "namespaces", "cleanenv", "binds ro", "binds rw", "image", "jobs"]
        rows = [[name, r["containment"], _namespaces(r), "yes" if r.get("cleanenv") else "no",
                 str(len(r.get("binds_ro", []))), str(len(r.get("binds_rw", []))), r.get("image") or "-",
                 str(r["jobs"])] for name, r in sorted(rules.items())]
        parts.append(table(header, rows))
        parts.append(_count_summary(audit))
    else:
        parts.append("Nothing to check: Snakemake has no job to run for these targets (their outputs are up to date).\n"
                     f"`{PROG} report` checks every job (--forceall); so does adding --forceall here.")
    return "\n\n".join(parts)


def exit_status(run: SnakemakeRun) -> int:
    return 1 if has_errors(findings_of(run.audit)) else 0


def _finish(run: SnakemakeRun, status: int) -> int:
    if run.failed_after_check:
        told = trim_snakemake_output(run.output)
        print(told.replace("before the containment check", "after the containment check"), file=sys.stderr)
        return 2
    return status


# --- commands ---------------------------------------------------------------------------------------------


def cmd_check(args, user_args: list[str]) -> int:
    run = run_snakemake([], user_args)
    audit = run.require_audit()
    print(json.dumps(audit, indent=2) if args.format == "json" else render_check(audit))
    return _finish(run, exit_status(run))


def _user_option(user_args: list[str], *names: str) -> str | None:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument(*names, dest="value")
    try:
        known, _ = parser.parse_known_args(user_args)
    except SystemExit:
        return None
    return known.value


def _same_path(a: str, b: str, workdir: str) -> bool:
    return os.path.normpath(os.path.join(workdir, a)) == os.path.normpath(os.path.join(workdir, b))


def find_job(target: str, audit: dict, workdir: str) -> dict:
    jobs = audit.get("jobs") or []
    by_output = [j for j in jobs if any(_same_path(o, target, workdir) for o in j["outputs"])]
    by_rule = [j for j in jobs if j["rule"] == target]
    if by_output or by_rule:
        return (by_output or by_rule)[0]
    raise CliError(f"no job that runs in a container makes {target}: its rule runs nothing (a rule with only "
                   "input:, like `all`), or the target is not in the workflow")


def _runtime_binary() -> str:
    """The name Snakemake puts in the command: 8.x writes `singularity`, 9.x the runtime it found."""
    try:
        major = int(metadata.version("snakemake").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        major = 9
    return "singularity" if major < 9 else "apptainer"


SETTING_ORDER = ("containment", "namespaces", "network", "cleanenv", "env", "auto_binds", "writable_tmpfs", "gpu",
                 "args")


def _settings_rows(rule: dict, words: list[str], cwd: str) -> list[list[str]]:
    origins = rule.get("origins", {})
    containall = rule.get("containment") == "containall"
    values = {
        "containment": rule.get("containment"),
        "namespaces": ", ".join(rule.get("namespaces") or []) or "-",
        "cleanenv": "yes" if rule.get("cleanenv") else "no",
        "env": ", ".join(rule.get("env") or []) or "-",
        "auto_binds": ", ".join(f"{k} {v or 'off'}" for k, v in (rule.get("auto_binds") or {}).items()),
        "writable_tmpfs": rule.get("writable_tmpfs", "--writable-tmpfs" in words),
        "gpu": rule.get("gpu", "--nv" in words),
    }
    if "network" in rule:
        values["network"] = rule["network"]
    elif "--network" in words[:-1]:
        values["network"] = words[words.index("--network") + 1]
    if rule.get("args"):
        values["args"] = " ".join(rule["args"])
    rows = []
    for key in SETTING_ORDER:
        if key not in values:
            continue
        value = values[key]
        value = ("yes" if value else "no") if isinstance(value, bool) else str(value)
        origin = short_origin(origins.get(key), cwd)
        if key == "namespaces" and containall:
            origin += "; pid and ipc come with containall"
        if key == "cleanenv" and containall:
            origin += "; implied by containall"
        rows.append([key, value, origin])
    return rows


def render_explain(job: dict, rule: dict, workdir: str, user_args: list[str], cwd: str) -> str:
    args = job.get("apptainer_args") or ""
    words = shlex.split(args) if not args.startswith("(") else []
    parts = [f"job {job['job']} (rule {job['rule']}), image {job.get('image') or '(none: runs on the host)'}"]
    parts.append(table(["setting", "value", "set by"], _settings_rows(rule, words, cwd), "  "))
    binds = [[workdir, workdir, "rw", "Snakemake --home (the working directory)"]]
    binds += [[b["src"], b["dst"], b["mode"], short_origin(b.get("origin"), cwd)] for b in job.get("binds", [])]
    parts.append("binds, in mount order:\n" + table(["host", "container", "mode", "set by"], binds, "  "))
    if job.get("image") and args.startswith("("):  # "(not expressible: …)", also reported as SC206
        parts.append(f"command: none, the binds {args[1:-1]}")
    elif job.get("image"):
        # Snakemake's own: `<runtime> exec --home CWD <singularity_args> IMAGE bash -c '…'`, where the bridge puts
        # the policy's flags, then any --apptainer-args, into singularity_args.
        extra = _user_option(user_args, "--apptainer-args", "--singularity-args")
        words = [_runtime_binary(), "exec", "--home", workdir, *words, *(shlex.split(extra) if extra else []),
                 job["image"], "bash", "-c"]
        parts.append("command, as Snakemake starts the job (the rule's shell command in '…'):\n  "
                     + shlex.join(words) + " '…'")
    return "\n\n".join(parts)


def cmd_explain(args, user_args: list[str]) -> int:
    target = args.target
    if not target:
        raise CliError("name the job: singcontain explain --target FILE, or singcontain explain RULE")
    wildcards = dict(pair.split("=", 1) for pair in args.wildcards if "=" in pair)
    if len(wildcards) != len(args.wildcards) or (wildcards and args.target != args.rule):
        raise CliError("--wildcards goes with RULE and takes K=V pairs: singcontain explain RULE --wildcards k=v")
    # A rule with wildcards cannot be a Snakemake target: find its job among every job of the workflow.
    run = run_snakemake(["--forceall"] if wildcards else ["--force", target], user_args, jobs=True)
    audit = run.require_audit()
    workdir = audit["workdir"]
    if wildcards:
        matching = [j for j in audit.get("jobs") or [] if j["rule"] == target and j["wildcards"] == wildcards]
        if not matching:
            raise CliError(f"no job of rule {target} with wildcards {wildcards} in this workflow's DAG")
        job = matching[0]
    else:
        job = find_job(target, audit, workdir)
    rule = audit["rules"][job["rule"]]
    print(render_explain(job, rule, workdir, user_args, os.getcwd()))
    findings = [f for f in findings_of(audit) if f.rule == job["rule"] and f.job in (None, job["job"])]
    if findings:
        print("\nfindings for this job:\n" + render(findings))
    return _finish(run, 1 if has_errors(findings) else 0)


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_code(text) -> str:
    return f"`{_md(text)}`" if text else "-"


def render_markdown(audit: dict, user_args: list[str]) -> str:
    cwd = os.getcwd()
    rules, jobs = audit["rules"], sorted(audit.get("jobs") or [], key=lambda j: (j["rule"], j["job"]))
    findings = findings_of(audit)
    ran = shlex.join(["snakemake", "-n", "--forceall", *user_args])
    out = ["# Containment audit", "",
           f"Every job of the workflow in `{_md(cwd)}` and the Apptainer flags it runs with, from a dry run "
           f"(`{_md(ran)}`), by {PROG} {__version__}.", "", _count_summary(audit), ""]
    out += ["## Rules", "",
            "| Rule | Containment | Namespaces | Clean env | Env | Binds ro | Binds rw | Auto-binds | Image | Jobs |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in sorted(rules.items()):
        auto = ", ".join(f"{k} {v or 'off'}" for k, v in (r.get("auto_binds") or {}).items())
        out.append("| " + " | ".join([
            _md(name), _md(r["containment"]), _md(", ".join(r.get("namespaces") or []) or "-"),
            "yes" if r.get("cleanenv") else "no", _md(", ".join(r.get("env") or []) or "-"),
            "<br>".join(_md_code(b) for b in r.get("binds_ro", [])) or "-",
            "<br>".join(_md_code(b) for b in r.get("binds_rw", [])) or "-",
            _md(auto), _md_code(r.get("image")), str(r["jobs"])]) + " |")
    out += ["", "## Jobs", "", "| Job | Containment | Namespaces | Binds | Apptainer arguments |",
            "|---|---|---|---|---|"]
    for j in jobs:
        r = rules.get(j["rule"], {})
        binds = "<br>".join(_md_code(f"{b['src']}:{b['dst']}:{b['mode']}")
                            + (" (auto)" if str(b.get("origin", "")).startswith("auto-bind") else "")
                            for b in j.get("binds", [])) or "-"
        cells = [j["job"], r.get("containment", "?"), ", ".join(r.get("namespaces") or []) or "-"]
        out.append("| " + " | ".join([*map(_md, cells), binds, _md_code(j.get("apptainer_args"))]) + " |")
    if findings:
        out += ["", "## Findings", "", "```text", render_findings_by_rule(findings), "```"]
    out += ["", "## Where each setting comes from", ""]
    for name, r in sorted(rules.items()):
        origins = ", ".join(f"{k}: {short_origin(v, cwd)}" for k, v in sorted(r.get("origins", {}).items()))
        out.append(f"- **{_md(name)}**: {_md(origins) or 'built-in'}")
    return "\n".join(out) + "\n"


def cmd_report(args, user_args: list[str]) -> int:
    run = run_snakemake(["--forceall"], user_args, jobs=True)
    audit = run.require_audit()
    text = json.dumps(audit, indent=2) + "\n" if args.format == "json" else render_markdown(audit, user_args)
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as err:
            raise CliError(f"cannot write {args.output}: {err.strerror}") from None
        print(f"{PROG}: wrote {args.output}: {_count_summary(audit)}", file=sys.stderr)
    else:
        print(text, end="")
    return _finish(run, exit_status(run))


# --- init -------------------------------------------------------------------------------------------------

STARTER_HEAD = """\
{schema_line}# Containment policy for snakemake-singcontain, written by `singcontain init`.
# Every rule runs under `defaults`; an entry under `rules:` changes what differs for one rule (or a glob
# pattern such as "simulate_*"; the exact name wins). Check with `singcontain check`, see one job's
# effective flags and where each comes from with `singcontain explain --target FILE`.
# The Snakefile loads it with:
#     from snakemake_singcontain import contain
#     contain(workflow, "{from_snakefile}")
version: 1

defaults:
  containment: contain            # the container sees only the workdir, the job's files and the binds
  namespaces: [pid]               # each job sees only its own processes
  auto_binds: {{inputs: ro, outputs: rw}}   # bind the folders of a job's inputs read-only, of its outputs writable
  # use: [cvmfs, afs]             # built-in presets: /cvmfs and /afs, read-only
  # binds:                        # more host folders: SRC[:DST][:ro|rw], read-only unless :rw
  #   - /cvmfs:ro
  #   - {{src: "${{DUST:-/nfs/dust/${{USER}}}}", dst: /dust, mode: rw, required: true}}
  # env: [LANG]                   # host variables let into a clean environment (cleanenv, containall)

# presets:                        # named sets of settings that `use:` applies
#   dust: {{binds: ["/nfs/dust/${{USER}}:rw"]}}

rules:
  # "simulate_*": {{use: [dust], containment: containall, namespaces: [ipc]}}
  # One entry per rule of this workflow; uncomment to change a rule, e.g. {{containment: none}}.
"""


def _snakefile(user_args: list[str]) -> Path | None:
    given = _user_option(user_args, "-s", "--snakefile")
    if given:
        return Path(given)
    return next((p for p in map(Path, ("Snakefile", "snakefile", "workflow/Snakefile", "workflow/snakefile"))
                 if p.is_file()), None)


def _rules_in_files(snakefile: Path) -> list[str]:
    names, seen, todo = [], set(), [snakefile]
    while todo:
        path = todo.pop(0).resolve()
        if path in seen:
            continue
        seen.add(path)
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for m in re.finditer(r"^\s*(?:rule|checkpoint)\s+([A-Za-z_]\w*)\s*:"
                             r"|^\s*use\s+rule\s+\S+.*?\bas\s+([A-Za-z_]\w*)", text, re.M):
            name = m.group(1) or m.group(2)
            if name not in names:
                names.append(name)
        todo += [path.parent / m.group(1) for m in re.finditer(r"^\s*include:\s*[\"']([^\"']+)[\"']", text, re.M)]
    return names


def list_rules(user_args: list[str]) -> tuple[list[str], str | None]:
    """Rule names from `snakemake --list-rules`; from the Snakefile's text when contain() cannot load the policy."""
    print(f"{PROG}: listing the rules with Snakemake…", file=sys.stderr, flush=True)
    try:
        done = subprocess.run([sys.executable, "-m", "snakemake", *QUIET, "--list-rules", *user_args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    except OSError as err:
        raise CliError(f"cannot run Snakemake with {sys.executable}: {err.strerror}") from None
    if done.returncode == 0:
        # One rule a line, its docstring in parentheses; anything else (progress lines) is not a rule.
        listed = (re.match(r"^([A-Za-z_]\w*)(?: \(.*\))?$", line) for line in done.stdout.splitlines())
        return [m.group(1) for m in listed if m], None
    output = done.stdout + done.stderr
    if "cannot read the policy file" not in output:
        raise CliError(trim_snakemake_output(output))
    snakefile = _snakefile(user_args)
    if snakefile is None:
        raise CliError("the Snakefile's contain() names a policy file that does not exist yet, and no Snakefile "
                       "was found to read the rule names from; pass -s SNAKEFILE")
    note = (f"the Snakefile's contain() cannot load its policy file yet, so the rule names were read from the "
            f"`rule NAME:` lines of {snakefile} and its includes (rules made in loops or by modules may be missing)")
    return _rules_in_files(snakefile), note


def starter_policy(rules: list[str], from_snakefile: str, schema_path: str | None) -> str:
    schema_line = f"# yaml-language-server: $schema={schema_path}\n" if schema_path else ""
    text = STARTER_HEAD.format(schema_line=schema_line, from_snakefile=from_snakefile)
    return text + "".join(f"  # {name}: {{}}\n" for name in rules)


def cmd_init(args, user_args: list[str]) -> int:
    from .schema import shipped_path

    policy = Path(args.policy)
    if policy.exists() or policy.is_symlink():
        raise CliError(f"{policy} already exists; {PROG} init never overwrites a policy "
                       "(edit it, or write a new one with --policy OTHER.yaml)")
    rules, note = list_rules(user_args)
    if note:
        print(f"{PROG}: {note}", file=sys.stderr)
    snakefile = _snakefile(user_args)
    # contain() takes the policy's path relative to the Snakefile's folder
    from_snakefile = os.path.relpath(policy.resolve(), snakefile.resolve().parent if snakefile else Path.cwd())
    schema = str(shipped_path())
    text = starter_policy(rules, from_snakefile, schema if os.path.isfile(schema) else None)
    try:
        with open(policy, "x") as f:
            f.write(text)
    except FileExistsError:
        raise CliError(f"{policy} already exists; {PROG} init never overwrites a policy") from None
    except OSError as err:
        raise CliError(f"cannot write {policy}: {err.strerror}") from None
    names = ", ".join(rules) if rules else "none found"
    print(f"wrote {policy}: defaults for every rule, and a commented entry for each of {len(rules)} rules ({names}).\n"
          f"Next: load it in the Snakefile with contain(workflow, \"{from_snakefile}\"), "
          f"then run `{PROG} check` with your usual Snakemake arguments.")
    return 0


def cmd_schema(args, user_args: list[str]) -> int:
    from .schema import dumps, shipped_path

    if user_args:
        raise CliError(f"schema takes no Snakemake arguments (got {shlex.join(user_args)})")
    if args.path:
        print(shipped_path())
    else:
        print(dumps(), end="")
    return 0


# --- argument parsing -------------------------------------------------------------------------------------


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    top = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check, explain and audit a Snakemake workflow's per-rule Apptainer containment before any job "
                    "is submitted (snakemake-singcontain).",
        epilog="Exit status: 0 clean (warnings allowed), 1 a finding is an error, 2 usage, Snakefile or policy "
               f"error.\nSee `{PROG} COMMAND --help`.")
    top.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    parsers = {}

    def add(name, help_text, usage_args=""):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG, allow_abbrev=False,
                           usage=f"{PROG} {name} {usage_args}[snakemake args…]")
        parsers[name] = p
        return p

    p = add("check", "Dry-run the workflow and report every containment finding, then a per-rule summary.",
            "[--format text|json] ")
    p.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or the audit as JSON")
    p = add("explain", "Show one job's effective settings, binds and `apptainer exec` line, and where each "
                       "setting comes from.", "RULE [--wildcards K=V …] | --target FILE ")
    p.add_argument("--target", metavar="FILE", help="the file the job makes (or a rule without wildcards)")
    p.add_argument("--wildcards", nargs="+", metavar="K=V", default=[],
                   help="with RULE: the job of RULE with these wildcard values, among the workflow's jobs")
    p = add("report", "Audit every job's effective containment (a dry run with --forceall) as Markdown or JSON.",
            "[--format markdown|json] [-o FILE] ")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report there instead of to stdout")
    p = add("init", "Write a commented starter policy listing the workflow's rules (never overwrites).",
            "[--policy FILE] ")
    p.add_argument("--policy", default="containment.yaml", metavar="FILE",
                   help="where to write it (default: %(default)s)")
    p = sub.add_parser("schema", help="Print the JSON Schema of the policy file (for editors).",
                       description="Print the JSON Schema (draft 2020-12) of the policy file. Editors using the YAML "
                                   "language server validate a policy whose first line is "
                                   "`# yaml-language-server: $schema=<path to schema.json>`.", allow_abbrev=False)
    p.add_argument("--path", action="store_true", help="print the path of the installed schema.json instead")
    parsers["schema"] = p
    return top, parsers


COMMANDS = {"check": cmd_check, "explain": cmd_explain, "report": cmd_report, "init": cmd_init, "schema": cmd_schema}


def _main(argv: list[str]) -> int:
    top, parsers = build_parser()
    if not argv:
        top.print_help(sys.stderr)
        return 2
    if argv[0] not in COMMANDS:
        top.parse_args(argv[:1])  # --help, --version, or a usage error naming the commands
        return 2
    command, rest = argv[0], list(argv[1:])
    tail = []
    if "--" in rest:
        rest, tail = rest[:rest.index("--")], rest[rest.index("--") + 1:]
    positional = None
    if command == "explain" and rest and not rest[0].startswith("-"):
        positional = rest.pop(0)
    args, extra = parsers[command].parse_known_args(rest)
    if command == "explain":
        if positional and args.target:
            raise CliError("name the job once: either RULE or --target FILE")
        args.rule = positional
        args.target = args.target or positional
    return COMMANDS[command](args, extra + tail)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except CliError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
