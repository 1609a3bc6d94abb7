"""Runs at every start of Python in the environment the plugin is installed in (snakemake_singcontain.pth),
so that a workflow runs under a policy without a line in its Snakefile — also in the Snakemake process of a
job on a node, which parses the Snakefile again.

Costs one finder on sys.meta_path; it acts only when `snakemake.workflow` is imported, and the bridge
then contains a workflow only when asked (SINGCONTAIN_POLICY, or --singcontain-policy=FILE in
--apptainer-args, which the main process passes on to every job).
"""

import importlib.util
import sys

from . import launch  # noqa: F401 (imported for its effect: it notes where the command was typed, before Snakemake moves)

MODULE = "snakemake.workflow"


class _Finder:
    def find_spec(self, name, path=None, target=None):
        if name != MODULE:
            return None
        sys.meta_path.remove(self)  # find the real module, once
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_activate(module):
            exec_module(module)
            from .bridge import activate

            activate(module.Workflow)

        spec.loader.exec_module = exec_and_activate
        return spec


if MODULE not in sys.modules and not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder())
