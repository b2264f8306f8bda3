"""``nni-ext report`` (Pareto front, hypervolume curve, CSVs) and ``nni-ext select`` (picks from the front)."""
from __future__ import annotations

import argparse
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="experiment id (see `nnictl experiment list --all`) or its directory")
    p.add_argument("--objectives", default=None, metavar="KEY:max|min,...",
                   help="objective keys and senses (default: the tuner's classArgs, else default + cost keys)")
    p.add_argument("-o", "--out", default=None, help="output directory")


def add_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="Pareto-front plot, hypervolume curve and CSVs of an experiment",
                       description="Read a running or finished experiment (its database) and write trials.csv, "
                                   "pareto.csv/json, hypervolume.csv, pareto_front.png and hypervolume.png.")
    _common(r)
    r.set_defaults(func=run_report)
    s = sub.add_parser("select", help="pick architectures from an experiment's Pareto front",
                       description="Pick -n points of the front closest to a preference (achievement "
                                   "scalarization) or, without --prefer, the highest trade-off (knee) points. The "
                                   "best point of the first objective is always included.")
    _common(s)
    s.add_argument("-n", type=int, default=3, help="how many to pick (default 3)")
    s.add_argument("--prefer", default=None, metavar="KEY#VALUE+...",
                   help='preferred objective values, e.g. "default#0.80+flops#150e6"')
    s.set_defaults(func=run_select)


def _analysis(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ..report import analyse, choose_objectives
    from ..results import load_experiment

    results = load_experiment(args.experiment)
    return analyse(results, choose_objectives(results, args.objectives))


def run_report(args: argparse.Namespace) -> int:
    from ..report import write_report

    a = _analysis(args)
    out = Path(args.out or f"report_{a.results.id}")
    write_report(a, out)
    hv = a.hv_curve[-1][1] if a.hv_curve else None
    print(f"experiment {a.results.id}: {len(a.trials)} evaluated, front of {len(a.front)}, "
          f"hypervolume {'n/a' if hv is None else f'{hv:.6g}'} -> {out}/")
    return 0


def run_select(args: argparse.Namespace) -> int:
    from ..errors import NniExtError
    from ..report import select_points, write_selection

    if args.n < 1:
        raise NniExtError(f"-n {args.n}: pick at least one")
    a = _analysis(args)
    picks = select_points(a, args.n, args.prefer)
    out = Path(args.out or f"selected_{a.results.id}")
    write_selection(a, picks, out)
    keys = a.objectives.keys
    print("rank  trial   " + "  ".join(f"{k:>12}" for k in keys))
    for rank, i in enumerate(picks, 1):
        values = a.objectives.values(a.F[i])
        print(f"{rank:>4}  {a.trials[i].trial_id:<6}  " + "  ".join(f"{v:>12.6g}" for v in values))
    print(f"wrote {len(picks)} picks to {out}/")
    return 0
