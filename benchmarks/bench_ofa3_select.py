"""Benchmark: a full OFA³ selection (100 models x 50,000 images, population 100 x 2,000 generations) on the CPU.

Synthetic top-5 tables of the seed's size (correlated models, top-1 accuracies 70-80 %) and latencies.
Prints the compile time, the selection time, the process CPU time and the load average (the CPU may be
shared: compare timings taken at similar loads) and peak memory (tracemalloc: numpy and Python allocations;
ru_maxrss: the whole process), against the goal (under 60 s on 2 CPU cores, under 1 GB) and the seed
(about 2 hours per run on a GPU). Also times our sparse scoring of one population against the naive
dense computation (models x images x classes probabilities, sum per ensemble) on a smaller size, and
checks the two agree.

    python benchmarks/bench_ofa3_select.py [--generations 2000] [--criterion max] [--dense-models 20]
        [--algorithm nsga2|smsemoa|spea2|nsga3|agemoea] [--spread shared|wide|uniform] [--baseline REV]

``--spread`` sets how widely the models' wrong classes spread (``synthetic_tables``): ``shared`` (the
default: an image's top-5 classes over 100 models span about 7 classes), ``wide`` (about 20 on average,
90th percentile about 38) or ``uniform`` (wrong classes uniform over the 1,000 classes, independent between
models). ``--baseline REV`` runs the same selection again with the scorer of git revision ``REV`` (e.g. the
commit before a change), on the same tables at about the same load, and prints both. ``--dense-models 0``
skips the dense comparison (its 400 MB array would otherwise set the process's peak RSS).

The timed run is untraced; peak memory comes from a second, traced run of the compile and
``--memory-generations`` generations (tracemalloc would add about 45 % to the selection time).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from nni_ext.ensemble import SoftVotingScorer, TopKTables, select_ensembles, synthetic_latency, synthetic_tables
from nni_ext.ensemble.scoring import dense_accuracy

SEED_SECONDS = 2 * 3600  # per run, the seed's ofa3 notebooks on a GPU
GOAL_SECONDS, GOAL_BYTES = 60.0, 1 << 30


def dense_vs_sparse(models: int, images: int, classes: int, population: int, spread: str = "shared") -> None:
    t = synthetic_tables(models=models, images=images, classes=classes, seed=7, spread=spread)
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


def class_spread(tables: TopKTables) -> str:
    """How many classes an image's top-k lists span over all the models: mean, 90th percentile, most."""
    M, n, k = tables.ids.shape
    spans = []
    for a in range(0, n, 5000):
        cls = np.sort(tables.ids[:, a:a + 5000].transpose(1, 0, 2).reshape(-1, M * k), axis=1)
        spans.append(1 + np.count_nonzero(cls[:, 1:] != cls[:, :-1], axis=1))
    span = np.concatenate(spans)
    return f"{span.mean():.1f} classes on average (90th percentile {np.percentile(span, 90):.0f}, at most {span.max()})"


def baseline_scorer(rev: str) -> type:
    """``SoftVotingScorer`` of git revision ``rev``, loaded beside the package (its ``.tables`` is today's)."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(["git", "show", f"{rev}:nni_ext/ensemble/scoring.py"], cwd=root, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "scoring.py"
    path.write_text(source)
    name = "nni_ext.ensemble._baseline_scoring"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.SoftVotingScorer


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
    parser.add_argument("--spread", default="shared", choices=("shared", "wide", "uniform"),
                        help="how widely the models' wrong classes spread (synthetic_tables)")
    parser.add_argument("--baseline", metavar="REV", help="also run the scorer of this git revision")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"load average {os.getloadavg()[0]:.2f}")
    if args.dense_models > 0:
        dense_vs_sparse(args.dense_models, args.dense_images, 1000, args.population, args.spread)

    start = time.perf_counter()
    tables = synthetic_tables(models=args.models, images=args.images, seed=0, spread=args.spread)
    latency = synthetic_latency(tables, seed=0)
    acc = tables.top1_accuracy()
    print(f"synthetic tables {args.models} x {args.images} x top-{tables.k}, spread {args.spread}: "
          f"{time.perf_counter() - start:.1f} s; model top-1 {100 * acc.min():.1f}-{100 * acc.max():.1f} %; "
          f"an image's top-{tables.k} over the models spans {class_spread(tables)}")
    small = synthetic_tables(models=8, images=200, classes=20, seed=1)  # warm-up: AGE-MOEA's numba compile
    select_ensembles(tables=small, latency=synthetic_latency(small), population=args.population, generations=2,
                     seed=1, min_members=args.min_members, algorithm=args.algorithm, log_every=0)
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    scorer = SoftVotingScorer(tables)
    t_compile = time.perf_counter() - start
    s = scorer.stats
    print(f"compile {t_compile:.2f} s: {s.always_right} images right and {s.always_wrong} wrong for every ensemble, "
          f"{s.contested} contested with {s.threats} threat classes in {s.rows} dense rows "
          f"({s.enveloped} images with an envelope row, {s.label_rows} of them with the label's row too); "
          f"compiled tables {scorer.nbytes() / 2**20:.0f} MiB")
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

    if args.baseline:
        Baseline = baseline_scorer(args.baseline)
        load = os.getloadavg()[0]
        start, cpu = time.perf_counter(), time.process_time()
        old = Baseline(tables)
        t_old = time.perf_counter() - start
        r_old = select_ensembles(tables=tables, latency=latency, criterion=args.criterion, population=args.population,
                                 generations=args.generations, seed=1, min_members=args.min_members,
                                 algorithm=args.algorithm, scorer=old, log_every=0)
        cpu = time.process_time() - cpu
        same = (np.array_equal(r_old.members, r.members) and np.array_equal(r_old.search_accuracy, r.search_accuracy)
                and r_old.history == r.history)
        print(f"baseline {args.baseline}: compile {t_old:.2f} s ({old.stats.threats} threat rows) + selection "
              f"{r_old.seconds:.1f} s = {t_old + r_old.seconds:.1f} s (CPU time {cpu:.1f} s; load average "
              f"{load:.2f} before, {os.getloadavg()[0]:.2f} after); same ensembles, accuracies and hypervolume "
              f"history: {same}; this run / baseline: {total / (t_old + r_old.seconds):.2f}")
        del old
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
        print(f"process max RSS after the baseline run: {rss:.0f} MiB (if above ours: the baseline's peak)")


if __name__ == "__main__":
    main()
