"""Cost-only trial: report the FLOPs, params (and optionally latency) of this trial's architecture.

Runs in milliseconds, so it checks tuners, constraints and experiment plumbing end to end without
training. ``default`` is MFLOPs (minimise). Usage as an nnictl ``trialCommand``::

    python -m nni_ext.trials.cost_trial --space spos
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from ._runner import run_guarded


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nni_ext.trials.cost_trial", description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="spos", help="registered space name or module:attr (default: spos)")
    parser.add_argument("--space-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument of the space, JSON value (repeatable), e.g. num_classes=10")
    parser.add_argument("--input-size", type=int, default=None, help="input resolution (default: the space's)")
    parser.add_argument("--arch", default=None, help="architecture JSON for a standalone run")
    parser.add_argument("--measure-latency", action="store_true", help="also time the network on this device")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from ..cost import CostTable, measure_latency
    from ..spaces import create_space
    from ._runner import get_next_architecture, in_nni_trial, load_architecture, parse_space_args, report_final

    args = parse_args(argv)

    def run() -> int:
        space = create_space(args.space, **parse_space_args(args.space_arg))
        fallback = load_architecture(args.arch) if args.arch else None
        arch = get_next_architecture(space, fallback=fallback)
        size = args.input_size or space.default_input_size
        cost = CostTable.cached(space, size).cost(arch)
        metrics: dict[str, float] = {"default": cost.flops / 1e6, "flops": cost.flops, "params": cost.params}
        if args.measure_latency:
            metrics["latency_ms"] = measure_latency(space.build(arch), size).median_ms
        if in_nni_trial():
            report_final(metrics, arch)
        print(json.dumps(metrics))
        return 0

    return run_guarded(run)


if __name__ == "__main__":
    sys.exit(main())
