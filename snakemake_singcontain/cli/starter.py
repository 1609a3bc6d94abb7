"""The commented starter policy that `singcontain init` writes."""

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field

from .run import CliError, PROG, QUIET, trim_snakemake_output

STARTER_HEAD = """\
# Containment policy for snakemake-singcontain, written by `singcontain init`.
# Every rule runs under `defaults`; an entry under `rules:` changes what differs for one rule (or a glob
# pattern such as "simulate_*"; the exact name wins). Check with `singcontain check`, see one job's
# effective flags and where each comes from with `singcontain explain --target FILE`.
# Load it in one of two ways:
#   - in the Snakefile:  from snakemake_singcontain import contain
#                        contain(workflow, "{from_snakefile}")
#   - without touching the Snakefile, from the folder where `singcontain init` ran (a relative
#     SINGCONTAIN_POLICY is taken from the folder where the command is typed):
#         {run_command}
#         {check_command}      (also explain, report)
# Editor completion: `singcontain schema > containment.schema.json` beside this file, then make this the
# first line:  # yaml-language-server: $schema=containment.schema.json
version: 1

defaults:
  containment: contain            # the container sees only the workdir, the job's files and the binds
  namespaces: [pid]               # each job sees only its own processes
  auto_binds: {{inputs: ro, outputs: rw}}   # bind the folders of a job's inputs read-only, of its outputs writable
  # use: [cvmfs, afs]             # built-in presets: /cvmfs and /afs, read-only
  # binds:                        # more host folders: SRC[:DST][:ro|rw], read-only unless :rw
  #   - /cvmfs:ro
  #   - "${{DUST:-/nfs/dust/${{USER}}}}:rw"   # at its own path: the paths in the Snakefile work unchanged
  # env: [LANG]                   # host variables let into a clean environment (cleanenv, containall)

# presets:                        # named sets of settings that `use:` applies
#   dust: {{binds: ["${{DUST:-/nfs/dust/${{USER}}}}:rw"]}}

rules:
  # "simulate_*": {{use: [dust], containment: containall, namespaces: [ipc]}}
  # One entry per rule of this workflow that runs something; uncomment to change a rule, e.g. {{containment: none}}.
"""

# Run in Snakemake's own Python: the Snakefile's contain() only records where it points (the policy may not
# exist yet), and each rule is listed with whether it runs anything (`all`-type rules with only input: do not).
LISTER = """\
import os, sys
import snakemake_singcontain
from snakemake.cli import main
from snakemake.workflow import Workflow

def contain(workflow, policy_file="containment.yaml"):
    base = os.path.dirname(sys._getframe(1).f_code.co_filename)
    print("singcontain-policy", os.path.abspath(os.path.join(base, policy_file)), sep="\\t")

def list_rules(self, only_targets=False):
    print("singcontain-snakefile", os.path.abspath(self.main_snakefile), sep="\\t")
    for rule in self.rules:
        print("singcontain-rule", rule.name, "norun" if rule.norun else "runs", sep="\\t")

snakemake_singcontain.contain = contain
Workflow.list_rules = list_rules
main(sys.argv[1:])
"""


@dataclass
class Listing:
    rules: list[str] = field(default_factory=list)      # rules that run something, in the Snakefile's order
    norun: list[str] = field(default_factory=list)      # rules with nothing to run (no container either)
    snakefile: str | None = None
    contain_path: str | None = None                     # where the Snakefile's contain() points


def list_rules(user_args: list[str]) -> Listing:
    """The workflow's rules as Snakemake itself builds them (includes, modules, loops), from `--list-rules`."""
    print(f"{PROG}: listing the rules with Snakemake…", file=sys.stderr, flush=True)
    env = dict(os.environ)
    env.pop("SINGCONTAIN_POLICY", None)  # the policy is what init is about to write
    try:
        done = subprocess.run([sys.executable, "-c", LISTER, *QUIET, "--list-rules", *user_args], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    except OSError as err:
        raise CliError(f"cannot run Snakemake with {sys.executable}: {err.strerror}") from None
    if done.returncode != 0:
        told = trim_snakemake_output(done.stdout + done.stderr)
        raise CliError(told.replace("stopped before the containment check", "could not list the workflow's rules "
                                    "(give init the Snakemake arguments your run needs: --config, -s …)"))
    listing = Listing()
    for line in done.stdout.splitlines():
        tag, _, rest = line.partition("\t")
        if tag == "singcontain-rule":
            name, kind = rest.split("\t")
            (listing.norun if kind == "norun" else listing.rules).append(name)
        elif tag == "singcontain-snakefile":
            listing.snakefile = rest
        elif tag == "singcontain-policy":
            listing.contain_path = rest
    return listing


def commands(policy: str, user_args: list[str]) -> tuple[str, str]:
    """How to run under the policy without contain(), from the folder where init ran: the same words in the
    starter's header and in init's message."""
    given = shlex.join(user_args) + " " if user_args else ""
    return (f"SINGCONTAIN_POLICY={shlex.quote(policy)} snakemake {given}--sdm apptainer …",
            f"{PROG} check --policy {shlex.quote(policy)} {given}--sdm apptainer")


def starter_policy(rules: list[str], from_snakefile: str, policy: str, user_args: list[str]) -> str:
    run_command, check_command = commands(policy, user_args)
    text = STARTER_HEAD.format(from_snakefile=from_snakefile, run_command=run_command, check_command=check_command)
    return text + "".join(f"  # {name}: {{}}\n" for name in rules)
