"""Early-exit trial (EDANAS / NACHOS): an OFA sub-network with exit heads, trained, measured exit by exit.

The architecture is a point of ``ofa-mbv3-ee`` (:mod:`nni_ext.spaces.ofa_mbv3_ee`): OFA's genes plus one
exit gene per stage 1–4. The trial takes the sub-network from a supernet checkpoint (inherited weights;
the classifier reset when the data has another class count), recalibrates its BatchNorm on
``--calib-images`` training images at the architecture's resolution ``r``, optionally fine-tunes the
backbone ``--epochs`` epochs (NSGANetV2's recipe), attaches EDANAS's exit heads and trains them
``--ee-epochs`` epochs (``--ee-mode joint``: backbone too, EDANAS's joint trainer; ``frozen``: heads only),
then applies the exit rule (leave at the first exit whose softmax margin reaches its threshold) on the
held-out split and reports::

    {"default": top-1 of the early-exit network, "backbone_top1": top-1 of the final classifier alone,
     "flops": backbone + final classifier MACs, "avg_macs": Σ_b r_b (B_b + C_b) (EDANAS),
     "avg_macs_cumulative": the same with every head on an image's way counted, "max_macs": backbone, final
     classifier and every head, "params": of the whole network, "exit<s>_ratio" (s = 1..4, 0 without an exit),
     "exit<s>_top1", "exit<s>_threshold", "final_ratio", "final_top1", "exits", ...}

With ``--mmax M`` NACHOS's repair runs on the validation outputs: while ``avg_macs > M``, the thresholds
are lowered from the last intermediate exit backwards (steps of 0.1, not below 0.1) as long as the accuracy
stays at least ``--top1-min``; the report then holds the repaired thresholds and figures, plus
``mmax_satisfied`` and ``repair_steps``.

On the embedded digits (``configs/ofa_ee_digits.yml``), standalone::

    nni-ext data digits data/digits
    nni-ext ofa2 init-supernet --num-classes 10 --out runs/ofa-ee-digits/supernet.pth
    python -m nni_ext.trials.ofa_ee_trial --supernet runs/ofa-ee-digits/supernet.pth --data data/digits \\
        --resolutions 32 --calib-images 500 --epochs 3 --ee-epochs 2 --arch arch.json

On ImageNet-layout data with OFA's weights (not tested here; expect the 1000-class heads to be large)::

    python -m nni_ext.trials.ofa_ee_trial --supernet ofa_mbv3_d234_e346_k357_w1.2 --data data/imagenet \\
        --epochs 0 --ee-epochs 5 --ee-mode frozen --calib-images 2000

The search-space file comes from the trial (``--supernet``/``--data`` are not read)::

    nni-ext ss_gen -t "python -m nni_ext.trials.ofa_ee_trial --supernet - --data - --resolutions 32,48,64" \\
        -o search_spaces/ofa-mbv3-ee-digits.json
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any, Sequence

from ..errors import NniExtError
from ..runner import int_list, number_list
from ._runner import parse_resolutions, trial_main
from .ofa2_eval import add_ofa_inputs


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nni_ext.trials.ofa_ee_trial", description=__doc__.splitlines()[0])
    add_ofa_inputs(p, "architecture JSON (ofa-mbv3-ee labels) for a standalone run")
    s = p.add_argument_group("the search space (must match the search space file)")
    s.add_argument("--resolutions", type=parse_resolutions, default=None,
                   help="comma-separated input resolutions (default 160,176,192,208,224)")
    s.add_argument("--exits", choices=["threshold", "binary"], default="threshold",
                   help="exit genes: EDANAS thresholds t_<stage> (default) or NACHOS on/off bits exit_<stage>")
    s.add_argument("--thresholds", type=number_list(float, "0.1,0.2,1"), default=None,
                   help="threshold gene values, each in (0, 1] (default 0.1,0.2,1; 1 = no exit)")
    s.add_argument("--stages", type=int_list("1,2,3,4"), default=None,
                   help="stages that may carry an exit (default 1,2,3,4)")
    s.add_argument("--exit-threshold", type=float, default=0.5, help="rule threshold of an exit switched on by a "
                                                                     "binary gene (default 0.5)")
    p.add_argument("--calib-images", type=int, default=2000, help="training images for BN recalibration (OFA: 2000)")
    p.add_argument("--calib-batch-size", type=int, default=100)
    p.add_argument("--train-per-class", type=int, default=None,
                   help="train on the first N images of each class only (fine-tuning and exit heads)")
    p.add_argument("--val-split", default="val", help="held-out split to evaluate (default val)")
    p.add_argument("--val-per-class", type=int, default=None, help="evaluate on the first N images of each class")
    p.add_argument("--val-batch-size", type=int, default=200)
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--backend", choices=["auto", "dali", "torchvision"], default="auto")
    p.add_argument("--workers", type=int, default=2, help="loader worker processes/threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (1 when trials share a CPU)")
    f = p.add_argument_group("backbone fine-tuning before the exits (NSGANetV2's recipe; off by default)")
    f.add_argument("--epochs", type=int, default=0, help="fine-tune the backbone N epochs (default 0)")
    f.add_argument("--lr", type=float, default=0.01, help="initial LR, cosine-decayed per iteration (default 0.01)")
    f.add_argument("--weight-decay", type=float, default=4e-5)
    f.add_argument("--train-batch-size", type=int, default=96, help="training batch (default 96), exit heads too")
    f.add_argument("--dropout", type=float, default=0.2, help="dropout of a reset classifier (default 0.2)")
    f.add_argument("--reset-classifier", choices=["always", "auto", "never"], default="auto",
                   help="reset the final classifier: auto (when the class count differs, default), always, never")
    e = p.add_argument_group("exit heads (EDANAS)")
    e.add_argument("--ee-epochs", type=int, default=5, help="epochs of exit-head training (EDANAS: 5)")
    e.add_argument("--ee-mode", choices=["joint", "frozen"], default="joint",
                   help="joint: backbone and heads learn (EDANAS's joint trainer, default); frozen: heads only")
    e.add_argument("--ee-lr", type=float, default=0.05, help="initial LR of the exit training, cosine (default 0.05)")
    n = p.add_argument_group("NACHOS constraint and repair")
    n.add_argument("--mmax", type=float, default=None, help="bound on avg_macs (MACs): repair the thresholds to it")
    n.add_argument("--top1-min", type=float, default=0.0,
                   help="accuracy (fraction) a repair step may not go below (NACHOS top1min; default 0)")
    return p


def space_from_args(args: argparse.Namespace, num_classes: int = 1000) -> Any:
    """The ``ofa-mbv3-ee`` space of the options (a bad value is a one-line error)."""
    from ..spaces.ofa_mbv3_ee import OfaMbv3EeSpace

    kwargs: dict[str, Any] = {"exits": args.exits, "exit_threshold": args.exit_threshold}
    if args.resolutions:
        kwargs["resolutions"] = args.resolutions
    if args.thresholds:
        kwargs["thresholds"] = args.thresholds
    if args.stages:
        kwargs["stages"] = args.stages
    try:
        return OfaMbv3EeSpace(num_classes=num_classes, **kwargs)
    except ValueError as exc:
        raise NniExtError(str(exc)) from None


def _check(args: argparse.Namespace) -> None:
    for name in ("calib_images", "epochs", "ee_epochs"):
        if getattr(args, name) < 0:
            raise NniExtError(f"--{name.replace('_', '-')} {getattr(args, name)} must be >= 0")
    for name in ("calib_batch_size", "train_batch_size", "val_batch_size"):
        if getattr(args, name) < 1:
            raise NniExtError(f"--{name.replace('_', '-')} {getattr(args, name)} must be >= 1")
    if args.mmax is not None and not args.mmax > 0:
        raise NniExtError(f"--mmax {args.mmax} must be a positive number of MACs")
    if not 0 <= args.top1_min <= 1:
        raise NniExtError(f"--top1-min {args.top1_min} must be a fraction in [0, 1]")
    if args.ee_lr <= 0 or args.lr <= 0:
        raise NniExtError(f"--lr {args.lr} and --ee-lr {args.ee_lr} must be positive")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build, train and measure this trial's early-exit network; reports under nnictl and returns the metrics."""
    import torch

    from ..cost.counting import count_params
    from ..data import Preprocessing, build_loader
    from ..devices import resolve_device
    from ..earlyexit import EarlyExitNetwork, exit_statistics, nachos_repair
    from ..earlyexit.train import collect_exit_logits, train_exits
    from ..ofa2.finetune import dataset_classes, finetune_epochs, finetune_recipe, prepare_classifier
    from ..ofa2.supernet import load_supernet
    from ..spaces.ofa_mbv3 import subnet, to_ofa
    from ._runner import get_next_architecture, in_nni_trial, load_architecture, report_final

    _check(args)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    labels_space = space_from_args(args)
    # declare-the-space mode (`nni-ext ss_gen -t`) and the architecture need only the labels, not the weights
    arch = get_next_architecture(labels_space, fallback=load_architecture(args.arch) if args.arch else None)
    start = time.perf_counter()
    num_classes = dataset_classes(args.data)
    space = space_from_args(args, num_classes)
    r = arch["r"]
    # the plan may build the backbone's cost table (a random supernet) on first use: before seeding, so that a
    # trial's result does not depend on what the cache already holds
    plan = space.exit_plan(arch, r)
    torch.manual_seed(args.seed)
    supernet = load_supernet(args.supernet)
    device = resolve_device(args.device)
    backbone = subnet(supernet, to_ofa(arch), preserve_weight=True)
    del supernet
    prepare_classifier(backbone, num_classes, args.reset_classifier, dropout=args.dropout)
    backbone.to(device)
    prep = Preprocessing.for_crop(r)

    def train_loader(batch: int, drop_last: bool = True) -> Any:
        return build_loader(args.data, "train", batch_size=batch, train=True, drop_last=drop_last,
                            backend=args.backend, device=device, preprocessing=prep, num_workers=args.workers,
                            seed=args.seed, max_per_class=args.train_per_class)

    metrics: dict[str, Any] = {}
    if args.calib_images:
        from ..trainers.evaluation import recalibrate_batchnorm

        batch = min(args.calib_batch_size, args.calib_images)
        metrics["calib_images"] = recalibrate_batchnorm(backbone, [backbone], train_loader(batch, False),
                                                        math.ceil(args.calib_images / batch))
    if args.epochs:
        recipe = finetune_recipe(lr=args.lr, weight_decay=args.weight_decay, batch_size=args.train_batch_size,
                                 seed=args.seed, quiet=True)
        rows = finetune_epochs(backbone, train_loader(args.train_batch_size), epochs=args.epochs, recipe=recipe,
                               device=device)
        metrics.update(finetune_epochs=args.epochs, train_loss=rows[-1]["loss"])
    torch.manual_seed(args.seed + 1)  # the heads' initialisation
    net = EarlyExitNetwork(backbone, plan, num_classes).to(device)
    if args.ee_epochs and (net.exits or args.ee_mode == "joint"):
        rows = train_exits(net, train_loader(args.train_batch_size), epochs=args.ee_epochs,
                           joint=args.ee_mode == "joint", lr=args.ee_lr, device=device)
        metrics.update(ee_epochs=args.ee_epochs, ee_train_loss=rows[-1]["loss"])
    val = build_loader(args.data, args.val_split, batch_size=args.val_batch_size, train=False, backend=args.backend,
                       device=device, preprocessing=prep, num_workers=args.workers, max_per_class=args.val_per_class)
    logits, labels = collect_exit_logits(net, val, device=device)
    costs = net.exit_costs(r)
    b_macs, c_macs = costs["backbone_macs"], costs["head_macs"]
    thresholds = list(net.thresholds)
    stats = exit_statistics(logits, labels, thresholds)
    if args.mmax is not None:
        repaired = nachos_repair(logits, labels, thresholds, b_macs, c_macs, mmax=args.mmax, top1_min=args.top1_min)
        thresholds, stats = list(repaired.thresholds), repaired.stats
        metrics.update(mmax=args.mmax, top1_min=args.top1_min, mmax_satisfied=int(repaired.satisfied),
                       repair_steps=repaired.steps)
    metrics.update(exit_metrics(net, stats, thresholds, b_macs, c_macs, space.config["stages"]))
    metrics.update(backbone_top1=int(logits[-1].argmax(1).eq(labels).sum()) / len(labels),
                   flops=b_macs[-1] + c_macs[-1], params=count_params(net),
                   max_macs=b_macs[-1] + sum(c_macs), val_images=stats.images,
                   seconds=time.perf_counter() - start)
    if in_nni_trial():
        report_final(metrics, arch)
    return metrics


def exit_metrics(net: Any, stats: Any, thresholds: Sequence[float], backbone_macs: Sequence[int],
                 head_macs: Sequence[int], stages: Sequence[int]) -> dict[str, Any]:
    """``default``, ``avg_macs`` and the per-exit keys of a measured early-exit network."""
    from ..earlyexit import average_macs

    out: dict[str, Any] = {"default": stats.top1, "exits": len(net.exits),
                           "avg_macs": average_macs(stats.ratios, backbone_macs, head_macs),
                           "avg_macs_cumulative": average_macs(stats.ratios, backbone_macs, head_macs,
                                                               cumulative_heads=True)}
    out.update({f"exit{s}_ratio": 0.0 for s in stages})
    names = [f"exit{e.stage}" for e in net.exits] + ["final"]
    for i, name in enumerate(names):
        out[f"{name}_ratio"] = stats.ratios[i]
        if stats.accuracies[i] is not None:
            out[f"{name}_top1"] = stats.accuracies[i]
        if i < len(thresholds):
            out[f"{name}_threshold"] = float(thresholds[i])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return trial_main(build_arg_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
