"""The reference documentation keeps up with the code: every finding code has its section in docs/checks.md,
every hook its section in docs/plugins.md, every policy key its mention in docs/policy.md."""

import inspect
import re
from pathlib import Path

import pytest

from snakemake_singcontain import hooks
from snakemake_singcontain.findings import CODES
from snakemake_singcontain.policy.load import LAYER_KEYS, TOP_KEYS

DOCS = Path(__file__).resolve().parents[2] / "docs"
HOOKS = sorted(name for name, obj in vars(hooks).items() if name.startswith("singcontain_") and inspect.isfunction(obj))


def headings(name: str) -> list[str]:
    text = (DOCS / name).read_text()
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # a '#' in a code block is no heading
    return [line.lstrip("#").strip() for line in text.splitlines() if re.match(r"#{1,6} ", line)]


def test_there_is_something_to_check():
    assert len(CODES) >= 20 and len(HOOKS) == 6 and "binds" in LAYER_KEYS and "rules" in TOP_KEYS


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_finding_code_has_a_heading_in_checks_md(code):
    found = [h for h in headings("checks.md") if re.search(rf"\b{code}\b", h)]
    assert len(found) == 1, f"docs/checks.md needs exactly one heading with {code} ({CODES[code]}), found {found}"


def test_checks_md_documents_no_unknown_code():
    documented = {c for h in headings("checks.md") for c in re.findall(r"\bSC\d{3}\b", h)}
    assert documented <= set(CODES), f"headings for codes the plugin does not have: {documented - set(CODES)}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_heading_in_plugins_md(hook):
    assert any(re.search(rf"\b{hook}\b", h) for h in headings("plugins.md")), \
        f"docs/plugins.md needs a heading for the hook {hook}"


@pytest.mark.parametrize("key", sorted(set(LAYER_KEYS) | set(TOP_KEYS)))
def test_every_policy_key_appears_in_policy_md(key):
    assert f"`{key}`" in (DOCS / "policy.md").read_text(), f"docs/policy.md never mentions the policy key `{key}`"
