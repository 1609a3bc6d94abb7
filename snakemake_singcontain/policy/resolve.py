"""Merge a rule's layers into its effective Settings.

Precedence, lowest first: built-ins < `defaults` < presets named in `use` (defaults' first, then each
matching entry's, in order; a preset's own `use` comes before it) < matching glob keys (file order) <
the exact rule name < plugin adjustments. A preset used twice (directly or through other presets) is
applied once, at its first place. Merging, layer by layer:
- scalars (containment, network, cleanenv, writable_tmpfs, gpu, workdir, scratch, auto_binds): the later layer wins;
- binds: accumulate; a later bind to the same destination replaces the earlier one; "-/dst" drops the
  bind of that destination inherited so far (from defaults or a preset);
- use: "-name" drops a preset that an earlier layer (defaults) uses, and every preset it brought;
- namespaces, env: accumulate; an entry "-name" removes an inherited name;
- protected, args: accumulate (a protected path can never be removed by a later layer).
"""

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

from ..errors import PolicyError
from .model import AutoBinds, Bind, Layer, Origin, Policy, Settings

BUILTIN_PROTECTED = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr")

BUILTIN = Layer(
    origin=Origin("built-in", "snakemake-singcontain"),
    containment="contain", namespaces=(), network="none", cleanenv=False, env=(),
    auto_binds=AutoBinds(), writable_tmpfs=False, gpu=False, workdir="ro", scratch="", protected=BUILTIN_PROTECTED,
)

SCALARS = ("containment", "network", "cleanenv", "writable_tmpfs", "gpu", "workdir", "scratch", "auto_binds")


def is_pattern(key: str) -> bool:
    return any(c in key for c in "*?[")


def matching_layers(policy: Policy, rule: str) -> list[Layer]:
    globs = [layer for key, layer in policy.rules if is_pattern(key) and fnmatchcase(rule, key)]
    exact = [layer for key, layer in policy.rules if key == rule]
    return globs + exact


def check_presets(policy: Policy, presets: Mapping[str, Layer]) -> None:
    """Fail on an unknown preset name or a `use` cycle anywhere in the policy, used or not."""
    expanded: dict[str, list[str]] = {}
    for layer in [policy.defaults, *presets.values(), *(layer for _, layer in policy.rules)]:
        _expand_use(layer, presets, (), expanded)


def _expand_use(layer: Layer, presets: Mapping[str, Layer], chain: tuple[str, ...],
                expanded: dict[str, list[str]]) -> list[str]:
    """Names of the presets `layer` uses, each preceded by those it uses; each name once, at its first place."""
    out: list[str] = []
    for name in layer.use:
        if name.startswith("-"):
            name = name[1:]
            if name not in presets:
                where = dict(file=layer.origin.file, line=layer.key_lines.get("use") or layer.origin.line)
                raise PolicyError(f"{layer.origin.layer} drops unknown preset {name!r}",
                                  fix=f"use one of: {', '.join(sorted(presets)) or 'none defined'}", **where)
            continue
        where = dict(file=layer.origin.file, line=layer.key_lines.get("use") or layer.origin.line)
        if name not in presets:
            known = ", ".join(sorted(presets)) or "none defined"
            raise PolicyError(f"{layer.origin.layer} uses unknown preset {name!r}", fix=f"use one of: {known}", **where)
        if name in chain:
            raise PolicyError(f"presets use each other in a cycle: {' -> '.join(chain + (name,))}",
                              fix="remove one of the 'use' entries", **where)
        if name not in expanded:  # memoised: presets that share presets stay linear, not exponential
            expanded[name] = _expand_use(presets[name], presets, chain + (name,), expanded) + [name]
        out += [n for n in expanded[name] if n not in out]
    return out


def layers_for(policy: Policy, rule: str, presets: Mapping[str, Layer], adjustments: Sequence[Layer] = ()) -> list[Layer]:
    own = matching_layers(policy, rule)
    # The presets the layers name, in order; "-name" takes back a name an earlier layer gave, and with it
    # every preset it brought through its own `use` (unless a layer names that one itself).
    named: list[tuple[str, Layer]] = []
    dropped: set[str] = set()
    for layer in [policy.defaults, *own]:
        for name in layer.use:
            if name.startswith("-"):
                named = [(n, by) for n, by in named if n != name[1:]]
                dropped.add(name[1:])
            elif name not in (n for n, _ in named):
                named.append((name, layer))
                dropped.discard(name)
    expanded: dict[str, list[str]] = {}
    used: list[str] = []
    for name, layer in named:
        brought = _expand_use(Layer(layer.origin, use=(name,), key_lines=layer.key_lines), presets, (), expanded)
        used += [n for n in brought if n not in used and n not in dropped]
    return [BUILTIN, policy.defaults, *(presets[n] for n in used), *own, *adjustments]


def merge(layers: Sequence[Layer]) -> Settings:
    values: dict = {}
    origins: dict[str, str] = {}
    binds: dict[str, Bind] = {}
    lists = {"namespaces": [], "env": []}
    protected: list[str] = []
    args: list[str] = []

    def note(key: str, layer: Layer):
        origins[key] = str(Origin(layer.origin.layer, layer.origin.file, layer.key_lines.get(key) or layer.origin.line))

    for layer in layers:
        for key in SCALARS:
            if getattr(layer, key) is not None:
                values[key] = getattr(layer, key)
                note(key, layer)
        for key, current in lists.items():
            for item in getattr(layer, key) or ():
                name = item.removeprefix("-")
                if name in current:
                    current.remove(name)
                if not item.startswith("-"):
                    current.append(name)
                note(key, layer)
        for dst in layer.dropped_binds:
            binds.pop(dst, None)
        for bind in layer.binds:
            binds.pop(bind.dst, None)
            binds[bind.dst] = bind
        if layer.binds or layer.dropped_binds:
            note("binds", layer)
        protected += [p for p in layer.protected if p not in protected]
        args += layer.args
        for key in ("protected", "args"):
            if getattr(layer, key):
                note(key, layer)
    return Settings(**values, namespaces=tuple(lists["namespaces"]), env=tuple(lists["env"]),
                    binds=tuple(binds.values()), protected=tuple(protected), args=tuple(args), origins=origins)

