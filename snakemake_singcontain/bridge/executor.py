"""Which batch executor a run submits to: what the preflight tells node-local paths for (SC213), in a dry run
the one the real run will use."""

import sys


def intended_executor(workflow) -> str | None:
    """The batch executor the run submits to; None for local execution. A dry run tells what the real run
    with that executor will tell, though it executes with Snakemake's `dryrun` plugin."""
    plugin = workflow.executor_plugin
    if plugin is None:
        return None
    if not workflow.dryrun:
        return None if workflow.local_exec else plugin.name
    name = _dry_run_executor()
    if name is None:
        return None
    from snakemake_interface_common.exceptions import InvalidPluginException
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    try:
        local = ExecutorPluginRegistry().get_plugin(name).common_settings.local_exec
    except InvalidPluginException:  # not installed here: Snakemake itself refuses the real run
        return None
    return None if local else name


def _dry_run_executor() -> str | None:
    """The executor a dry run stands in for, read from the frames on this call's stack: 9.x keeps it as
    `executor` of DAGApi.execute_workflow; 8.30 overwrites it with "dryrun" in cli.args_to_api, whose
    `parser` (configargparse) still knows a profile's executor, and the command line has the user's own."""
    name, profile = None, None
    frame = sys._getframe(1)
    while frame is not None:
        module, function = frame.f_globals.get("__name__"), frame.f_code.co_name
        if module == "snakemake.api" and function == "execute_workflow" and name is None:
            name = frame.f_locals.get("executor")
        if module == "snakemake.cli" and function == "args_to_api" and "parser" in frame.f_locals:
            sources = getattr(frame.f_locals["parser"], "get_source_to_settings_dict", dict)()
            profile = next((s["executor"][1] for key, s in sources.items()
                            if key.startswith("config_file") and "executor" in s), profile)
        frame = frame.f_back
    if isinstance(name, str) and name not in ("dryrun", "touch"):
        return name
    words = sys.argv[1:]
    given = [w.split("=", 1)[1] for w in words if w.startswith("--executor=")]
    given += [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--executor", "-e")]
    return given[-1] if given else profile
