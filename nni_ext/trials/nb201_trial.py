"""NAS-Bench-201 trial: report a cell's trained accuracy, latency, params and training time from the tables.

No training: the result comes from NAS-Bench-201's published tables (``pip install "nni-ext[bench]"``),
so a whole search runs in minutes on a laptop. Reports ``{default: validation accuracy (fraction),
latency_ms, params, train_time}`` (see :mod:`nni_ext.nb201` for the units). Usage as an nnictl
``trialCommand``, with ``search_spaces/nas-bench-201.json``::

    python -m nni_ext.trials.nb201_trial --dataset cifar10 --seed-from-trial

``default`` is the mean over NAS-Bench-201's training runs, or with ``--seed-from-trial`` the accuracy of
one training run picked by NNI's parameter id (the trial's sequence id when the parameter id cannot be
read): concurrent trials see the seed noise a real search sees, and a parameter id always gets the same
run. Standalone: ``--arch FILE`` (and ``--seed N`` to pick a run) prints the metrics as JSON.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from ._runner import trial_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nni_ext.trials.nb201_trial", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10",
                        help="cifar10 (NAS-Bench-201's cifar10-valid), cifar100 or imagenet (ImageNet16-120); "
                             "default: cifar10")
    parser.add_argument("--arch", default=None, metavar="FILE", help="architecture JSON for a standalone run")
    seed = parser.add_mutually_exclusive_group()
    seed.add_argument("--seed-from-trial", action="store_true",
                      help="report one training run's accuracy, picked by NNI's parameter id (default: the mean)")
    seed.add_argument("--seed", type=int, default=None, help="report the training run this seed picks")
    return parser


def trial_seed() -> int:
    """NNI's parameter id of this trial (reproducible per proposal), else its sequence id; 0 outside nnictl."""
    from ._runner import in_nni_trial

    if not in_nni_trial():
        return 0
    import nni
    import nni.trial

    record = getattr(nni.trial, "_params", None)  # set by nni.get_next_parameter(); NNI 3.0 has no public getter
    parameter_id = record.get("parameter_id") if isinstance(record, dict) else None
    if isinstance(parameter_id, int) and parameter_id >= 0:
        return parameter_id
    return int(nni.get_sequence_id())


def architecture(arch_file: str | None) -> dict[str, str]:
    """This trial's cell: from NNI under nnictl, else from ``arch_file``; validated without importing torch."""
    from .. import nb201
    from ..errors import NniExtError
    from ..ss_gen import SS_GEN_ENV
    from ._runner import get_next_architecture, load_architecture, next_parameters

    if os.environ.get(SS_GEN_ENV):  # `nni-ext ss_gen -t CMD`: write the space and exit
        from ..spaces import create_space

        get_next_architecture(create_space("nas-bench-201"))
    params: Any = next_parameters()
    if not params:
        if arch_file is None:
            raise NniExtError("no architecture: not running under nnictl and no --arch file given")
        params = load_architecture(arch_file)
    return nb201.validate(params)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..nb201 import NasBench201Table
    from ._runner import in_nni_trial, report_final

    table = NasBench201Table(args.dataset)  # a bad dataset name fails before NNI hands out parameters
    arch = architecture(args.arch)
    seed = trial_seed() if args.seed_from_trial else args.seed
    metrics = table.lookup(arch, seed=seed)
    if in_nni_trial():
        report_final(metrics, arch)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return trial_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
