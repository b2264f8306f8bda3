"""Benchmark: the whole ``nni-ext quickstart`` (the README's first command) on this machine — time, best top-1
and the random-architecture baseline.

    python benchmarks/bench_quickstart.py                 # fresh run in a temporary folder (data, supernet, search)
    python benchmarks/bench_quickstart.py --again         # then a second run in the same folder (reuses the supernet)

Goals (issue "a first run that convinces"): best top-1 >= 0.90 on the digits val split and the whole command in
at most 5 minutes on 2 CPU cores; the search must beat random architectures of the same FLOPs limit (the
evolution's generation 0). Prints one line per run and the figures as a Markdown table row for
benchmarks/RESULTS.md. The load average is printed beside the time: the goal is for a quiet machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nni_ext.experiment import free_port


def run_quickstart(workdir: Path, extra: list[str]) -> dict[str, float | str]:
    """One ``nni-ext quickstart`` in ``workdir``: wall time and the figures it prints."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nni_ext", "quickstart", "--workdir", str(workdir), "--port",
                           str(free_port()), *extra], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"quickstart failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = proc.stdout
    best = re.search(r"\n  top-1 (\d\.\d+) ", out)
    rand = re.search(r"generation 0, (\d+)\): top-1 mean (\d\.\d+), worst (\d\.\d+), best (\d\.\d+)", out)
    flops = re.search(r"FLOPs (\d+\.\d+)M", out)
    supernet = "reused" if "[2/4 supernet] reusing" in out else "trained"
    return {"seconds": seconds, "load_start": load, "load_end": os.getloadavg()[0], "supernet": supernet,
            "best_top1": float(best.group(1)) if best else float("nan"),
            "random_mean": float(rand.group(2)) if rand else float("nan"),
            "random_best": float(rand.group(4)) if rand else float("nan"),
            "mflops": float(flops.group(1)) if flops else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="where to run (default: a temporary folder)")
    parser.add_argument("--again", action="store_true", help="run a second time in the same folder")
    parser.add_argument("extra", nargs="*", help="options passed to nni-ext quickstart (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp) / "qs"
        runs = [run_quickstart(workdir, args.extra)]
        if args.again:
            runs.append(run_quickstart(workdir, args.extra))
    print(f"{platform.node()} ({os.cpu_count()} CPUs), {time.strftime('%Y-%m-%d')}")
    for i, r in enumerate(runs, 1):
        ok = "meets" if r["best_top1"] >= 0.90 and float(r["seconds"]) <= 300 else "misses"
        print(f"run {i}: {r['seconds']:.0f} s (load {r['load_start']:.1f} -> {r['load_end']:.1f}), supernet "
              f"{r['supernet']}, best top-1 {r['best_top1']:.3f} at {r['mflops']:.3f} MFLOPs, random mean "
              f"{r['random_mean']:.3f} (best {r['random_best']:.3f}); {ok} the goal (>= 0.90, <= 300 s)")
        print(f"| {i} | {r['load_start']:.1f} / {r['load_end']:.1f} | {r['seconds']:.0f} s | {r['supernet']} | "
              f"{r['best_top1']:.3f} | {r['random_mean']:.3f} (best {r['random_best']:.3f}) |")


if __name__ == "__main__":
    main()
