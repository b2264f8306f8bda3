"""Hypervolume and per-proposal overhead of nni_ext's NSGA2 tuner against pymoo's NSGA-II and Optuna's NSGAIISampler.

For each problem (ZDT1-3 with 30 variables, DTLZ2 with 12 variables and 3 objectives) and seed, all three run
at the same evaluation budget and population size:

* ``nni_ext NSGA2``: our tuner driven as NNI's dispatcher drives it (``nni_ext.testing.simulate``), with one
  trial at a time (``c=1``) and with four in flight (``c=4``, asynchronous generations);
* ``pymoo NSGA2``: pymoo's own algorithm through its ask/tell interface;
* ``optuna NSGAII``: Optuna's NSGAIISampler, in-memory storage.

``--nnictl`` also runs our tuner through a real nnictl experiment (ZDT1, the first seed, ``--nnictl-budget``
trials) and compares it with the others at that budget. ``--overhead N`` times the tuner's own work per
proposal over N trials against Optuna's. Hypervolumes use a fixed reference point per problem.

Usage (Optuna comes with ``pip install -e ".[bench]"``)::

    python examples/moo_benchmark/benchmark.py --budget 2000 --population 40 --seeds 1 2 3 4 5
    python examples/moo_benchmark/benchmark.py --overhead 5000 --problems --seeds 1
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from trial import search_space  # noqa: E402

N_VAR = {"zdt1": 30, "zdt2": 30, "zdt3": 30, "dtlz2": 12}
REFERENCE = {"zdt1": [1.1, 11.0], "zdt2": [1.1, 11.0], "zdt3": [1.1, 11.0], "dtlz2": [2.0, 2.0, 2.0]}


def keys(problem: str) -> list[str]:
    return ["default", "f2", "f3"][: len(REFERENCE[problem])]


def problem_of(name: str):  # type: ignore[no-untyped-def]
    from pymoo.problems import get_problem

    return get_problem(name, n_var=N_VAR[name]) if name.startswith("zdt") else get_problem(name, n_var=12, n_obj=3)


def hv(F: np.ndarray, problem: str) -> float:
    from nni_ext.pareto import hypervolume, non_dominated

    F = np.asarray(F, dtype=float)
    return hypervolume(F[non_dominated(F)], np.array(REFERENCE[problem]))


def run_ours(problem: str, seed: int, budget: int, population: int, concurrency: int) -> tuple[float, float]:
    """Our tuner driven in-process; returns (hypervolume of everything evaluated, tuner seconds per proposal)."""
    from nni_ext.testing import simulate
    from nni_ext.tuners import NSGA2Tuner

    prob = problem_of(problem)
    names = [f"x{i}" for i in range(N_VAR[problem])]
    spent = 0.0

    def evaluate(params: dict) -> dict:
        f = prob.evaluate(np.array([params[n] for n in names]))
        return dict(zip(keys(problem), map(float, np.asarray(f).reshape(-1))))

    tuner = NSGA2Tuner(objectives={k: "minimize" for k in keys(problem)}, population_size=population, seed=seed)
    start = time.perf_counter()
    done = simulate(tuner, search_space(N_VAR[problem]), evaluate, n_trials=budget, concurrency=concurrency, seed=seed)
    total = time.perf_counter() - start
    spent = total - _time_of(lambda: [evaluate(p) for p, _ in done])
    F = np.array([[v[k] for k in keys(problem)] for _, v in done])
    return hv(F, problem), spent / budget


def _time_of(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_pymoo(problem: str, seed: int, budget: int, population: int) -> float:
    """pymoo's NSGA-II through ask/tell at the same budget; hypervolume of everything evaluated."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.termination import get_termination

    prob = problem_of(problem)
    algorithm = NSGA2(pop_size=population)
    algorithm.setup(prob, termination=get_termination("n_eval", budget), seed=seed, verbose=False)
    evaluated = []
    while algorithm.has_next():
        pop = algorithm.ask()
        algorithm.evaluator.eval(prob, pop)  # the algorithm's evaluator counts toward its n_eval budget
        evaluated.append(pop.get("F"))
        algorithm.tell(infills=pop)
    F = np.vstack(evaluated)[:budget]
    return hv(F, problem)


def run_optuna(problem: str, seed: int, budget: int, population: int) -> tuple[float, float]:
    """Optuna's NSGAIISampler (in-memory); returns (hypervolume, sampler seconds per trial)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    prob = problem_of(problem)
    names = [f"x{i}" for i in range(N_VAR[problem])]
    sampler = optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    study = optuna.create_study(directions=["minimize"] * len(keys(problem)), sampler=sampler)
    distributions = {n: optuna.distributions.FloatDistribution(0.0, 1.0) for n in names}
    rows, spent = [], 0.0
    for _ in range(budget):
        start = time.perf_counter()
        trial = study.ask(distributions)
        x = np.array([trial.params[n] for n in names])
        spent += time.perf_counter() - start
        f = np.asarray(prob.evaluate(x)).reshape(-1)
        start = time.perf_counter()
        study.tell(trial, f.tolist())
        spent += time.perf_counter() - start
        rows.append(f)
    return hv(np.array(rows), problem), spent / budget


def run_nnictl(problem: str, seed: int, budget: int, population: int, concurrency: int) -> float:
    """Our tuner in a real nnictl experiment on localhost; hypervolume of everything the trials reported."""
    import yaml

    from nni_ext import experiment

    tmp = Path(tempfile.mkdtemp(prefix="moo_bench_"))
    space_file = tmp / "space.json"
    space_file.write_text(json.dumps(search_space(N_VAR[problem])))
    config = {
        "experimentName": f"moo-bench-{problem}-{seed}", "searchSpaceFile": str(space_file),
        "trialCommand": f"python examples/moo_benchmark/trial.py --problem {problem}",
        "trialCodeDirectory": str(REPO), "trialConcurrency": concurrency, "maxTrialNumber": budget,
        "experimentWorkingDirectory": str(tmp / "experiments"),
        "tuner": {"className": "nni_ext.tuners.NSGA2Tuner", "codeDirectory": str(REPO), "classArgs": {
            "objectives": {k: "minimize" for k in keys(problem)}, "population_size": population, "seed": seed}},
        "trainingService": {"platform": "local"}}
    (tmp / "config.yml").write_text(yaml.safe_dump(config))
    exp = experiment.create(tmp / "config.yml")
    try:
        exp.wait(timeout=6 * 3600, progress=lambda e, s: None)
        trials = [t for t in exp.trials() if t.metrics]
    finally:
        exp.stop()
    F = np.array([[t.metrics[k] for k in keys(problem)] for t in trials])
    print(f"  nnictl experiment {exp.id}: {len(trials)} trials with results", flush=True)
    return hv(F, problem)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="*", default=list(N_VAR), choices=list(N_VAR))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--population", type=int, default=40)
    parser.add_argument("--nnictl", action="store_true", help="also run a real nnictl experiment (ZDT1, first seed)")
    parser.add_argument("--nnictl-budget", type=int, default=200)
    parser.add_argument("--overhead", type=int, default=0, metavar="N", help="time proposals over N trials")
    args = parser.parse_args()

    print(f"budget {args.budget} evaluations, population {args.population}, seeds {args.seeds}")
    print("| problem | nni_ext NSGA2 c=1 | nni_ext NSGA2 c=4 | pymoo NSGA2 | optuna NSGAII | ours/pymoo "
          "| ours/optuna |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for problem in args.problems:
        res: dict[str, list[float]] = {"c1": [], "c4": [], "pymoo": [], "optuna": []}
        for seed in args.seeds:
            res["c1"].append(run_ours(problem, seed, args.budget, args.population, 1)[0])
            res["c4"].append(run_ours(problem, seed, args.budget, args.population, 4)[0])
            res["pymoo"].append(run_pymoo(problem, seed, args.budget, args.population))
            res["optuna"].append(run_optuna(problem, seed, args.budget, args.population)[0])
        med = {k: statistics.median(v) for k, v in res.items()}
        print(f"| {problem} | {med['c1']:.4f} | {med['c4']:.4f} | {med['pymoo']:.4f} | {med['optuna']:.4f} | "
              f"{med['c1'] / med['pymoo']:.3f} | {med['c1'] / med['optuna']:.3f} |", flush=True)

    if args.nnictl:
        seed, budget = args.seeds[0], args.nnictl_budget
        pop = min(args.population, max(4, budget // 10))
        print(f"\nreal nnictl experiment: zdt1, seed {seed}, {budget} trials, population {pop}, 3 in flight")
        real = run_nnictl("zdt1", seed, budget, pop, 3)
        print("| zdt1 @ nnictl budget | nni_ext NSGA2 via nnictl | nni_ext in-process c=3 | pymoo NSGA2 "
              "| optuna NSGAII |")
        print("| --- | --- | --- | --- | --- |")
        print(f"| {budget} trials | {real:.4f} | {run_ours('zdt1', seed, budget, pop, 3)[0]:.4f} | "
              f"{run_pymoo('zdt1', seed, budget, pop):.4f} | {run_optuna('zdt1', seed, budget, pop)[0]:.4f} |")

    if args.overhead:
        n, pop = args.overhead, 50
        ours = run_ours("zdt1", args.seeds[0], n, pop, 1)[1]
        theirs = run_optuna("zdt1", args.seeds[0], n, pop)[1]
        print(f"\nper-proposal overhead over {n} trials (population {pop}, ZDT1): nni_ext NSGA2 {ours * 1e3:.3f} ms, "
              f"optuna NSGAIISampler {theirs * 1e3:.3f} ms -> {theirs / ours:.1f}x lower")
    return 0


if __name__ == "__main__":
    sys.exit(main())
