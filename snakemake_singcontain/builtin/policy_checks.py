"""Checks of what the policy asks, whatever the runtime: typos, missing images, `run:`, escape hatches, floors."""

from fnmatch import fnmatchcase

from ..argv import owned_flags
from ..findings import ERROR, Finding
from ..hooks import hookimpl
from ..policy.model import CONTAINMENTS
from ..policy.resolve import is_pattern
from .path_checks import protected_hit


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
    if plan.contained and plan.image is None:
        yield Finding("SC102", ERROR, rule, f"containment '{s.containment}' is asked for but the rule has no image",
                      "add a container: directive to the rule, or an image: to the policy, or set containment: none "
                      "and drop its namespaces and binds", where=s.origins.get("containment"))
    if plan.contained and plan.kind == "run":
        yield Finding("SC103", ERROR, rule, "the rule uses run:, whose Python runs on the host, outside any container",
                      "use shell: or script: for this rule, or give it containment: none with no namespaces or binds")
    for flag in owned_flags(s.args):
        yield Finding("SC104", ERROR, rule, f"args passes {flag!r}, a flag the plugin sets from the policy",
                      "express it with the policy's own key (containment, namespaces, binds, env …)",
                      where=s.origins.get("args"))
    for floor in plan.floors:
        if CONTAINMENTS.index(s.containment) < CONTAINMENTS.index(floor.containment):
            yield Finding("SC105", ERROR, rule, f"containment '{s.containment}' is below the site floor "
                          f"'{floor.containment}' set by plugin {floor.plugin}",
                          f"set containment: {floor.containment} (or stricter) for this rule", where=s.origins.get("containment"))
        missing = [ns for ns in floor.namespaces if ns not in s.effective_namespaces]
        if missing:
            yield Finding("SC105", ERROR, rule, f"namespaces {missing} are required by the site floor of plugin {floor.plugin}",
                          f"add {missing} to the rule's namespaces", where=s.origins.get("namespaces"))
        for bind in s.binds:
            hit = protected_hit(bind, floor.never_writable, plan.real_sources)
            if hit:
                yield Finding("SC105", ERROR, rule, f"{bind.src} is bound writable, exposing {hit}, which plugin "
                              f"{floor.plugin} forbids", "bind it read-only (mode: ro)", where=str(bind.origin))
