"""Benchmark: a full OFA³ selection (100 models x 50,000 images, population 100 x 2,000 generations) on the CPU.

Synthetic top-5 tables of the seed's size (correlated models, top-1 accuracies 70-80 %) and latencies.
Prints the compile time, the selection time, the process CPU time and the load average (the CPU may be
shared: compare timings taken at similar loads) and peak memory (tracemalloc: numpy and Python allocations;
ru_maxrss: the whole process), against the goal (under 60 s on 2 CPU cores, under 1 GB) and the seed
(about 2 hours per run on a GPU). Also times our sparse scoring of one population against the naive
dense computation (models x images x classes probabilities, sum per ensemble) on a smaller size, and
checks the two agree.

    python benchmarks/bench_ofa3_select.py [--generations 2000] [--criterion max] [--dense-models 20]
        [--algorithm nsga2|smsemoa|spea2|nsga3|agemoea]

The timed run is untraced; peak memory comes from a second, traced run of the compile and
``--memory-generations`` generations (tracemalloc would add about 45 % to the selection time).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import tracemalloc

import numpy as np

from nni_ext.ensemble import SoftVotingScorer, select_ensembles, synthetic_latency, synthetic_tables
from nni_ext.ensemble.scoring import dense_accuracy

SEED_SECONDS = 2 * 3600  # per run, the seed's ofa3 notebooks on a GPU
GOAL_SECONDS, GOAL_BYTES = 60.0, 1 << 30


def dense_vs_sparse(models: int, images: int, classes: int, population: int) -> None:
    t = synthetic_tables(models=models, images=images, classes=classes, seed=7)
    B = np.random.default_rng(7).random((population, models)) < 0.3
    B[B.sum(axis=1) == 0, 0] = True
    start = time.perf_counter()
    dense = dense_accuracy(t, B, classes=classes)  # builds models x images x classes, then one sum per ensemble
    t_dense = time.perf_counter() - start
    start = time.perf_counter()
    scorer = SoftVotingScorer(t, cache_size=0)
    t_compile = time.perf_counter() - start
    start = time.perf_counter()
    sparse = scorer.accuracy(B)
    t_sparse = time.perf_counter() - start
    same = bool(np.array_equal(dense, sparse))
    print(f"one population of {population} ensembles, {models} models x {images} images x {classes} classes: "
          f"dense {t_dense:.3f} s, sparse {t_sparse * 1e3:.1f} ms (+{t_compile:.3f} s compile once) -> "
          f"{t_dense / t_sparse:.0f}x faster per population ({t_dense / (t_sparse + t_compile):.1f}x with the "
          f"compile); identical accuracies: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--generations", type=int, default=2000)
    parser.add_argument("--criterion", default="max", choices=("max", "sum"))
    parser.add_argument("--algorithm", default="nsga2", help="nsga2 (default), smsemoa, spea2, nsga3 or agemoea")
    parser.add_argument("--min-members", type=int, default=2)
    parser.add_argument("--dense-models", type=int, default=20)
    parser.add_argument("--dense-images", type=int, default=5000)
    parser.add_argument("--memory-generations", type=int, default=50, help="generations of the traced run")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"load average {os.getloadavg()[0]:.2f}")
    dense_vs_sparse(args.dense_models, args.dense_images, 1000, args.population)

    start = time.perf_counter()
    tables = synthetic_tables(models=args.models, images=args.images, seed=0)
    latency = synthetic_latency(tables, seed=0)
    acc = tables.top1_accuracy()
    print(f"synthetic tables {args.models} x {args.images} x top-{tables.k}: {time.perf_counter() - start:.1f} s; "
          f"model top-1 {100 * acc.min():.1f}-{100 * acc.max():.1f} %")
    small = synthetic_tables(models=8, images=200, classes=20, seed=1)  # warm-up: AGE-MOEA's numba compile
    select_ensembles(tables=small, latency=synthetic_latency(small), population=args.population, generations=2,
                     seed=1, min_members=args.min_members, algorithm=args.algorithm, log_every=0)
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    scorer = SoftVotingScorer(tables)
    t_compile = time.perf_counter() - start
    s = scorer.stats
    print(f"compile {t_compile:.2f} s: {s.always_right} images right and {s.always_wrong} wrong for every ensemble, "
          f"{s.contested} contested with {s.threats} threat classes")
    r = select_ensembles(tables=tables, latency=latency, criterion=args.criterion, population=args.population,
                         generations=args.generations, seed=1, min_members=args.min_members,
                         algorithm=args.algorithm, scorer=scorer, log_every=0)
    cpu = time.process_time() - cpu
    total = t_compile + r.seconds
    n_eval = r.history[-1][1]
    print(f"{args.algorithm}, {args.criterion} latency, population {args.population} x {args.generations} "
          f"generations: selection {r.seconds:.1f} s ({n_eval} evaluations, {scorer.threads} scoring "
          f"threads), compile + selection {total:.1f} s (CPU time {cpu:.1f} s; load average {load:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after); {len(r.members)} efficient ensembles, "
          f"best search accuracy {100 * r.search_accuracy.max():.2f} %, hypervolume {r.hypervolume:.1f}")
    # memory apart: tracemalloc slows pymoo's many small allocations by about half, so it stays off the clock;
    # the peak is the compile's and a generation's, so a short traced run finds the same peak
    del scorer
    tracemalloc.start()
    scorer = SoftVotingScorer(tables)
    select_ensembles(tables=tables, latency=latency, criterion=args.criterion, population=args.population,
                     generations=args.memory_generations, seed=1, min_members=args.min_members,
                     algorithm=args.algorithm, scorer=scorer, log_every=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"peak memory: tracemalloc {peak / 2**20:.0f} MiB (compile + {args.memory_generations} generations, "
          f"traced apart; the 200 MB tables were made before it started), process max RSS {maxrss / 2**20:.0f} MiB "
          f"(whole run, tables generated in-process included)")
    print(f"goal: < {GOAL_SECONDS:.0f} s and < 1 GiB -> time {'met' if total < GOAL_SECONDS else 'NOT met'} "
          f"({total / GOAL_SECONDS:.2f}x the goal), memory {'met' if maxrss < GOAL_BYTES else 'NOT met'}; "
          f"the seed: about {SEED_SECONDS / 3600:.0f} h per run on a GPU ({SEED_SECONDS / total:.0f}x slower)")


if __name__ == "__main__":
    main()
