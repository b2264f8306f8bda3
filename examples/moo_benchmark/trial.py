"""nnictl trial for pymoo's test problems (ZDT1-3, DTLZ2): reports every objective as a metric key.

The decision variables are the trial's parameters ``x0 .. x{n-1}`` (their count sets ``n_var``); the
report is ``{"default": f1, "f2": f2[, "f3": f3]}``, all minimised. ``--fail-above T`` makes trials
whose ``x1`` exceeds ``T`` crash (exit 1) and ``--nan-above T`` those whose ``x2`` does report NaN, to
exercise failure handling.

Usage as a ``trialCommand``::

    python examples/moo_benchmark/trial.py --problem zdt1
    python examples/moo_benchmark/trial.py --problem zdt1 --write-space space.json --n-var 30
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Sequence

PROBLEMS = ("zdt1", "zdt2", "zdt3", "dtlz2")


def search_space(n_var: int) -> dict:
    """NNI search space of ``n_var`` continuous variables in [0, 1]."""
    return {f"x{i}": {"_type": "uniform", "_value": [0.0, 1.0]} for i in range(n_var)}


def evaluate(problem: str, params: dict) -> dict[str, float]:
    """Objectives of one point as a metric dict (``default`` is f1)."""
    import numpy as np
    from pymoo.problems import get_problem

    x = np.array([float(params[f"x{i}"]) for i in range(len(params))])
    kwargs = {"n_var": len(x)} if problem.startswith("zdt") else {"n_var": len(x), "n_obj": 3}
    f = np.asarray(get_problem(problem, **kwargs).evaluate(x)).reshape(-1)
    return {"default" if i == 0 else f"f{i + 1}": float(v) for i, v in enumerate(f)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=PROBLEMS, default="zdt1")
    parser.add_argument("--write-space", metavar="FILE", help="write the NNI search space and exit")
    parser.add_argument("--n-var", type=int, default=30, help="variables for --write-space (default 30)")
    parser.add_argument("--fail-above", type=float, default=None, help="crash when x1 > this")
    parser.add_argument("--nan-above", type=float, default=None, help="report NaN when x2 > this")
    args = parser.parse_args(argv)
    if args.write_space:
        with open(args.write_space, "w") as fh:
            json.dump(search_space(args.n_var), fh, indent=1)
        return 0
    import nni

    params = nni.get_next_parameter()
    if args.fail_above is not None and params["x1"] > args.fail_above:
        print(f"x1={params['x1']:.3f} > {args.fail_above}: failing on purpose", file=sys.stderr)
        return 1
    metrics = evaluate(args.problem, params)
    if args.nan_above is not None and params["x2"] > args.nan_above:
        metrics["default"] = math.nan
    from nni_ext.trial import report_final

    report_final(metrics, params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
