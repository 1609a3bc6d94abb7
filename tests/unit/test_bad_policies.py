"""A corpus of malformed and hostile policy files (tests/unit/bad_policies/, one file each).

Each file must give ONE clean error: either a PolicyError (from load_policy, or from the Checker for preset
problems) whose text names file:line (where a line exists) and carries a `fix:`, or exactly one error finding
with a fix from the checks (the table names the rare second one, e.g. for a bind of /). Never another exception
(a traceback), never a policy that loads and passes the checks, except a file that only looks hostile and is
valid (Passes). The table below is the expected outcome per file.
"""

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from sc_unit import APPTAINER, job, runtime
from snakemake_singcontain.checker import Checker
from snakemake_singcontain.errors import PolicyError
from snakemake_singcontain.findings import ERROR, has_errors, render
from snakemake_singcontain.plugins import plugin_manager
from snakemake_singcontain.policy import load_policy
from snakemake_singcontain.policy.yaml_lines import MAX_BYTES

CORPUS = Path(__file__).parent / "bad_policies"
OLD_APPTAINER = runtime(version=(1, 0, 3))  # no --mount: ',' and ':' in a bind path cannot be expressed


@dataclass(frozen=True)
class Load:
    """load_policy raises a PolicyError at this line (None: the file has no line to name)."""

    line: object


@dataclass(frozen=True)
class Checking:
    """The policy loads; building the Checker (presets are resolved there) raises a PolicyError at this line."""

    line: int


@dataclass(frozen=True)
class Finding:
    """The policy loads; the checks report exactly one error, with this code, set at this policy line (and
    the errors in `also`, for a bind that is wrong in more than one way)."""

    code: str
    line: int | None = None
    runtime: object = APPTAINER
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class Passes:
    """A valid policy, however it looks: it loads, the checks report no error, and rule a's `key` is set at
    this policy line (the layer that should win does)."""

    key: str
    line: int


@dataclass(frozen=True)
class Fast:
    """The outcome `expect`, within the time limit (seconds)."""

    expect: object
    seconds: int = 1


EXPECTED = {
    # --- the file as a whole ---
    "empty.yaml": Load(None),
    "only_comments.yaml": Load(None),
    "top_level_list.yaml": Load(1),
    "top_level_scalar.yaml": Load(1),
    "multiple_documents.yaml": Load(2),
    "yaml_syntax_unclosed_bracket.yaml": Load(4),
    "tabs_for_indentation.yaml": Load(3),
    "non_utf8_latin1.yaml": Load(2),
    "utf16_encoded.yaml": Load(1),
    "control_character.yaml": Load(4),
    # --- version ---
    "version_missing.yaml": Load(2),
    "version_2.yaml": Load(1),
    "version_string.yaml": Load(1),
    "version_float.yaml": Load(1),
    "version_bool_true.yaml": Load(1),  # True == 1 in Python, but only the integer 1 is a version
    # --- unknown keys: top, layer, bind ---
    "unknown_top_key.yaml": Load(2),
    "unknown_top_key_case.yaml": Load(2),
    "unknown_layer_key_defaults.yaml": Load(3),
    "unknown_layer_key_rule.yaml": Load(5),
    "unknown_layer_key_preset.yaml": Load(4),
    "unknown_bind_key.yaml": Load(5),
    "unknown_auto_binds_key.yaml": Load(3),
    # --- YAML aliases ---
    "alias_billion_laughs.yaml": Load(3),
    "alias_merge_key.yaml": Load(7),
    "alias_reused_bind.yaml": Load(7),
    # --- duplicate and non-string keys ---
    "duplicate_top_key.yaml": Load(3),
    "duplicate_rule.yaml": Load(4),
    "duplicate_bind_key.yaml": Load(6),
    "non_string_key_int.yaml": Load(3),
    "non_string_key_null.yaml": Load(3),
    "non_string_key_bool.yaml": Load(4),
    "complex_key.yaml": Load(3),
    # --- wrong types and values ---
    "wrong_type_defaults_list.yaml": Load(2),
    "wrong_type_rules_list.yaml": Load(2),
    "wrong_type_rule_string.yaml": Load(3),
    "wrong_type_binds_string.yaml": Load(3),
    "wrong_type_namespaces_string.yaml": Load(3),
    "wrong_type_containment_int.yaml": Load(3),
    "wrong_type_image_int.yaml": Load(2),
    "wrong_type_env_mapping.yaml": Load(3),
    "wrong_type_bind_sexagesimal.yaml": Load(4),
    "wrong_type_args_string.yaml": Load(4),
    "unknown_containment.yaml": Load(3),
    "unknown_namespace.yaml": Load(5),
    "unknown_runtime.yaml": Load(2),
    "unknown_bind_mode.yaml": Load(5),
    "bad_env_name.yaml": Load(3),
    "auto_binds_outputs_ro.yaml": Load(4),
    "protected_relative.yaml": Load(3),
    "python_object_tag.yaml": Load(2),
    "binary_tag.yaml": Load(2),
    # --- booleans as strings, YAML 1.1 booleans, nulls ---
    "bool_as_string_cleanenv.yaml": Load(3),
    "bool_as_string_required.yaml": Load(5),
    "bool_as_string_auto_binds.yaml": Load(3),
    "yaml11_bool_containment.yaml": Load(3),
    "null_containment.yaml": Load(3),
    "null_binds.yaml": Load(3),
    "null_bind_item.yaml": Load(6),
    "null_env_item.yaml": Load(3),
    "null_use.yaml": Load(4),
    # --- binds with ',' ':' newlines '..', relative escapes and destinations ---
    "bind_comma_splits_on_old_runtime.yaml": Finding("SC206", 5, OLD_APPTAINER),
    "bind_colon_in_long_form_old_runtime.yaml": Finding("SC206", 5, OLD_APPTAINER),
    "bind_too_many_colons.yaml": Load(4),
    "bind_empty_part.yaml": Load(4),
    "bind_newline.yaml": Load(4),
    "bind_nul.yaml": Load(4),
    "bind_dotdot_into_etc.yaml": Finding("SC306", 4),
    "bind_dst_dotdot_into_usr.yaml": Finding("SC306", 5),
    "relative_escape_to_etc.yaml": Finding("SC306", 5),  # the loader accepts it; the checks refuse it
    "relative_escape_long_form.yaml": Finding("SC306", 5),
    "relative_destination.yaml": Load(4),
    "relative_destination_long_form.yaml": Load(5),
    "bind_missing_src.yaml": Load(5),
    "conflicting_destinations.yaml": Load(6),
    "conflicting_destinations_normalised.yaml": Load(5),
    "writable_root.yaml": Finding("SC306", 4, also=("SC307",)),  # "/" also holds the host's /proc, /sys, /dev
    "writable_etc.yaml": Finding("SC306", 4),
    "writable_under_custom_protected.yaml": Finding("SC306", 6),
    "writable_bind_double_slash_etc.yaml": Finding("SC306", 5),  # '//etc' is /etc to Apptainer (measured)
    "writable_parent_of_protected.yaml": Finding("SC306", 6),  # a rw parent makes the protected folder writable
    "writable_symlink_to_etc.yaml": Finding("SC306", 5),  # Apptainer follows the symlinked source to /etc
    "required_source_missing.yaml": Finding("SC301", 4),
    "bind_proc.yaml": Finding("SC307", 5),
    "bind_under_dev.yaml": Finding("SC307", 5),
    "bind_symlink_to_sys.yaml": Finding("SC307", 5),  # Apptainer follows the symlinked source to /sys
    # --- variables ---
    "unset_variable.yaml": Load(3),
    "bad_var_unclosed.yaml": Load(3),
    "bad_var_lone_dollar.yaml": Load(3),
    "bad_var_digit_name.yaml": Load(2),
    "bad_var_shell_dash_default.yaml": Load(3),
    "bad_var_nested_default_unclosed.yaml": Load(3),
    "empty_variable_as_source.yaml": Load(6),  # empty after expansion, not the policy's own folder
    "variable_with_newline.yaml": Load(5),  # the newline is in the expanded value
    "variable_value_adds_mode.yaml": Finding("SC301", 5),  # not SC306: the ':rw' in the value is no mode
    # --- other keys ---
    "workdir_bad_value.yaml": Load(3),
    # --- nesting bombs ---
    "deep_nested_flow_yaml.yaml": Load(3),  # PyYAML's recursion error, told with the line where it nests
    "deep_nested_variable_defaults.yaml": Load(3),  # more than MAX_NESTING levels of ${A:-…}: bad syntax
    # --- presets ---
    "preset_cycle.yaml": Checking(4),
    "preset_self_use.yaml": Checking(4),
    "preset_unknown.yaml": Checking(4),
    "preset_unknown_in_unused_preset.yaml": Checking(4),
    # valid, however it looks: each preset is applied once (at its first place), so 121 layers, not 2**40
    "preset_exponential.yaml": Fast(Passes("containment", 124)),
    # --- what only the checks can tell ---
    "pattern_matches_nothing.yaml": Finding("SC101", 3),
    "rule_name_typo.yaml": Finding("SC101", 4),
    "args_owned_bind_flag.yaml": Finding("SC104", 4),
    "args_overlay_writes_host.yaml": Finding("SC104", 5),  # --overlay DIR would let the job write to host DIR
}

def test_corpus_and_table_agree():
    files = sorted(p.name for p in CORPUS.iterdir())
    assert files == sorted(EXPECTED), set(files) ^ set(EXPECTED)
    assert len(files) >= 40


@pytest.fixture
def site(tmp_path):
    """Host folders some policies name through ${SITE}, and the variables every policy may use."""
    for folder in ("work", "data/raw", "a,/etc", "c:olon"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "link_etc").symlink_to("/etc")
    (tmp_path / "link_sys").symlink_to("/sys")
    env = {"HOME": "/home/alice", "USER": "alice", "SITE": str(tmp_path), "EMPTY": "", "NL": "/tmp\n/etc",
           "LINK_TO_ETC": str(tmp_path / "link_etc"), "LINK_TO_SYS": str(tmp_path / "link_sys"), "ETC_RW": "/etc:rw"}
    return tmp_path, env


def _timeout(signum, frame):
    raise TimeoutError("no outcome within the time limit")


def outcome(path: Path, env: dict, workdir: str, run_time=APPTAINER):
    """('load'|'checker', PolicyError) or ('findings', [Finding]); any other exception propagates."""
    try:
        policy = load_policy(path, env=env)
    except PolicyError as err:
        return "load", err
    try:
        checker = Checker(policy, run_time, plugin_manager(), workdir=workdir, rule_kinds={"a": "shell"}, environ={})
    except PolicyError as err:
        return "checker", err
    # The output has a folder of its own: the contained job sees the workdir itself read-only (SC406).
    return "findings", checker.check([job("a", outputs=[os.path.join(workdir, "results", "out.txt")])])


def assert_clean_error(err: PolicyError, path: Path, line):
    text = str(err)
    assert err.fix.strip() and "\n  fix: " in text, text
    assert err.line == line, text
    assert text.startswith(f"{path}:{line}: " if line else f"{path}: "), text
    assert "Traceback" not in text


@pytest.mark.parametrize("name, expect", [pytest.param(n, e, id=n) for n, e in sorted(EXPECTED.items())])
def test_bad_policy(name, expect, site):
    root, env = site
    path = CORPUS / name
    workdir = str(root / "work")
    seconds = None
    if isinstance(expect, Fast):
        expect, seconds = expect.expect, expect.seconds
        previous = signal.signal(signal.SIGALRM, _timeout)
        signal.alarm(seconds)
    try:
        stage, result = outcome(path, env, workdir, getattr(expect, "runtime", APPTAINER))
    finally:
        if seconds:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    if isinstance(expect, Passes):
        assert stage == "findings", f"expected a valid policy, got a PolicyError from {stage}: {result}"
        assert not has_errors(result), render(result)
        checker = Checker(load_policy(path, env=env), APPTAINER, plugin_manager(), workdir=workdir,
                          rule_kinds={"a": "shell"}, environ={})
        assert checker.settings("a").origins[expect.key].endswith(f"({path}:{expect.line})")
    elif isinstance(expect, Load):
        assert stage == "load", f"expected a PolicyError from load_policy, got {stage}: {result}"
        assert_clean_error(result, path, expect.line)
    elif isinstance(expect, Checking):
        assert stage == "checker", f"expected a PolicyError from Checker(), got {stage}: {result}"
        assert_clean_error(result, path, expect.line)
    else:
        assert stage == "findings", f"expected findings, got a PolicyError from {stage}: {result}"
        errors = [f for f in result if f.severity == ERROR]
        assert sorted(f.code for f in errors) == sorted([expect.code, *expect.also]), render(result) or "no findings"
        assert has_errors(result)  # the bridge then refuses the whole run: nothing is partially applied
        assert all(e.fix.strip() and e.message.strip() for e in errors), errors
        f = next(f for f in errors if f.code == expect.code)
        if expect.line:
            assert f.where and f"{path}:{expect.line}" in f.where, f
        assert render(result)  # rendering for the user does not fail either


def test_huge_file_is_refused_before_parsing(tmp_path):
    """A file over 1 MiB (made here, not committed) is refused by size, without reading it as YAML."""
    path = tmp_path / "huge.yaml"
    # Valid YAML all the way: only the size is wrong (a million-entry args list).
    path.write_text("version: 1\ndefaults:\n  args:\n" + "    - --x\n" * (MAX_BYTES // 10 + 1))
    assert path.stat().st_size > MAX_BYTES
    with pytest.raises(PolicyError) as info:
        load_policy(path, env={})
    assert_clean_error(info.value, path, None)
    assert str(MAX_BYTES) in info.value.message
