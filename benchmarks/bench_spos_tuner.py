"""Benchmark: milliseconds per proposal of the SPOS evolution tuner vs building networks to count FLOPs.

Runs a whole ``EvolutionWithFlops`` search (default: SPOS at 224px, 330M FLOPs, population 50,
20 generations = 1000 proposals) answered by a synthetic accuracy, timing only
``generate_parameters``. The tuner checks every candidate it draws against the limit with the
lookup table; the baseline does the same check the way a tuner without a cost model must, by
building the network and counting it (``nni_ext.cost.count(space.build(arch), 224)``), timed on
a sample of the same candidates and scaled to the same number of checks per proposal.

    python benchmarks/bench_spos_tuner.py [--space spos] [--flops-limit 330e6] [--baseline-archs 30]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch
from nni import NoMoreTrialError

from nni_ext.cost import CostTable, count
from nni_ext.spaces import create_space
from nni_ext.tuners import EvolutionWithFlops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="spos")
    parser.add_argument("--flops-limit", type=float, default=330e6)
    parser.add_argument("--population", type=int, default=50)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--baseline-archs", type=int, default=30, help="candidates timed for the baseline")
    args = parser.parse_args()
    space = create_space(args.space)
    size = space.default_input_size

    start = time.perf_counter()
    table = CostTable.cached(space, size)
    table_s = time.perf_counter() - start

    tuner = EvolutionWithFlops(space=args.space, flops_limit=args.flops_limit, population_size=args.population,
                               num_mutation=args.population // 2, num_crossover=args.population // 2,
                               num_generations=args.generations, seed=0)
    tuner.update_search_space(space.to_nni())
    checked: list[tuple] = []
    cost = tuner._cost

    def counting_cost(key: tuple) -> float:  # record every candidate the tuner checks against the limit
        checked.append(key)
        return cost(key)

    tuner._cost = counting_cost  # type: ignore[method-assign]
    weights = np.random.default_rng(1).random((len(space.labels), 4))
    choices = space.choices()
    ask_s, proposals = 0.0, 0
    while True:
        start = time.perf_counter()
        try:
            params = tuner.generate_parameters(proposals)
        except NoMoreTrialError:
            ask_s += time.perf_counter() - start
            break
        ask_s += time.perf_counter() - start
        acc = float(np.mean([weights[i, choices[label].index(params[label])] for i, label in enumerate(space.labels)]))
        tuner.receive_trial_result(proposals, params, {"default": acc})
        proposals += 1
    ours_ms = ask_s / proposals * 1e3
    checks_per_proposal = len(checked) / proposals

    rng = np.random.default_rng(0)
    sample = [dict(zip(tuner.labels, checked[i]))
              for i in rng.choice(len(checked), min(args.baseline_archs, len(checked)), replace=False)]
    start = time.perf_counter()
    exact = [count(space.build(arch), size).flops for arch in sample]
    per_check_ms = (time.perf_counter() - start) / len(sample) * 1e3
    assert exact == [table.cost(arch).flops for arch in sample], "lookup table disagrees with exact counting"
    baseline_ms = per_check_ms * checks_per_proposal

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads, Python {sys.version.split()[0]}, torch {torch.__version__}")
    print(f"search: {args.space} at {size}px, flops_limit {args.flops_limit:.4g}, population {args.population}, "
          f"{args.generations} generations -> {proposals} proposals, best accuracy {tuner.best.value('default'):.4f}")
    print(f"cost table (once, then cached): {table_s:.2f} s; candidates checked: {len(checked)} "
          f"({checks_per_proposal:.2f} per proposal)")
    print(f"ours (EvolutionWithFlops, lookup table):  {ours_ms:.3f} ms/proposal")
    print(f"baseline (build + count each candidate):  {baseline_ms:.1f} ms/proposal "
          f"({per_check_ms:.1f} ms/candidate on {len(sample)} candidates, equal FLOPs)")
    print(f"speed-up: {baseline_ms / ours_ms:.0f}x")


if __name__ == "__main__":
    main()
