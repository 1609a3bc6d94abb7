"""Snakemake's host command that starts a container (snakemake.deployment.singularity.shellcmd), wrapped."""

import inspect
import os
import shlex

from .. import conda
from .refusal import PREFIX


def wrap_shellcmd() -> None:
    """Quote the image in Snakemake's host shell command (it is inserted as is), drop the writable binds of
    Snakemake's import paths for Python scripts (every job's flags bind them read-only, snakemake_binds), and
    give the creation of conda environments inside the image, and the looks at its conda, contained flags of
    their own (conda.py)."""
    from snakemake.deployment import singularity

    original = singularity.shellcmd
    if getattr(original, "_singcontain", False):
        return
    signature = inspect.signature(original)

    def shellcmd(img_path, cmd, *args, **kwargs):
        call = signature.bind(img_path, cmd, *args, **kwargs)
        a = call.arguments
        a["is_python_script"] = False
        a["img_path"] = shlex.quote(str(img_path))
        if conda.is_creation(a.get("envvars")):
            flags, scratch = conda.creation_args(cmd, a["envvars"], os.getcwd(), os.environ)
            a["args"] = conda.joined(flags)
            a["bind"] = None  # Snakemake's writable source cache: the environment file is in the workdir
            from snakemake.logging import logger

            logger.info(f"{PREFIX}: creating a conda environment inside {img_path}, contained: {a['args']}")
            return conda.removing(scratch, original(*call.args, **call.kwargs))
        elif conda.is_conda_check(cmd, a.get("args"), a.get("quiet", False)):
            a["args"] = conda.joined(conda.check_args(os.getcwd()))
        return original(*call.args, **call.kwargs)

    shellcmd._singcontain = True
    singularity.shellcmd = shellcmd
