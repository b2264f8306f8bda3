"""``nni-ext ofa3``: OFA³ ensemble selection from top-k prediction tables, and its accuracy-vs-latency plot."""
from __future__ import annotations

import argparse
import logging
import os

from ..errors import NniExtError
from .common import parse_resolutions

LATENCY_HELP = ("CSV of member latencies: a header with a model column (model) and a latency column (latency_ms), "
                "one row per model, the model named as in the tables (model_07) or by number (7)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ofa3", help="OFA³: select efficient ensembles of a population from its top-k tables",
                       description="Soft-voting ensembles of networks (e.g. the OFA² front), chosen by a "
                                   "multi-objective search of latency vs error on the search tables (a held-out "
                                   "training subset) and re-scored on the validation tables.")
    ofa3 = p.add_subparsers(dest="ofa3_command", required=True, metavar="SUBCOMMAND")
    from ..core.algorithms import algorithm_names

    s = ofa3.add_parser("select", help="NSGA-II / SMS-EMOA / SPEA2 / NSGA-III / AGE-MOEA over ensemble membership")
    s.add_argument("--tables", required=True,
                   help="SEARCH tables folder (model_XX_class.csv / model_XX_prob.csv on the held-out training "
                        "subset); guides the selection")
    s.add_argument("--val-tables", default=None,
                   help="VALIDATION tables folder (same models); the chosen ensembles are re-scored there only")
    s.add_argument("--latency", required=True, help=LATENCY_HELP)
    s.add_argument("--criterion", default="max", choices=("max", "sum"),
                   help="ensemble latency: max (members in parallel) or sum (in turn); default max")
    s.add_argument("--population", type=int, default=100, help="population size (default 100)")
    s.add_argument("--generations", type=int, default=2000, help="generations (default 2000)")
    s.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    s.add_argument("--min-members", type=int, default=1, help="minimum ensemble size K (default 1)")
    s.add_argument("--algorithm", default="nsga2", type=str.lower, choices=algorithm_names(),
                   help="the search algorithm (default nsga2)")
    s.add_argument("--out", required=True, help="output folder: ensembles.json/csv, models.csv, hypervolume.csv")
    s.add_argument("--log-every", type=int, default=100, help="progress line every N generations (0: quiet)")
    s.set_defaults(func=run_select_cmd)
    t = ofa3.add_parser("tables", help="top-k prediction tables (model_XX_class/prob.csv) of a population",
                        description="Top-k prediction tables of every member. Under torchrun (torchrun "
                                    "--nproc_per_node G -m nni_ext ofa3 tables ...) the members are split over the "
                                    "processes (one GPU each) and rank 0 writes files byte-identical to a "
                                    "single-process run's.")
    t.add_argument("--population", required=True,
                   help="OFA² result.json, a SPOS evolution file (generation_NNN.json, best.json), or a JSON list "
                        "of architectures (NNI label dicts, OFA dicts, nnictl export records)")
    t.add_argument("--supernet", "--weights", dest="supernet", required=True,
                   help="OFA MobileNetV3 w1.2 weights, or a SPOS supernet checkpoint (nni-ext spos train-supernet)")
    t.add_argument("--space", choices=["auto", "ofa", "spos"], default="auto",
                   help="kind of population; auto: a SPOS supernet checkpoint means SPOS, anything else OFA")
    t.add_argument("--data", required=True, help="dataset root (train/ for BN recalibration, and --split)")
    t.add_argument("--split", default="val", help="split to predict: the search subset's or the validation "
                                                  "set's val (run once per split, into separate --out folders)")
    t.add_argument("--out", required=True, help="tables folder (resumable: finished models are skipped)")
    t.add_argument("--calib-images", type=int, default=2000, help="training images for BN recalibration")
    t.add_argument("--calib-batch-size", type=int, default=100, help="images per recalibration batch (OFA: 100)")
    t.add_argument("--seed", type=int, default=0, help="seed of the recalibration images (default 0)")
    t.add_argument("--top-k", type=int, default=5,
                   help="classes kept per image (default 5, the seed's format; the number of classes keeps all)")
    t.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    t.add_argument("--batch-size", type=int, default=200)
    t.add_argument("--device", default="auto")
    t.add_argument("--backend", choices=["auto", "dali", "torchvision"], default="auto")
    t.add_argument("--workers", type=int, default=2, help="loader workers")
    t.add_argument("--resolutions", type=parse_resolutions, default=None,
                   help="comma-separated resolutions of the space (default: the members')")
    t.set_defaults(func=run_tables_cmd)
    g = ofa3.add_parser("plot", help="accuracy vs latency: single models, ensembles, extra points")
    g.add_argument("--models", required=True,
                   help="CSV of single models with latency_ms and an accuracy column (models.csv of select)")
    g.add_argument("--ensembles", required=True, help="comma-separated output folders of `ofa3 select`")
    g.add_argument("--extra", action="append", default=[], metavar="LABEL=CSV",
                   help="extra points, e.g. 'OFA=ofa_points.csv' (latency_ms and accuracy columns); repeatable")
    g.add_argument("--out", required=True, help="PNG to write")
    g.set_defaults(func=run_plot_cmd)


def run_select_cmd(args: argparse.Namespace) -> int:
    from ..ensemble import read_latency, read_tables, select_ensembles

    if args.log_every:
        logging.getLogger("nni_ext.ensemble").setLevel(logging.INFO)
    search = read_tables(args.tables)
    val = read_tables(args.val_tables) if args.val_tables else None
    latency = read_latency(args.latency, search.names)
    if not 1 <= args.min_members <= search.n_models:
        raise NniExtError(f"--min-members {args.min_members} must be between 1 and {search.n_models} (models)")
    r = select_ensembles(tables=search, latency=latency, criterion=args.criterion, population=args.population,
                         generations=args.generations, seed=args.seed, min_members=args.min_members,
                         algorithm=args.algorithm, val_tables=val, log_every=args.log_every, out_dir=args.out)
    best = int(r.search_accuracy.argmax())
    line = (f"{len(r.members)} ensembles ({args.criterion} latency, {r.seconds:.1f} s); most accurate: "
            f"{100 * r.search_accuracy[best]:.2f} % on the search tables")
    if r.val_accuracy is not None:
        line += f", {100 * r.val_accuracy[best]:.2f} % on validation"
    print(f"{line}, {r.latency[best]:.2f} ms, {int(r.members[best].sum())} members -> {args.out}/")
    return 0


def run_tables_cmd(args: argparse.Namespace) -> int:
    """Under ``torchrun`` the members are split over the processes and rank 0 writes (byte-identical files)."""
    from ..distributed import write_prediction_tables_distributed

    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    r = write_prediction_tables_distributed(
        args.population, supernet_path=args.supernet, data=args.data, split=args.split, out=args.out, k=args.top_k,
        batch_size=args.batch_size, calib_images=args.calib_images, calib_batch_size=args.calib_batch_size,
        seed=args.seed, device=args.device, backend=args.backend, resolutions=args.resolutions,
        num_workers=args.workers, space=args.space, progress=os.environ.get("RANK", "0") == "0")
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 speaks
        return 0
    ranks = f" on {r['world_size']} processes" if r.get("world_size", 1) > 1 else ""
    print(f"{len(r['written'])} {r['space'].upper()} model(s) written, {len(r['skipped'])} skipped, "
          f"{r['images']} images{ranks} -> {r['out']}/")
    return 0


def run_plot_cmd(args: argparse.Namespace) -> int:
    from ..ensemble.plot import plot_ensembles

    extra = []
    for item in args.extra:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise NniExtError(f"--extra {item!r} must look like LABEL=CSV, e.g. OFA=ofa_points.csv")
        extra.append((label, path))
    folders = [f for f in args.ensembles.split(",") if f.strip()]
    path = plot_ensembles(models=args.models, ensembles=folders, extra=extra, out=args.out)
    print(f"wrote {path}")
    return 0
