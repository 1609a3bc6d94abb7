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
import shlex
import sys
from pathlib import Path

from .. import __version__
from ..findings import has_errors
from ..findings import render as render_findings  # not `render`: the cli.render module shadows that name
from .render import count_summary, render_check, render_explain, render_markdown
from .run import CliError, PROG, exit_status, findings_of, finish, run_snakemake
from . import records as records_cli
from . import crate as crate_cli
from .starter import commands, list_rules, starter_policy

EPILOG = ("Every other argument goes to Snakemake unchanged (-s SNAKEFILE, --configfile, --config, --profile, "
          "-d, targets …), as for `snakemake -n`; put them after `--` if one looks like an option of this command.")


def cmd_check(args, user_args: list[str]) -> int:
    run = run_snakemake([], user_args, policy=args.policy)
    audit = run.require_audit()
    print(json.dumps(audit, indent=2) if args.format == "json" else render_check(audit))
    return finish(run, exit_status(run))


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


# Snakemake's refusal of a rule with wildcards as a target (8.30 and 9.x)
WILDCARD_TARGET = "Target rules may not contain wildcards"


def wildcards_needed(rule: str, user_args: list[str], policy: str | None) -> str:
    """What to type instead, with the wildcards and values of one of the rule's jobs when the DAG has one."""
    run = run_snakemake(["--forceall"], user_args, jobs="each", policy=policy, progress=f"finding the jobs of {rule}…")
    jobs = sorted((j for j in (run.audit or {}).get("jobs") or [] if j["rule"] == rule and j["wildcards"]),
                  key=lambda j: j["job"])
    if not jobs:
        return (f"rule {rule} has wildcards, so it names no single job: pick one with\n"
                f"    {PROG} explain {rule} --wildcards NAME=VALUE …\nor name a file it makes: "
                f"{PROG} explain --target FILE")
    job = jobs[0]
    pairs = " ".join(shlex.quote(f"{k}={v}") for k, v in job["wildcards"].items())
    example = f"\nor name a file it makes: {PROG} explain --target {shlex.quote(job['outputs'][0])}" if job["outputs"] else ""
    return (f"rule {rule} has wildcards ({', '.join(job['wildcards'])}), so it names no single job "
            f"({len(jobs)} in this workflow): pick one with --wildcards, e.g.\n    {PROG} explain {rule} --wildcards {pairs}"
            + example)


# Snakemake's (argparse's) refusal of words it cannot place, e.g. a second run of targets
UNRECOGNIZED = "unrecognized arguments:"


def no_such_job(rule: str, wildcards: dict, of_rule: list[dict]) -> str:
    """Why `--wildcards` found no job: a name the rule does not have (a typo), or values no job has."""
    asked = " ".join(f"{k}={v}" for k, v in wildcards.items())
    if not of_rule:
        return f"no job of rule {rule} in this workflow's DAG (is the rule's name right?)"
    names = list(dict.fromkeys(k for j in of_rule for k in j["wildcards"]))
    example = " ".join(shlex.quote(f"{k}={v}") for k, v in of_rule[0]["wildcards"].items())
    unknown = [k for k in wildcards if k not in names]
    if unknown:
        why = (f"rule {rule} has no wildcard {', '.join(map(repr, unknown))}; its wildcards: {', '.join(names)}"
               if names else f"rule {rule} has no wildcards: name it without --wildcards")
    else:
        why = f"no job of rule {rule} has {asked} ({len(of_rule)} job{'s' * (len(of_rule) != 1)} in this DAG)"
    return why + (f"\n    e.g. {PROG} explain {rule} --wildcards {example}" if names else "")


def cmd_explain(args, user_args: list[str]) -> int:
    target = args.target
    if not target:
        raise CliError("name the job: singcontain explain --target FILE, or singcontain explain RULE")
    wildcards = dict(pair.split("=", 1) for pair in args.wildcards if "=" in pair)
    if len(wildcards) != len(args.wildcards) or (wildcards and args.target != args.rule):
        raise CliError("--wildcards goes with RULE and takes K=V pairs: singcontain explain RULE --wildcards k=v")
    # A rule with wildcards cannot be a Snakemake target: find its job among every job of the workflow.
    run = run_snakemake(["--forceall"] if wildcards else ["--force", target], user_args, jobs="each",
                        policy=args.policy)
    if run.audit is None and UNRECOGNIZED in run.output and not wildcards:
        # `explain RULE [snakemake args] TARGET…`: Snakemake takes targets only in one run of words, so RULE
        # is not a target then: its job is found in the DAG of the user's own targets.
        run = run_snakemake(["--forceall"], user_args, jobs="each", policy=args.policy)
    if run.audit is None and WILDCARD_TARGET in run.output:
        raise CliError(wildcards_needed(target, user_args, args.policy))
    audit = run.require_audit()
    workdir = audit["workdir"]
    if wildcards:
        of_rule = [j for j in audit.get("jobs") or [] if j["rule"] == target]
        matching = [j for j in of_rule if j["wildcards"] == wildcards]
        if not matching:
            raise CliError(no_such_job(target, wildcards, of_rule))
        job = matching[0]
    else:
        job = find_job(target, audit, workdir)
    rule = audit["rules"][job["rule"]]
    print(render_explain(job, rule, workdir, user_args, os.getcwd()))
    # A finding told once for several rules names them all ("a, b") or "every rule".
    findings = [f for f in findings_of(audit) if (job["rule"] in f.rule.split(", ") or f.rule == "every rule")
                and f.job in (None, job["job"])]
    if findings:
        print("\nfindings for this job:\n" + render_findings(findings))
    return finish(run, 1 if has_errors(findings) else 0)


def cmd_report(args, user_args: list[str]) -> int:
    run = run_snakemake(["--forceall"], user_args, jobs="each" if args.jobs else "grouped", policy=args.policy)
    audit = run.require_audit()
    text = json.dumps(audit, indent=2) + "\n" if args.format == "json" else render_markdown(audit, user_args)
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as err:
            raise CliError(f"cannot write {args.output}: {err.strerror}") from None
        print(f"{PROG}: wrote {args.output}: {count_summary(audit)}", file=sys.stderr)
    else:
        print(text, end="")
    return finish(run, exit_status(run))


def cmd_init(args, user_args: list[str]) -> int:
    listing = list_rules(user_args)
    snakefile = Path(listing.snakefile or "Snakefile").absolute()
    # By default where the Snakefile's contain() already looks, else beside the Snakefile (not the CWD:
    # contain() and the policy's relative bind sources are relative to their own folders).
    chosen = args.policy or listing.contain_path or snakefile.parent / "containment.yaml"
    policy = Path(os.path.relpath(chosen))
    if policy.exists() or policy.is_symlink():
        raise CliError(f"{policy} already exists; {PROG} init never overwrites a policy "
                       "(edit it, or write a new one with --policy OTHER.yaml)")
    from_snakefile = os.path.relpath(policy.absolute(), snakefile.parent)  # contain() is relative to the Snakefile
    text = starter_policy(listing.rules, from_snakefile, str(policy), user_args)
    try:
        with open(policy, "x") as f:
            f.write(text)
    except FileExistsError:
        raise CliError(f"{policy} already exists; {PROG} init never overwrites a policy") from None
    except OSError as err:
        raise CliError(f"cannot write {policy}: {err.strerror}") from None
    names = ", ".join(listing.rules) if listing.rules else "none found"
    skipped = (f" Left out, as they run nothing: {', '.join(listing.norun)}." if listing.norun else "")
    if listing.contain_path and Path(listing.contain_path) == policy.absolute():
        load = f"the Snakefile's contain() already loads it; run `{PROG} check` with your usual Snakemake arguments."
    else:
        run_command, check_command = commands(str(policy), user_args)
        load = (f"load it in the Snakefile with\n"
                f"    from snakemake_singcontain import contain\n    contain(workflow, \"{from_snakefile}\")\n"
                f"or, without editing the Snakefile, name it for each run, from this folder:\n    {run_command}\n"
                f"(or --policy {shlex.quote(str(policy))} for {PROG} check, explain and report).\n"
                f"Then check it: {check_command}")
    print(f"wrote {policy}: defaults for every rule, and a commented entry for each of {len(listing.rules)} rules "
          f"({names}).{skipped}\nNext: {load}")
    return 0


def cmd_schema(args, user_args: list[str]) -> int:
    from ..schema import dumps, shipped_path

    if user_args:
        raise CliError(f"schema takes no Snakemake arguments (got {shlex.join(user_args)})")
    if args.path:
        print(shipped_path())
    else:
        print(dumps(), end="")
    return 0


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
                           usage=f"{PROG} {name} [--policy FILE] {usage_args}[snakemake args…]")
        parsers[name] = p
        if name != "init":
            p.add_argument("--policy", metavar="FILE", help="the policy, for a Snakefile that does not load one "
                           "(the same as SINGCONTAIN_POLICY=FILE snakemake …)")
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
    p.add_argument("--jobs", action="store_true", help="one row per job (default: one per rule and identical flags, "
                   "with a count)")
    p = add("init", "Write a commented starter policy listing the workflow's rules (never overwrites).")
    p.add_argument("--policy", metavar="FILE",
                   help="where to write it (default: where the Snakefile's contain() points, else containment.yaml "
                        "beside the Snakefile)")
    p = sub.add_parser("schema", help="Print the JSON Schema of the policy file (for editors).",
                       description="Print the JSON Schema (draft 2020-12) of the policy file. Editors using the YAML "
                                   "language server validate a policy whose first line is "
                                   "`# yaml-language-server: $schema=<path to schema.json>`.", allow_abbrev=False)
    p.add_argument("--path", action="store_true", help="print the path of the installed schema.json instead")
    parsers["schema"] = p
    for name, (_, help_text) in records_cli.COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False,
                           usage=f"{PROG} {name} " + ("[--run ID] " if name == "runs" else "RUN_A RUN_B [--all] ")
                                 + "[-d DIR] [--format text|json]")
        records_cli.add_arguments(name, p)
        parsers[name] = p
    parsers["crate"] = crate_cli.add_parser(sub)
    return top, parsers

COMMANDS = {"check": cmd_check, "explain": cmd_explain, "report": cmd_report, "init": cmd_init, "schema": cmd_schema,
            "runs": records_cli.cmd_runs, "diff": records_cli.cmd_diff, "crate": crate_cli.cmd_crate}


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
