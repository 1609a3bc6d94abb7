"""Policy x runtime x plugins -> rule plans, job plans and findings. The one place the pieces meet.

Pure but for one edge: whether bind sources exist on this host (asked once per rule).
"""

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace

import pluggy

from .errors import PolicyError
from .findings import Finding
from .paths import clean
from .plan import INPUT, JobPlan, JobSpec, RulePlan, job_plan, rule_plan, shape
from .policy import Layer, Origin, Policy, Settings, Site, check_presets, layers_for, merge, parse_layer
from .runtime import RuntimeInfo


class Checker:
    def __init__(self, policy: Policy | None, runtime: RuntimeInfo | None, pm: pluggy.PluginManager, *, workdir: str,
                 rule_kinds: Mapping[str, str], environ: Mapping[str, str] | None = None,
                 sealed: Mapping[str, Settings] | None = None, site: Site | None = None):
        """`sealed`: settings checked elsewhere (a job's own process takes them instead of a policy).
        `site`: the site's own file: its presets (a policy's of the same name replace them), its protected
        paths (added to every rule, never removed) and its floor."""
        self.policy, self.runtime, self.pm, self.workdir = policy, runtime, pm, workdir
        self.rule_kinds = rule_kinds  # rule name -> shell | script | notebook | wrapper | cwl | template | run
        self.environ = os.environ if environ is None else environ
        self.presets: dict[str, Layer] = {}
        self._settings: dict[str, Settings] = dict(sealed or {})
        self._sealed = sealed is not None
        if policy is not None:
            for impl in pm.hook.singcontain_presets.get_hookimpls():
                for name, data in (impl.function() or {}).items():
                    self.presets[name] = self._layer(data, f"preset {name}", impl.plugin_name)
            self.presets.update(site.presets if site else {})
            self.presets.update(policy.presets)
            check_presets(policy, self.presets)
        self._real_paths: dict[str, str] = {}
        # Never-writable and protected paths are compared as written and where they really lead.
        floors = [replace(floor, plugin=f"plugin {impl.plugin_name}")
                  for impl in pm.hook.singcontain_floor.get_hookimpls() if (floor := impl.function())]
        floors += [site.floor] if site and site.floor else []
        self.floors = tuple(replace(floor, never_writable=self._with_real(floor.never_writable)) for floor in floors)
        self._site_layer = [Layer(Origin("site", site.file), protected=site.protected)] if site and site.protected else []
        self._rule_plans: dict[tuple, RulePlan] = {}

    def _layer(self, data, label: str, plugin: str) -> Layer:
        return parse_layer(data, label=label, file=f"plugin {plugin}", env=self.environ, base_dir=self.workdir)

    def settings(self, rule: str) -> Settings:
        if rule not in self._settings:
            if self._sealed:
                raise PolicyError(f"rule {rule} was not among the rules checked for this run",
                                  file=self.workdir, fix="start the run again")
            adjustments = [self._layer(data, f"plugin {impl.plugin_name}", impl.plugin_name)
                           for impl in self.pm.hook.singcontain_adjust_rule.get_hookimpls()
                           if (data := impl.function(rule=rule))]
            self._settings[rule] = merge(layers_for(self.policy, rule, self.presets, adjustments + self._site_layer))
        return self._settings[rule]

    def rule_plan(self, rule: str, image: str | None) -> RulePlan:
        key = (rule, image)
        if key not in self._rule_plans:
            settings = self.settings(rule)
            sources = [b.src for b in settings.binds] + ([settings.scratch] if settings.scratch else [])
            missing = frozenset(src for src in sources if not os.path.exists(src))
            defaults = self.runtime.default_mounts if self.runtime else ()
            self._rule_plans[key] = rule_plan(rule, self.rule_kinds.get(rule, "shell"), image, self.workdir, settings,
                                              self.floors, defaults, missing, self._real_sources(settings.binds),
                                              self._with_real(settings.protected))
        return self._rule_plans[key]

    def job_plan(self, job: JobSpec) -> JobPlan:
        rule = self.rule_plan(job.rule, job.image)
        key = shape(job)
        shapes = rule.memo.setdefault("shapes", {})
        if key is not None and key in shapes:
            # replace(…, job=job), without its per-field work: this runs once for every job of a large DAG
            plan = object.__new__(JobPlan)
            plan.__dict__.update(shapes[key].__dict__, job=job)
            return plan
        folders = self._real_folders(job) if not job.real_folders else None
        plan = job_plan(rule, replace(job, real_folders=folders) if folders else job)  # mostly none: no copy
        real = self._real_sources(plan.binds)
        plan = replace(plan, real_sources=real) if real else plan
        if key is not None and not plan.problems and not any(b.origin is INPUT for b in plan.binds):
            shapes[key] = plan  # the same binds for every job of this shape; file names only in problems
        return plan

    def _real_folders(self, job: JobSpec) -> dict[str, str]:
        """Where the folders of the job's files really lead (a symlinked data/ or scratch/), once per folder."""
        base = job.shadow or self.workdir
        found = {}
        for path in job.inputs + job.outputs:
            path = clean(os.path.join(base, path))
            for folder in ((path,) if path in job.directories else ()) + (os.path.dirname(path),):
                if self._real(folder) != folder:
                    found[folder] = self._real(folder)
        return found

    def _real(self, path: str) -> str:
        if path not in self._real_paths:
            parent, name = os.path.split(path)
            if path.startswith("/") and parent != path and name not in ("", ".", "..") and not os.path.islink(path):
                # realpath resolves every folder on the way; the parent's is known (a DAG's folders share
                # parents), so a new folder costs one lstat instead of one per level
                self._real_paths[path] = os.path.join(self._real(parent), name)
            else:
                self._real_paths[path] = os.path.realpath(path)
        return self._real_paths[path]

    def _with_real(self, paths: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*paths, *map(self._real, paths)]))

    def _real_sources(self, binds) -> dict[str, str]:
        """Where bind sources really lead (Apptainer follows a symlinked source); cached per path."""
        real = {}
        for bind in binds:
            if self._real(bind.src) != bind.src:
                real[bind.src] = self._real(bind.src)
        return real

    def check(self, jobs: Iterable[JobSpec], whole_workflow: bool = True) -> list[Finding]:
        """Every finding for these jobs: workflow-level once (unless a single job is re-checked), rule-level
        once per rule and image, then per job."""
        hook = self.pm.hook
        findings = []
        if whole_workflow:
            findings += [f for found in hook.singcontain_check_workflow(policy=self.policy, rules=list(self.rule_kinds))
                         for f in found]
        checked_rules = set()
        for job in jobs:
            plan = self.job_plan(job)
            if (job.rule, job.image) not in checked_rules:
                checked_rules.add((job.rule, job.image))
                findings += [f for found in hook.singcontain_check_rule(plan=plan.rule, runtime=self.runtime) for f in found]
            findings += [f for found in hook.singcontain_check_job(plan=plan, runtime=self.runtime) for f in found]
        return findings
