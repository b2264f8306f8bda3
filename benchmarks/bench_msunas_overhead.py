"""MSuNAS overhead: seconds to plan one iteration (fit + inner search + subset selection) at archives of 100,
500 and 2,000 points, per surrogate, next to what a trial costs (minutes).

Three cases: ZDT1 with 30 continuous variables (the inner NSGA-II runs: population 40 x 20 generations),
NAS-Bench-201 (15,625 cells: predicted whole) with both objectives predicted, and NAS-Bench-201 given the space
(``space: nas-bench-201``, ``space_args: {dataset: cifar10}``: latency exact from the table, one surrogate).
The archive is filled through ``import_data`` with random points, then one batch of 8 is planned and timed
(with the space, the first plan also looks every cell's latency up once; that is timed too).

    python benchmarks/bench_msunas_overhead.py [--sizes 100,500,2000] [--surrogates rbf,gp,carts,as]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from pymoo.problems import get_problem

from nni_ext.core.metrics import encode_report
from nni_ext.nb201 import LABELS, OPS, NasBench201Table
from nni_ext.tuners import MSuNASTuner


def zdt_case(n: int, rng: np.random.Generator) -> tuple[dict, list[dict]]:
    problem = get_problem("zdt1", n_var=30)
    space = {f"x{i}": {"_type": "uniform", "_value": [0.0, 1.0]} for i in range(30)}
    data = []
    for _ in range(n):
        x = rng.random(30)
        f = problem.evaluate(x)
        params = {f"x{i}": float(v) for i, v in enumerate(x)}
        data.append({"parameter": params, "value": json.dumps(encode_report({"default": -float(f[0]),
                                                                              "latency_ms": float(f[1])}, params))})
    return space, data


def nb201_case(n: int, rng: np.random.Generator) -> tuple[dict, list[dict]]:
    table = NasBench201Table("cifar10")
    space = {label: {"_type": "choice", "_value": list(OPS)} for label in LABELS}
    cells = rng.choice(len(OPS) ** len(LABELS), n, replace=False)
    data = []
    for c in cells:
        params = {label: OPS[(int(c) // len(OPS) ** (5 - i)) % len(OPS)] for i, label in enumerate(LABELS)}
        data.append({"parameter": params, "value": json.dumps(encode_report(table.lookup(params), params))})
    return space, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,500,2000")
    parser.add_argument("--surrogates", default="rbf,gp,carts,as")
    args = parser.parse_args()
    print(f"{'space':<8} {'archive':>7} " + " ".join(f"{s:>8}" for s in args.surrogates.split(",")) + "   (s/plan)")
    exact = {"space": "nas-bench-201", "space_args": {"dataset": "cifar10"}}
    for name, case, extra in (("zdt1-30", zdt_case, {}), ("nb201", nb201_case, {}), ("nb201-ex", nb201_case, exact)):
        for n in (int(s) for s in args.sizes.split(",")):
            space, data = case(n, np.random.default_rng(n))
            row = []
            for surrogate in args.surrogates.split(","):
                tuner = MSuNASTuner(objectives={"default": "maximize", "latency_ms": "minimize"}, surrogate=surrogate,
                                    initial_samples=10, batch_size=8, selection="hvi", seed=0, **extra)
                tuner.update_search_space(space)
                tuner.import_data(data)
                started = time.perf_counter()
                tuner.generate_parameters(0)
                row.append(time.perf_counter() - started)
            print(f"{name:<8} {n:>7} " + " ".join(f"{t:>8.2f}" for t in row), flush=True)


if __name__ == "__main__":
    main()
