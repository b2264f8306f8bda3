"""PC-DARTS evaluation-training trial: train one genotype of a sweep's front, as a trial of an nnictl experiment.

The search space names the genotypes to train (``{"genotype": {"_type": "choice", "_value":
["l1_loss_2e01", "PC_DARTS_cifar"]}}``, names resolved by ``--genotypes FILE`` first, e.g. the
``genotypes.py`` that ``nni-ext pcdarts analyse`` writes, then the built-in ones); NNI's grid-search
tuner hands each out once. Every trial trains under ``--out-root/<name>`` with the options of
``nni-ext pcdarts train`` and reports per epoch and at the end::

    {"default": test top-1, "params": ..., "flops": ..., "train_acc": ..., "batch_size": ..., "genotype": ...}

On a GPU the batch size comes from the memory estimator kept in ``--out-root/memory.csv``, which
every trial reads and refits with its own measured peak (written atomically; two trials finishing
at the same moment may keep only one of their two measurements).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from ..trainers.pcdarts_options import DATA_HELP, add_train_options, apply_threads, train_config
from ._runner import trial_main

PARAMETER = "genotype"


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nni_ext.trials.pcdarts_train_trial",
                                description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--out-root", default="runs/pcdarts-train", help="one sub-folder per genotype, and memory.csv")
    p.add_argument("--genotypes", default=None, help="genotypes file (.py or .json) the names come from")
    p.add_argument("--genotype", default=None, help="standalone: the genotype to train")
    add_train_options(p)
    return p


def resolve(name: str, genotypes_file: str | None) -> str:
    """``FILE:NAME`` when ``genotypes_file`` defines ``name``, else ``name`` itself (a built-in or a path)."""
    from ..pcdarts.genotypes import load_genotype

    if genotypes_file:
        spec = f"{genotypes_file}:{name}"
        try:
            load_genotype(spec)
            return spec
        except ValueError:
            pass
    load_genotype(name)  # a clear error naming the known genotypes when it is unknown
    return name


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..errors import NniExtError
    from ..trainers.pcdarts_train import train_many
    from ._runner import in_nni_trial, next_parameters, report_final, report_intermediate

    apply_threads(args)
    params: dict[str, Any] = {PARAMETER: args.genotype}
    if in_nni_trial():
        params = next_parameters() or {}
    name = params.get(PARAMETER)
    if not name:
        raise NniExtError(f"no genotype to train: give --genotype, or a search space with a {PARAMETER!r} choice")
    spec = resolve(str(name), args.genotypes)
    base = train_config(args, spec, str(Path(args.out_root) / str(name)))

    def on_epoch(record: dict[str, Any]) -> None:
        report_intermediate({"default": record["test_acc"], "train_loss": record["train_loss"]})

    outcome = train_many(base, [spec], out_root=args.out_root, memory_margin_mb=args.memory_margin_mb,
                         names=[str(name)], on_epoch=on_epoch)[0]
    if in_nni_trial():
        report_final(outcome.metrics, params)
    return outcome.metrics


def main(argv: Sequence[str] | None = None) -> int:
    return trial_main(build_arg_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
