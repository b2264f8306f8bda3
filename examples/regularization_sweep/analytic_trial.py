"""An analytic stand-in for a MOOD-NAS search trial, for the ``RegularizationSweep`` tuner.

A real trial trains PC-DARTS with the loss ``(1 - ν) * CE + ν * R``; this one solves the same scalarised
problem on a known convex front: with ``R(x) = x`` and ``C(x) = (1 - sqrt(x))^2`` for ``x`` in [0, 1], the
minimiser of ``(1 - ν) * C(x) + ν * R(x)`` is ``x = (1 - ν)^2``, so the trial reports

    reg_loss = (1 - ν)^2,   criterion_loss = ν^2,   default = 1 - criterion_loss

(the front ``sqrt(reg_loss) + sqrt(criterion_loss) = 1``). ``--fail-above T`` makes trials with ν > T crash
(exit 1) and ``--nan-above T`` report a NaN ``criterion_loss``, to exercise failure handling.

Usage as a ``trialCommand`` (see configs/sweep_analytic.yml)::

    python examples/regularization_sweep/analytic_trial.py

or standalone: ``python examples/regularization_sweep/analytic_trial.py --nu 0.1``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Sequence


def minimiser(nu: float) -> float:
    """The ``x`` in [0, 1] minimising ``(1 - nu) * (1 - sqrt(x))^2 + nu * x`` (closed form)."""
    if not 0.0 <= nu <= 1.0:
        raise ValueError(f"nu={nu!r} must lie in [0, 1]")
    return (1.0 - nu) ** 2


def evaluate(nu: float) -> dict[str, float]:
    """The metric dict a trial with strength ``nu`` reports."""
    x = minimiser(nu)
    reg, crit = x, (1.0 - math.sqrt(x)) ** 2
    return {"default": 1.0 - crit, "criterion_loss": crit, "reg_loss": reg}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parameter", default="nu", help="name of the strength in the search space (default nu)")
    parser.add_argument("--nu", type=float, default=None, help="standalone: print the metrics of this strength")
    parser.add_argument("--fail-above", type=float, default=None, help="crash when nu > this")
    parser.add_argument("--nan-above", type=float, default=None, help="report a NaN criterion_loss when nu > this")
    args = parser.parse_args(argv)
    if args.nu is not None:
        print(json.dumps(evaluate(args.nu)))
        return 0
    import nni

    params = nni.get_next_parameter()
    nu = float(params[args.parameter])
    if args.fail_above is not None and nu > args.fail_above:
        print(f"{args.parameter}={nu:.6g} > {args.fail_above}: failing on purpose", file=sys.stderr)
        return 1
    metrics = evaluate(nu)
    if args.nan_above is not None and nu > args.nan_above:
        metrics["criterion_loss"] = math.nan
    from nni_ext.trial import report_final

    report_final(metrics, params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
