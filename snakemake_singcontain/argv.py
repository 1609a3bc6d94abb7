"""JobPlan -> the `apptainer exec` flags that carry it. A list of words; joined for a shell only by the bridge."""

from collections.abc import Mapping

from .plan import JobPlan
from .policy import Bind, Settings
from .runtime import RuntimeInfo

NAMESPACE_FLAGS = {"pid": "--pid", "ipc": "--ipc", "uts": "--uts", "user": "--userns"}
ENV_PREFIXES = ("APPTAINERENV_", "SINGULARITYENV_")  # APPTAINERENV_X=v sets X inside, even under --cleanenv


def smuggled_variables(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """APPTAINERENV_X variables that would put X into a cleaned environment without the policy's `env`."""
    if not settings.effective_cleanenv:
        return []
    return sorted(name for name in environ if name.startswith(ENV_PREFIXES)
                  and name.split("ENV_", 1)[1] not in settings.env)


def needs_mount(path: str) -> bool:
    # ',' separates binds and ':' separates src:dst:mode in --bind (measured: ',' splits, ':' is rejected).
    return "," in path or ":" in path


def expressible(path: str) -> bool:
    """A line break ends an Apptainer option value (--bind and --mount alike, measured)."""
    return "\n" not in path and "\r" not in path


def bind_args(bind: Bind, runtime: RuntimeInfo | None) -> list[str]:
    if not (needs_mount(bind.src) or needs_mount(bind.dst)):
        return ["--bind", f"{bind.src}:{bind.dst}:{bind.mode}"]
    if runtime is None or not runtime.supports_mount:
        raise ValueError(f"{bind.src} cannot be expressed with --bind")  # SC206 refuses such plans first
    # --mount takes CSV: a field with ',' or '"' is quoted, '"' doubled.
    fields = ["type=bind", f"src={bind.src}", f"dst={bind.dst}"] + (["ro"] if bind.mode == "ro" else [])
    return ["--mount", ",".join(f'"{f.replace(chr(34), chr(34) * 2)}"' if ("," in f or '"' in f) else f for f in fields)]


def env_pair(name: str, value: str) -> str:
    """--env parses its value as CSV (measured, 1.4.5: "A=x,B=y" sets B too, a newline ends the value, a '"'
    is trimmed or refused), so a value with ',' or a line break is quoted and one with '"' cannot be passed."""
    if '"' in value:
        raise ValueError(f"the value of {name} holds a '\"', which --env cannot pass intact")
    return f'"{name}={value}"' if any(c in value for c in ",\n\r") else f"{name}={value}"


# Snakemake's per-job settings (from `threads:`), set in the job's shell: not host secrets, so they cross a
# cleaned environment without being listed in `env` (a 32-thread rule must not run with the image's default).
JOB_VARIABLES = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def settings_args(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """Flags for everything but binds."""
    argv = []
    if settings.containment != "none":
        argv.append(f"--{settings.containment}")
    implied = ("pid", "ipc") if settings.containment == "containall" else ()
    for ns in settings.namespaces:
        if ns == "net":
            argv += ["--net", "--network", settings.network]
        elif ns not in implied:
            argv.append(NAMESPACE_FLAGS[ns])
    if settings.cleanenv and settings.containment != "containall":
        argv.append("--cleanenv")
    if settings.effective_cleanenv:
        # An allow-list: only these host variables cross into a cleaned environment.
        names = dict.fromkeys([*settings.env, *JOB_VARIABLES])
        argv += [word for name in names if name in environ for word in ("--env", env_pair(name, environ[name]))]
    if settings.writable_tmpfs:
        argv.append("--writable-tmpfs")
    if settings.gpu:
        argv.append("--nv")
    return argv


def apptainer_args(plan: JobPlan, runtime: RuntimeInfo | None, environ: Mapping[str, str]) -> list[str]:
    """All flags for one job."""
    argv = settings_args(plan.rule.settings, environ)
    for bind in plan.binds:
        argv += bind_args(bind, runtime)
    return argv + list(plan.rule.settings.args)
