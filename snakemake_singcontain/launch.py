"""Where the command was typed, before Snakemake moves to its workdir (-d): a relative SINGCONTAIN_POLICY or
SINGCONTAIN_SITE is taken from here (bridge._from_launch_folder). Noted when the interpreter starts
(autoload.py, from snakemake_singcontain.pth), before Snakemake changes folder."""

import os


def _working_directory() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # removed under us
        return None


STARTED_IN = _working_directory()
