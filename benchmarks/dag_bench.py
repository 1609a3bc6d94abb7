"""Whole-DAG checks vs Snakemake's own run, on several DAG shapes of 20,000 and 100,000 jobs.

    runuser -u singtest -- python benchmarks/dag_bench.py [--shapes all] [--jobs 20000,100000] [--rounds 3]
                                         [--other OTHER_VENV/bin/python] [--image IMAGE.sif] [--run] [--profile]

For every shape, the same Snakefile without and with `contain()` runs `snakemake -n --sdm apptainer` in
rounds (without, with, without, with …: a drift of the machine's speed hits both); `--other` adds a third
variant to every round, the plugin as installed in another virtualenv (e.g. the code before a change).
Printed per variant: median wall and CPU seconds, the median of the rounds' ratios to the run without the
plugin with their range (the noise), peak memory (max RSS of the Snakemake process), and the plugin's own
preflight (checks, plans, smoke tests, seal) timed inside the run. Goal: ratio <= 1.03 on every shape.
`--run` runs the jobs for real instead of `-n` (use a few hundred jobs); `--profile` runs each shape once
with the plugin and prints where its preflight spends its time (cProfile).
Run it as an ordinary user (the smoke test starts the image) with the Python of a virtualenv that has
Snakemake and this project installed.
"""

import argparse
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One rule, every job reading one of ten reference files outside the workdir.
ONE_RULE = """\
rule all:
    input: expand("out/{{i}}.txt", i=range({n}))

rule make:
    input: lambda w: f"{site}/ref/{{int(w.i) % 10}}.fa"
    output: "out/{{i}}.txt"
    shell: "cat {{input}} > {{output}}"
"""
# The policy: contain + pid, the reference files under a read-only bind.
RO_BIND = """\
version: 1
defaults:
  containment: contain
  namespaces: [pid]
  binds: ["{site}/ref:{site}/ref:ro"]
"""
# Every shape: a Snakefile body (after `container:`) and a policy, both formatted with n, site.
# `site` holds ten reference files (site/ref) and a software folder (site/sw) outside the workdir.
SHAPES = {
    # The issue's: one rule, every job reads one file under a read-only policy bind.
    "one-rule-ro-bind": (ONE_RULE, RO_BIND),
    # The previous benchmark's: the reference is outside every bind (an auto-bind), containall, one env name.
    "one-rule-auto-bind": (ONE_RULE, """\
version: 1
defaults:
  containment: contain
  namespaces: [pid]
  binds: ["{site}/sw:/opt/sw:ro"]
rules:
  make: {{containment: containall, env: [LANG]}}
"""),
    # 100 rules of n/100 jobs, under globs, presets and exact keys.
    "many-rules": ("""\
rule all:
    input: [f"out/r{{r}}/{{i}}.txt" for r in range(100) for i in range({n} // 100)]

for r in range(100):
    rule:
        name: f"r{{r}}"
        input: lambda w: f"{site}/ref/{{int(w.i) % 10}}.fa"
        output: f"out/r{{r}}/{{{{i}}}}.txt"
        threads: 1 + r % 2
        shell: "cat {{input}} > {{output}}"
""", """\
version: 1
defaults:
  use: [lab]
  containment: contain
  namespaces: [pid]
  binds: ["{site}/ref:{site}/ref:ro"]
presets:
  lab: {{binds: ["{site}/sw:/opt/sw:ro"], env: [LANG]}}
  strict: {{containment: containall, namespaces: [uts]}}
rules:
  'r1*': {{use: [strict]}}
  'r2?': {{namespaces: [ipc]}}
  r5: {{binds: ["{site}/sw:/sw:ro"]}}
  r7: {{containment: none}}
"""),
    # Four wildcards, every job its own output folder (no two jobs share a plan).
    "deep-wildcards": ("""\
DEEP = [f"out/{{i // 1000}}/{{i // 100 % 10}}/{{i % 100}}/{{i}}.txt" for i in range({n})]

rule all:
    input: DEEP

rule make:
    input: lambda w: f"{site}/ref/{{int(w.d) % 10}}.fa"
    output: "out/{{a}}/{{b}}/{{c}}/{{d}}.txt"
    shell: "cat {{input}} > {{output}}"
""", RO_BIND),
    # Two rules chained in the workdir: the second reads the first's outputs (inputs in the workdir).
    "workdir-chain": ("""\
rule all:
    input: expand("out/{{i}}.txt", i=range({n} // 2))

rule first:
    input: lambda w: f"{site}/ref/{{int(w.i) % 10}}.fa"
    output: "mid/{{i}}.txt"
    shell: "cat {{input}} > {{output}}"

rule second:
    input: "mid/{{i}}.txt"
    output: "out/{{i}}.txt"
    log: "logs/second/{{i}}.log"
    shell: "cat {{input}} > {{output}} 2> {{log}}"
""", RO_BIND),
    # A checkpoint (a directory() output) and an aggregate that waits on it, beside n ordinary jobs.
    "checkpoint": ("""\
rule all:
    input: expand("out/{{i}}.txt", i=range({n})), "agg/all.txt"

rule make:
    input: lambda w: f"{site}/ref/{{int(w.i) % 10}}.fa"
    output: "out/{{i}}.txt"
    shell: "cat {{input}} > {{output}}"

checkpoint split:
    output: directory("split")
    shell: "mkdir -p {{output}} && for i in 1 2 3; do echo $i > {{output}}/$i.txt; done"

def parts(wildcards):
    folder = checkpoints.split.get().output[0]
    return expand(f"{{folder}}/{{{{p}}}}.txt", p=glob_wildcards(f"{{folder}}/{{{{p}}}}.txt").p)

rule aggregate:
    input: parts
    output: "agg/all.txt"
    shell: "cat {{input}} > {{output}}"
""", RO_BIND),
    # cleanenv with an env list (SC209 is judged with each job's threads and tmpdir).
    "cleanenv-env": ("""\
rule all:
    input: expand("out/{{i}}.txt", i=range({n}))

rule make:
    input: lambda w: f"{site}/ref/{{int(w.i) % 10}}.fa"
    output: "out/{{i}}.txt"
    threads: 2
    resources: mem_mb=100
    shell: "cat {{input}} > {{output}}"
""", """\
version: 1
defaults:
  containment: contain
  namespaces: [pid]
  cleanenv: true
  env: [LANG, TZ, OMP_NUM_THREADS, TMPDIR]
  binds: ["{site}/ref:{site}/ref:ro"]
"""),
}

# Wraps the plugin's preflight: its wall and CPU time (and, when asked, its profile) written next to the Snakefile.
# Its CPU time (this process only: not the smoke test's container) is the steadiest measure of its cost.
TIMER = """\
import time as _time
_bridge = workflow._singcontain
_preflight = _bridge.preflight
def _timed_preflight():
    import os
    start, cpu = _time.perf_counter(), _time.process_time()
    if os.environ.get("DAG_BENCH_PROFILE"):
        import cProfile
        profile = cProfile.Profile()
        profile.runcall(_preflight)
        profile.dump_stats("preflight.prof")
    else:
        _preflight()
    with open("preflight.s", "a") as f:
        f.write(f"{_time.perf_counter() - start} {_time.process_time() - cpu}\\n")
_bridge.preflight = _timed_preflight
"""


def workflow(root: Path, shape: str, n: int, image: str, with_plugin: bool, name: str) -> Path:
    work = root / f"{shape}-{n}-{name}"
    site = root / "site"
    if not site.exists():
        (site / "ref").mkdir(parents=True)
        (site / "sw").mkdir()
        for i in range(10):
            (site / "ref" / f"{i}.fa").write_text(">r\nACGT\n")
    work.mkdir()
    body, policy = SHAPES[shape]
    contain = f'from snakemake_singcontain import contain\ncontain(workflow, "containment.yaml")\n{TIMER}' \
        if with_plugin else ""
    (work / "Snakefile").write_text(f'{contain}\ncontainer: "{image}"\n\n' + body.format(n=n, site=site))
    (work / "containment.yaml").write_text(policy.format(site=site))
    return work


def snakemake(work: Path, real: bool, env=None, python: str = sys.executable) -> tuple[float, float, int]:
    """Wall and CPU seconds (user + system, its children's included) and peak RSS (KiB) of one `snakemake -n`
    (or, `real`, of a whole run). CPU time is the steadier measure on a machine shared with other work."""
    command = [str(Path(python).with_name("snakemake")), "--sdm", "apptainer", "--quiet", "all"]
    command += ["-c2"] if real else ["-n", "-c1"]
    subprocess.run(["rm", "-rf", "out", "mid", "logs", "split", "agg", ".snakemake"], cwd=work, check=True)
    with open(work / "bench.log", "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    if status != 0:
        sys.exit(f"snakemake failed in {work}:\n{(work / 'bench.log').read_text()[-3000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def measure(root: Path, shape: str, n: int, args) -> None:
    """Rounds of (without, with[, with the other build]); each variant's ratios are to the same round's without."""
    variants = {"without": (False, sys.executable), "with": (True, sys.executable)}
    if args.other:
        variants["with (other)"] = (True, args.other)
    works = {name: workflow(root, shape, n, args.image, plugin, name.split()[-1].strip("()"))
             for name, (plugin, _) in variants.items()}
    rounds = [{name: snakemake(works[name], args.run, python=python) for name, (_, python) in variants.items()}
              for _ in range(args.rounds)]
    for name in variants:
        wall, cpu = ([r[name][i] / r["without"][i] for r in rounds] for i in (0, 1))
        row = f"{shape:<19} {n:>7} {len(rounds):>6} {name:<12} {statistics.median(r[name][0] for r in rounds):>7.2f} " \
              f"{statistics.median(wall):>6.3f} {min(wall):>5.3f}-{max(wall):<5.3f} " \
              f"{statistics.median(r[name][1] for r in rounds):>7.2f} {statistics.median(cpu):>6.3f} " \
              f"{min(cpu):>5.3f}-{max(cpu):<5.3f} {max(r[name][2] for r in rounds) / 1024:>6.0f}"
        if name != "without":
            own = [line.split() for line in (works[name] / "preflight.s").read_text().splitlines()]
            wall_s, cpu_s = (statistics.median(float(x[i]) for x in own) for i in (0, 1))
            row += f" {wall_s:>7.2f} {cpu_s:>7.2f} {cpu_s / statistics.median(r['without'][1] for r in rounds):>6.1%}"
        print(row, flush=True)


def profile(root: Path, shape: str, n: int, args) -> None:
    work = workflow(root, shape, n, args.image, True, "with")
    snakemake(work, args.run, env=dict(os.environ, DAG_BENCH_PROFILE="1"))
    print(f"\n== {shape}, {n} jobs: the preflight under cProfile (wall and CPU s: {(work / 'preflight.s').read_text().strip()})")
    stats = pstats.Stats(str(work / "preflight.prof"))
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(15)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="/tmp/singcontain-bench.sif", help="a local .sif (built if missing)")
    parser.add_argument("--shapes", default="all", help=f"comma-separated, of: {', '.join(SHAPES)}")
    parser.add_argument("--jobs", default="20000,100000")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (without, with[, with the other build])")
    parser.add_argument("--other", help="the Python of a second virtualenv (e.g. the code before a change): "
                        "measured in the same rounds, as a third variant")
    parser.add_argument("--run", action="store_true", help="run the jobs instead of -n (use few jobs)")
    parser.add_argument("--profile", action="store_true", help="profile each shape's preflight once instead")
    args = parser.parse_args()
    shapes = list(SHAPES) if args.shapes == "all" else args.shapes.split(",")
    if not os.path.exists(args.image):
        subprocess.run(["bash", str(Path(__file__).parent.parent / "tools/build-test-image.sh"), args.image], check=True)
    if not args.profile:
        print(f"snakemake {'(a real run, -c2)' if args.run else '-n'} --sdm apptainer: wall and CPU seconds (medians), "
              "the median of the rounds' ratios to the run without the plugin and their range, peak RSS; the "
              "plugin's preflight timed inside the run (wall and CPU, medians) and its CPU as a share of the CPU "
              "time without the plugin")
        print(f"{'shape':<19} {'jobs':>7} {'rounds':>6} {'variant':<12} {'wall s':>7} {'ratio':>6} {'range':<11} "
              f"{'CPU s':>7} {'ratio':>6} {'range':<11} {'RSS MiB':>6} {'prefl. s':>7} {'CPU s':>7} {'share':>6}")
    with tempfile.TemporaryDirectory(prefix="singcontain-bench-") as tmp:
        for n in (int(x) for x in args.jobs.split(",")):
            for shape in shapes:
                (profile if args.profile else measure)(Path(tmp), shape, n, args)


if __name__ == "__main__":
    main()
