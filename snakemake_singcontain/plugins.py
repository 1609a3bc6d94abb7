"""Discovery: built-in plugins first, then those installed under the entry-point group `singcontain`."""

import pluggy

from . import hooks
from .builtin import path_checks, policy_checks, presets, runtime_checks

BUILTIN = (presets, policy_checks, runtime_checks, path_checks)


def plugin_manager(extra=()) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hooks.PROJECT)
    pm.add_hookspecs(hooks)
    for module in BUILTIN:
        pm.register(module, name=f"builtin.{module.__name__.rsplit('.', 1)[-1]}")
    pm.load_setuptools_entrypoints(hooks.PROJECT)
    for plugin in extra:
        pm.register(plugin)
    return pm
