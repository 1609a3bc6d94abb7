"""A 200-job contained workflow run end to end: with the plugin vs one global --apptainer-args.

    python benchmarks/e2e_bench.py [--image IMAGE.sif] [--jobs 200] [--cores 2] [--repeat 3]

Both variants start every job with the same flags (--contain --pid and one read-only bind), so the
difference is the plugin's own cost: the preflight over the DAG, one smoke test per distinct
(image, flags), and the per-job re-check and flag building. Goal: ratio <= 1.03. Run as an ordinary
user (Apptainer refuses root here without --userns), with the Python of a virtualenv that has Snakemake
and this project installed.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNAKEFILE = """\
{contain}
container: "{image}"

rule all:
    input: expand("out/{{i}}.txt", i=range({n}))

rule work:
    output: "out/{{i}}.txt"
    shell: "cat /opt/sw/version > {{output}}"
"""
POLICY = 'version: 1\ndefaults:\n  containment: contain\n  namespaces: [pid]\n  binds: ["{sw}:/opt/sw:ro"]\n'


def run(work: Path, cores: int, extra: list[str]) -> float:
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    subprocess.run(["rm", "-rf", str(work / "out"), str(work / ".snakemake")], check=True)
    start = time.perf_counter()
    done = subprocess.run([snakemake, "--sdm", "apptainer", "-c", str(cores), "--quiet", "all", *extra], cwd=work,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"snakemake failed in {work}:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="/tmp/singcontain-bench.sif")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not os.path.exists(args.image):
        sys.exit(f"no image {args.image}: build one with tools/build-test-image.sh")
    with tempfile.TemporaryDirectory(prefix="singcontain-e2e-") as tmp:
        sw = Path(tmp) / "sw"
        sw.mkdir()
        (sw / "version").write_text("1.0\n")
        variants = {
            "global --apptainer-args": ("", ["--apptainer-args", f"--contain --pid --bind {sw}:/opt/sw:ro"]),
            "plugin (per-rule policy)": ('from snakemake_singcontain import contain\ncontain(workflow, "containment.yaml")', []),
        }
        times = {}
        for name, (contain, extra) in variants.items():
            work = Path(tmp) / name.split()[0]
            work.mkdir()
            (work / "Snakefile").write_text(SNAKEFILE.format(contain=contain, image=args.image, n=args.jobs))
            (work / "containment.yaml").write_text(POLICY.format(sw=sw))
            times[name] = [run(work, args.cores, extra) for _ in range(args.repeat)]
    base = statistics.median(times["global --apptainer-args"])
    print(f"{args.jobs} jobs, {args.cores} cores, median of {args.repeat}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<26} {median:7.2f} s  ({median / args.jobs * 1000:6.1f} ms/job)  ratio {median / base:.3f}")


if __name__ == "__main__":
    main()
