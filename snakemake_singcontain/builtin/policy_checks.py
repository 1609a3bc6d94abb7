"""Checks of what the policy asks, whatever the runtime: typos, missing images, `run:`, escape hatches, floors."""

from fnmatch import fnmatchcase

from ..apptainer_flags import owned, unsafe_args
from ..findings import ERROR, Finding
from ..hooks import hookimpl
from ..policy.model import CONTAINMENTS
from ..policy.resolve import is_pattern
from .path_checks import protected_hit


HOST_CODE = {"run": "run:", "template": "template_engine: (the template is rendered, and yte evaluates it)",
             "cwl": "cwl: (cwltool and the tool)"}


@hookimpl
def singcontain_check_workflow(policy, rules):
    for key, layer in policy.rules:
        if not any(fnmatchcase(rule, key) if is_pattern(key) else rule == key for rule in rules):
            yield Finding("SC101", ERROR, key, f"the policy key {key!r} matches no rule of this workflow",
                          "correct the rule name or pattern (rule names: " + ", ".join(sorted(rules)[:12]) + ")",
                          where=f"{layer.origin.file}:{layer.origin.line}")


@hookimpl
def singcontain_check_rule(plan, runtime):
    s, rule = plan.settings, plan.rule
    if plan.contained and plan.image is None and plan.kind not in HOST_CODE:  # an image would not help those
        yield Finding("SC102", ERROR, rule, f"containment '{s.containment}' is asked for but the rule has no image",
                      "add a container: directive to the rule, or an image: to the policy, or set containment: none "
                      "and drop its namespaces and binds", where=s.origins.get("containment"))
    if plan.contained and plan.kind in HOST_CODE:
        yield Finding("SC103", ERROR, rule, f"the rule uses {HOST_CODE[plan.kind]}, which Snakemake runs in its own "
                      "process on the host, outside any container",
                      "move the work into a shell: or script: rule, or give this rule containment: none with no "
                      "namespaces or binds")
    for word in unsafe_args(s.args):
        if owned(word):
            yield Finding("SC104", ERROR, rule, f"args passes {word!r}, a flag the plugin sets from the policy",
                          "express it with the policy's own key (containment, namespaces, binds, env …)",
                          where=s.origins.get("args"))
        else:
            yield Finding("SC104", ERROR, rule, f"args passes {word!r}, which is not on the allow-list of Apptainer "
                          "flags that cannot widen what a job sees", "drop it; see docs/checks.md#sc104 for the flags "
                          "args may carry", where=s.origins.get("args"))
    for floor in plan.floors:
        if CONTAINMENTS.index(s.containment) < CONTAINMENTS.index(floor.containment):
            yield Finding("SC105", ERROR, rule, f"containment '{s.containment}' is below the site floor "
                          f"'{floor.containment}' set by {floor.plugin}",
                          f"set containment: {floor.containment} (or stricter) for this rule", where=s.origins.get("containment"))
        missing = [ns for ns in floor.namespaces if ns not in s.effective_namespaces]
        if missing:
            yield Finding("SC105", ERROR, rule, f"namespaces {missing} are required by the site floor of {floor.plugin}",
                          f"add {missing} to the rule's namespaces", where=s.origins.get("namespaces"))
        for bind in s.binds:
            hit = protected_hit(bind, floor.never_writable, plan.real_sources)
            if hit:
                yield Finding("SC105", ERROR, rule, f"{bind.src} is bound writable, exposing {hit}, which "
                              f"{floor.plugin} forbids", "bind it read-only (mode: ro)", where=str(bind.origin))
