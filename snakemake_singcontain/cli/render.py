"""The audit as text (check, explain) and Markdown (report)."""

import os
import re
import shlex
from collections import defaultdict
from importlib import metadata

from .. import __version__
from ..report import THREADS
from ..findings import ERROR, WARNING, Finding, group, has_errors, render
from .run import PROG, findings_of, user_option


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


def count_summary(audit: dict) -> str:
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
        header = ["rule", "containment", "namespaces", "cleanenv", "binds ro", "binds rw", "/tmp", "image", "jobs"]
        rows = [[name, r["containment"], _namespaces(r), "yes" if r.get("cleanenv") else "no",
                 str(len(r.get("binds_ro", []))), str(len(r.get("binds_rw", []))), r.get("tmp", "-"),
                 r.get("image") or "-", str(r["jobs"])] for name, r in sorted(rules.items())]
        parts.append(table(header, rows))
        parts.append(count_summary(audit))
        if any(r.get("tmp") == "in-memory" for r in rules.values()):
            parts.append("/tmp in-memory: Apptainer's small folder (64 MiB by default); a rule that writes large "
                         "temporary files needs `scratch: ${TMPDIR:-/var/tmp}` (docs/policy.md#scratch).")
        if audit.get("checkpoints"):
            parts.append(f"Checkpoints: {', '.join(audit['checkpoints'])}. The jobs they add are not known yet; each "
                         "is checked the same way once its checkpoint has run, before it is submitted.")
    else:
        parts.append("Nothing to check: Snakemake has no job to run for these targets (their outputs are up to date).\n"
                     f"`{PROG} report` checks every job (--forceall); so does adding --forceall here.")
    return "\n\n".join(parts)


def _runtime_binary() -> str:
    """The name Snakemake puts in the command: 8.x writes `singularity`, 9.x the runtime it found."""
    try:
        major = int(metadata.version("snakemake").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        major = 9
    return "singularity" if major < 9 else "apptainer"

THREADS_NOTE = ("{threads}: each job's own thread count (its rule's threads:, as Snakemake gives it), passed so "
                "into the cleaned environment")

SETTING_ORDER = ("containment", "workdir", "tmp", "namespaces", "network", "cleanenv", "env", "auto_binds",
                 "writable_tmpfs", "gpu", "args")


def _settings_rows(rule: dict, words: list[str], cwd: str) -> list[list[str]]:
    origins = rule.get("origins", {})
    containall = rule.get("containment") == "containall"
    values = {
        "containment": rule.get("containment"),
        "workdir": rule.get("workdir", "rw"),
        "tmp": rule.get("tmp", "-"),
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
        origin = short_origin(origins.get("scratch" if key == "tmp" else key), cwd)
        if key == "namespaces" and containall:
            origin += "; pid and ipc come with containall"
        if key == "cleanenv" and containall:
            origin += "; implied by containall"
        if key == "network" and value == "host":
            origin = "no net namespace: the host's network (the network key applies only with net)"
        rows.append([key, value, origin])
    return rows


def render_explain(job: dict, rule: dict, workdir: str, user_args: list[str], cwd: str) -> str:
    args = job.get("apptainer_args") or ""
    words = shlex.split(args) if not args.startswith("(") else []
    on_host = rule.get("on_host")
    if on_host:
        parts = [f"job {job['job']} (rule {job['rule']}) runs on the host, not in a container: {on_host}"]
    elif rule.get("containment") == "none":
        parts = [f"job {job['job']} (rule {job['rule']}), image {job['image']}, without --contain (containment: none): "
                 "it sees the host's /tmp, /var/tmp and /dev besides the binds"]
    else:
        parts = [f"job {job['job']} (rule {job['rule']}), image {job['image']}"]
    parts.append(table(["setting", "value", "set by"], _settings_rows(rule, words, cwd), "  "))
    if not on_host:
        binds = [[workdir, workdir, "rw", "Snakemake --home (the working directory)"]]
        binds += [[b["src"], b["dst"], b["mode"], short_origin(b.get("origin"), cwd)] for b in job.get("binds", [])]
        parts.append("binds, in mount order:\n" + table(["host", "container", "mode", "set by"], binds, "  "))
    if on_host:
        parts.append("command: none; the job runs on the host, not in a container")
    elif job.get("image") and args.startswith("("):  # "(not expressible: …)", also reported as SC206
        parts.append(f"command: none, the binds {args[1:-1]}")
    elif job.get("image"):
        # Snakemake's own: `<runtime> exec --home CWD <singularity_args> IMAGE bash -c '…'`, where the bridge puts
        # the policy's flags, then any --apptainer-args, into singularity_args.
        extra = user_option(user_args, "--apptainer-args", "--singularity-args")
        words = [_runtime_binary(), "exec", "--home", workdir, *words, *(shlex.split(extra) if extra else []),
                 job["image"], "bash", "-c"]
        parts.append("command, as Snakemake starts the job (the rule's shell command in '…'):\n  "
                     + shlex.join(words) + " '…'" + (f"\n  {THREADS_NOTE}" if THREADS in args else ""))
    return "\n\n".join(parts)


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
           f"(`{_md(ran)}`), by {PROG} {__version__}.", "", count_summary(audit), ""]
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
        more = j.get("count", 1) - 1  # grouped: jobs of the rule with exactly these flags
        label = f"{j['job']} (and {more} more with the same flags)" if more else j["job"]
        cells = [label, r.get("containment", "?"), ", ".join(r.get("namespaces") or []) or "-"]
        out.append("| " + " | ".join([*map(_md, cells), binds, _md_code(j.get("apptainer_args"))]) + " |")
    if any(THREADS in (j.get("apptainer_args") or "") for j in jobs):
        out += ["", THREADS_NOTE.replace("{threads}", "`{threads}`")]
    if findings:
        out += ["", "## Findings", "", "```text", render_findings_by_rule(findings), "```"]
    out += ["", "## Where each setting comes from", ""]
    for name, r in sorted(rules.items()):
        origins = ", ".join(f"{k}: {short_origin(v, cwd)}" for k, v in sorted(r.get("origins", {}).items()))
        out.append(f"- **{_md(name)}**: {_md(origins) or 'built-in'}")
    return "\n".join(out) + "\n"
