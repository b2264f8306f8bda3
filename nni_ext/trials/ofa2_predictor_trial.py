"""OFA² predictor trial: the predicted top-1, FLOPs, params and table latency of one OFA MobileNetV3 sub-network.

The nnictl side of ``nni-ext ofa2 search``: each trial takes its architecture from
``nni.get_next_parameter()`` (or ``--arch FILE`` standalone, NNI labels or an OFA dict), and
reports in milliseconds what the in-process search computes for a whole population::

    {"default": predicted top-1 (fraction), "top1_error": %, "flops": MACs, "params": ...,
     "latency_ms": ms (with --latency-tables)}

Run NSGA-II over it with ``configs/ofa2_predictor_nsga2.yml`` (objectives ``default: maximize``,
``latency: minimize``) and watch the front in NNI's web UI. Standalone::

    python -m nni_ext.trials.ofa2_predictor_trial --predictor ../shared/data/ofa/acc_predictor.pth \\
        --latency-tables ../shared/data/ofa/note10 --arch arch.json

``--resolutions`` (default 160,176,192,208,224) must match the search space file and lie in the
predictor's 128..224 (step 16). FLOPs/params come from the cached exact cost table of the
architecture's resolution (the first trial at a resolution builds it, ~10 s).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ._runner import parse_resolutions, trial_main


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nni_ext.trials.ofa2_predictor_trial",
                                description=__doc__.splitlines()[0])
    p.add_argument("--predictor", required=True, help="accuracy predictor state dict (OFA's acc_predictor.pth or "
                                                      "`nni-ext ofa2 fit-predictor` output)")
    p.add_argument("--latency-tables", help="folder of OFA <resolution>_lookup_table.yaml files (e.g. note10/) or "
                                            "one table file: report 'latency_ms'")
    p.add_argument("--resolutions", type=parse_resolutions, default=None,
                   help="comma-separated input resolutions of the space (default 160,176,192,208,224)")
    p.add_argument("--arch", help="architecture JSON (NNI labels or an OFA dict) for a standalone run")
    return p


def read_architecture(path: str, space: Any) -> dict[str, Any]:
    """An architecture file as NNI labels: either the labels themselves or OFA's ``{"ks", "e", "d", "r"}``."""
    from ..spaces.ofa_mbv3 import from_ofa
    from ._runner import load_architecture

    data = load_architecture(path)
    return from_ofa(data, space) if "ks" in data else data


def latency_model(path: str, space: Any) -> Any:
    """:class:`~nni_ext.ofa2.LatencyModel` of a table folder or file, with a one-line error if it is missing."""
    from ..errors import NniExtError
    from ..ofa2 import LatencyModel

    if not Path(path).exists():
        raise NniExtError(f"latency tables {path} not found; give the folder of OFA's <resolution>_lookup_table.yaml "
                          "files (e.g. note10/) or a table from `nni-ext cost build-latency-table`")
    return LatencyModel.from_path(path, space=space)


def run(args: argparse.Namespace) -> dict[str, float]:
    """Compute the objectives of this trial's architecture; reports them under nnictl and returns them."""
    from ..cost import CostTable
    from ..ofa2 import AccuracyPredictor
    from ..spaces.ofa_mbv3 import OfaMbv3Space
    from ._runner import get_next_architecture, in_nni_trial, report_final

    start = time.perf_counter()
    space = OfaMbv3Space(resolutions=args.resolutions) if args.resolutions else OfaMbv3Space()
    arch = get_next_architecture(space, fallback=read_architecture(args.arch, space) if args.arch else None)
    predictor = AccuracyPredictor.load(args.predictor, space=space)
    latency = latency_model(args.latency_tables, space) if args.latency_tables else None
    X = space.to_matrix([arch])
    top1 = float(predictor.predict(X)[0])
    cost = CostTable.cached(space, arch["r"]).cost(arch)
    metrics: dict[str, float] = {"default": top1, "top1_error": 100.0 * (1.0 - top1), "flops": cost.flops,
                                 "params": cost.params}
    if latency is not None:
        metrics["latency_ms"] = float(latency.latency(X)[0])
    metrics["seconds"] = time.perf_counter() - start
    if in_nni_trial():
        report_final(metrics, arch)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return trial_main(build_arg_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
