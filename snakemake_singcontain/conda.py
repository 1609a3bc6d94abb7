"""What the creation of a rule's conda environment inside its image may see and write (`--sdm conda apptainer`).

Snakemake creates each environment with `apptainer exec --home WORKDIR <--apptainer-args> IMAGE sh -c 'conda
… env create --prefix WORKDIR/.snakemake/conda/HASH_'`, and checks the image's conda the same way with no flags
at all: the package manager and the packages' scripts would run with the workdir writable and the host's /tmp
and environment in view. Here every such call gets flags of its own: --contain and a clean environment (but for
what a package manager needs: proxy and certificate variables), the workdir read-only, only the environment's
own folder writable, and a throw-away home and package cache. The network stays: packages are downloaded.
"""

import os
import re
import shlex
import tempfile

PREFIX = re.compile(r"--prefix\s+(['\"])(.+?)\1")
# What a package manager needs from the host to reach a channel; nothing else of the environment crosses.
PASSED = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "SSL_CERT_FILE",
          "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def is_creation(envvars) -> bool:
    """Snakemake's creation (and its `containerized:` check) of an environment passes CONDA_PKGS_DIRS."""
    return bool(envvars) and "CONDA_PKGS_DIRS" in envvars


def is_conda_check(cmd: str, args, quiet: bool) -> bool:
    """Snakemake's look at the image's conda (`conda info --json`, `conda --version`): quiet, without flags."""
    return quiet and not (args or "").strip() and "conda" in cmd


def check_args(workdir: str) -> list[str]:
    return ["--contain", "--cleanenv", "--bind", f"{workdir}:{workdir}:ro"]


def creation_args(cmd: str, envvars, workdir: str, environ) -> tuple[list[str], str]:
    """The flags for one creation, and the folder of its own under the host's temporary folder that it makes
    for a throw-away home and package cache (removing() takes it away again); makes its (empty) environment
    folder too."""
    scratch = tempfile.mkdtemp(prefix="singcontain-conda-")
    home, packages = os.path.join(scratch, "home"), os.path.join(scratch, "pkgs")
    os.mkdir(home)
    os.mkdir(packages)
    argv = ["--contain", "--cleanenv", *[w for name in PASSED if environ.get(name) for w in
                                         ("--env", f"{name}={environ[name]}")],
            "--home", home, "--bind", f"{workdir}:{workdir}:ro", "--pwd", workdir,
            "--bind", f"{packages}:{envvars['CONDA_PKGS_DIRS']}:rw"]
    found = PREFIX.search(cmd)
    if found:  # not for the check of an environment the image holds (containerized:)
        prefix = os.path.abspath(found.group(2))
        os.makedirs(prefix, exist_ok=True)
        argv += ["--bind", f"{prefix}:{prefix}:rw"]
    return argv, scratch


def removing(folder: str, command: str) -> str:
    """The host command, and `folder` removed when its shell exits, whatever the outcome: a real creation's
    package cache holds hundreds of MB, and one is made per environment and run."""
    return f"trap {shlex.quote(f'rm -rf -- {shlex.quote(folder)}')} EXIT; {command}"


def joined(argv: list[str]) -> str:
    return shlex.join(argv)
