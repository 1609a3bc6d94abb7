"""`singcontain crate [RUN] -o DIR`: a recorded run as a Workflow Run RO-Crate (rocrate.py).

Like `runs` and `diff`, it reads the records of the workdir (-d, default the current folder) and runs nothing.
"""

import argparse

from .. import records, rocrate
from .records import RUN_NAMES
from .run import PROG, CliError

HELP = ("Export a recorded run as a Workflow Run RO-Crate (Provenance Run Crate profile): the Snakefile, each job "
        "with its inputs, outputs, times, status, image sha256 and containment (flags, binds, policy and "
        "attestation digests).")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("crate", help=HELP, description=HELP, allow_abbrev=False,
                       usage=f"{PROG} crate [RUN] -o DIR [-d DIR] [--snakefile FILE] [--license URL]")
    p.add_argument("run", nargs="?", default="latest", metavar="RUN", help=f"{RUN_NAMES} (default: latest)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="the crate's folder: ro-crate-metadata.json and a copy of the Snakefile go there")
    p.add_argument("-d", "--directory", default=".", metavar="DIR", help="the workdir (default: the current folder)")
    p.add_argument("--snakefile", metavar="FILE",
                   help="the workflow (default: where Snakemake looks for it in the workdir)")
    p.add_argument("--license", default=rocrate.LICENSE, metavar="URL",
                   help=f"the crate's license (default: {rocrate.LICENSE})")
    return p


def cmd_crate(args, user_args: list[str]) -> int:
    if user_args:
        raise CliError(f"crate takes no Snakemake arguments (got {' '.join(user_args)})")
    try:
        path = rocrate.write(args.directory, args.run, args.output, args.snakefile, args.license)
    except records.RecordsError as err:
        raise CliError(str(err)) from None
    except OSError as err:
        raise CliError(f"cannot write the crate to {args.output}: {err.strerror}") from None
    print(path)
    return 0
