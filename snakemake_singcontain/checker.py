"""Policy x runtime x plugins -> rule plans, job plans and findings. The one place the pieces meet.

Pure but for one edge: whether bind sources exist on this host (asked once per rule).
"""

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace

import pluggy

from .errors import PolicyError
from .findings import Finding
from .paths import clean, parent, under
from .plan import (FILE_ORIGINS, JobPlan, JobSpec, RulePlan, absolute, job_plan, real_path, renamed, rule_plan,
                   shape)
from .policy import Layer, Origin, Policy, Settings, Site, check_presets, layers_for, merge, parse_layer
from .runtime import RuntimeInfo


# Plans kept per rule for jobs of the same shape. Where every job has a shape of its own (an output folder
# per job), keeping them all only costs memory and the garbage collector's time (measured on 20,000 such jobs:
# the preflight's CPU 1.51 s with all kept, 0.87 s with this cap).
MAX_SHAPES = 4096


class Checker:
    def __init__(self, policy: Policy | None, runtime: RuntimeInfo | None, pm: pluggy.PluginManager, *, workdir: str,
                 rule_kinds: Mapping[str, str], environ: Mapping[str, str] | None = None,
                 sealed: Mapping[str, Settings] | None = None, site: Site | None = None,
                 host_reads: tuple[str, ...] = (), source: str | None = None):
        """`sealed`: settings checked elsewhere (a job's own process takes them instead of a policy).
        `site`: the site's own file: its presets (a policy's of the same name replace them), its protected
        paths (added to every rule, never removed) and its floor. `host_reads`: what the host reads later as
        configuration or code (never writable to a job); `source`: the workflow's own source tree."""
        self.policy, self.runtime, self.pm, self.workdir = policy, runtime, pm, workdir
        self._real_paths: dict[str, str] = {}
        self.host_reads, self.source = self._with_real(host_reads), source and os.path.realpath(source)
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
        self._links: dict[str, dict] = {}
        self._folders: dict[str, bool] = {}
        self._top_users: bool | None = None
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
                                              self._with_real(settings.protected), self.host_reads, self.source,
                                              self._top_is_users())
        return self._rule_plans[key]

    def _top_is_users(self) -> bool:
        """No rule's job writes the workdir's top (none has `workdir: rw`), so a link there is the user's."""
        if self._top_users is None:
            self._top_users = not any(self.settings(rule).workdir == "rw" for rule, kind in self.rule_kinds.items()
                                      if kind not in ("norun", "run"))
        return self._top_users

    def job_plan(self, job: JobSpec, fresh: bool = False) -> JobPlan:
        """`fresh`: right before the job starts, with every path resolved anew (a job may have left links since
        the check), not from this process's memory."""
        rule = self.rule_plan(job.rule, job.image)
        key = None if fresh else shape(job)
        shapes = rule.memo.setdefault("shapes", {})
        if key is not None and key in shapes and not self._folder_input(job):
            # replace(…, job=job), without its per-field work: this runs once for every job of a large DAG
            plan = object.__new__(JobPlan)
            plan.__dict__.update(shapes[key].__dict__, job=job)
            return plan
        family = None if key is None else self.family(rule, job, key)
        families = rule.memo.setdefault("families", {})
        if family is not None and family[0] in families and not self._folder_input(job):
            template, folders = families[family[0]]
            return renamed(template, job, dict(zip(folders, family[1])))
        real = os.path.realpath if fresh else self._real
        folders, links = self._real_folders(job, real)
        job = replace(job, real_folders=folders, links=links) if folders else job  # mostly none: no copy
        base = job.shadow or self.workdir
        outside = [p for i in job.inputs if not under(p := real_path(os.path.join(base, i), folders), self.workdir)]
        input_folders = frozenset(p for p in outside if self._is_folder(p, fresh))
        job = replace(job, input_folders=input_folders) if input_folders else job
        plan = job_plan(rule, job)
        sources = self._real_sources(plan.binds, real)
        plan = replace(plan, real_sources=sources) if sources else plan
        if key is not None and len(shapes) < MAX_SHAPES and not folders and not input_folders and \
                not plan.problems and not any(b.origin is o for b in plan.binds for o in FILE_ORIGINS):
            shapes[key] = plan  # the same binds for every job of this shape; file names only in problems
            if family is not None and len(families) < MAX_SHAPES:
                families[family[0]] = (plan, family[1])
        return plan

    def family(self, rule: RulePlan, job: JobSpec, key: tuple) -> tuple[tuple, tuple[str, ...]] | None:
        """Jobs of a rule with one output folder each, siblings (out/{sample}/…, no two jobs share a shape),
        get the same plan but for those folders' names (plan.renamed): (the family's key, the job's output
        folders), or None where a folder is anything but a plain folder of its own below a plain parent inside
        the workdir: no link on the way, no mount at or below it, no place the host reads, not .snakemake,
        none holding another of the job's folders or an input's."""
        workdir = self.workdir
        folders = [parent(absolute(raw, workdir)) for raw in job.outputs]
        distinct = list(dict.fromkeys(folders))
        parents = tuple(map(parent, distinct))
        beside = rule.memo.setdefault("family_parents", {})
        for folder, above in zip(distinct, parents):
            if above not in beside:  # None, or the mounts and host-read places below the parent (mostly none)
                inside = under(above, workdir) and not any(under(above, p) for p in rule.host_reads)
                beside[above] = tuple(p for p in (*rule.mounts, *rule.host_reads) if p != above and under(p, above)) \
                    if inside else None
            below = beside[above]
            if below is None or folder.endswith("/.snakemake") or self._real(folder) != folder or \
                    below and any(under(p, folder) for p in below):
                return None
        # Plain loops: this runs for every job of such a DAG, mostly with one output folder and few inputs.
        inputs = [parent(absolute(raw, workdir)) for raw in job.inputs]
        for folder in distinct:  # no input in or below an output folder, no output folder below another
            inside = folder.rstrip("/") + "/"
            for other in inputs:
                if other == folder or other.startswith(inside):
                    return None
            for other in distinct:
                if other.startswith(inside):
                    return None
        return (parents, tuple(map(distinct.index, folders)), key[1], key[2]), tuple(distinct)

    def _folder_input(self, job: JobSpec) -> bool:
        """Whether an input that may lie outside the workdir is a folder (bound itself, not its folder): a job
        of a known shape gets its plan only where none is."""
        return any(self._is_folder(os.path.join(self.workdir, i), False) for i in job.inputs
                   if i.startswith("/") or ".." in i)

    def _real_folders(self, job: JobSpec, real) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
        """Where the folders of the job's files really lead (a symlinked data/ or scratch/), once per folder;
        and each symlink inside the workdir on the way there -> (where it leads, the real folder it lies in)."""
        base = job.shadow or self.workdir
        found, links = {}, {}
        for path in job.inputs + job.outputs + job.benchmarks:
            path = clean(os.path.join(base if path not in job.benchmarks else self.workdir, path))
            for folder in ((path,) if path in job.directories else ()) + (os.path.dirname(path),):
                if real(folder) != folder:
                    found[folder] = real(folder)
                    if real is not self._real:
                        links.update(self._links_on(folder, real))
                    else:  # the same folders recur in a large DAG's jobs
                        if folder not in self._links:
                            self._links[folder] = self._links_on(folder, real)
                        links.update(self._links[folder])
        return found, links

    def _links_on(self, folder: str, real) -> dict[str, tuple[str, str]]:
        probe, links = folder, {}
        while probe != self.workdir and under(probe, self.workdir):
            parent = os.path.dirname(probe)
            if os.path.islink(probe):
                links[probe] = (real(probe), real(parent))
            probe = parent
        return links

    def _is_folder(self, path: str, fresh: bool) -> bool:
        if fresh or path not in self._folders:
            self._folders[path] = os.path.isdir(path)
        return self._folders[path]

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

    def _real_sources(self, binds, real=None) -> dict[str, str]:
        """Where bind sources really lead (Apptainer follows a symlinked source); cached per path."""
        real = real or self._real
        return {bind.src: real(bind.src) for bind in binds if real(bind.src) != bind.src}

    def check(self, jobs: Iterable[JobSpec], whole_workflow: bool = True) -> list[Finding]:
        """Every finding for these jobs: workflow-level once (unless a single job is re-checked), rule-level
        once per rule and image, then per job."""
        return self.check_plans(map(self.job_plan, jobs), whole_workflow)

    def check_plans(self, plans: Iterable[JobPlan], whole_workflow: bool = True) -> list[Finding]:
        """check() of plans already made (a job's, made fresh right before it starts)."""
        hook = self.pm.hook
        findings = []
        if whole_workflow:
            findings += [f for found in hook.singcontain_check_workflow(policy=self.policy, rules=list(self.rule_kinds))
                         for f in found]
        checked_rules = set()
        for plan in plans:
            if (plan.job.rule, plan.job.image) not in checked_rules:
                checked_rules.add((plan.job.rule, plan.job.image))
                findings += [f for found in hook.singcontain_check_rule(plan=plan.rule, runtime=self.runtime) for f in found]
            findings += [f for found in hook.singcontain_check_job(plan=plan, runtime=self.runtime) for f in found]
        return findings
