"""What the submit host checked, as plain data, so every job of the run gets exactly that.

The main process writes it (after the check, before anything is submitted) to .snakemake/singcontain/,
which contained jobs see read-only; a job's own Snakemake process (on a node, or a local subprocess) reads
it instead of expanding the policy again in another environment, and refuses to start a job when a file
the check depended on changed since (SC501) or a writable folder now leads elsewhere (SC502).
"""

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from .policy import AutoBinds, Bind, Origin, Settings

FORMAT = 1
FOLDER = os.path.join(".snakemake", "singcontain")
NAME = "checked.json"


@dataclass(frozen=True)
class Seal:
    settings: Mapping[str, Settings]  # rule -> the settings checked on the submit host
    image: str | None = None  # the policy's fallback image
    files: Mapping[str, str] = field(default_factory=dict)  # policy file, configfiles -> sha256
    images: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # local image -> (size, mtime_ns)
    links: Mapping[str, str] = field(default_factory=dict)  # symlinked folder on a writable path -> its target
    run_id: str = ""  # where the jobs' containment records go (records.py)
    rerun_on_change: bool = False


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def image_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


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
                       "links": dict(seal.links), "rerun_on_change": seal.rerun_on_change})


def loads(text: str) -> Seal:
    data = json.loads(text)
    if data.get("format") != FORMAT:
        raise ValueError(f"written by another version of snakemake-singcontain (format {data.get('format')})")
    return Seal({r: _settings(s) for r, s in data["settings"].items()}, data["image"], data["files"],
                {k: tuple(v) for k, v in data["images"].items()}, data["links"], data["run_id"], data["rerun_on_change"])


def changed_files(seal: Seal) -> list[str]:
    """Files the check read that differ now: 'config.yaml (content)'; computed on the node."""
    changed = []
    for path, digest in seal.files.items():
        try:
            same = sha256(path) == digest
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
        return f"image {image} changed since the check (size or modification time)"
    return None


def unchecked_links(paths: Iterable[str], links: Mapping[str, str]) -> list[tuple[str, str]]:
    """(folder, target) for each symlink on the way to `paths` that the check did not see: a folder a job
    swapped for a symlink since. One lstat per path component, only for writable folders."""
    found = []
    for path in paths:
        probe = path
        while probe not in ("/", ""):
            if os.path.islink(probe):
                target = os.readlink(probe)
                if links.get(probe) != target:
                    found.append((probe, target))
            probe = os.path.dirname(probe)
    return found


def symlinks_on(paths: Iterable[str]) -> dict[str, str]:
    """Every symlinked folder on the way to `paths`, with its target: what the check saw."""
    links = {}
    seen = set()
    for path in paths:
        probe = path
        while probe not in ("/", "") and probe not in seen:
            seen.add(probe)
            if os.path.islink(probe):
                links[probe] = os.readlink(probe)
            probe = os.path.dirname(probe)
    return links
