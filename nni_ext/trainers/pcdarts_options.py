"""Command-line options of PC-DARTS searches and evaluation trainings, and the configs built from them.

Shared by ``nni-ext pcdarts search/train`` and the nnictl trials (:mod:`nni_ext.trials.pcdarts_search_trial`,
:mod:`nni_ext.trials.pcdarts_train_trial`). Light to import: the defaults come from :mod:`.pcdarts_config`,
which needs no torch.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

DATA_HELP = ("training data: cifar10:ROOT / cifar100:ROOT (torchvision's files under ROOT, never downloaded) or an "
             "ImageNet-layout folder root (train/<class>/*, e.g. the embedded digits)")


def add_search_options(p: argparse.ArgumentParser, *, nu_required: bool = False) -> None:
    """Every :class:`~nni_ext.trainers.pcdarts_search.SearchConfig` option; defaults are PC-DARTS's published ones."""
    from .pcdarts_config import REGULARIZERS, SearchConfig

    d = SearchConfig(data="")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--out", default=None, help="output folder (state for resuming, result.json); default: the NNI "
                                               "trial's output folder, else runs/pcdarts-search")
    p.add_argument("--nu", type=float, default=None if nu_required else d.nu,
                   help="regularisation strength: the weight step minimises (1-nu)*CE + nu*R "
                        "(under nnictl it comes from the tuner)")
    p.add_argument("-o", "--regularizer", default=d.regularizer, choices=REGULARIZERS,
                   help="R: l1 (sum |w|), l2 (sum w^2), flops/params (expected cost of the mixed ops, millions), "
                        f"none (default {d.regularizer})")
    p.add_argument("--image-size", type=int, default=d.image_size, help="resize folder images to this size")
    p.add_argument("--subsample", type=float, default=d.subsample,
                   help="use this seeded random share of the training images (MOOD-NAS's --subsample; default 1)")
    p.add_argument("--train-portion", type=float, default=d.train_portion,
                   help=f"share of the training data for the weights; the rest guides the architecture "
                        f"(default {d.train_portion})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"SGD learning rate, cosine to --lr-min (default {d.lr})")
    p.add_argument("--lr-min", type=float, default=d.lr_min, help=f"default {d.lr_min}")
    p.add_argument("--momentum", type=float, default=d.momentum, help=f"default {d.momentum}")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help=f"SGD weight decay, separate from R (default {d.weight_decay}; MOOD-NAS's L2 sweep uses 0)")
    p.add_argument("--arch-lr", type=float, default=d.arch_lr, help=f"architecture Adam lr (default {d.arch_lr})")
    p.add_argument("--arch-weight-decay", type=float, default=d.arch_weight_decay,
                   help=f"architecture Adam weight decay (default {d.arch_weight_decay})")
    p.add_argument("--arch-warmup", type=int, default=d.arch_warmup,
                   help=f"epochs with the architecture frozen (default {d.arch_warmup})")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help=f"default {d.grad_clip}")
    p.add_argument("--init-channels", type=int, default=d.init_channels, help=f"default {d.init_channels}")
    p.add_argument("--layers", type=int, default=d.layers, help=f"cells (default {d.layers})")
    p.add_argument("--partial-k", type=int, default=d.partial_k,
                   help=f"1/K of the channels go through the mixed op (default {d.partial_k}; 1 = plain DARTS)")
    p.add_argument("--no-flip", dest="flip", action="store_false",
                   help="no horizontal flips (for data where a mirror image changes the class, e.g. digits)")
    p.add_argument("--cutout", type=int, default=d.cutout, help="Cutout length in pixels (default 0: off)")
    p.add_argument("--eval-channels", type=int, default=d.eval_channels,
                   help=f"channels of the evaluation network whose params/FLOPs are reported "
                        f"(default {d.eval_channels})")
    p.add_argument("--eval-layers", type=int, default=d.eval_layers, help=f"its cells (default {d.eval_layers})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    p.add_argument("--device", default=d.device, help="auto (CUDA when available), cpu, cuda, cuda:1")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many weight steps (smoke tests)")


def search_config(args: argparse.Namespace, *, nu: float | None = None) -> Any:
    """The :class:`SearchConfig` of parsed options; ``nu`` (from the tuner) overrides ``--nu``."""
    from .pcdarts_config import SearchConfig

    out = args.out or os.environ.get("NNI_OUTPUT_DIR") or "runs/pcdarts-search"
    chosen = args.nu if nu is None else nu
    if chosen is None:
        raise ValueError("no regularisation strength: give --nu (or run the trial under nnictl with a 'nu' parameter)")
    return SearchConfig(data=args.data, out_dir=out, nu=float(chosen), regularizer=args.regularizer,
                        image_size=args.image_size, subsample=args.subsample,
                        train_portion=args.train_portion, batch_size=args.batch_size,
                        epochs=args.epochs, lr=args.lr, lr_min=args.lr_min, momentum=args.momentum,
                        weight_decay=args.weight_decay, arch_lr=args.arch_lr, arch_weight_decay=args.arch_weight_decay,
                        arch_warmup=args.arch_warmup, grad_clip=args.grad_clip, init_channels=args.init_channels,
                        layers=args.layers, partial_k=args.partial_k, flip=args.flip, cutout=args.cutout,
                        eval_channels=args.eval_channels, eval_layers=args.eval_layers, seed=args.seed,
                        device=args.device, max_steps=args.max_steps)


def apply_threads(args: argparse.Namespace) -> None:
    """``--threads``: limit torch's CPU threads (useful when several trials share a machine)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def add_train_options(t: argparse.ArgumentParser) -> None:
    """Options of an evaluation training (``pcdarts train`` and the training trial); DARTS's recipe as defaults."""
    from .pcdarts_config import TrainConfig

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


def train_config(args: argparse.Namespace, genotype: str, out_dir: str) -> Any:
    """The :class:`~nni_ext.trainers.pcdarts_train.TrainConfig` of parsed ``train`` options."""
    from .pcdarts_config import TrainConfig

    return TrainConfig(data=args.data, genotype=genotype, out_dir=out_dir, test_split=args.test_split,
                       image_size=args.image_size, train_portion=args.train_portion, batch_size=args.batch_size,
                       epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                       init_channels=args.init_channels, layers=args.layers, auxiliary=args.auxiliary,
                       auxiliary_weight=args.auxiliary_weight, drop_path_prob=args.drop_path, cutout=args.cutout,
                       flip=args.flip, grad_clip=args.grad_clip, seed=args.seed, device=args.device,
                       max_steps=args.max_steps)


__all__ = ["DATA_HELP", "add_search_options", "add_train_options", "apply_threads", "search_config",
           "train_config"]
