"""`singcontain runs` and `singcontain diff`: what recorded runs did (records.py), rendered for a reader.

Neither runs Snakemake: they read `.snakemake/singcontain/records/` of the workdir (-d, default the current
folder). `diff` exits 0 when every output was made the same way, 1 when something differs, 2 on a usage error.
"""

import argparse
import json
import os
import sys
import time

from .. import attest, records
from ..argv import JOB_VARIABLES
from .run import PROG, CliError

SHORT = 12  # digest characters in the diff's text; `runs --run` and JSON show them whole


def _time(t: float | None, day: bool = True) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S" if day else "%H:%M:%S", time.localtime(t)) if t else "-"


def _short(digest) -> str:
    return f"{digest[:SHORT]}…" if isinstance(digest, str) and len(digest) > SHORT else str(digest)


def _wildcards(w: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in w.items()) or "-"


def render_runs(found: list[dict], directory: str = ".") -> str:
    if not found:
        looked = os.path.join(os.path.abspath(directory), records.FOLDER)
        return (f"no recorded runs in {looked}: a run that started jobs leaves its record in its workdir's "
                f".snakemake folder; run this in the workflow's folder, or name it with -d WORKDIR")
    rows = [("RUN", "STATUS", "START", "END", "JOBS", "FAILED", "HOSTS")]
    for r in found:
        same_day = r["start"] and r["end"] and _time(r["start"])[:10] == _time(r["end"])[:10]
        rows.append((r["run"], r["status"], _time(r["start"]), _time(r["end"], day=not same_day), str(r["jobs"]),
                     str(r["failed"]), ", ".join(r["hosts"]) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def render_run(info: dict, groups: list[dict]) -> str:
    head = (f"run {info['run']}: {info['status']}, {info['jobs']} jobs ({info['failed']} failed) on "
            f"{', '.join(info['hosts']) or '-'}, {_time(info['start'])} – {_time(info['end'])}")
    out = [head]
    if info["unreadable_lines"]:
        out.append(f"({info['unreadable_lines']} line(s) cut short by a crash were skipped)")
    for g in groups:
        shown = ", ".join(_wildcards(w) for w in g["wildcards"][:5]) + (" …" if len(g["wildcards"]) > 5 else "")
        shown = f" ({shown})" if any(g["wildcards"]) else ""  # a rule without wildcards: nothing to show
        failed = f", {g['failed']} failed" if g["failed"] else ""
        out += ["", f"rule {g['rule']}: {g['jobs']} job(s){failed}{shown}",
                f"  image    {', '.join(map(str, g['images']))}",
                f"  sha256   {g['image_sha256']}",
                f"  runtime  {g['runtime']} {g['runtime_version']}",
                f"  flags    {' '.join(g['flags']) or '(none)'}",
                f"  policy   sha256 {g['policy_sha256']}",
                f"  hosts    {', '.join(map(str, g['hosts']))}"]
    return "\n".join(out)


NAMESPACES = {"--pid": "PID", "--ipc": "IPC", "--net": "network", "--uts": "UTS", "--userns": "user"}


def effective(argv: list[str]) -> dict:
    """What a job's flags mean, as a reviewer reads them: containall implies PID and IPC namespaces and a
    clean environment, the way Apptainer applies it (argv.settings_args writes it so)."""
    flags = set(argv)
    containment = "containall" if "--containall" in flags else "contain" if "--contain" in flags else "none"
    implied = {"--pid", "--ipc"} if containment == "containall" else set()
    env = [u.split(" ", 1)[1].split("=", 1)[0].strip("'\"") for u in records.units(argv) if u.startswith("--env ")]
    return {"containment": containment,
            "namespaces": {name for flag, name in NAMESPACES.items() if flag in flags or flag in implied},
            "cleanenv": containment == "containall" or "--cleanenv" in flags,
            "threads": any(name in JOB_VARIABLES for name in env),
            "env": {name for name in env if name not in JOB_VARIABLES}}


def in_effect(argv_a: list[str], argv_b: list[str]) -> str:
    """The change in effective terms, e.g. "containment contain → containall; PID namespace kept; …"."""
    a, b = effective(argv_a), effective(argv_b)
    told = []
    if a["containment"] != b["containment"]:
        told.append(f"containment {a['containment']} → {b['containment']}")
    for name in NAMESPACES.values():
        had, has = name in a["namespaces"], name in b["namespaces"]
        if had and has and a["containment"] != b["containment"]:
            told.append(f"{name} namespace kept")  # the flag that gives it may have changed
        elif had != has:
            told.append(f"{name} namespace {'gained' if has else 'lost'}")
    if a["cleanenv"] != b["cleanenv"]:
        told.append(f"clean environment {'on' if b['cleanenv'] else 'off'}")
    if a["threads"] != b["threads"]:
        told.append(f"per-job thread counts {'now passed' if b['threads'] else 'no longer passed'}")
    for name in sorted(b["env"] - a["env"]):
        told.append(f"{name} now passed")
    for name in sorted(a["env"] - b["env"]):
        told.append(f"{name} no longer passed")
    return "; ".join(told)


def _change(c: dict, argv_a: list[str], argv_b: list[str], seen: dict | None = None) -> str:
    if c["what"] != "flags":
        line = f"  {c['what']}: {_short(c['a'])} -> {_short(c['b'])}"
        if c["what"].startswith("what the container showed") and c["a"] in (seen or {}) and c["b"] in seen:
            line += "".join(f"\n    {told}" for told in attest.changes(seen[c["a"]], seen[c["b"]]))
        return line
    if c["order"]:
        return "  flags: same flags in another order (a later bind wins)"
    meaning = in_effect(argv_a, argv_b)
    return ((f"  in effect: {meaning}\n" if meaning else "") + "  flags:" + "".join(f"\n    - {u}" for u in c["removed"])
            + "".join(f"\n    + {u}" for u in c["added"]))


def render_diff(run_a: dict, run_b: dict, outputs: list[dict], show_all: bool = False,
                argv: dict | None = None, seen: dict | None = None) -> str:
    """`argv`: output -> (A's flags, B's flags), to tell a change of flags in effective terms; `seen`: the kept
    attestations by digest, to tell a change of what the container showed in words."""
    out = [f"A {run_a['run']} ({run_a['status']}), B {run_b['run']} ({run_b['status']})"]
    not_made = {"only in A": "only in A: run B did not make it", "only in B": "only in B: run A did not make it"}
    for o in outputs:
        if o["status"] == "same" and not show_all:
            continue
        out.append(f"{o['output']} (rule {o['rule']}): {not_made.get(o['status'], o['status'])}")
        out += [_change(c, *(argv or {}).get(o["output"], ([], [])), seen) for c in o["changes"]]
    count = {s: sum(1 for o in outputs if o["status"] == s) for s in ("changed", "same", "only in A", "only in B")}
    out.append(f"{len(outputs)} outputs: {count['changed']} changed, {count['same']} made the same way, "
               f"{count['only in A'] + count['only in B']} made in one run only")
    return "\n".join(out)


def _info(workdir: str, run_id: str) -> dict:
    return next(r for r in records.runs(workdir) if r["run"] == run_id)


def cmd_runs(args, user_args: list[str]) -> int:
    if user_args:
        raise CliError(f"runs takes no Snakemake arguments (got {' '.join(user_args)})")
    try:
        if args.run is None:
            found = records.runs(args.directory)
            print(json.dumps(found, indent=2) if args.format == "json" else render_runs(found, args.directory))
            return 0
        run_id = records.resolve(args.directory, args.run)
        info, groups = _info(args.directory, run_id), records.group(records.load(args.directory, run_id))
    except records.RecordsError as err:
        raise CliError(str(err)) from None
    print(json.dumps({**info, "groups": groups}, indent=2) if args.format == "json" else render_run(info, groups))
    return 0


def cmd_diff(args, user_args: list[str]) -> int:
    if user_args:
        raise CliError(f"diff takes no Snakemake arguments (got {' '.join(user_args)})")
    try:
        a, b = (records.resolve(args.directory, name) for name in (args.run_a, args.run_b))
        loaded_a, loaded_b = records.load(args.directory, a), records.load(args.directory, b)
        outputs = records.diff(loaded_a, loaded_b)
        run_a, run_b = _info(args.directory, a), _info(args.directory, b)
        by_a, by_b = records.by_output(loaded_a), records.by_output(loaded_b)
        argv = {o: (by_a[o].get("argv") or [], by_b[o].get("argv") or []) for o in by_a.keys() & by_b.keys()}
    except records.RecordsError as err:
        raise CliError(str(err)) from None
    if args.format == "json":
        print(json.dumps({"a": run_a, "b": run_b, "outputs": outputs}, indent=2))
    else:
        print(render_diff(run_a, run_b, outputs, args.all, argv, attest.kept(args.directory)))
    return 1 if any(o["status"] != "same" for o in outputs) else 0


RUNS_HELP = "List the recorded runs, or show what one run did: its jobs grouped by rule and identical containment."
DIFF_HELP = ("Compare two recorded runs per output: what changed in its containment or image (image digest, flags, "
             "policy digest), and outputs made in one run only.")
RUN_NAMES = "a run id, a unique prefix of one, latest or previous"


def add_arguments(command: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--directory", default=".", metavar="DIR", help="the workdir (default: the current folder)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    if command == "runs":
        p.add_argument("--run", metavar="ID", help=f"show this run ({RUN_NAMES})")
    else:
        p.add_argument("run_a", metavar="RUN_A", help=RUN_NAMES)
        p.add_argument("run_b", metavar="RUN_B", help=RUN_NAMES)
        p.add_argument("--all", action="store_true", help="list the outputs made the same way too")


COMMANDS = {"runs": (cmd_runs, RUNS_HELP), "diff": (cmd_diff, DIFF_HELP)}


def main(argv: list[str] | None = None) -> int:
    """`python -m snakemake_singcontain.cli.records runs|diff …`, until `singcontain` has the commands."""
    top = argparse.ArgumentParser(prog=PROG, allow_abbrev=False)
    sub = top.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        add_arguments(name, sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False))
    args = top.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return COMMANDS[args.command][0](args, [])
    except CliError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return err.code
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
