"""``nni-ext ofa2``: the OFA² search (predicted accuracy vs latency/FLOPs) and fitting an accuracy predictor."""
from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Any

from ..errors import NniExtError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ofa2", help="OFA² search on the Once-for-All MobileNetV3 space; fit an accuracy predictor",
                       description="Multi-objective search of OFA MobileNetV3 w1.2 sub-networks with a predicted "
                                   "top-1 error and latency (per-layer tables) or FLOPs (multiply-accumulates).")
    ofa2 = p.add_subparsers(dest="ofa2_command", required=True, metavar="SUBCOMMAND")
    from ..core.algorithms import algorithm_names

    algorithms = ", ".join(algorithm_names())
    s = ofa2.add_parser("search", help="run NSGA-II / SMS-EMOA / SPEA2 / NSGA-III / AGE-MOEA with OFA's predictor "
                                       "(in-process)")
    s.add_argument("--algorithm", default="nsga2", help=f"{algorithms} (default nsga2; any case)")
    s.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    s.add_argument("--population", type=int, default=100, help="population size = networks returned at most")
    s.add_argument("--generations", type=int, default=1000, help="generations (default 1000)")
    s.add_argument("--efficiency", default="note10",
                   help="note10 (OFA's tables, give --latency-tables DIR), flops (MACs), or the path of a latency "
                        "table / folder of <resolution>_lookup_table.yaml measured on your device")
    s.add_argument("--latency-tables", help="folder with OFA's note10 <resolution>_lookup_table.yaml files")
    s.add_argument("--predictor", required=True, help="accuracy predictor state dict (OFA's acc_predictor.pth)")
    s.add_argument("--resolutions", default=None, help="comma-separated input resolutions (default 160..224)")
    s.add_argument("--out", required=True, help="output folder (result.json, result.csv, hypervolume.csv)")
    s.add_argument("--all", action="store_true", help=f"run {algorithms} x seeds 1, 2, 3 and compare")
    s.add_argument("--log-every", type=int, default=100, help="progress line every N generations (0: quiet)")
    s.set_defaults(func=run_search_cmd)
    f = ofa2.add_parser("fit-predictor", help="train an accuracy predictor of OFA's shape on measured accuracies")
    f.add_argument("--archive", required=True,
                   help="JSON list of {\"arch\": NNI-or-OFA dict, \"accuracy\": fraction} or CSV with the NNI "
                        "labels (ks_0..r) and an 'accuracy' column")
    f.add_argument("--out", required=True, help="output state dict (.pth)")
    f.add_argument("--epochs", type=int, default=200)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--resolutions", default=None, help="comma-separated resolutions the archive uses (default "
                                                        "160..224; the predictor covers 128..224)")
    f.set_defaults(func=run_fit_cmd)
    from .ofa2_extra_cmd import add_subcommands

    add_subcommands(ofa2)  # init-supernet


def _space(resolutions: str | None) -> Any:
    from ..spaces.ofa_mbv3 import OfaMbv3Space
    from .common import parse_resolutions

    if not resolutions:
        return OfaMbv3Space()
    try:
        return OfaMbv3Space(resolutions=parse_resolutions(resolutions))
    except argparse.ArgumentTypeError as exc:
        raise NniExtError(f"--resolutions: {exc}") from None


def efficiency_model(kind: str, latency_tables: str | None, space: Any) -> Any:
    """The efficiency model named on the command line."""
    from ..ofa2 import FlopsModel, LatencyModel

    if kind == "flops":
        return FlopsModel(space)
    if kind == "note10":
        if not latency_tables:
            raise NniExtError("--efficiency note10 needs --latency-tables DIR (the folder of OFA's "
                              "<resolution>_lookup_table.yaml files, e.g. note10/)")
        path = Path(latency_tables)
    else:
        path = Path(kind)
    if not path.exists():
        raise NniExtError(f"latency table {path} not found; give note10 with --latency-tables DIR, flops, or the "
                          "path of a table (file or folder)")
    return LatencyModel.from_path(path, space=space)


def run_search_cmd(args: argparse.Namespace) -> int:
    from ..core.algorithms import canonical_algorithm
    from ..ofa2 import AccuracyPredictor, compare_algorithms, run_search

    algorithm = canonical_algorithm(args.algorithm)  # unknown: a ValueError naming the catalogue (one line)
    space = _space(args.resolutions)
    predictor = AccuracyPredictor.load(args.predictor, space=space)
    efficiency = efficiency_model(args.efficiency, args.latency_tables, space)
    logging.getLogger("nni_ext.ofa2").setLevel(logging.INFO if args.log_every else logging.WARNING)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(message)s")
    if args.all:
        results = compare_algorithms(predictor=predictor, efficiency=efficiency, out_dir=args.out,
                                     population=args.population, generations=args.generations,
                                     log_every=args.log_every)
        for r in results:
            print(f"{r.algorithm} seed {r.seed}: {len(r.matrix)} networks, hypervolume {r.hypervolume:.3f}, "
                  f"{r.seconds:.1f} s")
        print(f"comparison written to {Path(args.out) / 'comparison.md'} and fronts.png")
        return 0
    r = run_search(predictor=predictor, efficiency=efficiency, algorithm=algorithm, seed=args.seed,
                   population=args.population, generations=args.generations, log_every=args.log_every,
                   out_dir=args.out)
    print(f"{len(r.matrix)} networks, hypervolume {r.hypervolume:.3f} (reference {r.reference[0]} % error, "
          f"{r.reference[1]} {r.efficiency_unit}), {r.seconds:.1f} s; written to {args.out}")
    return 0


def load_archive(path: str | Path, space: Any) -> tuple[list[dict[str, Any]], list[float]]:
    """(architectures, accuracies) from a JSON list or a CSV archive (see ``fit-predictor --help``)."""
    from ..spaces.ofa_mbv3 import from_ofa

    path = Path(path)
    if not path.is_file():
        raise NniExtError(f"archive {path} not found")
    archs, accs = [], []
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        for i, row in enumerate(rows):
            if "accuracy" not in row:
                raise NniExtError(f"archive {path} has no 'accuracy' column")
            try:
                archs.append(space.validate({label: int(row[label]) for label in space.labels}))
                accs.append(float(row["accuracy"]))
            except (KeyError, ValueError) as exc:
                raise NniExtError(f"archive {path} row {i + 2}: {exc}") from None
        return archs, accs
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise NniExtError(f"archive {path} is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise NniExtError(f"archive {path} must be a JSON list of {{\"arch\": ..., \"accuracy\": ...}}")
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "arch" not in item or "accuracy" not in item:
            raise NniExtError(f"archive {path} entry {i} must have 'arch' and 'accuracy'")
        arch = item["arch"]
        archs.append(from_ofa(arch, space) if isinstance(arch, dict) and "ks" in arch else space.validate(arch))
        accs.append(float(item["accuracy"]))
    return archs, accs


def run_fit_cmd(args: argparse.Namespace) -> int:
    from ..ofa2 import fit_predictor

    space = _space(args.resolutions)
    archs, accs = load_archive(args.archive, space)
    fit_predictor(archs, accs, space=space, seed=args.seed, epochs=args.epochs, out=args.out)
    print(f"predictor fitted on {len(archs)} architectures, written to {args.out}")
    return 0
