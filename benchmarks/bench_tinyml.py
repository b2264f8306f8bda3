"""Tiny-device limits as true constraints or as CNAS's tiny_ml penalty: which search handles them better?

On the OFA MobileNetV3 w1.2 space (resolutions 160-224), the "true" accuracy of a sub-network is OFA's own
accuracy predictor (``../shared/data/ofa/acc_predictor.pth``); params, MACs and activations are exact, from
the space's cost tables at each architecture's resolution. The limits ``params <= P`` and
``activations <= A`` are the ``--quantile`` quantiles of 2,000 random architectures (so about a tenth of
the space is feasible). At equal numbers of evaluations, per tuner and seed:

* **constraints**: objectives ``{default: max, flops: min}``, constraints ``{params: <= P, activations: <= A}``
  (constrained domination; the tuner checks them before dispatch from the cost tables);
* **penalty**: objectives ``{default: max, tiny_ml: min}`` with ``tiny_ml: {pmax: P, amax: A, mmax: 1e10,
  wp: 1, wm: 1, wa: 1}`` (CNAS's static penalty, its script's weights; no constraint);
* NSGA2 only, **constraints, no pre-check**: as *constraints* but without ``space:``, so the tuner learns the
  costs from the trials' reports (constrained domination alone, as a tuner without a cost model would do).

Reported: the hypervolume of the *feasible* evaluated front in (top-1 error %, MMACs) against one fixed
reference point (the worst error and MACs among the feasible random architectures), and the share of
evaluations spent on infeasible architectures. Both tuners run one trial at a time in-process.

    python benchmarks/bench_tinyml.py [--seeds 1,2,3] [--evals 400] [--msunas-evals 200]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nni_ext.core.pareto import hypervolume, non_dominated
from nni_ext.cost import ExactCosts, TinyML
from nni_ext.ofa2 import AccuracyPredictor
from nni_ext.testing import simulate
from nni_ext.tuners import MSuNASTuner, NSGA2Tuner

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ofa-data", default=str(REPO.parent / "shared" / "data" / "ofa"))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--evals", type=int, default=400, help="NSGA2 evaluations per run")
    parser.add_argument("--population", type=int, default=40, help="NSGA2 population")
    parser.add_argument("--msunas-evals", type=int, default=200, help="MSuNAS evaluations per run (0: skip)")
    parser.add_argument("--quantile", type=float, default=0.3, help="limits = this quantile of random archs")
    args = parser.parse_args()
    predictor = AccuracyPredictor.load(Path(args.ofa_data) / "acc_predictor.pth")
    space = predictor.space
    costs = ExactCosts(space)
    started = time.perf_counter()
    for r in space.resolutions:
        costs.table(r)
    print(f"cost tables at {space.resolutions} px: {time.perf_counter() - started:.1f} s (cached after the first run)")

    rng = np.random.default_rng(0)
    sample = [space.sample(rng) for _ in range(2000)]
    metrics = [costs.metrics(a) for a in sample]
    p_lim = float(np.quantile([m["params"] for m in metrics], args.quantile))
    a_lim = float(np.quantile([m["activations"] for m in metrics], args.quantile))

    def feasible(m: dict[str, float]) -> bool:
        return m["params"] <= p_lim and m["activations"] <= a_lim

    def error(params: dict[str, Any]) -> float:
        return 100.0 * (1.0 - float(predictor.predict(space.to_matrix([params]))[0]))

    ok = [(error(a), m["flops"] / 1e6) for a, m in zip(sample, metrics) if feasible(m)]
    reference = np.max(np.array(ok), axis=0)
    print(f"limits: params <= {p_lim / 1e6:.3f} M, activations <= {a_lim / 1e6:.3f} M; {len(ok) / len(sample):.1%} "
          f"of 2,000 random architectures feasible; HV reference (error %, MMACs) = {np.round(reference, 2).tolist()}")

    def evaluate(params: dict[str, Any]) -> dict[str, float]:  # the costs too, for the run without a space
        m = costs.metrics(params)
        return {"default": 1.0 - error(params) / 100.0, "flops": m["flops"], "params": m["params"],
                "activations": m["activations"]}

    def score(done: list[tuple[dict[str, Any], Any]]) -> tuple[float, float]:
        F, wasted = [], 0
        for params, value in done:
            m = costs.metrics(params)
            if feasible(m):
                F.append([100.0 * (1.0 - value["default"]), m["flops"] / 1e6])
            else:
                wasted += 1
        F = np.array(F).reshape(-1, 2)
        front = F[non_dominated(F)] if len(F) else F
        return (hypervolume(front, reference) if len(front) else 0.0), wasted / max(len(done), 1)

    constraints = {"params": f"<= {p_lim}", "activations": f"<= {a_lim}"}
    tiny = {"pmax": p_lim / 1e6, "amax": a_lim / 1e6, "mmax": 1e10, "wp": 1, "wm": 1, "wa": 1}
    TinyML.from_mapping(tiny)
    ways: dict[str, dict[str, Any]] = {
        "constraints": {"objectives": {"default": "maximize", "flops": "minimize"}, "constraints": constraints,
                        "space": "ofa-mbv3"},
        "penalty": {"objectives": {"default": "maximize", "tiny_ml": "minimize"}, "tiny_ml": tiny,
                    "space": "ofa-mbv3"},
        "no pre-check": {"objectives": {"default": "maximize", "flops": "minimize"}, "constraints": constraints},
    }
    tuners: list[tuple[str, int, Callable[..., Any]]] = [
        ("NSGA2", args.evals, lambda seed, **kw: NSGA2Tuner(population_size=args.population, seed=seed, **kw))]
    if args.msunas_evals:
        tuners.append(("MSuNAS", args.msunas_evals, lambda seed, **kw: MSuNASTuner(
            surrogate="rbf", initial_samples=50, batch_size=8, seed=seed, **kw)))
    early = args.msunas_evals or args.evals
    print(f"{'tuner':>7} {'way':>12} {'seed':>4} {'evals':>6} {'feasible HV':>12} {'HV@' + str(early):>8} "
          f"{'wasted':>7} {'rejected before dispatch':>25} {'s':>6}")
    summary: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for name, evals, make in tuners:
        for seed in (int(s) for s in args.seeds.split(",")):
            for way, class_args in ways.items():
                if name != "NSGA2" and "space" not in class_args:
                    continue  # MSuNAS without a space would predict the costs: another comparison
                tuner = make(seed, **class_args)
                t0 = time.perf_counter()
                done = simulate(tuner, space.to_nni(), evaluate, n_trials=evals)
                hv, wasted = score(done)
                hv_early = score(done[:early])[0]
                summary.setdefault((name, way), []).append((hv, hv_early, wasted))
                rejected = getattr(tuner, "rejected_before_dispatch", None)
                print(f"{name:>7} {way:>12} {seed:>4} {len(done):>6} {hv:>12.2f} {hv_early:>8.2f} {wasted:>7.1%} "
                      f"{'n/a' if rejected is None else rejected:>25} {time.perf_counter() - t0:>6.1f}", flush=True)
    print("\nmean over seeds:")
    for (name, way), rows in summary.items():
        hv, hv_early, wasted = np.mean(rows, axis=0)
        print(f"{name:>7} {way:>12}: feasible HV {hv:.2f} (at {early} evaluations {hv_early:.2f}), "
              f"wasted {wasted:.1%}")


if __name__ == "__main__":
    main()
