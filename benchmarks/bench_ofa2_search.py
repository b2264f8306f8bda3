"""Benchmark: seconds and final hypervolume of 100 x 1000 OFA² searches (Note10 latency, OFA's predictor).

Runs the catalogue's algorithms (NSGA-II, SMS-EMOA, SPEA2, NSGA-III, AGE-MOEA; ``--algorithms`` picks
some) with seeds 1, 2, 3 in-process on the CPU and compares the time per
run with the seed's notebooks (37-44 s per run on a GPU). Goal: under 10 s per run on 2 CPU cores.
Hypervolume reference point: (25 % top-1 error, 100 ms).

    python benchmarks/bench_ofa2_search.py [--ofa-data ../shared/data/ofa] [--generations 1000] [--out DIR]
        [--algorithms nsga2,smsemoa,spea2,nsga3,agemoea]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from nni_ext.ofa2 import AccuracyPredictor, LatencyModel, run_search
from nni_ext.ofa2.search import ALGORITHMS, write_comparison

REPO = Path(__file__).resolve().parents[1]
SEED_SECONDS = (37.0, 44.0)  # per run, the seed's ofa2.ipynb on a GPU


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ofa-data", default=str(REPO.parent / "shared" / "data" / "ofa"),
                        help="folder with acc_predictor.pth and note10/")
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--generations", type=int, default=1000)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    parser.add_argument("--out", default=None, help="also write each run, comparison.md and fronts.png here")
    args = parser.parse_args()
    data = Path(args.ofa_data)
    predictor = AccuracyPredictor.load(data / "acc_predictor.pth")
    latency = LatencyModel.from_path(data / "note10", space=predictor.space)
    algorithms = args.algorithms.split(",")
    for name in algorithms:  # warm-up: imports and first calls (AGE-MOEA's numba compile) stay off the clock
        run_search(predictor=predictor, efficiency=latency, algorithm=name, population=args.population,
                   generations=2, log_every=0)

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs visible; population {args.population} x {args.generations} generations")
    print(f"{'algorithm':<9} {'seed':>4} {'time s':>8} {'hypervolume':>12} {'networks':>8}")
    results = []
    for name in algorithms:
        for seed in (int(s) for s in args.seeds.split(",")):
            r = run_search(predictor=predictor, efficiency=latency, algorithm=name, seed=seed,
                           population=args.population, generations=args.generations, log_every=0,
                           out_dir=Path(args.out) / f"{name}-seed{seed}" if args.out else None)
            results.append(r)
            print(f"{name:<9} {seed:>4} {r.seconds:>8.2f} {r.hypervolume:>12.3f} {len(r.matrix):>8}", flush=True)
    times = np.array([r.seconds for r in results])
    print(f"mean {times.mean():.2f} s per run (max {times.max():.2f} s); the seed's notebooks: "
          f"{SEED_SECONDS[0]:.0f}-{SEED_SECONDS[1]:.0f} s per run on a GPU "
          f"({SEED_SECONDS[0] / times.mean():.1f}-{SEED_SECONDS[1] / times.mean():.1f}x faster); goal < 10 s")
    if args.out:
        write_comparison(results, args.out)


if __name__ == "__main__":
    main()
