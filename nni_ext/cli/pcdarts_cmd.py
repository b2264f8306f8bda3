"""``nni-ext pcdarts``: PC-DARTS search with a regularisation strength, sweep analysis, evaluation training, ensembles."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import NniExtError
from .pcdarts_args import DATA_HELP, add_search_options, apply_threads, search_config


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


def add_train_options(t: argparse.ArgumentParser) -> None:
    """Options of an evaluation training (``pcdarts train`` and the training trial); DARTS's recipe as defaults."""
    from ..trainers.pcdarts_train import TrainConfig

    d = TrainConfig(data="", genotype="")
    t.add_argument("--test-split", default=d.test_split, help="folder split (or 'test' for cifar) to evaluate on")
    t.add_argument("--image-size", type=int, default=None)
    t.add_argument("--train-portion", type=float, default=d.train_portion,
                   help="share of train/ used for training; the rest is a held-out split for ensemble weights")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size} (on GPU the "
                                                                         "estimator may lower it)")
    t.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    t.add_argument("--lr", type=float, default=d.lr, help=f"default {d.lr}")
    t.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"default {d.weight_decay}")
    t.add_argument("--init-channels", type=int, default=d.init_channels, help=f"default {d.init_channels}")
    t.add_argument("--layers", type=int, default=d.layers, help=f"default {d.layers}")
    t.add_argument("--no-auxiliary", dest="auxiliary", action="store_false", help="no auxiliary head")
    t.add_argument("--auxiliary-weight", type=float, default=d.auxiliary_weight, help=f"default {d.auxiliary_weight}")
    t.add_argument("--drop-path", type=float, default=d.drop_path_prob, help=f"default {d.drop_path_prob}")
    t.add_argument("--cutout", type=int, default=d.cutout, help=f"Cutout length, 0 = off (default {d.cutout})")
    t.add_argument("--no-flip", dest="flip", action="store_false")
    t.add_argument("--grad-clip", type=float, default=d.grad_clip)
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--device", default=d.device)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--memory-margin-mb", type=float, default=500.0, help="GPU memory kept free (default 500)")
    t.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke tests)")


def train_config(args: argparse.Namespace, genotype: str, out_dir: str):  # type: ignore[no-untyped-def]
    """The :class:`~nni_ext.trainers.pcdarts_train.TrainConfig` of parsed ``train`` options."""
    from ..trainers.pcdarts_train import TrainConfig

    return TrainConfig(data=args.data, genotype=genotype, out_dir=out_dir, test_split=args.test_split,
                       image_size=args.image_size, train_portion=args.train_portion, batch_size=args.batch_size,
                       epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                       init_channels=args.init_channels, layers=args.layers, auxiliary=args.auxiliary,
                       auxiliary_weight=args.auxiliary_weight, drop_path_prob=args.drop_path, cutout=args.cutout,
                       flip=args.flip, grad_clip=args.grad_clip, seed=args.seed, device=args.device,
                       max_steps=args.max_steps)


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
