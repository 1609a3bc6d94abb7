"""The JSON Schema an editor checks a policy with refuses what the loader refuses: every file of the bad-policy
corpus (tests/unit/bad_policies) and the mistakes new users make go through both. A file the loader refuses but
the schema accepts is a gap, unless it is listed in CANNOT_EXPRESS with the reason no schema can tell."""

from pathlib import Path

import pytest
import yaml

from snakemake_singcontain import schema
from snakemake_singcontain.errors import PolicyError
from snakemake_singcontain.policy import load_policy

jsonschema = pytest.importorskip("jsonschema")  # installed with Snakemake

CORPUS = Path(__file__).parent / "bad_policies"
EXAMPLES = Path(__file__).parents[2] / "examples" / "workflows"

# Loader refusals that a schema cannot see, and why.
CANNOT_EXPRESS = {
    # The environment's values: known when the policy is loaded, not when it is edited.
    "unset_variable.yaml": "the variable is not set where the policy is loaded",
    "empty_variable_as_source.yaml": "the variable is set but empty",
    "variable_with_newline.yaml": "the variable's value holds a newline",
    # Comparing items after the paths are normalised: JSON Schema's uniqueItems compares whole items.
    "conflicting_destinations.yaml": "two binds to one destination, with different sources or modes",
    "conflicting_destinations_normalised.yaml": "two binds to one destination once '//' and '/.' are cleaned",
    # The YAML text, before there is data to validate (editors' YAML parsers flag duplicate keys themselves).
    "duplicate_top_key.yaml": "a duplicate key: the data holds one of them",
    "duplicate_rule.yaml": "a duplicate key: the data holds one of them",
    "duplicate_bind_key.yaml": "a duplicate key: the data holds one of them",
    "alias_merge_key.yaml": "aliases are resolved before validation",
    "alias_reused_bind.yaml": "aliases are resolved before validation",
    "non_string_key_int.yaml": "JSON has only text keys: 1 and '1' are the same key there",
    "utf16_encoded.yaml": "YAML may be UTF-16; the loader reads UTF-8 only",
}

ENV = {"HOME": "/home/alice", "USER": "alice", "SITE": "/srv/site", "EMPTY": "", "NL": "/tmp\n/etc",
       "LINK_TO_ETC": "/srv/link_etc", "LINK_TO_SYS": "/srv/link_sys", "ETC_RW": "/etc:rw"}


@pytest.fixture(scope="module")
def validator():
    generated = schema.generate()
    jsonschema.Draft202012Validator.check_schema(generated)
    return jsonschema.Draft202012Validator(generated)


def loader_refuses(path: Path) -> bool:
    try:
        load_policy(path, env=ENV)
    except PolicyError:
        return True
    return False


def schema_refuses(validator, raw: bytes) -> bool:
    """As an editor sees the file: YAML that does not parse into JSON-like data is refused before the schema."""
    try:
        data = yaml.safe_load(raw)
    except (yaml.YAMLError, RecursionError):
        return True
    try:
        return bool(next(validator.iter_errors(data), None))
    except (TypeError, RecursionError):  # !!binary bytes and the like: not JSON data
        return True


def test_schema_refuses_what_the_loader_refuses_on_the_corpus(validator):
    refused = {p.name for p in CORPUS.iterdir() if loader_refuses(p)}
    assert len(refused) >= 40
    gaps = sorted(name for name in refused if not schema_refuses(validator, (CORPUS / name).read_bytes()))
    assert gaps == sorted(CANNOT_EXPRESS), (
        "files the schema accepts but the loader refuses (teach schema.py, or list the reason in CANNOT_EXPRESS): "
        f"{sorted(set(gaps) - set(CANNOT_EXPRESS))}; listed but now refused: {sorted(set(CANNOT_EXPRESS) - set(gaps))}")


def test_schema_accepts_every_policy_the_loader_accepts(validator):
    """The other way round: an editor must not flag a policy the plugin reads (corpus files refused only by the
    checks, and the shipped examples)."""
    loaded = [p for p in CORPUS.iterdir() if not loader_refuses(p)]
    loaded += [p for p in EXAMPLES.glob("*/containment.yaml")]
    assert len(loaded) >= 20
    flagged = [p.name for p in loaded if schema_refuses(validator, p.read_bytes())]
    assert flagged == []


BIND_MISTAKES = [
    "/data:RW",                                       # the mode in upper case
    "/data:/data:Rw",
    "$USER/data:rw",                                  # a bare $NAME (the loader wants ${NAME})
    "${SCRATCH-/tmp}:rw",                             # the shell's ${A-b}
    "/cvmfs:cvmfs:ro",                                # a relative destination
    "/a:/b:/c:rw",
    "/cvmfs::rw",
    {"src": "/cvmfs", "dst": "cvmfs"},                # a relative destination in the long form
    {"src": "/cvmfs", "dst": "/cvmfs", "mode": "RW"},
    {"src": "$HOME/x"},
]
BINDS_READ = [
    "/cvmfs", "/cvmfs:ro", "/nfs/dust:rw", "data:/data", "../shared/db:/db:rw", "-/cvmfs",
    "${DUST:-/nfs/dust/${USER}}:rw", "${DUST:-/nfs/dust/${USER}}:/dust:rw", "${A:-${B:-${C:-/deep}}}:/d",
    "/cost$$5:/c", {"src": "/a:b", "dst": "${HOME}/b"}, {"src": "data", "mode": "rw", "required": False},
]


@pytest.mark.parametrize("bind", BIND_MISTAKES, ids=str)
def test_schema_and_loader_both_refuse_a_bind_mistake(validator, tmp_path, bind):
    data = {"version": 1, "defaults": {"binds": [bind]}}
    path = tmp_path / "containment.yaml"
    path.write_text(yaml.safe_dump(data))
    assert loader_refuses(path)
    assert schema_refuses(validator, path.read_bytes()), bind


@pytest.mark.parametrize("bind", BINDS_READ, ids=str)
def test_schema_and_loader_both_accept_a_bind(validator, tmp_path, bind):
    data = {"version": 1, "defaults": {"binds": [bind]}}
    path = tmp_path / "containment.yaml"
    path.write_text(yaml.safe_dump(data))
    assert not loader_refuses(path)
    assert not schema_refuses(validator, path.read_bytes()), bind
