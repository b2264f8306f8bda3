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
    s = sub.add_parser("select", help="pick architectures from an experiment's Pareto front (post-search)",
                       description="Pick -n points of the front, as NSGANetV2's and CNAS's post_search: the highest "
                                   "trade-off (knee) points (default, or --prefer trade-off), the points closest to "
                                   "a preference (--prefer KEY#VALUE+..., achievement scalarization), or the points "
                                   "best in one objective (--prefer KEY, e.g. flops: the lowest). With knees and "
                                   "preferences, the best point of the first objective is always included. Writes "
                                   "pick_NN.json, selection.csv and, per pick, pick_NN/ with net.subnet and "
                                   "net.stats (and net.config + net.inherited with --supernet).")
    _common(s)
    s.add_argument("-n", type=int, default=3, help="how many to pick (default 3)")
    s.add_argument("--prefer", default=None, metavar="trade-off|KEY|KEY#VALUE+...",
                   help='trade-off (the knees, the default); an objective key, e.g. flops (its best values); or '
                        'preferred objective values, e.g. "default#0.80+flops#150e6"')
    s.add_argument("--n-exits", type=int, default=None, metavar="K",
                   help="only early-exit architectures (ofa-mbv3-ee) with exactly K exits besides the final "
                        "classifier (a t_<stage> gene below 1, or an exit_<stage> gene of 1)")
    s.add_argument("--supernet", default=None, metavar="PATH",
                   help="OFA MobileNetV3 architectures: also write net.config and net.inherited (the weights "
                        "inherited from this supernet checkpoint) into each pick_NN/ folder")
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
    from ..report import active_exits, prefer_mode, select_points, write_selection
    from .common import check_output_path

    if args.n < 1:
        raise NniExtError(f"-n {args.n}: pick at least one")
    if args.n_exits is not None and args.n_exits < 0:
        raise NniExtError(f"--n-exits {args.n_exits}: give the number of early exits, 0 or more")
    if args.supernet is not None and not Path(args.supernet).is_file():
        raise NniExtError(f"supernet checkpoint {args.supernet} not found; give the OFA supernet's weights file "
                          "(e.g. ofa_mbv3_d234_e346_k357_w1.2, or `nni-ext ofa2 init-supernet`'s output)")
    a = _analysis(args)
    mode, _ = prefer_mode(args.prefer, a.objectives)
    picks = select_points(a, args.n, args.prefer, n_exits=args.n_exits)
    out = check_output_path(args.out or f"selected_{a.results.id}", "-o/--out", directory=True)
    write_selection(a, picks, out, supernet=args.supernet)
    keys = a.objectives.keys
    exits = args.n_exits is not None or any(active_exits(a.trials[i].parameters) is not None for i in picks)
    print(f"{mode} picks" + (f" with {args.n_exits} exits" if args.n_exits is not None else ""))
    print("rank  trial   " + "  ".join(f"{k:>12}" for k in keys) + ("  exits" if exits else ""))
    for rank, i in enumerate(picks, 1):
        values = a.objectives.values(a.F[i])
        count = active_exits(a.trials[i].parameters) if exits else None
        print(f"{rank:>4}  {a.trials[i].trial_id:<6}  " + "  ".join(f"{v:>12.6g}" for v in values)
              + (f"  {str(count):>5}" if exits else ""))
    print(f"wrote {len(picks)} picks to {out}/ (pick_NN.json, pick_NN/net.subnet + net.stats"
          + (", net.config + net.inherited" if args.supernet else "") + ", selection.csv)")
    return 0
