"""The commented starter policy that `singcontain init` writes."""

import re
import subprocess
import sys
from pathlib import Path
from .run import CliError, PROG, QUIET, trim_snakemake_output, user_option

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


def snakefile_of(user_args: list[str]) -> Path | None:
    given = user_option(user_args, "-s", "--snakefile")
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
    snakefile = snakefile_of(user_args)
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
