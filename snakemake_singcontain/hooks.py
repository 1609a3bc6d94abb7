"""The plugin's hooks (pluggy). Other packages implement them and register under the entry-point group
`singcontain`; the built-in presets and checks are plugins of exactly this kind (see builtin/).

Every hook is documented in docs/plugins.md (a test keeps that true).
"""

import pluggy

PROJECT = "singcontain"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def singcontain_presets():
    """Named presets a policy can `use`. Called once per policy load.

    Return a mapping {name: settings in policy syntax}, e.g. {"cvmfs": {"binds": ["/cvmfs:ro"]}}.
    A preset of the same name in the policy file replaces a plugin's.
    """


@hookspec
def singcontain_floor():
    """A site's minimum that no workflow policy may go below. Called once per policy load.

    Return a `snakemake_singcontain.policy.Floor` (minimum containment, namespaces every rule with jobs must
    have, host paths never bound writable) or None. A rule below a floor is an error SC105 naming the plugin.
    """


@hookspec
def singcontain_adjust_rule(rule):
    """Settings (policy syntax) merged on top of rule `rule`'s own, e.g. a site's scratch bind.

    Called once per rule. Return a mapping or None. Floors are checked after adjustments.
    """


@hookspec
def singcontain_check_workflow(policy, rules):
    """Findings about the policy as a whole; `rules` are the workflow's rule names. Called once per check."""


@hookspec
def singcontain_check_rule(plan, runtime):
    """Findings about one rule: `plan` is its RulePlan, `runtime` a RuntimeInfo or None when none was found.

    Called once per rule (and image) that has jobs to run.
    """


@hookspec
def singcontain_check_job(plan, runtime):
    """Findings about one job: `plan` is its JobPlan. Called once per job: keep it cheap."""
