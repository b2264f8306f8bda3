"""``nni-ext pcdarts``: PC-DARTS search at a regularisation strength, sweep analysis, evaluation training, ensembles."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import NniExtError
from ..trainers.pcdarts_options import (
    DATA_HELP,
    add_search_options,
    add_train_options,
    apply_threads,
    search_config,
    train_config,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pcdarts", help="MOOD-NAS: PC-DARTS searches under (1-nu)*CE + nu*R, analysis, training",
                       description="PC-DARTS (partial channels, edge normalisation) with a complexity penalty; "
                                   "sweep nu with the RegularizationSweep tuner (configs/pcdarts_sweep_*.yml).")
    cmds = p.add_subparsers(dest="pcdarts_command", required=True, metavar="SUBCOMMAND")

    s = cmds.add_parser("search", help="one PC-DARTS search at a given nu (what each sweep trial runs)")
    add_search_options(s)
    s.set_defaults(func=run_search_cmd)

    a = cmds.add_parser("analyse", aliases=["analyze"], help="Pareto genotypes of a sweep: table, plots, genotypes.py")
    a.add_argument("experiment", help="experiment id or directory of an nnictl sweep")
    a.add_argument("--out", default=None, help="output folder (default <experiment dir>/pcdarts-analysis)")
    a.add_argument("--regularizer", default=None, help="name used in genotype names (default: from the trials)")
    a.add_argument("--num-classes", type=int, default=10, help="classes of the evaluation network (default 10)")
    a.add_argument("--image-size", type=int, default=32, help="input size for latency (default 32)")
    a.add_argument("--channels", type=int, default=36, help="evaluation network channels (default 36)")
    a.add_argument("--layers", type=int, default=20, help="evaluation network cells (default 20)")
    a.add_argument("--device", default="auto", help="where latency is measured (auto: GPU when present)")
    a.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    a.set_defaults(func=run_analyse_cmd)

    t = cmds.add_parser("train", help="evaluation training of one or more genotypes (batch sizes from a memory "
                                      "estimator on GPU)")
    t.add_argument("--genotype", nargs="+", required=True,
                   help="names (DARTS_V2, PC_DARTS_cifar), FILE.json[:NAME] or genotypes.py:NAME; several train one "
                        "after another")
    t.add_argument("--data", required=True, help=DATA_HELP)
    t.add_argument("--out", default="runs/pcdarts-train", help="output folder (one sub-folder per genotype)")
    add_train_options(t)
    t.set_defaults(func=run_train_cmd)

    e = cmds.add_parser("ensemble", help="weighted ensemble of trained models (MOOD-NAS)")
    e.add_argument("models", nargs="+", help="output folders of `pcdarts train` (each with predictions.pt)")
    e.add_argument("--weights", choices=("calculate", "per-class", "equal"), default="calculate",
                   help="calculate: from the held-out split (needs --train-portion < 1 at training); per-class: "
                        "the same per class; equal (default calculate)")
    e.add_argument("--out", default=None, help="write ensemble.json here")
    e.set_defaults(func=run_ensemble_cmd)


def run_search_cmd(args: argparse.Namespace) -> int:
    from ..trainers.pcdarts_search import run_search

    apply_threads(args)
    result = run_search(search_config(args))
    print(json.dumps(result.metrics))
    print(f"result: {result.out_dir / 'result.json'}")
    return 0


def run_analyse_cmd(args: argparse.Namespace) -> int:
    from ..pcdarts.analysis import collect, front_table, measure_front_latency, write_analysis
    from ..results import load_experiment

    results = load_experiment(args.experiment)
    analysis = collect(results, regularizer=args.regularizer)
    if not args.no_latency:
        measure_front_latency(analysis, num_classes=args.num_classes, image_size=args.image_size,
                              channels=args.channels, layers=args.layers, device=args.device)
    out = Path(args.out) if args.out else results.directory / "pcdarts-analysis"
    paths = write_analysis(analysis, out)
    print(f"{len(analysis.rows)} finished trials, {len(analysis.front)} on the (reg_loss, criterion_loss) front:")
    print(front_table(analysis))
    print(f"wrote {', '.join(p.name for p in paths.values())} to {out}")
    return 0


def run_train_cmd(args: argparse.Namespace) -> int:
    from ..trainers.pcdarts_train import train_many

    apply_threads(args)
    base = train_config(args, args.genotype[0], args.out)
    outcomes = train_many(base, args.genotype, out_root=args.out, memory_margin_mb=args.memory_margin_mb)
    print(json.dumps([o.metrics for o in outcomes] if len(outcomes) > 1 else outcomes[0].metrics))
    return 0


def run_ensemble_cmd(args: argparse.Namespace) -> int:
    from ..pcdarts.ensemble_models import ensemble_trained_models

    if len(args.models) < 2:
        raise NniExtError("an ensemble needs at least two trained model folders")
    summary = ensemble_trained_models(args.models, weighting=args.weights, out=args.out)
    for name, acc, w in zip(summary["models"], summary["model_accuracy"], summary["weights_summary"]):
        print(f"{name}: test acc {acc:.4f}, weight {w}")
    print(f"ensemble ({args.weights} weights): test acc {summary['accuracy']:.4f}, "
          f"{summary['params'] / 1e6:.2f} M params in total")
    return 0
