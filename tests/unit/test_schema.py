"""The policy's JSON Schema: the shipped schema.json is what schema.py generates from the loader's key lists,
and it agrees with the loader on the contract example and on a typo'd key."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from snakemake_singcontain import schema
from snakemake_singcontain.policy import load_policy
from snakemake_singcontain.policy.load import BIND_KEYS, LAYER_KEYS, RUNTIMES, TOP_KEYS
from snakemake_singcontain.policy.model import CONTAINMENTS, MODES, NAMESPACES

try:
    import jsonschema  # installed with Snakemake; the structural checks below need nothing
except ImportError:  # pragma: no cover
    jsonschema = None

SHIPPED = Path(schema.__file__).with_name("schema.json")

EXAMPLE = """\
version: 1
runtime: auto
image: null
defaults:
  containment: contain
  namespaces: [pid]
  cleanenv: false
  env: [LANG]
  binds:
    - /cvmfs:ro
    - {src: "${DUST:-/nfs/dust/${USER}}", dst: /dust, mode: rw, required: true}
  auto_binds: {inputs: ro, outputs: rw}
  writable_tmpfs: false
  gpu: false
  protected: [/etc, /usr, /cvmfs, /afs]
presets:
  dust: {binds: ["/nfs/dust/${USER}:rw"]}
rules:
  "simulate_*": {use: [dust], containment: containall, namespaces: [ipc]}
  plot: {containment: none}
"""


@pytest.fixture(scope="module")
def generated() -> dict:
    return schema.generate()


def test_shipped_schema_is_the_generated_one(generated):
    assert json.loads(SHIPPED.read_text()) == generated, \
        "regenerate it: python -m snakemake_singcontain.schema > snakemake_singcontain/schema.json"
    assert SHIPPED.read_text() == schema.dumps()


def test_schema_follows_the_loader_and_model(generated):
    assert generated["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "yaml-language-server: $schema=" in generated["description"]
    layer, bind = generated["$defs"]["layer"], generated["$defs"]["bind"]["oneOf"][1]
    assert list(generated["properties"]) == list(TOP_KEYS)
    assert list(layer["properties"]) == list(LAYER_KEYS)
    assert list(bind["properties"]) == list(BIND_KEYS)
    assert generated["additionalProperties"] is layer["additionalProperties"] is bind["additionalProperties"] is False
    assert generated["properties"]["runtime"]["enum"] == list(RUNTIMES)
    assert layer["properties"]["containment"]["enum"] == list(CONTAINMENTS)
    assert set(layer["properties"]["namespaces"]["items"]["enum"]) == {*NAMESPACES, *(f"-{n}" for n in NAMESPACES)}
    assert bind["properties"]["mode"]["enum"] == list(MODES)
    every = [generated, *generated["properties"].values(), *layer["properties"].values(), *bind["properties"].values()]
    assert all(node.get("description") for node in every)


def test_the_loader_reads_the_example(tmp_path):
    (tmp_path / "containment.yaml").write_text(EXAMPLE)
    policy = load_policy(tmp_path / "containment.yaml", env={"USER": "alice"})
    assert [key for key, _ in policy.rules] == ["simulate_*", "plot"]


@pytest.mark.skipif(jsonschema is None, reason="jsonschema not installed")
def test_schema_accepts_the_example_and_rejects_a_typo(generated):
    jsonschema.Draft202012Validator.check_schema(generated)
    validator = jsonschema.Draft202012Validator(generated)
    example = yaml.safe_load(EXAMPLE)
    assert not list(validator.iter_errors(example))

    typo = copy.deepcopy(example)
    typo["rules"]["plot"]["containmnet"] = "none"
    errors = list(validator.iter_errors(typo))
    assert errors and "containmnet" in errors[0].message

    for path, value in [(("defaults", "containment"), "sealed"), (("defaults", "namespaces"), ["mount"]),
                        (("version",), 2), (("defaults", "binds"), [{"src": "/a", "mode": "rwx"}]),
                        (("defaults", "binds"), [{"dst": "/a"}]), (("defaults", "auto_binds"), {"outputs": "ro"})]:
        bad = copy.deepcopy(example)
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        assert list(validator.iter_errors(bad)), (path, value)


def test_typo_is_rejected_structurally(generated):
    """Without a validator: a key not among the layer's properties is refused (additionalProperties: false)."""
    layer = generated["$defs"]["layer"]
    assert "containmnet" not in layer["properties"] and layer["additionalProperties"] is False
    assert generated["properties"]["rules"]["additionalProperties"] == {"$ref": "#/$defs/layer"}

