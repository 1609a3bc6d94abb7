"""Where the command was typed, before Snakemake moves to its workdir (-d): a relative SINGCONTAIN_POLICY or
SINGCONTAIN_SITE is taken from here. Noted when the interpreter starts (autoload.py, from
snakemake_singcontain.pth), before Snakemake changes folder; imports nothing else, as it runs at every start."""

import os

SITE_FILE = "/etc/singcontain/site.yaml"  # the admin's site file, which always applies where it exists


def _working_directory() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # removed under us
        return None


STARTED_IN = _working_directory()


def from_launch_folder(path: str) -> str:
    """A relative path a user gave in the environment, taken from the folder where they typed the command: the
    process's first working directory, not the workdir Snakemake moved to (-d)."""
    return os.path.abspath(os.path.join(STARTED_IN or os.getcwd(), path))


def named_site() -> str | None:
    """The site file SINGCONTAIN_SITE names (on top of SITE_FILE: it adds, never lowers), or None."""
    named = os.environ.get("SINGCONTAIN_SITE")
    return from_launch_folder(named) if named else None


def site_files() -> list[str]:
    """The site files that exist here: the one SINGCONTAIN_SITE names, and the admin's."""
    return [path for path in (named_site(), SITE_FILE) if path and os.path.exists(path)]
