"""``nni-ext spos``: train a SPOS supernet (``train-supernet``) or one architecture from scratch (``retrain``).

Both run standalone, under ``torchrun`` (one process per GPU) and as nnictl trials
(``python -m nni_ext spos ...``), reporting validation top-1 to NNI. Defaults follow the
official SPOS recipe for ImageNet; for the embedded digits use ``--space spos-digits`` (its
32 px input size is the default crop).
"""
from __future__ import annotations

import argparse
import os
import re
from typing import Any

#: ``290M``/``3.5e8``/``1.2G`` -> float
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_count(text: str) -> float:
    """A FLOPs count: a number with an optional K/M/G suffix (``290M`` = 290e6)."""
    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([kKmMgG]?)\s*", text)
    try:
        return float(match.group(1)) * _SUFFIX[match.group(2).lower()]  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a count like 290M or 3.6e8") from None


def _add_common(p: argparse.ArgumentParser, *, default_space: str, output: str, length_help: str) -> None:
    g = p.add_argument_group("data and space")
    g.add_argument("--data", required=True, help="dataset root with train/ and val/ (ImageNet layout)")
    g.add_argument("--space", default=default_space, help=f"search space (default {default_space}; spos-digits "
                                                           "for the embedded 32 px digits)")
    g.add_argument("--space-arg", action="append", default=[], metavar="K=V", help="space keyword argument (JSON)")
    g.add_argument("--backend", choices=["auto", "dali", "torchvision"], default="auto",
                   help="image loader (auto: DALI when installed)")
    g.add_argument("--workers", type=int, default=4, help="loader worker processes/threads (default 4)")
    g.add_argument("--crop-size", type=int, default=None, help="training crop (default: the space's input size)")
    g.add_argument("--min-area", type=float, default=0.08, help="smallest random-resized-crop area (default 0.08)")
    g.add_argument("--spos-preprocessing", action="store_true", help="BGR 0..255 input, as the official checkpoints")
    g.add_argument("--val-split", default="val", help="split evaluated during training (default val)")
    r = p.add_argument_group("recipe (official SPOS defaults)")
    r.add_argument("--steps", type=int, default=None, help=length_help)
    r.add_argument("--epochs", type=int, default=None, help="length in epochs instead of --steps")
    r.add_argument("--batch-size", type=int, default=256,
                   help="global batch over all processes (default 256 for one GPU; official 1024)")
    r.add_argument("--lr", type=float, default=None, help="peak LR, decayed linearly to 0 per iteration "
                                                          "(default 0.5 x batch/1024, i.e. the official 0.5 at 1024)")
    r.add_argument("--momentum", type=float, default=0.9)
    r.add_argument("--weight-decay", type=float, default=4e-5, help="on weights with dim > 1 only (default 4e-5)")
    r.add_argument("--label-smoothing", type=float, default=0.1)
    r.add_argument("--seed", type=int, default=0)
    o = p.add_argument_group("run")
    o.add_argument("--output", default=None, help=f"folder of checkpoint.pth (default {output}; "
                                                  "$NNI_OUTPUT_DIR under nnictl)")
    o.add_argument("--save-every", type=int, default=1000, help="checkpoint every N steps (and at the end)")
    o.add_argument("--resume", nargs="?", const="", default=None, metavar="CKPT",
                   help="continue OUTPUT/checkpoint.pth (or CKPT) with the same sampling and data stream")
    o.add_argument("--overwrite", action="store_true", help="start over even if OUTPUT/checkpoint.pth exists")
    o.add_argument("--stop-at", type=int, default=None, help="stop (with a checkpoint) at this step of the schedule")
    o.add_argument("--eval-every", type=int, default=None, help="evaluate every N steps (default: each epoch)")
    o.add_argument("--val-per-class", type=int, default=None,
                   help="evaluate on the first N images of each val class (a fixed, class-balanced subset)")
    o.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (torchrun: LOCAL_RANK's GPU)")
    o.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="float16 autocast + "
                                                                                      "GradScaler (default: on CUDA)")
    o.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory format (default: on CUDA)")
    o.add_argument("--quiet", action="store_true", help="no progress bar or evaluation lines")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spos", help="SPOS: train a supernet, train an architecture from scratch")
    ssub = p.add_subparsers(dest="spos_command", required=True, metavar="{train-supernet,retrain}")
    t = ssub.add_parser("train-supernet", help="train the SPOS one-shot supernet (one sampled path per step)")
    _add_common(t, default_space="spos", output="runs/spos-supernet",
                length_help="iterations (default: official 120,000 at batch 1024, scaled to keep the images seen)")
    s = t.add_argument_group("path sampling")
    s.add_argument("--sampling", choices=["flops-uniform", "uniform"], default="flops-uniform",
                   help="official FLOPs-uniform (default) or plain uniform paths")
    s.add_argument("--flops-range", nargs=2, type=parse_count, metavar=("LOW", "HIGH"), default=None,
                   help="FLOPs (MACs) range, e.g. 290M 360M (default: official for spos at 224 px, else the "
                        "5th-95th percentile of uniform paths)")
    s.add_argument("--flops-bins", type=int, default=7, help="FLOPs bins (default 7)")
    s.add_argument("--max-draws", type=int, default=500, help="draws per bin before a uniform path (default 500)")
    s.add_argument("--eval-paths", type=int, default=1, help="fixed random paths evaluated (default 1)")
    s.add_argument("--affine", action="store_true", help="affine BatchNorm in the supernet (default: not, as NNI)")
    t.set_defaults(func=run_train_supernet)
    r = ssub.add_parser("retrain", help="train one architecture from scratch")
    r.add_argument("--fixed-arc", default=None, metavar="ARCH.json",
                   help="architecture JSON (label -> block; NNI's wrapped form too) or 'official'; "
                        "under nnictl the tuner's parameters win")
    _add_common(r, default_space="spos", output="runs/spos-retrain", length_help="iterations (default 240 epochs)")
    r.set_defaults(func=run_retrain)


def _configs(args: argparse.Namespace, default_output: str) -> tuple[Any, Any, Any]:
    """``(space, RunConfig, Recipe)`` of the parsed arguments."""
    from ..spaces import create_space
    from ..trainers.train_loop import Recipe, RunConfig
    from .common import parse_space_args

    space = create_space(args.space, **parse_space_args(args.space_arg))
    output = args.output or os.environ.get("NNI_OUTPUT_DIR") or default_output
    cfg = RunConfig(data=args.data, output=output, backend=args.backend, workers=args.workers,
                    crop_size=args.crop_size, min_area=args.min_area, spos_preprocessing=args.spos_preprocessing,
                    device=args.device, resume=False if args.resume is None else (args.resume or True),
                    overwrite=args.overwrite, val_split=args.val_split,
                    val_per_class=args.val_per_class)
    recipe = Recipe(batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                    label_smoothing=args.label_smoothing, steps=args.steps, epochs=args.epochs,
                    save_every=args.save_every, eval_every=args.eval_every,
                    stop_at=args.stop_at, amp=args.amp, channels_last=args.channels_last, seed=args.seed,
                    quiet=args.quiet)
    return space, cfg, recipe


def _summary(kind: str, result: Any) -> int:
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 speaks
        return 0
    val = result.val or {}
    status = "done" if result.finished else "stopped"
    top1 = f", val top-1 {val['top1']:.4f} top-5 {val['top5']:.4f}" if val else ""
    print(f"{kind} {status} at step {result.step}/{result.total_steps}{top1}, "
          f"{result.images_per_second:.0f} images/s; checkpoint {result.checkpoint}")
    return 0


def run_train_supernet(args: argparse.Namespace) -> int:
    from ..trainers.supernet import SamplingConfig, train_supernet

    space, cfg, recipe = _configs(args, "runs/spos-supernet")
    sampling = SamplingConfig(kind=args.sampling, flops_range=tuple(args.flops_range) if args.flops_range else None,
                              bins=args.flops_bins, max_draws=args.max_draws)
    result = train_supernet(space, cfg, recipe, sampling, eval_paths=args.eval_paths, affine=args.affine)
    return _summary("supernet", result)


def run_retrain(args: argparse.Namespace) -> int:
    from ..errors import NniExtError
    from ..ss_gen import SS_GEN_ENV
    from ..trainers.retrain import read_fixed_arc, retrain
    from ..trial import get_next_architecture, in_nni_trial

    space, cfg, recipe = _configs(args, "runs/spos-retrain")
    fallback = read_fixed_arc(args.fixed_arc, space) if args.fixed_arc else None
    if fallback is None and not (in_nni_trial() or os.environ.get(SS_GEN_ENV)):
        raise NniExtError("no architecture: give --fixed-arc ARCH.json (or 'official'), or run under nnictl")
    arch = get_next_architecture(space, fallback=fallback)
    return _summary("retrain", retrain(space, arch, cfg, recipe))
