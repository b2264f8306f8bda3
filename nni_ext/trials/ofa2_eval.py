"""OFA² evaluation trial: one OFA MobileNetV3 sub-network with inherited weights, BN recalibrated, top-1/top-5 measured.

Builds the OFA supernet (its classes from the checkpoint's classifier), loads the weights given
by path (a state dict or ``{"state_dict": ...}``; nothing is downloaded), takes this trial's
sub-network with inherited weights, resets and re-estimates its BatchNorm statistics on
``--calib-images`` training images at the architecture's resolution ``r`` (OFA's protocol:
2,000 images, train-mode forward passes without gradients), evaluates on the held-out split
at ``r`` and reports::

    {"default": top1, "top5": ..., "flops": MACs, "params": ..., "activations": ..., "peak_activation_bytes": ...,
     "latency_ms": ms (with --latency-tables or --measure-latency), "top1_before_recalibration": ... (with
     --eval-before)}

With ``--poly-activation`` (CNAS's functional constraint) every ReLU of the sub-network (OFA MobileNetV3 uses
ReLU in its first units and squeeze-excite blocks; its h-swish and h-sigmoid are kept) is swapped for the
polynomial ``0.01x² + 0.5x`` before recalibration, fine-tuning and evaluation.

With ``--robustness-draws M`` it reports FlatNAS's ``robustness`` (:func:`nni_ext.robustness.weight_noise_robustness`
on the val split, seeded by ``--seed``); a tuner with the objective ``top1_robust`` derives that from ``default``
and ``robustness``. ``--sam-rho`` fine-tunes with adaptive SAM (FlatNAS trains its candidates so).

With ``--epochs N`` (default 0: none) the sub-network is fine-tuned before the evaluation, as
NSGANetV2's evaluator does for datasets other than ImageNet (``n_epochs=5``): the classifier is reset
to the dataset's classes (dropout 0.2), BN is recalibrated, then N epochs of SGD (momentum 0.9,
Nesterov), cosine schedule per iteration from lr 0.01, weight decay 4e-5, batch 96 (all options);
the report adds ``finetune_epochs``, ``train_loss`` and ``train_top1`` (the last epoch's).

Accuracies are fractions; FLOPs/params/activations are counted exactly on the built sub-network (with its new
classifier when fine-tuned). As an
nnictl trialCommand (NSGA-II: ``configs/ofa2_eval_digits.yml``; ImageNet: OFA's
``ofa_mbv3_d234_e346_k357_w1.2`` weights, the default resolutions and the note10 tables)::

    python -m nni_ext.trials.ofa2_eval --supernet ofa_mbv3_d234_e346_k357_w1.2 --data data/imagenet \\
        --latency-tables ../shared/data/ofa/note10

Standalone, with a randomly initialised 10-class supernet on the embedded digits::

    nni-ext data digits data/digits
    nni-ext ofa2 init-supernet --num-classes 10 --out runs/ofa2-digits/supernet.pth
    python -m nni_ext.trials.ofa2_eval --supernet runs/ofa2-digits/supernet.pth --data data/digits \\
        --resolutions 32,48,64 --calib-images 256 --arch arch.json

The search-space file of other resolutions comes from the trial (``--supernet``/``--data`` are not read)::

    nni-ext ss_gen -t "python -m nni_ext.trials.ofa2_eval --supernet - --data - --resolutions 32,48,64" \\
        -o search_spaces/ofa-mbv3-digits.json
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any, Sequence

from ..errors import NniExtError
from ..ofa2.supernet import load_supernet
from ._runner import parse_resolutions, trial_main
from .ofa2_predictor_trial import latency_model, read_architecture


def add_ofa_inputs(p: argparse.ArgumentParser, arch_help: str) -> None:
    """``--supernet``, ``--data`` and ``--arch``: what every OFA sub-network trial reads."""
    p.add_argument("--supernet", required=True, help="OFA MobileNetV3 w1.2 supernet weights (a state dict or "
                                                     "{'state_dict': ...}; `nni-ext ofa2 init-supernet` makes one)")
    p.add_argument("--data", required=True, help="dataset root with train/ and the evaluation split (ImageNet layout)")
    p.add_argument("--arch", help=arch_help)


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nni_ext.trials.ofa2_eval", description=__doc__.splitlines()[0])
    add_ofa_inputs(p, "architecture JSON (NNI labels or an OFA dict) for a standalone run")
    p.add_argument("--resolutions", type=parse_resolutions, default=None,
                   help="comma-separated input resolutions of the space (default 160,176,192,208,224); must match "
                        "the search space file")
    p.add_argument("--calib-images", type=int, default=2000, help="training images for BN recalibration (OFA: 2000)")
    p.add_argument("--calib-batch-size", type=int, default=100, help="images per recalibration batch (OFA: 100)")
    p.add_argument("--val-split", default="val", help="held-out split to evaluate (default val)")
    p.add_argument("--val-per-class", type=int, default=None,
                   help="evaluate on the first N images of each class (a fixed, class-balanced subset)")
    p.add_argument("--val-batch-size", type=int, default=200)
    p.add_argument("--eval-before", action="store_true",
                   help="also evaluate before recalibration (intermediate result 'top1_before_recalibration')")
    p.add_argument("--latency-tables", help="folder of OFA <resolution>_lookup_table.yaml files or one table: "
                                            "report 'latency_ms' from it")
    p.add_argument("--measure-latency", action="store_true", help="report 'latency_ms' measured on --device")
    p.add_argument("--poly-activation", action="store_true",
                   help="CNAS's functional constraint: swap every ReLU for 0.01x^2 + 0.5x (h-swish is kept)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--backend", choices=["auto", "dali", "torchvision"], default="auto")
    p.add_argument("--workers", type=int, default=2, help="loader worker processes/threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the recalibration images and augmentation")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (use 1 when several trials share a CPU)")
    f = p.add_argument_group("fine-tuning from the inherited weights (NSGANetV2's evaluator; off by default)")
    f.add_argument("--epochs", type=int, default=0,
                   help="fine-tune N epochs after BN recalibration (default 0: evaluate the inherited weights; "
                        "NSGANetV2: 5 for datasets other than ImageNet)")
    f.add_argument("--lr", type=float, default=0.01, help="initial LR, cosine-decayed per iteration (default 0.01)")
    f.add_argument("--weight-decay", type=float, default=4e-5, help="on conv/linear weights (default 4e-5)")
    f.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    f.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=True,
                   help="Nesterov momentum (default on, as OFA's SGD)")
    f.add_argument("--train-batch-size", type=int, default=96, help="fine-tuning batch (default 96)")
    f.add_argument("--label-smoothing", type=float, default=0.0, help="default 0 (NSGANetV2's CIFAR config)")
    f.add_argument("--dropout", type=float, default=0.2, help="dropout of the reset classifier (default 0.2)")
    f.add_argument("--reset-classifier", choices=["always", "auto", "never"], default="always",
                   help="before fine-tuning: always (NSGANetV2), auto (when the class count differs), never")
    f.add_argument("--sam-rho", type=float, default=None, metavar="RHO",
                   help="fine-tune with adaptive SAM of this radius (FlatNAS: 2.0; default plain SGD)")
    r = p.add_argument_group("robustness (FlatNAS)")
    r.add_argument("--robustness-draws", type=int, default=0, metavar="M",
                   help="report `robustness`: mean |acc(w) - acc(w + sigma w z)| over M draws of multiplicative "
                        "Gaussian weight noise on the val split (FlatNAS: 20; default 0, not measured); a tuner "
                        "with the objective top1_robust derives it from default and robustness")
    r.add_argument("--robustness-sigma", type=float, default=0.05, help="noise scale sigma (default 0.05)")
    f.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="float16 autocast while fine-tuning (default: on CUDA)")
    f.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory format while fine-tuning (default: on CUDA)")
    return p


def run(args: argparse.Namespace) -> dict[str, float]:
    """Evaluate this trial's sub-network; reports the metrics under nnictl and returns them."""
    import torch

    from ..cost import count, measure_latency
    from ..data import Preprocessing, build_loader
    from ..devices import resolve_device
    from ..ofa2.finetune import dataset_classes, finetune_epochs, prepare_classifier
    from ..spaces.ofa_mbv3 import OfaMbv3Space, polynomial_activations, subnet, to_ofa
    from ..trainers.evaluation import evaluate, recalibrate_batchnorm
    from ._runner import get_next_architecture, in_nni_trial, report_final, report_intermediate

    if args.robustness_draws < 0 or args.robustness_sigma < 0:
        raise NniExtError(f"--robustness-draws {args.robustness_draws} and --robustness-sigma "
                          f"{args.robustness_sigma} must be >= 0")
    if args.calib_images < 0 or args.calib_batch_size < 1:
        raise NniExtError(f"--calib-images {args.calib_images} must be >= 0 and --calib-batch-size "
                          f"{args.calib_batch_size} >= 1")
    recipe = _finetune_recipe(args)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    resolutions = {"resolutions": args.resolutions} if args.resolutions else {}
    # declare-the-space mode (`nni-ext ss_gen -t`) and the architecture need only the labels, not the weights
    arch = get_next_architecture(OfaMbv3Space(**resolutions),
                                 fallback=read_architecture(args.arch, OfaMbv3Space(**resolutions))
                                 if args.arch else None)
    start = time.perf_counter()
    supernet = load_supernet(args.supernet)
    space = OfaMbv3Space(num_classes=supernet.classifier.out_features, **resolutions)
    latency = latency_model(args.latency_tables, OfaMbv3Space(num_classes=space.config["num_classes"],
                                                              resolutions=[arch["r"]])) if args.latency_tables else None
    device = resolve_device(args.device)
    model = subnet(supernet, to_ofa(arch), preserve_weight=True)
    if args.poly_activation:
        polynomial_activations(model)
    model = model.to(device).eval()
    del supernet
    resolution = arch["r"]
    prep = Preprocessing.for_crop(resolution)
    val = build_loader(args.data, args.val_split, batch_size=args.val_batch_size, train=False, backend=args.backend,
                       device=device, preprocessing=prep, num_workers=args.workers, max_per_class=args.val_per_class)
    metrics: dict[str, float] = {}
    if args.eval_before:
        metrics["top1_before_recalibration"] = evaluate(model, val)["top1"]
        report_intermediate({"default": metrics["top1_before_recalibration"], "stage": 0})
    if recipe is not None:  # NSGANetV2: reset the classifier, recalibrate BN, then fine-tune
        prepare_classifier(model, dataset_classes(args.data), args.reset_classifier, dropout=args.dropout)
        model.to(device).eval()
    cost = count(model, resolution)
    calibrated = 0
    if args.calib_images:
        batch = min(args.calib_batch_size, args.calib_images)
        train = build_loader(args.data, "train", batch_size=batch, train=True, backend=args.backend, device=device,
                             preprocessing=prep, num_workers=args.workers, seed=args.seed)
        calibrated = recalibrate_batchnorm(model, [model], train, math.ceil(args.calib_images / batch))
    if recipe is not None:
        train = build_loader(args.data, "train", batch_size=args.train_batch_size, train=True, drop_last=True,
                             backend=args.backend, device=device, preprocessing=prep, num_workers=args.workers,
                             seed=args.seed)
        rows = finetune_epochs(model, train, epochs=args.epochs, recipe=recipe, device=device)
        model.eval()
        metrics.update(finetune_epochs=args.epochs, train_loss=rows[-1]["loss"], train_top1=rows[-1]["top1"])
    after = evaluate(model, val)
    if args.robustness_draws:
        from ..robustness import weight_noise_robustness

        metrics["robustness"] = weight_noise_robustness(model, val, sigma=args.robustness_sigma,
                                                        draws=args.robustness_draws, seed=args.seed,
                                                        device=device).robustness
    metrics = {"default": after["top1"], "top5": after["top5"], "flops": cost.flops, "params": cost.params,
               "activations": cost.activations, "peak_activation_bytes": cost.peak_activation_bytes,
               **({"poly_activation": 1} if args.poly_activation else {}),
               **metrics, "calib_images": calibrated, "val_images": after["images"]}
    if latency is not None:
        metrics["latency_ms"] = float(latency.latency(latency.space.to_matrix([arch]))[0])
    elif args.measure_latency:
        metrics["latency_ms"] = measure_latency(model, resolution, device=device).median_ms
    metrics["seconds"] = time.perf_counter() - start
    if in_nni_trial():
        report_final(metrics, arch)
    return metrics


def _finetune_recipe(args: argparse.Namespace) -> Any:
    """The fine-tuning recipe of the options (``None`` without ``--epochs``); bad values are one-line errors."""
    from ..ofa2.finetune import finetune_recipe

    if args.epochs < 0:
        raise NniExtError(f"--epochs {args.epochs} must be >= 0 (0: no fine-tuning)")
    if args.epochs == 0:
        return None
    if not 0 <= args.dropout < 1 or args.train_batch_size < 1:
        raise NniExtError(f"--dropout {args.dropout} must be in [0, 1) and --train-batch-size "
                          f"{args.train_batch_size} >= 1")
    return finetune_recipe(lr=args.lr, weight_decay=args.weight_decay, momentum=args.momentum,
                           nesterov=args.nesterov, batch_size=args.train_batch_size,
                           label_smoothing=args.label_smoothing, amp=args.amp, channels_last=args.channels_last,
                           seed=args.seed, quiet=True, sam_rho=args.sam_rho)


def main(argv: Sequence[str] | None = None) -> int:
    return trial_main(build_arg_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
