"""The JSON Schema (draft 2020-12) of the policy file, generated from the loader's key lists and the model's
constants, so an editor can complete keys and flag typos while the policy is written.

The shipped `schema.json` is this module's output (`python -m snakemake_singcontain.schema > schema.json`);
tests/unit/test_schema.py fails when the two differ. The loader stays the authority: it also checks what a
schema cannot (variables, presets that exist, bind destinations), and tells each mistake as file:line.
"""

import json
from importlib import resources

from .policy.load import BIND_KEYS, LAYER_KEYS, RUNTIMES, TOP_KEYS
from .policy.expand import MAX_NESTING
from .policy.model import CONTAINMENTS, MODES, NAMESPACES

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _variable(depth: int) -> str:
    """${NAME} or ${NAME:-default}, defaults nesting `depth` levels as the loader allows (policy/expand.py)."""
    default = "" if depth == 0 else r"(?::-(?:[^${}\n\r\x00]|\$\$|" + _variable(depth - 1) + ")*)?"
    return r"\$\{[A-Za-z_][A-Za-z0-9_]*" + default + r"\}"


# Patterns in the loader's own terms; ECMAScript and Python regexes alike (editors run the former). Every text
# value is expanded, so a '$' starts ${NAME}, ${NAME:-default} or $$ (a bare $USER is refused).
VARIABLE = _variable(MAX_NESTING)
CHARS = r"(?:[^$\n\r\x00]|\$\$|" + VARIABLE + ")"
PART = r"(?:[^:$\n\r\x00]|\$\$|" + VARIABLE + ")+"  # one part of a short bind: ':' splits only outside ${…}
ABSOLUTE = r"(?=/|\$\{)"  # absolute, or a variable whose value the schema cannot know
END = r"(?![\s\S])"  # the very end: Python's '$' also matches before a final newline
TEXT = {"type": "string", "minLength": 1, "pattern": f"^{CHARS}+{END}"}
TEXTS = {"type": "array", "items": TEXT}
ABSOLUTE_TEXT = {"type": "string", "pattern": f"^{ABSOLUTE}{CHARS}+{END}"}
# SRC[:DST][:ro|rw] with an absolute DST and a lower-case mode, or -SRC (drops an inherited bind)
SHORT_BIND = f"^(?:-{ABSOLUTE}{CHARS}+|{PART}(?::{ABSOLUTE}{PART})?(?::(?:ro|rw))?){END}"


def _layer_properties() -> dict:
    namespace_items = [*NAMESPACES, *(f"-{ns}" for ns in NAMESPACES)]
    return {
        "use": {
            "description": "Presets to apply, in order, before this entry's own keys: built-in `cvmfs` and `afs` "
                           "(read-only /cvmfs and /afs), those of site plugins, and those under `presets:`.",
            **TEXTS,
        },
        "containment": {
            "description": "How much of the host the container sees. none: Apptainer's defaults (the host's "
                           "/tmp and the bind paths of its configuration); contain: only the workdir, the job's "
                           "files and the binds; containall: contain plus a clean environment and own PID and IPC "
                           "namespaces.",
            "enum": list(CONTAINMENTS),
        },
        "namespaces": {
            "description": "Extra namespaces for the job (net also needs `network`). Accumulate over layers; "
                           "an entry '-name' drops an inherited one.",
            "type": "array", "items": {"enum": namespace_items},
        },
        "network": {
            "description": "Network type with namespace net (--network), e.g. none; the runtime's "
                           "configuration decides which types an ordinary user may use.",
            **TEXT,
        },
        "cleanenv": {
            "description": "Start from an empty environment (--cleanenv); only `env` crosses. "
                           "Implied by containment: containall.",
            "type": "boolean",
        },
        "env": {
            "description": "Host environment variables let into a clean environment (cleanenv or containall). "
                           "Accumulate over layers; '-NAME' drops an inherited one.",
            "type": "array", "items": {"type": "string", "pattern": "^-?[A-Za-z_][A-Za-z0-9_]*$"},
        },
        "binds": {
            "description": "Host folders shown in the container. Accumulate over layers; a later bind to the "
                           "same destination replaces the earlier one. Short form SRC[:DST][:ro|rw] "
                           "(read-only by default), or the long form for paths with ':'. ${VAR} and "
                           "${VAR:-default} are expanded; a relative SRC is relative to the policy's folder.",
            "type": "array", "items": {"$ref": "#/$defs/bind"},
        },
        "auto_binds": {
            "description": "Bind the folders of each job's inputs and outputs that no bind shows, at their own "
                           "path; false turns both off.",
            "oneOf": [
                {"const": False},
                {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "inputs": {"description": "Mode for input folders (default ro); false: off.",
                                   "enum": ["ro", "rw", False]},
                        "outputs": {"description": "Mode for output and log folders (default rw); false: off.",
                                    "enum": ["rw", False]},
                    },
                },
            ],
        },
        "writable_tmpfs": {
            "description": "A writable, in-memory overlay over the image (--writable-tmpfs).",
            "type": "boolean",
        },
        "gpu": {"description": "Expose NVIDIA GPUs (--nv).", "type": "boolean"},
        "workdir": {
            "description": "The workdir's mode in a contained job: ro (default: the job writes only the folders of "
                           "its own outputs and logs) or rw (it may write anywhere in the workdir; .snakemake stays "
                           "read-only).",
            "enum": list(MODES),
        },
        "scratch": {
            "description": "A host folder (absolute) in which each job gets its own folder, bound as the job's /tmp "
                           "(instead of a small in-memory /tmp under contain) and removed when the job ends; "
                           "false: none.",
            "oneOf": [{"const": False}, ABSOLUTE_TEXT],
        },
        "protected": {
            "description": "Host paths that must never be bound writable (nor anything under them). Accumulate "
                           "over layers; built in: /bin /boot /dev /etc /lib /lib64 /proc /sbin /sys /usr.",
            "type": "array", "items": ABSOLUTE_TEXT,
        },
        "args": {
            "description": "Further `apptainer exec` flags, one word per item. Flags the policy owns "
                           "(--bind, --contain, --pid, --env …) are refused (SC104).",
            **TEXTS,
        },
    }


def _bind_properties() -> dict:
    return {
        "src": {"description": "Host path; ${VAR} and ${VAR:-default} are expanded.", **TEXT},
        "dst": {"description": "Path in the container (absolute); default: the same as src.", **ABSOLUTE_TEXT},
        "mode": {"description": "ro (default) or rw.", "enum": list(MODES)},
        "required": {"description": "true (default): a missing src stops the run (SC301); false: it is skipped "
                                    "with a warning (SC302).", "type": "boolean"},
    }


def _top_properties() -> dict:
    layer = {"$ref": "#/$defs/layer"}
    return {
        "version": {"description": "The policy format version; only 1 exists.", "const": 1},
        "runtime": {"description": "The container runtime to check against, found on PATH; auto: apptainer, "
                                   "else singularity.",
                    "enum": list(RUNTIMES), "default": "auto"},
        "rerun_on_change": {"description": "Rerun a rule's jobs when its containment settings or its image "
                                           "(a local file's content) changed since they ran (Snakemake's params "
                                           "rerun trigger; off by default).", "type": "boolean"},
        "image": {"description": "Image for rules that name none with `container:` (a .sif path or a docker:// "
                                 "URL); null: none.", "oneOf": [TEXT, {"type": "null"}]},
        "defaults": {"description": "Settings of every rule, below presets and `rules:` entries.", **layer},
        "presets": {"description": "Named sets of settings that `use:` applies.",
                    "type": ["object", "null"], "additionalProperties": layer},
        "rules": {"description": "Settings per rule: keys are rule names or glob patterns (\"simulate_*\"). "
                                 "Precedence: defaults < presets used < matching patterns (file order) < the "
                                 "exact name.",
                  "type": ["object", "null"], "additionalProperties": layer},
    }


def _pick(definitions: dict, keys: tuple, what: str) -> dict:
    """Exactly the loader's keys, in its order: a key the loader reads but the schema lacks is a bug here."""
    missing = [k for k in keys if k not in definitions]
    extra = [k for k in definitions if k not in keys]
    if missing or extra:
        raise RuntimeError(f"schema and loader disagree on {what}: missing {missing}, unknown {extra}")
    return {k: definitions[k] for k in keys}


def generate() -> dict:
    return {
        "$schema": DIALECT,
        "title": "snakemake-singcontain containment policy, version 1",
        "description": (
            "Per-rule Apptainer containment and binds for a Snakemake workflow (containment.yaml). "
            "Editors with the YAML language server (VS Code's YAML extension, Neovim, Helix …) validate and "
            "complete the file when its first line is `# yaml-language-server: $schema=<path to schema.json>`; "
            "`singcontain schema --path` prints that path, `singcontain schema` the schema. The plugin's own "
            "loader and `singcontain check` remain the authority and name file:line for every mistake."
        ),
        "type": "object",
        "required": ["version"],
        "additionalProperties": False,
        "properties": _pick(_top_properties(), TOP_KEYS, "the top-level keys"),
        "$defs": {
            "layer": {
                "description": "Settings as written in one place (defaults, a preset, a rules entry); a key "
                               "left out inherits from the layer below.",
                "type": ["object", "null"],
                "additionalProperties": False,
                "properties": _pick(_layer_properties(), LAYER_KEYS, "the keys of a layer"),
            },
            "bind": {
                "oneOf": [
                    {"description": "SRC[:DST][:ro|rw], e.g. /cvmfs:ro or ${DUST}:/dust:rw; DST absolute, the "
                                    "mode ro or rw in lower case. '-SRC' drops a bind inherited from below.",
                     "type": "string", "pattern": SHORT_BIND},
                    {
                        "description": "The long form, for paths with ':' or ','.",
                        "type": "object", "required": ["src"], "additionalProperties": False,
                        "properties": _pick(_bind_properties(), BIND_KEYS, "the keys of a bind"),
                    },
                ],
            },
        },
    }


def dumps(schema: dict | None = None) -> str:
    return json.dumps(generate() if schema is None else schema, indent=2) + "\n"


def shipped_path():
    """The schema.json installed with the package (a Traversable; a real file for a normal install)."""
    return resources.files(__package__).joinpath("schema.json")


if __name__ == "__main__":
    print(dumps(), end="")
