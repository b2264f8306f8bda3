"""SPOS tester trial: evaluate one architecture of a trained supernet after recalibrating its BatchNorm.

Loads the supernet checkpoint, takes the architecture from ``nni.get_next_parameter()`` (or
``--arch``), reports the accuracy with the supernet's running statistics as an intermediate
result, resets and re-estimates the BN statistics of the path on training batches (official:
200 batches of 128 images, train mode, no gradients), evaluates on the validation set (or a
fixed class-balanced subset) and reports::

    {"default": top1, "top5": ..., "flops": ..., "params": ..., "activations": ..., "peak_activation_bytes": ...,
     "latency_ms": ... (when configured), "top1_before_recalibration": ...}

Accuracies are fractions. As an nnictl trialCommand::

    python -m nni_ext.trials.spos_tester --checkpoint runs/supernet/checkpoint.pth --data data/imagenet
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from ._runner import trial_main


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nni_ext.trials.spos_tester", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="supernet checkpoint (nni-ext spos train-supernet)")
    p.add_argument("--data", required=True, help="dataset root with train/ and val/")
    p.add_argument("--arch", help="architecture JSON for a standalone run (under nnictl the tuner chooses)")
    p.add_argument("--recal-batches", type=int, default=200, help="BN recalibration batches (official 200)")
    p.add_argument("--recal-batch-size", type=int, default=128, help="images per recalibration batch (official 128)")
    p.add_argument("--val-batch-size", type=int, default=200)
    p.add_argument("--val-per-class", type=int, default=None,
                   help="evaluate on the first N images of each val class (a fixed, class-balanced subset)")
    p.add_argument("--val-split", default="val", help="split to evaluate (default val)")
    p.add_argument("--backend", choices=["auto", "dali", "torchvision"], default="auto")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--crop-size", type=int, default=None, help="default: the supernet's training crop size")
    p.add_argument("--spos-preprocessing", action=argparse.BooleanOptionalAction, default=None,
                   help="BGR 0..255 input of the official checkpoints (default: as the supernet was trained)")
    p.add_argument("--min-area", type=float, default=None,
                   help="random-resized-crop area of the recalibration batches (default: as in training)")
    p.add_argument("--latency-table", help="per-layer latency table: report 'latency_ms' from it")
    p.add_argument("--measure-latency", action="store_true", help="report 'latency_ms' measured on --latency-device")
    p.add_argument("--latency-device", default="cpu")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0, help="seed of the recalibration batches")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (use 1 when several trials share a CPU: oversubscribed OpenMP "
                        "threads can slow everything down tenfold)")
    return p


def run(args: argparse.Namespace) -> dict[str, float]:
    """Test one architecture; returns the final metrics (also reported to NNI under nnictl)."""
    import torch

    from ..cost import CostTable, LatencyTable, measure_latency
    from ..data import Preprocessing, build_loader
    from ..devices import resolve_device
    from ..errors import NniExtError
    from ..trainers.checkpoint import read_checkpoint, space_of, supernet_from_checkpoint
    from ..trainers.evaluation import evaluate, recalibrate_batchnorm
    from ._runner import get_next_architecture, in_nni_trial, load_architecture, report_final, report_intermediate

    if args.recal_batches < 0:
        raise NniExtError(f"--recal-batches {args.recal_batches} must be >= 0")
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    # declare-the-space mode (`nni-ext ss_gen -t`) needs only the space, not the weights
    ckpt = read_checkpoint(args.checkpoint, kind="spos_supernet")
    space = space_of(ckpt)
    trained = ckpt.get("args", {})
    arch = get_next_architecture(space, fallback=load_architecture(args.arch) if args.arch else None)
    device = resolve_device(args.device)
    start = time.perf_counter()
    model = supernet_from_checkpoint(ckpt, args.checkpoint, device=device)
    del ckpt  # the optimizer state is not needed
    model.eval()
    path = model.path_of(arch)
    run_args = trained.get("run", {})
    crop = args.crop_size or trained.get("crop_size") or space.default_input_size
    spos = run_args.get("spos_preprocessing", False) if args.spos_preprocessing is None else args.spos_preprocessing
    min_area = args.min_area if args.min_area is not None else run_args.get("min_area", 0.08)
    prep = Preprocessing.for_crop(crop, spos=spos, min_area=min_area)
    val = build_loader(args.data, args.val_split, batch_size=args.val_batch_size, train=False, backend=args.backend,
                       device=device, preprocessing=prep, num_workers=args.workers,
                       max_per_class=args.val_per_class)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x, path)

    before = evaluate(forward, val)
    report_intermediate({"default": before["top1"], "stage": 0})
    if args.recal_batches:
        train = build_loader(args.data, "train", batch_size=args.recal_batch_size, train=True, backend=args.backend,
                             device=device, preprocessing=prep, num_workers=args.workers, seed=args.seed)
        recalibrate_batchnorm(forward, model.path_modules(path), train, args.recal_batches)
    after = evaluate(forward, val)
    cost = CostTable.cached(space, crop).cost(arch)
    metrics: dict[str, float] = {"default": after["top1"], "top5": after["top5"], "flops": cost.flops,
                                 "params": cost.params, "activations": cost.activations,
                                 "peak_activation_bytes": cost.peak_activation_bytes,
                                 "top1_before_recalibration": before["top1"],
                                 "val_images": after["images"], "seconds": time.perf_counter() - start}
    if args.latency_table:
        metrics["latency_ms"] = LatencyTable.load(args.latency_table).predict(space.latency_keys(arch, crop))
    elif args.measure_latency:
        metrics["latency_ms"] = measure_latency(space.build(arch), crop, device=args.latency_device).median_ms
    if in_nni_trial():
        report_final(metrics, arch)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return trial_main(build_arg_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
