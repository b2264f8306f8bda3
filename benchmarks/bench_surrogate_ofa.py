"""Evaluations saved on the OFA space: how many MSuNAS needs to reach the hypervolume NSGA2 reaches after 3,000.

The "true" accuracy of an OFA MobileNetV3 sub-network is OFA's own accuracy predictor
(``../shared/data/ofa/acc_predictor.pth``) and its latency the Note10 lookup tables (both real, from the
OFA release); objectives top-1 error (%) and latency (ms), hypervolume reference (25 %, 100 ms) as in
``bench_ofa2_search.py``. Our NSGA2 tuner (population 100) runs 3,000 evaluations; MSuNAS runs until it
reaches NSGA2's final hypervolume or ``--max-evals``. Both run one trial at a time through the
in-process dispatcher. With ``--latency exact`` (the default) MSuNAS is given the space and the Note10 tables
(classArgs ``space: ofa-mbv3``, ``latency_table: .../note10``): latency is summed from the tables, as
NSGANetV2 computes its cost objective, and only the accuracy is predicted; ``--latency predicted`` gives it
neither, so it predicts latency with its own surrogate too.

    python benchmarks/bench_surrogate_ofa.py [--seeds 1,2,3] [--max-evals 600] [--latency exact|predicted]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from nni_ext.core.pareto import hypervolume, non_dominated
from nni_ext.ofa2 import AccuracyPredictor, LatencyModel
from nni_ext.testing import simulate
from nni_ext.tuners import MSuNASTuner, NSGA2Tuner

REPO = Path(__file__).resolve().parents[1]
REFERENCE = np.array([25.0, 100.0])
OBJECTIVES = {"default": "maximize", "latency_ms": "minimize"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ofa-data", default=str(REPO.parent / "shared" / "data" / "ofa"))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--nsga2-evals", type=int, default=3000)
    parser.add_argument("--max-evals", type=int, default=600)
    parser.add_argument("--surrogate", default="rbf")
    parser.add_argument("--selection", default="hvi")
    parser.add_argument("--initial-samples", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--latency", choices=("exact", "predicted"), default="exact")
    parser.add_argument("--inner-population", type=int, default=40)
    parser.add_argument("--inner-generations", type=int, default=20)
    args = parser.parse_args()
    data = Path(args.ofa_data)
    predictor = AccuracyPredictor.load(data / "acc_predictor.pth")
    latency = LatencyModel.from_path(data / "note10", space=predictor.space)
    space = predictor.space

    def truth(params: dict[str, Any]) -> np.ndarray:
        X = space.to_matrix([space.canonicalize(space.validate(params))])
        return np.array([100.0 * (1.0 - float(predictor.predict(X)[0])), float(latency(X)[0])])

    def evaluate(params: dict[str, Any]) -> dict[str, float]:
        err, ms = truth(params)
        return {"default": 1.0 - err / 100.0, "latency_ms": ms}

    def curve(done: list[tuple[dict[str, Any], Any]]) -> list[float]:
        F = np.array([[100.0 * (1.0 - v["default"]), v["latency_ms"]] for _, v in done])
        out, front = [], np.zeros((0, 2))
        for f in F:
            front = np.vstack([front, f])
            front = front[non_dominated(front)]
            out.append(hypervolume(front, REFERENCE))
        return out

    print(f"OFA MobileNetV3 (Note10 latency, OFA's accuracy predictor), reference {REFERENCE.tolist()}; MSuNAS "
          f"{args.surrogate} {args.selection} {args.initial_samples} + {args.batch_size}/iteration, inner "
          f"{args.inner_population} x {args.inner_generations}, latency {args.latency}")
    print(f"{'seed':>4} {'NSGA2 HV@' + str(args.nsga2_evals):>14} {'MSuNAS evals to reach it':>25} "
          f"{'MSuNAS HV@max':>14} {'s/proposal':>11}")
    for seed in (int(s) for s in args.seeds.split(",")):
        nsga2 = NSGA2Tuner(objectives=OBJECTIVES, population_size=100, seed=seed)
        target = curve(simulate(nsga2, space.to_nni(), evaluate, n_trials=args.nsga2_evals))[-1]
        exact = dict(space="ofa-mbv3", space_args=dict(space.config), latency_table=str(data / "note10")) \
            if args.latency == "exact" else {}
        tuner = MSuNASTuner(objectives=OBJECTIVES, surrogate=args.surrogate, selection=args.selection,
                            initial_samples=args.initial_samples, batch_size=args.batch_size, seed=seed, **exact,
                            inner_population=args.inner_population, inner_generations=args.inner_generations,
                            reference_point={"default": 1.0 - REFERENCE[0] / 100.0, "latency_ms": REFERENCE[1]})
        started = time.perf_counter()
        done = simulate(tuner, space.to_nni(), evaluate, n_trials=args.max_evals)
        per = (time.perf_counter() - started) / len(done)
        hv = curve(done)
        reached = next((i + 1 for i, v in enumerate(hv) if v >= target), None)
        print(f"{seed:>4} {target:>14.3f} {str(reached) if reached else '>' + str(args.max_evals):>25} "
              f"{hv[-1]:>14.3f} {per:>11.3f}", flush=True)


if __name__ == "__main__":
    main()
