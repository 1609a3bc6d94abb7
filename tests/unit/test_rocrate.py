"""A recorded run exported as a Workflow Run RO-Crate: what a reader of the crate finds, and a real validator
(roc-validator, from PyPI) finding it conformant to the Provenance Run Crate profile."""

import importlib.resources
import io
import json
from pathlib import Path

import pytest

from snakemake_singcontain import records
from snakemake_singcontain.cli import main

SHA_IMAGE, SHA_POLICY, SHA_ATTESTATION = "a" * 64, "b" * 64, "c" * 64


def record(rule, inputs, outputs, start, status=0, **changes):
    return {"rule": rule, "wildcards": {"sample": "s1"} if rule == "align" else {}, "jobid": 1, "host": "node17",
            "image": "/images/tools.sif", "image_path": "/images/tools.sif", "image_sha256": SHA_IMAGE,
            "runtime": "apptainer", "runtime_version": "1.4.5",
            "argv": ["--contain", "--pid", "--bind", "/cvmfs:/cvmfs:ro", "--bind", "/w/results:/w/results:rw"],
            "policy_sha256": SHA_POLICY, "attestation_sha256": SHA_ATTESTATION, "inputs": inputs,
            "outputs": outputs, "start": start, "end": start + 2, "exit_status": status, **changes}


@pytest.fixture
def work(tmp_path):
    """A workdir with a Snakefile and one recorded run: align (ok) then plot (failed)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "Snakefile").write_text("rule align:\n    output: 'results/s1.bam'\n")
    recorder = records.Recorder(str(work), "20260101-100000-abcd")
    recorder.start(argv=["-c", "1"])
    recorder.write(record("align", ["data/s1.fq"], ["results/s1.bam"], 1767261600.0))
    recorder.write(record("plot", ["results/s1.bam"], ["plots/s1.png"], 1767261603.0, status=1))
    recorder.end(1)
    return work


def export(work: Path, out: Path, *args) -> dict:
    assert main(["crate", "-d", str(work), "-o", str(out), *args]) == 0
    return {e["@id"]: e for e in json.loads((out / "ro-crate-metadata.json").read_text())["@graph"]}


def test_each_job_is_an_action_with_its_files_times_status_image_and_containment(work, tmp_path):
    graph = export(work, tmp_path / "crate")
    jobs = [e for e in graph.values() if e["@type"] == "CreateAction" and e["@id"].startswith("#job-")]
    assert [j["name"] for j in jobs] == ["align[sample=s1]", "plot"]
    align, plot = jobs
    assert align["object"] == {"@id": f"file://{work}/data/s1.fq"}
    assert align["result"] == {"@id": f"file://{work}/results/s1.bam"}
    assert align["startTime"] == "2026-01-01T10:00:00+00:00" and align["endTime"] == "2026-01-01T10:00:02+00:00"
    assert align["actionStatus"] == "http://schema.org/CompletedActionStatus" and "error" not in align
    assert plot["actionStatus"] == "http://schema.org/FailedActionStatus" and plot["error"] == "exit status 1"
    image = graph[align["containerImage"]["@id"]]
    assert (image["@type"], image["sha256"], image["name"]) == ("ContainerImage", SHA_IMAGE, "/images/tools.sif")
    containment = {graph[p["@id"]]["name"]: graph[p["@id"]]["value"] for p in align["additionalProperty"]}
    assert containment == {"flags": "--contain --pid --bind /cvmfs:/cvmfs:ro --bind /w/results:/w/results:rw",
                           "binds": ["/cvmfs:/cvmfs:ro", "/w/results:/w/results:rw"], "policy-sha256": SHA_POLICY,
                           "attestation-sha256": SHA_ATTESTATION, "host": "node17", "runtime": "apptainer 1.4.5"}
    assert all(graph[p["@id"]]["@type"] == "PropertyValue" for p in align["additionalProperty"])


def test_the_run_the_workflow_and_its_rules(work, tmp_path):
    out = tmp_path / "crate"
    graph = export(work, out)
    root = graph["./"]
    assert root["mainEntity"] == {"@id": "Snakefile"}
    assert (out / "Snakefile").read_text() == (work / "Snakefile").read_text()
    run = graph["#run-20260101-100000-abcd"]
    assert run["actionStatus"] == "http://schema.org/FailedActionStatus"  # a job failed, the run ended with status 1
    assert run["object"] == {"@id": f"file://{work}/data/s1.fq"}  # the workflow's input: no job made it
    assert {"ComputationalWorkflow", "File"} <= set(graph["Snakefile"]["@type"])
    assert [s["@id"] for s in graph["Snakefile"]["step"]] == ["#step-align", "#step-plot"]


def test_a_crate_in_the_workdir_names_files_by_their_relative_path(work):
    graph = export(work, work)
    assert graph["#job-1"]["result"] == {"@id": "results/s1.bam"} and graph["./"]["mainEntity"] == {"@id": "Snakefile"}


def test_no_run_and_no_snakefile_are_told_in_one_line(work, tmp_path, capsys):
    assert main(["crate", "-d", str(tmp_path), "-o", str(tmp_path / "c")]) == 2
    assert "no run is recorded" in capsys.readouterr().err
    (work / "Snakefile").unlink()
    assert main(["crate", "-d", str(work), "-o", str(tmp_path / "c")]) == 2
    assert "no Snakefile" in capsys.readouterr().err and not (tmp_path / "c" / "ro-crate-metadata.json").exists()


# --- a real validator ----------------------------------------------------------------------------------

def validate(crate: Path) -> list[str]:
    """roc-validator's REQUIRED issues against provenance-run-crate-0.5, run offline: the only remote document
    it needs, the RO-Crate 1.1 JSON-LD context, comes from the `rocrate` package's own copy."""
    import requests.adapters
    import urllib3
    from rocrate_validator import services

    context = importlib.resources.files("rocrate").joinpath("data/ro-crate.jsonld").read_text()
    assert json.loads(context)["@id"] == "https://w3id.org/ro/crate/1.1/context"
    send = requests.adapters.HTTPAdapter.send

    def offline(adapter, request, **kw):
        if request.url != "https://w3id.org/ro/crate/1.1/context":
            raise requests.ConnectionError(f"no network in this test: {request.url}")
        raw = urllib3.HTTPResponse(body=io.BytesIO(context.encode()), status=200, preload_content=False,
                                   headers={"Content-Type": "application/ld+json"}, request_url=request.url)
        return adapter.build_response(request, raw)

    requests.adapters.HTTPAdapter.send = offline
    try:
        result = services.validate({"rocrate_uri": str(crate), "profile_identifier": "provenance-run-crate-0.5",
                                    "requirement_severity": "REQUIRED", "no_cache": True})
    finally:
        requests.adapters.HTTPAdapter.send = send
    return [f"{issue.check.identifier}: {issue.message}" for issue in result.issues]


def test_the_crate_conforms_to_the_provenance_run_crate_profile(work, tmp_path):
    export(work, tmp_path / "crate")
    assert validate(tmp_path / "crate") == []


def test_control_the_validator_finds_a_crate_that_does_not_conform(work, tmp_path):
    out = tmp_path / "crate"
    export(work, out)
    metadata = json.loads((out / "ro-crate-metadata.json").read_text())
    for entity in metadata["@graph"]:
        if entity["@id"] == "#organize-20260101-100000-abcd":
            del entity["result"]  # the engine's action must say which run it orchestrated
    (out / "ro-crate-metadata.json").write_text(json.dumps(metadata))
    issues = validate(out)
    assert issues and any("OrganizeAction must reference the action representing the workflow run" in i for i in issues)
