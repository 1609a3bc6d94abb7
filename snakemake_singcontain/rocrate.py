"""A recorded run (records.py) as a Workflow Run RO-Crate of the Provenance Run Crate profile (0.5).

What a reader of the crate finds (docs/records.md): the Snakefile as the workflow, each rule as a tool and a
step, the run as one CreateAction, each job as a CreateAction with its inputs, outputs, times and status,
the image it ran in (a ContainerImage with its sha256) and its containment as PropertyValues: the flags,
the binds, the policy's digest, the attestation's digest. RO-Crate has no term for container flags, so they
are `additionalProperty` values with a `propertyID` of their own.

`crate()` is pure (records in, JSON-LD out); `write()` copies the Snakefile in and writes the metadata.
"""

import hashlib
import json
import os
import shlex
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone

from . import records

PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.5": "Process Run Crate",
    "https://w3id.org/ro/wfrun/workflow/0.5": "Workflow Run Crate",
    "https://w3id.org/ro/wfrun/provenance/0.5": "Provenance Run Crate",
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": "Workflow RO-Crate",
}
TERMS = "https://w3id.org/ro/terms/workflow-run#"
# The Workflow Run terms this crate uses, inline (valid JSON-LD; the crate reads without fetching them).
CONTEXT = ["https://w3id.org/ro/crate/1.1/context",
           {term: TERMS + term for term in ("ContainerImage", "containerImage", "SIFImage", "DockerImage", "registry",
                                            "tag", "sha256")}]
SNAKEMAKE = "https://w3id.org/workflowhub/workflow-ro-crate#snakemake"
ENGINE = "#snakemake"
SNAKEFILES = ("Snakefile", "snakefile", "workflow/Snakefile", "workflow/snakefile")  # Snakemake's defaults
PROPERTY = "snakemake-singcontain:"  # the propertyID of each containment property: a name, there is no term
STATUS = {True: "http://schema.org/CompletedActionStatus", False: "http://schema.org/FailedActionStatus"}
LICENSE = "https://spdx.org/licenses/CC0-1.0"  # of the crate's metadata; the user may choose another


def _time(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, timezone.utc).isoformat() if t else None


def _ref(entity_id: str) -> dict:
    return {"@id": entity_id}


class _Files:
    """File entities: a path in the crate's folder by its relative path, elsewhere by its file:// URI."""

    def __init__(self, workdir: str, crate_dir: str):
        self.workdir, self.crate_dir, self.entities = workdir, os.path.abspath(crate_dir), {}

    def ref(self, path: str) -> dict:
        full = os.path.normpath(os.path.join(self.workdir, path))
        inside = os.path.relpath(full, self.crate_dir)
        entity_id = inside if not inside.startswith("..") else "file://" + full
        name = os.path.relpath(full, self.workdir) if full.startswith(self.workdir + os.sep) else full
        self.entities.setdefault(entity_id, {"@id": entity_id, "@type": "File", "name": name})
        return _ref(entity_id)


def _image(record: dict) -> dict:
    name, sha = record.get("image") or record.get("image_path") or "?", record.get("image_sha256")
    entity = {"@id": f"#image-{sha or hashlib.sha256(name.encode()).hexdigest()}", "@type": "ContainerImage",
              "name": name, "additionalType": _ref(TERMS + "SIFImage")}  # what ran: a SIF file (pulled ones too)
    if sha:
        entity["sha256"] = sha
    if "://" in name and not name.startswith(("file://", "library://")):
        location, _, tag = name.split("://", 1)[1].rpartition(":")
        if "/" in tag or not location:  # no tag: a registry port or a plain name
            location, tag = name.split("://", 1)[1], ""
        entity["registry"] = location.split("/")[0] if "." in location.split("/")[0] else "docker.io"
        if tag:
            entity["tag"] = tag
    return entity


def _bind_units(argv: Sequence[str]) -> list[str]:
    return [u.split(" ", 1)[1] for u in records.units(list(argv)) if u.split(" ", 1)[0] in ("--bind", "-B", "--mount")]


def _containment(job_id: str, record: dict) -> list[dict]:
    """The job's containment as PropertyValues: flags, binds, policy digest, attestation digest, host, runtime."""
    argv = record.get("argv") or []
    values = {"flags": shlex.join(argv), "binds": _bind_units(argv), "policy-sha256": record.get("policy_sha256"),
              "attestation-sha256": record.get("attestation_sha256"), "host": record.get("host"),
              "runtime": " ".join(str(v) for v in (record.get("runtime"), record.get("runtime_version")) if v)}
    return [{"@id": f"{job_id}-{name}", "@type": "PropertyValue", "propertyID": PROPERTY + name, "name": name,
             "value": value} for name, value in values.items() if value not in (None, "", [])]


def crate(run: dict, jobs: list[dict], workdir: str, crate_dir: str, snakefile: str, license: str = LICENSE) -> dict:
    """The crate's JSON-LD. run: records.summary() of the run; jobs: records.load(); snakefile: the workflow's
    id in the crate (a path relative to crate_dir); license: the crate's (a URL)."""
    workdir = os.path.abspath(workdir)
    files = _Files(workdir, crate_dir)
    rules = sorted({str(r.get("rule")) for r in jobs})
    properties: list[dict] = []
    made = {os.path.normpath(os.path.join(workdir, o)) for r in jobs for o in r.get("outputs") or ()}
    run_id, organize = f"#run-{run['run']}", f"#organize-{run['run']}"
    actions, controls, images = [], [], {}
    for i, r in enumerate(jobs, 1):
        job_id, rule = f"#job-{i}", str(r.get("rule"))
        wildcards = ", ".join(f"{k}={v}" for k, v in (r.get("wildcards") or {}).items())
        action = {"@id": job_id, "@type": "CreateAction", "name": f"{rule}[{wildcards}]" if wildcards else rule,
                  "instrument": _ref(f"#rule-{rule}"),
                  "startTime": _time(r.get("start")), "endTime": _time(r.get("end")),
                  "description": f"job of rule {rule} on {r.get('host') or 'an unknown host'}",
                  "actionStatus": STATUS[r.get("exit_status") == 0],
                  "object": [files.ref(p) for p in r.get("inputs") or ()],
                  "result": [files.ref(p) for p in r.get("outputs") or ()]}
        if r.get("exit_status") != 0:
            action["error"] = f"exit status {r.get('exit_status')}"
        if r.get("image") or r.get("image_path"):
            image = _image(r)
            images[image["@id"]] = image
            action["containerImage"] = _ref(image["@id"])
        containment = _containment(job_id, r)
        action["additionalProperty"] = [_ref(p["@id"]) for p in containment]
        actions.append(action)
        properties += containment
        controls.append({"@id": f"#control-{i}", "@type": "ControlAction", "name": f"orchestrate {action['name']}",
                         "instrument": _ref(f"#step-{rule}"), "object": _ref(job_id)})
    inputs = sorted({f["@id"] for a in actions for f in a["object"]} - {files.ref(p)["@id"] for p in made})
    outputs = sorted({f["@id"] for a in actions for f in a["result"]})
    run_action = {"@id": run_id, "@type": "CreateAction", "name": f"Snakemake run {run['run']}",
                  "instrument": _ref(snakefile), "startTime": _time(run.get("start")), "endTime": _time(run.get("end")),
                  "description": f"the whole run, {run.get('status')}",
                  "actionStatus": STATUS[run.get("status") == "finished"],
                  "object": [_ref(i) for i in inputs], "result": [_ref(o) for o in outputs]}
    if run.get("status") != "finished":
        run_action["error"] = f"the run is {run.get('status')}"
    root = {"@id": "./", "@type": "Dataset", "name": f"Snakemake run {run['run']} (snakemake-singcontain records)",
            "description": f"Every job of run {run['run']} with its inputs, outputs, times, status, image and "
                           "containment: flags, binds, policy digest, attestation digest.",
            "datePublished": _time(run.get("end") or run.get("start")),
            "license": _ref(license), "conformsTo": [_ref(p) for p in PROFILES], "mainEntity": _ref(snakefile),
            "mentions": [_ref(run_id), *(_ref(a["@id"]) for a in actions)],
            "hasPart": [_ref(snakefile), *(_ref(f) for f in sorted(files.entities))]}
    workflow = {"@id": snakefile, "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
                "name": os.path.basename(snakefile), "programmingLanguage": _ref(SNAKEMAKE),
                "hasPart": [_ref(f"#rule-{r}") for r in rules], "step": [_ref(f"#step-{r}") for r in rules]}
    metadata = {"@id": "ro-crate-metadata.json", "@type": "CreativeWork", "about": _ref("./"),
                "conformsTo": [_ref("https://w3id.org/ro/crate/1.1"),
                               _ref("https://w3id.org/workflowhub/workflow-ro-crate/1.0")]}
    graph = [metadata, root, workflow,
             *({"@id": p, "@type": "CreativeWork", "name": name, "version": p.rsplit("/", 1)[1]}
               for p, name in PROFILES.items()),
             {"@id": license, "@type": "CreativeWork", "name": license.rsplit("/", 1)[-1]},
             {"@id": SNAKEMAKE, "@type": "ComputerLanguage", "name": "Snakemake",
              "url": _ref("https://snakemake.readthedocs.io")},
             {"@id": ENGINE, "@type": "SoftwareApplication", "name": "Snakemake",
              "url": _ref("https://snakemake.readthedocs.io")},
             *({"@id": f"#rule-{r}", "@type": "SoftwareApplication", "name": f"rule {r}"} for r in rules),
             *({"@id": f"#step-{r}", "@type": "HowToStep", "name": f"rule {r}", "position": str(n),
                "workExample": _ref(f"#rule-{r}")} for n, r in enumerate(rules)),
             run_action,
             {"@id": organize, "@type": "OrganizeAction", "name": f"Snakemake orchestrating run {run['run']}",
              "instrument": _ref(ENGINE), "result": _ref(run_id), "object": [_ref(c["@id"]) for c in controls],
              "startTime": _time(run.get("start")), "endTime": _time(run.get("end"))},
             *controls, *actions, *images.values(), *properties, *files.entities.values()]
    return {"@context": CONTEXT, "@graph": [_compact(e) for e in graph]}


def _compact(entity: dict) -> dict:
    """Without empty values, and one value rather than a list of one (as RO-Crate 1.1 recommends)."""
    return {k: v[0] if isinstance(v, list) and len(v) == 1 and k != "@type" else v
            for k, v in entity.items() if v not in (None, [], "")}


def find_snakefile(workdir: str) -> str | None:
    found = (os.path.join(workdir, name) for name in SNAKEFILES)
    return next((path for path in found if os.path.isfile(path)), None)


def write(workdir: str, run: str, crate_dir: str, snakefile: str | None = None, license: str = LICENSE) -> str:
    """Write run `run` (an id, a prefix, latest or previous) of `workdir` as a crate into `crate_dir`, with a
    copy of the Snakefile unless it already lies there. Returns the metadata file's path."""
    run_id = records.resolve(workdir, run)
    info = next(r for r in records.runs(workdir) if r["run"] == run_id)
    snakefile = snakefile or find_snakefile(workdir)
    if snakefile is None:
        raise records.RecordsError(f"no Snakefile in {os.path.abspath(workdir)} (looked for {', '.join(SNAKEFILES)}): "
                                   "name it with --snakefile")
    os.makedirs(crate_dir, exist_ok=True)
    inside = os.path.relpath(os.path.abspath(snakefile), os.path.abspath(crate_dir))
    if inside.startswith(".."):
        inside = os.path.basename(snakefile)
        shutil.copyfile(snakefile, os.path.join(crate_dir, inside))
    data = crate(info, records.load(workdir, run_id), workdir, crate_dir, inside, license)
    path = os.path.join(crate_dir, "ro-crate-metadata.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    return path
