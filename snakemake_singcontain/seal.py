"""What the submit host checked, as plain data, so every job of the run gets exactly that.

The main process writes it (after the check, before anything is submitted) to .snakemake/singcontain/,
which no job in a container can write; a job's own Snakemake process (on a node, or a local subprocess)
reads it instead of expanding the policy again in another environment. The file is not trusted for being
there: its sha256 travels on every job's command line (`--singcontain-seal=`, in the --apptainer-args that
Snakemake passes to the job's process), and a seal that differs is refused (SC501), as is a job whose
policy file, configfile or image changed since the check, or whose writable policy bind now leads elsewhere
(SC502). Nothing else is sealed about links: they are judged by real path when each job starts (plan.py),
whoever made them.
"""

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from .policy import AutoBinds, Bind, Origin, Settings
from .records import image_identity, sha256

FORMAT = 2
FOLDER = os.path.join(".snakemake", "singcontain")
NAME = "checked.json"
MARKER = "--singcontain-seal="  # its digest, among the --apptainer-args every job's process is started with


@dataclass(frozen=True)
class Seal:
    settings: Mapping[str, Settings]  # rule -> the settings checked on the submit host
    image: str | None = None  # the policy's fallback image
    files: Mapping[str, str] = field(default_factory=dict)  # policy file, configfiles -> sha256
    images: Mapping[str, tuple] = field(default_factory=dict)  # local image -> records.image_identity()
    sources: Mapping[str, str] = field(default_factory=dict)  # writable policy bind source -> its real path then
    run_id: str = ""  # where the jobs' containment records go (records.py)
    rerun_on_change: bool = False


def of_check(settings: Mapping[str, Settings], image: str | None, images: list[str], run_id: str,
             rerun_on_change: bool, files: list[str] = ()) -> Seal:
    """The seal of what the main process checked: each local image's identity, each writable policy bind's real
    source, and the sha256 of `files` (the policy, the configfiles; left out by a dry run, which starts no job)."""
    return Seal(settings, image, files={path: sha256(path) for path in files if os.path.isfile(path)},
                images={path: image_identity(path) for path in images if os.path.exists(path)},
                sources={b.src: os.path.realpath(b.src) for s in settings.values() for b in s.binds if b.mode == "rw"},
                run_id=run_id, rerun_on_change=rerun_on_change)


def _bind_data(bind: Bind) -> dict:
    data = asdict(bind)
    data["origin"] = asdict(bind.origin) if bind.origin else None
    return data


def settings_data(s: Settings) -> dict:
    data = {k: v for k, v in asdict(s).items() if k not in ("binds", "auto_binds", "origins")}
    data["binds"] = [_bind_data(b) for b in s.binds]
    data["auto_binds"] = asdict(s.auto_binds)
    data["origins"] = dict(s.origins)
    return data


def _settings(data: dict) -> Settings:
    binds = tuple(Bind(**{**b, "origin": Origin(**b["origin"]) if b["origin"] else None}) for b in data["binds"])
    lists = {k: tuple(data[k]) for k in ("namespaces", "env", "protected", "args")}
    rest = {k: v for k, v in data.items() if k not in ("binds", "auto_binds", *lists)}
    return Settings(**rest, **lists, binds=binds, auto_binds=AutoBinds(**data["auto_binds"]))


def dumps(seal: Seal) -> str:
    return json.dumps({"format": FORMAT, "settings": {r: settings_data(s) for r, s in seal.settings.items()},
                       "image": seal.image, "run_id": seal.run_id,
                       "files": dict(seal.files), "images": {k: list(v) for k, v in seal.images.items()},
                       "sources": dict(seal.sources), "rerun_on_change": seal.rerun_on_change})


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class SealError(Exception):
    """The seal cannot be read, or is not the one the main process wrote: no job starts."""


def write(seal: Seal) -> str:
    """Write the seal into FOLDER of the workdir (the current folder), whole or not at all for a node reading it;
    returns its digest, for every job's command line."""
    text = dumps(seal)
    os.makedirs(FOLDER, exist_ok=True)
    tmp = os.path.join(FOLDER, f".{NAME}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(FOLDER, NAME))
    return digest(text)


def read(expected_digest: str | None, host: str) -> Seal:
    """The seal the main process wrote, in a job's own process on `host`: only with the digest its command line
    carries (`expected_digest`), which no job can change."""
    path = os.path.join(FOLDER, NAME)

    def unreadable(why: str) -> SealError:
        return SealError(f"the settings checked for this run ({os.path.abspath(path)}) cannot be read on {host}: "
                         f"{why}; the workdir must be on a file system shared with the submit host, and the run "
                         "started with this plugin")

    try:
        with open(path) as f:
            text = f.read()
    except OSError as err:
        raise unreadable(err.strerror) from None
    if expected_digest is None or digest(text) != expected_digest:  # verified before anything in it is read
        raise SealError(f"SC501 the settings checked for this run ({os.path.abspath(path)}) differ from those the "
                        f"main process sealed for this job (changed since the check); refusing on {host}")
    try:
        return loads(text)
    except ValueError as err:  # the main process's own seal, of another version of this plugin
        raise unreadable(str(err)) from None


def carried_digest(words: list[str]) -> str | None:
    """The seal's digest among a job's --apptainer-args words (the last one given), or None."""
    found = [w[len(MARKER):] for w in words if w.startswith(MARKER)]
    return found[-1] if found else None


def loads(text: str) -> Seal:
    data = json.loads(text)
    if data.get("format") != FORMAT:
        raise ValueError(f"written by another version of snakemake-singcontain (format {data.get('format')})")
    return Seal({r: _settings(s) for r, s in data["settings"].items()}, data["image"], data["files"],
                {k: tuple(v) for k, v in data["images"].items()}, data["sources"], data["run_id"],
                data["rerun_on_change"])


def changed_files(seal: Seal) -> list[str]:
    """Files the check read that differ now: 'config.yaml (content)'; computed on the node."""
    changed = []
    for path, expected in seal.files.items():
        try:
            same = sha256(path) == expected
        except OSError:
            same = False
        if not same:
            changed.append(path)
    return changed


def changed_image(seal: Seal, image: str) -> str | None:
    """Why a local image is not the one checked, or None. Remote images (pulled to a hash path) are
    recorded once pulled; an image path the check never saw is refused."""
    if image not in seal.images:
        return f"image {image} was not among the images checked on the submit host"
    if image_identity(image) != seal.images[image]:
        return f"image {image} changed since the check (replaced or rewritten)"
    return None


def moved_sources(seal: Seal, sources: list[str]) -> list[tuple[str, str]]:
    """(source, where it leads now) for each writable policy bind source that leads elsewhere than when it was
    checked: a folder that something replaced by a link since."""
    return [(src, now) for src in sources if src in seal.sources and (now := os.path.realpath(src)) != seal.sources[src]]
