"""Micro-benchmark of the core, without Snakemake or Apptainer: Checker.check(jobs) plus the flags of every job.

    python benchmarks/core_bench.py [--jobs 1000,10000,100000] [--repeat 1]

A realistic policy (defaults + 2 presets + 5 glob keys + 10 exact rules, several binds) and N synthetic jobs
over 20 rules, whose files lie partly in the workdir, partly under policy binds and partly outside
(auto-binds). Timed: building the Checker, `check(jobs)` (as the preflight does), then
`apptainer_args(checker.job_plan(job), runtime, environ)` for every job (as each job's start does).
Each N runs in a fresh child process, so its peak memory (max RSS) is its own. Goal: < 1 ms per job, and
time per job roughly flat from 1,000 to 100,000 jobs (linear).

Also timed, for 1,000 of the jobs: what happens at one job's start and end, where the container is started
(jobstart.start and finish, and its record, without Snakemake): the re-check of that one job by real path,
the checks against what was sealed (image identity, writable bind sources), the bind sources resolved and
output folders made, its argv, its kept probe read, the links it left looked for, and its record appended. `--image` puts it next to one container start.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

RULES = [f"{stage}_{i}" for stage in ("align", "call", "qc", "report") for i in range(5)]

POLICY = """\
version: 1
image: /images/base.sif
defaults:
  use: [lab]
  containment: contain
  namespaces: [pid]
  binds:
    - ${SITE}/ref:/ref-data
    - ${SITE}/ref
    - {src: '${SITE}/cache', dst: /cache, mode: rw}
    - {src: '${SITE}/outside', mode: rw}
    - {src: '${SITE}/optional-scratch', dst: /scratch, required: false}
  protected: ['${SITE}/raw']
presets:
  lab:
    binds: ['${SITE}/sw:/opt/sw:ro']
    env: [LANG, OMP_NUM_THREADS]
  strict:
    containment: containall
    namespaces: [uts]
    cleanenv: true
    env: [LANG, TZ]
rules:
  'align_*':
    use: [strict]
    binds: ['${SITE}/index']
  'call_*':
    namespaces: [ipc, '-pid']
    binds: ['${SITE}/db:/db']
  'qc_*':
    auto_binds: {inputs: ro, outputs: rw}
    writable_tmpfs: true
  '*_0':
    env: [CUDA_VISIBLE_DEVICES]
  'report_?':
    containment: containall
    args: ['--no-init']
"""


def exact_rules() -> str:
    lines = []
    for i, rule in enumerate(RULES[::2]):  # 10 exact keys
        lines.append(f"  {rule}:")
        lines.append(f"    binds: ['${{SITE}}/extra/{i}:/extra:{'rw' if i % 3 == 0 else 'ro'}']")
        if i % 2:
            lines.append("    namespaces: [uts]")
        if i % 4 == 1:
            lines.append("    use: [strict]")
    return "\n".join(lines) + "\n"


def make_site(root: Path) -> tuple[Path, Path]:
    for folder in ("ref", "cache", "outside", "sw", "index", "db", "raw", "work", *(f"extra/{i}" for i in range(10))):
        (root / folder).mkdir(parents=True, exist_ok=True)
    policy = root / "containment.yaml"
    policy.write_text(POLICY + exact_rules())
    return policy, root / "work"


def make_jobs(n: int, site: Path):
    from snakemake_singcontain.plan import JobSpec

    jobs = []
    for i in range(n):
        rule = RULES[i % len(RULES)]
        inputs = (f"data/{i % 1000}/reads_{i}.fq",  # in the workdir: no bind
                  f"{site}/ref/genome_{i % 10}.fa",  # under a policy bind
                  f"{site}/ext/batch_{i % 50}/sample_{i}.txt")  # outside: auto-bind ro
        outputs = (f"results/{rule}/{i}.out",  # in the workdir
                   f"{site}/outside/{rule}/{i % 20}/{i}.tsv",  # outside, under a writable policy bind
                   f"logs/{rule}/{i}.log")
        jobs.append(JobSpec(rule, inputs, outputs, {"i": str(i)}, "/images/base.sif"))
    return jobs


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def one(n: int) -> dict:
    from snakemake_singcontain.argv import apptainer_args
    from snakemake_singcontain.checker import Checker
    from snakemake_singcontain.findings import has_errors
    from snakemake_singcontain.plugins import plugin_manager
    from snakemake_singcontain.policy import load_policy
    from snakemake_singcontain.runtime import RuntimeInfo

    with tempfile.TemporaryDirectory(prefix="singcontain-core-bench-") as tmp:
        site = Path(tmp)
        policy_file, workdir = make_site(site)
        environ = {"SITE": str(site), "LANG": "C.UTF-8", "TZ": "UTC", "OMP_NUM_THREADS": "4"}
        runtime = RuntimeInfo("apptainer", (1, 4, 5), "/usr/bin/apptainer", {"allow pid ns": ("yes",)})
        jobs = make_jobs(n, site)
        before = rss_mib()

        t0 = time.perf_counter()
        checker = Checker(load_policy(policy_file, env=environ), runtime, plugin_manager(), workdir=str(workdir),
                          rule_kinds={rule: "shell" for rule in RULES}, environ=environ)
        findings = checker.check(jobs)
        t1 = time.perf_counter()
        words = 0
        for job in jobs:
            words += len(apptainer_args(checker.job_plan(job), runtime, environ))
        t2 = time.perf_counter()
        if has_errors(findings):
            raise SystemExit(f"the benchmark's policy should pass its checks: {findings[:3]}")
        start_ms = job_start_ms(checker, jobs[:1000], runtime, environ, site)
        return {"n": n, "check": t1 - t0, "argv": t2 - t1, "total": t2 - t0, "findings": len(findings),
                "words": words, "rss_before": before, "rss_peak": rss_mib(), "start_ms": start_ms}


def job_start_ms(checker, jobs, runtime, environ, site: Path) -> float:
    """Milliseconds per job of what the bridge does at a job's start (jobstart.start: its fresh plan and checks,
    the seal's checks, its flags, its probe read from the run's cache) and end (jobstart.finish, its record).
    No container starts here: the probe is made once per rule and kept (attest.cached_probe), so a job reads
    it; this benchmark writes a kept probe for each rule and leaves out only `attest.compare` (timed on its
    own in tests/unit/test_attest.py's cases: tens of µs)."""
    from snakemake_singcontain import attest, jobstart, records, seal

    image = site / "base.sif"
    image.write_bytes(b"\0" * 4096)
    jobs = [replace(job, image=str(image)) for job in jobs]
    settings = {rule: checker.settings(rule) for rule in RULES}
    settings_data = {rule: seal.settings_data(s) for rule, s in settings.items()}  # as the bridge keeps them
    sealed = seal.of_check(settings, str(image), [str(image)], records.new_run_id(), False)
    recorder = records.Recorder(str(site / "work"), sealed.run_id)
    folder = str(site / "work" / seal.FOLDER / "attestations" / sealed.run_id)
    # The run's first job of each rule probes; every later one reads what it kept.
    attest.probe = lambda binary, image, args, workdir, environ=None: attest.Attestation(tuple(args), False)
    attest.compare = lambda attestation, expected, runtime=None: []
    cwd = os.getcwd()
    os.chdir(site / "work")  # jobs' relative outputs: their folders are made here
    try:
        for job in {j.rule: j for j in jobs}.values():
            jobstart.start(checker, job, sealed, [], [], environ, 1, {}, folder, str(site / "work"))
        start = time.perf_counter()
        for job in jobs:
            started = jobstart.start(checker, job, sealed, [], [], environ, 1, {}, folder, str(site / "work"))
            jobstart.finish(started)
            recorder.write(records.job_record(started.plan, started.image, started.argv, started.attestation,
                                              settings_data[job.rule], list(job.outputs), 1, runtime,
                                              "0" * 64, start, 0))
        return (time.perf_counter() - start) / len(jobs) * 1000
    finally:
        os.chdir(cwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=1, help="runs per N; the fastest is reported")
    parser.add_argument("--image", help="a .sif: also time `apptainer exec IMAGE true` and report the ratio")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one N in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; policy: defaults + 2 presets + 5 globs + "
          f"10 exact rules; 20 rules; 3 inputs + 3 outputs per job (2 auto-binds)")
    print(f"{'N':>9} {'check s':>9} {'argv s':>9} {'total s':>9} {'µs/job':>8} {'peak RSS MiB':>13} "
          f"{'(before MiB)':>13} {'findings':>9}")
    rows = []
    for n in (int(x) for x in args.jobs.split(",")):
        runs = [json.loads(subprocess.run([sys.executable, __file__, "--one", str(n)], check=True,
                                          capture_output=True, text=True).stdout) for _ in range(args.repeat)]
        r = min(runs, key=lambda r: r["total"])
        rows.append(r)
        print(f"{n:>9,} {r['check']:>9.3f} {r['argv']:>9.3f} {r['total']:>9.3f} {r['total'] / n * 1e6:>8.1f} "
              f"{r['rss_peak']:>13.1f} {r['rss_before']:>13.1f} {r['findings']:>9}")
    per_job = [r["total"] / r["n"] * 1e6 for r in rows]
    print(f"\nslowest: {max(per_job):.1f} µs/job -> {'under' if max(per_job) < 1000 else 'OVER'} 1 ms per job; "
          f"µs/job from smallest to largest N varies x{max(per_job) / min(per_job):.2f} "
          f"({'roughly linear' if max(per_job) / min(per_job) < 1.5 else 'NOT linear'})")
    if args.image:
        start_ms = container_start_ms(args.image)
        print(f"apptainer exec IMAGE true: {start_ms:.1f} ms (median of 20); plugin per job / container start = "
              f"{max(per_job) / 1000 / start_ms:.2%} (goal < 1%)")
        print(f"one job's start (re-check, plan, seal checks, argv, record): {rows[-1]['start_ms']:.2f} ms = "
              f"{rows[-1]['start_ms'] / start_ms:.2%} of a container start")
    else:
        print(f"one job's start (re-check, plan, seal checks, argv, record): {rows[-1]['start_ms']:.2f} ms")


def container_start_ms(image: str, runs: int = 20) -> float:
    """The cost the plugin's per-job work is measured against: one container start, as the jobs do it."""
    argv = [shutil.which("apptainer") or "apptainer", "exec", "--contain", image, "true"]
    if os.geteuid() == 0:
        argv[2:2] = ["--userns"]  # root needs a user namespace on these machines (measured)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


if __name__ == "__main__":
    main()
