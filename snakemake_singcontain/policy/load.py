"""Policy file (YAML, version 1) -> Policy. Every mistake is a PolicyError naming file:line, key and fix."""

import difflib
import os
import posixpath
import stat
from collections.abc import Mapping
from dataclasses import replace

from ..errors import PolicyError
from ..paths import clean
from .expand import BadSyntax, UnsetVariable, defaulted, expand
from .model import CONTAINMENTS, MODES, NAMESPACES, AutoBinds, Bind, Floor, Layer, Origin, Policy, Site
from .yaml_lines import MAX_BYTES, load_with_lines

TOP_KEYS = ("version", "runtime", "image", "rerun_on_change", "defaults", "presets", "rules")
LAYER_KEYS = ("use", "containment", "namespaces", "network", "cleanenv", "env", "binds", "auto_binds",
              "writable_tmpfs", "gpu", "workdir", "scratch", "protected", "args")
BIND_KEYS = ("src", "dst", "mode", "required")
RUNTIMES = ("auto", "apptainer", "singularity")
SITE_KEYS = ("version", "presets", "protected", "floor")
FLOOR_KEYS = ("containment", "namespaces", "never_writable")


def load_policy(path: str | os.PathLike, env: Mapping[str, str] | None = None) -> Policy:
    file = str(path)
    data, lines = _read(file)
    env = os.environ if env is None else env
    return _Reader(file, lines, env, os.path.dirname(os.path.abspath(file))).policy(data)


# How a site file was chosen, told with each of its mistakes, and whom to ask.
ADMIN_SITE = "the admin's site file, read on every run", "ask its owner (the machine's admin) to correct it"
NAMED_SITE = "the site file SINGCONTAIN_SITE names", "correct it, or unset SINGCONTAIN_SITE"


def load_site(path: str, env: Mapping[str, str] | None = None, chosen: tuple[str, str] = NAMED_SITE) -> Site:
    """A site's own file: presets, protected paths and a floor no workflow policy goes below. `chosen`: how it
    was found (ADMIN_SITE or NAMED_SITE) and whom a mistake in it concerns."""
    how, ask = chosen
    try:
        data, lines = _read(path, f"{how} ({path})", ask)
        env = os.environ if env is None else env
        return _Reader(f"site file {path}", lines, env, os.path.dirname(os.path.abspath(path))).site(data)
    except PolicyError as err:
        if err.message.startswith("cannot read"):
            raise
        raise PolicyError(f"{err.message} (in {how})", file=err.file, line=err.line, fix=f"{err.fix}; {ask}") from None


def load_site_layers(admin_file: str, named: str | None, env: Mapping[str, str] | None = None) -> Site | None:
    """The admin's file (where it exists) always applies; a second file (a group's, named by SINGCONTAIN_SITE)
    on top may add presets, protected paths and a stricter floor, never lower or replace the admin's."""
    admin = load_site(admin_file, env, ADMIN_SITE) if os.path.lexists(admin_file) else None
    if not named or (admin and os.path.realpath(named) == os.path.realpath(admin_file)):
        return admin
    group = load_site(named, env, NAMED_SITE)
    if admin is None:
        return group
    for name, preset in group.presets.items():
        if name in admin.presets:
            raise PolicyError(f"preset {name!r} is already defined by the admin's site file {admin_file} (in "
                              f"{NAMED_SITE[0]})", file=preset.origin.file, line=preset.origin.line,
                              fix="give the preset another name: this file may add presets, not change the admin's")
    protected = admin.protected + tuple(p for p in group.protected if p not in admin.protected)
    return Site(f"{admin.file} and {group.file}", {**admin.presets, **group.presets}, protected,
                stricter_floor(admin.floor, group.floor))


def stricter_floor(a: Floor | None, b: Floor | None) -> Floor | None:
    """Both floors at once: the stricter containment, every namespace and never-writable path of either."""
    if a is None or b is None:
        return a or b
    return Floor(max(a.containment, b.containment, key=CONTAINMENTS.index),
                 tuple(dict.fromkeys(a.namespaces + b.namespaces)),
                 tuple(dict.fromkeys(a.never_writable + b.never_writable)), plugin=f"{a.plugin} and {b.plugin}")


def _read(file: str, what: str = "the policy file", fix: str = "check the path given to contain(), --policy or "
          "SINGCONTAIN_POLICY"):
    try:
        # A FIFO or device would hang the read, a huge file exhaust memory: only a regular, policy-sized file.
        with open(file, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BYTES:
                kind = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"{st.st_size} bytes"
                raise PolicyError(f"cannot read {what}: it is {kind}; a policy is a regular file of at most "
                                  f"{MAX_BYTES} bytes", file=file, fix=fix if what != "the policy file" else
                                  "point contain() at the policy file itself")
            raw = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise PolicyError(f"cannot read {what}: {err.strerror}", file=file, fix=fix) from None
    return load_with_lines(raw, file)


def parse_layer(data, *, label: str, file: str, env: Mapping[str, str], base_dir: str) -> Layer:
    """A layer from plain data, e.g. a plugin's preset (no line numbers there)."""
    return _Reader(file, {}, env, base_dir).layer(data, (), label)


class _Reader:
    def __init__(self, file: str, lines, env: Mapping[str, str], base_dir: str):
        self.file, self.lines, self.env, self.base_dir = file, lines, env, base_dir

    def fail(self, path: tuple, message: str, fix: str):
        line = None
        for end in range(len(path), -1, -1):  # the nearest line known for this key or a parent
            line = self.lines.get(path[:end])
            if line:
                break
        raise PolicyError(message, file=self.file, line=line, fix=fix)

    def policy(self, data) -> Policy:
        if not isinstance(data, dict):
            self.fail((), "the policy must be a mapping with at least 'version: 1'", "start the file with: version: 1")
        self.known_keys(data, (), TOP_KEYS, "the top level")
        if type(data.get("version")) is not int or data["version"] != 1:
            self.fail(("version",), f"unsupported policy version {data.get('version')!r}",
                      "write 'version: 1' (the only version this plugin reads)")
        runtime = data.get("runtime", "auto")
        if runtime not in RUNTIMES:
            self.fail(("runtime",), f"unknown runtime {runtime!r}", did_you_mean(runtime, RUNTIMES))
        image = data.get("image")
        if image is not None:
            image = self.text(image, ("image",))
        presets = self.mapping(data.get("presets", {}), ("presets",))
        rules = self.mapping(data.get("rules", {}), ("rules",))
        for section, entries in (("presets", presets), ("rules", rules)):
            self.misplaced_settings(section, entries)
        rerun = self.boolean(data.get("rerun_on_change", False), ("rerun_on_change",))
        return Policy(
            file=self.file, version=1, runtime=runtime, image=image, rerun_on_change=rerun,
            defaults=self.layer(data.get("defaults", {}), ("defaults",), "defaults"),
            presets={name: self.layer(value, ("presets", name), f"preset {name}") for name, value in presets.items()},
            rules=tuple((key, self.layer(value, ("rules", key), f"rules[{key!r}]")) for key, value in rules.items()),
        )

    def site(self, data) -> Site:
        if not isinstance(data, dict):
            self.fail((), "the site file must be a mapping with at least 'version: 1'", "start the file with: version: 1")
        self.known_keys(data, (), SITE_KEYS, "the site file")
        if type(data.get("version")) is not int or data["version"] != 1:
            self.fail(("version",), f"unsupported site file version {data.get('version')!r}", "write 'version: 1'")
        presets = self.mapping(data.get("presets", {}), ("presets",))
        protected = tuple(self.absolute(p, ("protected", i))
                          for i, p in enumerate(self.strings(data.get("protected", []), ("protected",))))
        floor = None
        if "floor" in data:
            raw = self.mapping(data["floor"], ("floor",))
            self.known_keys(raw, ("floor",), FLOOR_KEYS, "floor")
            containment = raw.get("containment", "none")
            if containment not in CONTAINMENTS:
                self.fail(("floor", "containment"), f"unknown containment {containment!r}",
                          f"use one of: {', '.join(CONTAINMENTS)}")
            namespaces = tuple(self.strings(raw.get("namespaces", []), ("floor", "namespaces")))
            for i, ns in enumerate(namespaces):
                if ns not in NAMESPACES:
                    self.fail(("floor", "namespaces", i), f"unknown namespace {ns!r}", f"use any of: {', '.join(NAMESPACES)}")
            never = tuple(self.absolute(p, ("floor", "never_writable", i)) for i, p in
                          enumerate(self.strings(raw.get("never_writable", []), ("floor", "never_writable"))))
            floor = Floor(containment, namespaces, never, plugin=f"{self.file}:{self.lines.get(('floor',))}")
        return Site(self.file, {name: self.layer(value, ("presets", name), f"preset {name}")
                                for name, value in presets.items()}, protected, floor)

    def misplaced_settings(self, section: str, entries: dict):
        """`binds:` (or another setting) one level too shallow under presets: or rules:, where a name is
        expected: the YAML reads it as a preset or rule of that name. Told as the slip it is."""
        for name, value in entries.items():
            if name in LAYER_KEYS and not isinstance(value, dict):
                kind = "preset" if section == "presets" else "rule"
                self.fail((section, name), f"'{name}:' under '{section}:' is read as a {kind} named {name!r}: "
                          f"a setting where a {kind}'s name belongs",
                          f"indent '{name}:' under the {kind} it belongs to ({section}: {{NAME: {{{name}: …}}}}), "
                          f"or, for every rule, move it under 'defaults:'")

    def known_keys(self, data: dict, path: tuple, allowed: tuple, where: str):
        for key in data:
            if key not in allowed:
                self.fail(path + (key,), f"unknown key {key!r} in {where}", did_you_mean(key, allowed))

    def mapping(self, value, path: tuple) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"'{path[-1]}' must be a mapping, not {_kind(value)}", f"write '{path[-1]}:' followed by indented 'key: value' lines")
        return value

    def text(self, value, path: tuple) -> str:
        if not isinstance(value, str) or not value:
            self.fail(path, f"'{_name(path)}' must be non-empty text, not {_kind(value)}", "write a quoted string")
        try:
            text = expand(value, self.env)
        except UnsetVariable as err:
            self.fail(path, f"environment variable {err.name} is not set (in {value!r})",
                      f"export {err.name}, or give a default: ${{{err.name}:-/some/path}}")
        except BadSyntax as err:
            self.fail(path, f"bad variable syntax in {value!r}: {err}", "write ${NAME} or ${NAME:-default}")
        # Checked after expansion: a variable may be empty or hold a newline.
        if not text:
            self.fail(path, f"'{_name(path)}' is empty after expanding {value!r}", "set the variable, or give a default")
        if any(c in text for c in "\n\r\0"):
            self.fail(path, f"'{_name(path)}' contains a newline or NUL (after expanding {value!r})", "write it on one line")
        return text

    def boolean(self, value, path: tuple) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"'{_name(path)}' must be true or false, not {_kind(value)}", "write true or false")
        return value

    def strings(self, value, path: tuple) -> list:
        if not isinstance(value, list):
            self.fail(path, f"'{_name(path)}' must be a list, not {_kind(value)}", f"write {_name(path)}: [a, b]")
        return [self.text(item, path + (i,)) for i, item in enumerate(value)]

    def absolute(self, value: str, path: tuple) -> str:
        if not value.startswith("/"):
            self.fail(path, f"{value!r} is not an absolute path", "write a path starting with '/'")
        return clean(value)

    def layer(self, data, path: tuple, label: str) -> Layer:
        data = self.mapping(data, path) if path else (data or {})
        self.known_keys(data, path, LAYER_KEYS, label)
        get = {}
        if "containment" in data:
            value = data["containment"]
            if value not in CONTAINMENTS:
                self.fail(path + ("containment",), f"unknown containment {value!r}", did_you_mean(value, CONTAINMENTS))
            get["containment"] = value
        for key in ("namespaces", "env"):
            if key in data:
                items = self.strings(data[key], path + (key,))
                for i, item in enumerate(items):
                    name = item.removeprefix("-")
                    if key == "namespaces" and name not in NAMESPACES:
                        self.fail(path + (key, i), f"unknown namespace {item!r}",
                                  did_you_mean(name, NAMESPACES, "use any of") + " (prefix '-' to drop an inherited one)")
                    if key == "env" and not (name.replace("_", "a").isalnum() and not name[0].isdigit()):
                        self.fail(path + (key, i), f"{item!r} is not an environment variable name", "write a name such as LANG")
                get[key] = tuple(dict.fromkeys(items))
        if "workdir" in data:
            if data["workdir"] not in MODES:
                self.fail(path + ("workdir",), f"workdir cannot be {data['workdir']!r}",
                          "write workdir: ro (the default) or workdir: rw (the job may write anywhere in the workdir)")
            get["workdir"] = data["workdir"]
        if "scratch" in data:
            value = data["scratch"]
            get["scratch"] = "" if value is False else self.absolute(self.text(value, path + ("scratch",)),
                                                                     path + ("scratch",))
        if "network" in data:
            get["network"] = self.text(data["network"], path + ("network",))
        for key in ("cleanenv", "writable_tmpfs", "gpu"):
            if key in data:
                get[key] = self.boolean(data[key], path + (key,))
        if "use" in data:
            get["use"] = tuple(self.strings(data["use"], path + ("use",)))
        if "args" in data:
            get["args"] = tuple(self.strings(data["args"], path + ("args",)))
        if "protected" in data:
            get["protected"] = tuple(self.absolute(p, path + ("protected", i))
                                     for i, p in enumerate(self.strings(data["protected"], path + ("protected",))))
        if "auto_binds" in data:
            get["auto_binds"] = self.auto_binds(data["auto_binds"], path + ("auto_binds",))
        if "binds" in data:
            get["binds"] = self.binds(data["binds"], path + ("binds",), label)
            get["dropped_binds"] = tuple(self.absolute(self.text(item, path + ("binds", i))[1:], path + ("binds", i))
                                         for i, item in enumerate(data["binds"]) if isinstance(item, str) and item.startswith("-"))
        key_lines = {key: self.lines.get(path + (key,)) for key in data}
        origin = Origin(label, self.file, self.lines.get(path))
        return Layer(origin=origin, key_lines=key_lines, **get)

    def auto_binds(self, value, path: tuple) -> AutoBinds:
        if value is False:
            return AutoBinds(inputs=None, outputs=None)
        value = self.mapping(value, path)
        self.known_keys(value, path, ("inputs", "outputs"), "auto_binds")
        result = {}
        for key, modes in (("inputs", ("ro", "rw")), ("outputs", ("rw",))):
            mode = value.get(key, modes[0])
            if mode is not False and not (isinstance(mode, str) and mode in modes):
                self.fail(path + (key,), f"auto_binds.{key} cannot be {mode!r}", f"use one of: {', '.join(modes)}, false")
            result[key] = mode or None
        return AutoBinds(**result)

    def binds(self, value, path: tuple, label: str) -> tuple[Bind, ...]:
        if not isinstance(value, list):
            self.fail(path, f"'binds' must be a list, not {_kind(value)}", "write binds: [/cvmfs:ro, {src: ..., dst: ..., mode: rw}]")
        by_dst: dict[str, Bind] = {}
        for i, item in enumerate(value):
            if isinstance(item, str) and item.startswith("-"):
                continue  # "-/cvmfs": drops an inherited bind (dropped_binds)
            bind = self.bind(item, path + (i,), label)
            twin = by_dst.get(bind.dst)
            if twin and twin != bind:
                self.fail(path + (i,), f"destination {bind.dst} is bound twice in one list ({twin.src}:{twin.mode} and {bind.src}:{bind.mode})",
                          "keep one bind for each destination")
            by_dst[bind.dst] = bind
        return tuple(by_dst.values())

    def bind(self, item, path: tuple, label: str) -> Bind:
        origin = Origin(label, self.file, self.lines.get(path))
        if isinstance(item, str):
            self.text(item, path)  # the whole item's syntax and variables, told once
            # Split before expanding: a variable's value is data, so a ':' in it never adds a DST or a mode.
            parts = split_short_bind(item)
            mode = "ro"
            if len(parts) > 1 and parts[-1] in MODES:
                mode = parts.pop()
            elif len(parts) > 1 and parts[-1].lower() in MODES:  # ':RW' would otherwise be taken for a destination
                self.fail(path, f"bind mode {parts[-1]!r} in {item!r} must be written in lower case",
                          f"write :{parts[-1].lower()} (a mode is ro or rw, lower case)")
            if len(parts) > 2 or not all(parts):
                self.fail(path, f"bad bind {item!r}", "write SRC[:DST][:ro|rw], or the long form {src: ..., dst: ..., mode: ro} for a path with ':'")
            src, written = self.text(parts[0], path), parts[0]
            dst, required = (self.text(parts[1], path) if len(parts) == 2 else None), True
        else:
            item = self.mapping(item, path)
            self.known_keys(item, path, BIND_KEYS, "a bind")
            if "src" not in item:
                self.fail(path, "a bind needs 'src'", "write {src: /host/path, dst: /container/path, mode: ro}")
            src, written = self.text(item["src"], path + ("src",)), item["src"]
            dst = self.text(item["dst"], path + ("dst",)) if "dst" in item else None
            mode = item.get("mode", "ro")
            if mode not in MODES:
                self.fail(path + ("mode",), f"unknown bind mode {mode!r}", "use ro or rw (lower case)")
            required = self.boolean(item.get("required", True), path + ("required",))
        if not src.startswith("/"):
            # Every message about this bind (SC301 "does not exist", SC306 …) shows its origin: say there what
            # the relative source was taken relative to.
            origin = Origin(f"{label}, source {src!r} relative to {self.base_dir}, the policy's folder",
                            self.file, origin.line)
        src = clean(posixpath.join(self.base_dir, src))  # relative to the policy's folder
        dst = dst or src
        if not dst.startswith("/"):
            short = isinstance(item, str) and "/" not in dst
            self.fail(path, f"bind destination {dst!r} is not absolute",
                      "write a destination starting with '/'" + (" (after SRC, ':' is followed by a destination or a "
                                                                  "mode, ro or rw in lower case)" if short else ""))
        origin = replace(origin, defaulted=defaulted(written, self.env))
        return Bind(src=src, dst=clean(dst), mode=mode, required=required, origin=origin)


def split_short_bind(text: str) -> list[str]:
    """'${A:-/x}:/dst:ro' -> ['${A:-/x}', '/dst', 'ro']: ':' splits only outside ${...}."""
    parts, current, depth, i = [], [], 0, 0
    while i < len(text):
        if text.startswith("$$", i) or text.startswith("${", i):
            depth += text[i + 1] == "{"
            current.append(text[i:i + 2])
            i += 2
            continue
        char = text[i]
        if char == "}" and depth:
            depth -= 1
        if char == ":" and not depth:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    return parts + ["".join(current)]


def did_you_mean(given, choices, lead: str = "use one of") -> str:
    """The fix for an unknown key or value: the closest known one first (case ignored), then all of them."""
    known = f"{lead}: {', '.join(choices)}"
    if not isinstance(given, str):
        return known
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(given.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean {lowered[close[0]]!r}? ({known})" if close else known


def _name(path: tuple) -> str:
    return ".".join(str(p) for p in path) or "the file"


def _kind(value) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", type(None): "empty"}.get(type(value), type(value).__name__)
