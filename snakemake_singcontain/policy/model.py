"""The policy as immutable values. Knows nothing of YAML, Snakemake or Apptainer."""

from collections.abc import Mapping
from dataclasses import dataclass, field

CONTAINMENTS = ("none", "contain", "containall")
NAMESPACES = ("pid", "ipc", "net", "uts", "user")
MODES = ("ro", "rw")


@dataclass(frozen=True)
class Origin:
    """Where a setting was written: a layer label ("defaults", "preset dust", "rule plot") and file:line."""

    layer: str
    file: str
    line: int | None = None
    # Of a bind: the unset variables whose default its source took (`${CVMFS_ROOT:-/cvmfs}`), for the message
    # about a missing source. Not part of the setting (a digest of settings leaves origins out).
    defaulted: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self):
        object.__setattr__(self, "defaulted", tuple(self.defaulted))  # a list, read back from JSON (seal.py)

    def __str__(self) -> str:
        return f"{self.layer} ({self.file}:{self.line})" if self.line else f"{self.layer} ({self.file})"


@dataclass(frozen=True)
class Bind:
    src: str
    dst: str
    mode: str = "ro"
    required: bool = True
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AutoBinds:
    inputs: str | None = "ro"
    outputs: str | None = "rw"


@dataclass(frozen=True)
class Layer:
    """Settings as written in one place; None means "not set here", so the layer below shows through."""

    origin: Origin
    use: tuple[str, ...] = ()  # "-name" drops a preset an earlier layer uses
    containment: str | None = None
    namespaces: tuple[str, ...] | None = None  # "-pid" removes an inherited pid
    network: str | None = None
    cleanenv: bool | None = None
    env: tuple[str, ...] | None = None  # "-LANG" removes an inherited LANG
    binds: tuple[Bind, ...] = ()
    dropped_binds: tuple[str, ...] = ()  # "-/cvmfs": destinations whose inherited bind this layer removes
    auto_binds: AutoBinds | None = None
    writable_tmpfs: bool | None = None
    gpu: bool | None = None
    workdir: str | None = None  # ro | rw: the workdir's mode in a contained job
    scratch: str | None = None  # a host folder in which each job gets its own /tmp; "" for none
    protected: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Floor:
    """A site's minimum, set by a site plugin: a workflow policy may not go below it."""

    containment: str = "none"
    namespaces: tuple[str, ...] = ()
    never_writable: tuple[str, ...] = ()
    plugin: str = ""  # filled in with the registering plugin's name


@dataclass(frozen=True)
class Site:
    """A site's own file: presets every policy may `use`, protected paths and a floor (policy/load.py)."""

    file: str
    presets: Mapping[str, "Layer"]
    protected: tuple[str, ...] = ()
    floor: Floor | None = None


@dataclass(frozen=True)
class Policy:
    file: str
    version: int
    runtime: str  # auto | apptainer | singularity
    image: str | None
    defaults: Layer
    presets: Mapping[str, Layer]
    rules: tuple[tuple[str, Layer], ...]  # keys in file order: exact names and glob patterns
    rerun_on_change: bool = False  # a changed containment or image reruns the rule's jobs (a hidden param)


@dataclass(frozen=True)
class Settings:
    """One rule's effective settings after every layer is merged; `origins` says which layer set each key."""

    containment: str
    namespaces: tuple[str, ...]
    network: str
    cleanenv: bool
    env: tuple[str, ...]
    binds: tuple[Bind, ...]
    auto_binds: AutoBinds
    writable_tmpfs: bool
    gpu: bool
    workdir: str
    scratch: str
    protected: tuple[str, ...]
    args: tuple[str, ...]
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def effective_namespaces(self) -> tuple[str, ...]:
        # --containall implies --pid and --ipc (measured: own PID and IPC namespaces).
        implied = ("pid", "ipc") if self.containment == "containall" else ()
        return tuple(ns for ns in NAMESPACES if ns in self.namespaces or ns in implied)

    @property
    def effective_cleanenv(self) -> bool:
        return self.cleanenv or self.containment == "containall"

    @property
    def isolates(self) -> bool:
        """True when running this rule on the host instead of in a container would break its policy."""
        return bool(self.containment != "none" or self.namespaces or self.binds or self.cleanenv
                    or self.writable_tmpfs or self.gpu or self.args)
