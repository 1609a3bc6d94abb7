"""Whole-DAG checks vs Snakemake's own dry run, for synthetic workflows of 20,000 and 100,000 jobs.

    runuser -u singtest -- python benchmarks/dag_bench.py [--image IMAGE.sif] [--jobs 20000,100000] [--repeat 3]

Runs `snakemake -n --sdm apptainer` on the same workflow without and with `contain()`, in pairs (without,
with, without, with …: a drift of the machine's speed hits both), and prints the median wall times, the
median of the pairs' ratios and peak memory (max RSS of the Snakemake process). Goal: ratio <= 1.03.
Run it as an ordinary user (the smoke test starts the image) with the Python of a virtualenv that has
Snakemake and this project installed.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# `make` reads one of ten reference files outside the workdir, so every job gets an auto-bind.
SNAKEFILE = """\
{contain}
container: "{image}"

rule all:
    input: expand("out/{{i}}.txt", i=range({n}))

rule make:
    input: lambda w: f"{site}/ref/{{int(w.i) % 10}}.fa"
    output: "out/{{i}}.txt"
    shell: "cat {{input}} > {{output}}"
"""
POLICY = """\
version: 1
defaults:
  containment: contain
  namespaces: [pid]
  binds: ["{site}/sw:/opt/sw:ro"]
rules:
  make: {{containment: containall, env: [LANG]}}
"""


def workflow(root: Path, n: int, image: str, with_plugin: bool) -> Path:
    work = root / f"{'with' if with_plugin else 'without'}-{n}"
    (work / "site" / "ref").mkdir(parents=True)
    (work / "site" / "sw").mkdir()
    for i in range(10):
        (work / "site" / "ref" / f"{i}.fa").write_text(">r\nACGT\n")
    contain = 'from snakemake_singcontain import contain\ncontain(workflow, "containment.yaml")' if with_plugin else ""
    (work / "Snakefile").write_text(SNAKEFILE.format(contain=contain, n=n, image=image, site=work / "site"))
    (work / "containment.yaml").write_text(POLICY.format(site=work / "site"))
    return work


def dry_run(work: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one `snakemake -n`."""
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    with open(work / "bench.log", "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen([snakemake, "-n", "--sdm", "apptainer", "-c1", "--quiet", "all"], cwd=work,
                                stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    if status != 0:
        sys.exit(f"snakemake failed in {work}:\n{(work / 'bench.log').read_text()[-3000:]}")
    return elapsed, usage.ru_maxrss


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="/tmp/singcontain-bench.sif", help="a local .sif (built if missing)")
    parser.add_argument("--jobs", default="20000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not os.path.exists(args.image):
        subprocess.run(["bash", str(Path(__file__).parent.parent / "tools/build-test-image.sh"), args.image], check=True)
    print(f"{'jobs':>8} {'without s':>10} {'with s':>10} {'ratio':>6} {'RSS without MiB':>16} {'RSS with MiB':>13}")
    with tempfile.TemporaryDirectory(prefix="singcontain-bench-") as tmp:
        for n in (int(x) for x in args.jobs.split(",")):
            works = {with_plugin: workflow(Path(tmp), n, args.image, with_plugin) for with_plugin in (False, True)}
            pairs = [(dry_run(works[False]), dry_run(works[True])) for _ in range(args.repeat)]
            (t0, m0), (t1, m1) = ((statistics.median(run[i][0] for run in pairs), max(run[i][1] for run in pairs))
                                  for i in (0, 1))
            ratio = statistics.median(b[0] / a[0] for a, b in pairs)
            print(f"{n:>8} {t0:>10.2f} {t1:>10.2f} {ratio:>6.3f} {m0 / 1024:>16.0f} {m1 / 1024:>13.0f}", flush=True)

if __name__ == "__main__":
    main()
