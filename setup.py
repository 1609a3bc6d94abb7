"""Only to ship snakemake_singcontain.pth at the top of site-packages (pyproject.toml holds the rest): it
lets a workflow run under a policy without editing its Snakefile (snakemake_singcontain/autoload.py)."""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "snakemake_singcontain.pth"


class BuildWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH))


setup(cmdclass={"build_py": BuildWithPth})
