"""Early exits on the digits: does a network with exits keep its backbone's accuracy at a lower avg_macs?

The smallest OFA MobileNetV3 sub-network (32 px, a randomly initialised 10-class supernet) is fine-tuned on the
embedded digits (``--epochs``, NSGANetV2's recipe); the same trained backbone then gets EDANAS exit
heads after stages 2-4 (or ``--stages``), trained ``--ee-epochs`` with the backbone frozen, so the final
classifier *is* the backbone alone: its accuracy is the baseline, measured in the same run on the same
validation images. For each threshold t of ``--thresholds`` the exit rule (softmax margin >= t) gives the
early-exit accuracy and avg_macs = Σ_b r_b (B_b + C_b); the bar is accuracy >= backbone - 1 point with
avg_macs below the backbone's MACs. Then NACHOS's repair to ``--mmax-fraction`` of the backbone MACs.

    python benchmarks/bench_early_exit.py            # ~2 min on 2 idle CPU cores
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch


class Cached:
    """A loader's batches decoded once and replayed every epoch in a seeded order (no JPEG decoding per epoch)."""

    def __init__(self, loader: object) -> None:
        self.batches = [(x.clone(), y.clone()) for x, y in loader]  # type: ignore[attr-defined]
        self.order = torch.arange(len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        self.order = torch.randperm(len(self.batches), generator=torch.Generator().manual_seed(epoch))

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (self.batches[i] for i in self.order.tolist())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8, help="backbone fine-tuning epochs")
    p.add_argument("--ee-epochs", type=int, default=4, help="exit-head epochs (backbone frozen)")
    p.add_argument("--stages", default="2,3,4")
    p.add_argument("--thresholds", default="0.1,0.2,0.3,0.5,0.7,0.9")
    p.add_argument("--mmax-fraction", type=float, default=0.45)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", help="digits folder (default: written to a temporary folder)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from nni_ext.data import Preprocessing, build_loader, write_digits
    from nni_ext.earlyexit import average_macs, exit_statistics, nachos_repair
    from nni_ext.earlyexit.train import collect_exit_logits, train_exits
    from nni_ext.ofa2.finetune import finetune_epochs, finetune_recipe
    from nni_ext.spaces.ofa_mbv3 import subnet, to_ofa
    from nni_ext.spaces.ofa_mbv3_ee import OfaMbv3EeSpace
    from nni_ext.trainers.evaluation import recalibrate_batchnorm

    tmp = tempfile.TemporaryDirectory()
    data = Path(args.data) if args.data else Path(tmp.name) / "digits"
    if not args.data:
        write_digits(data, size=32)
    stages = [int(s) for s in args.stages.split(",")]
    space = OfaMbv3EeSpace(num_classes=10, resolutions=[32], thresholds=[0.1, 1.0], stages=stages)
    arch = {**space.smallest(), **{f"t_{s}": 0.1 for s in stages}}
    arch = space.validate(arch)
    device = torch.device("cpu")
    prep = Preprocessing.for_crop(32)

    def loader(split: str, batch: int) -> Cached:
        return Cached(build_loader(data, split, batch_size=batch, train=split == "train", backend="torchvision",
                                   device=device, preprocessing=prep, num_workers=0, seed=0))

    start = time.perf_counter()
    backbone = subnet(space.supernet(), to_ofa(arch))
    recalibrate_batchnorm(backbone, [backbone], loader("train", 100), 5)
    recipe = finetune_recipe(lr=0.05, batch_size=64, seed=0, quiet=True)
    finetune_epochs(backbone, loader("train", 64), epochs=args.epochs, recipe=recipe, device=device)
    tuned = time.perf_counter() - start
    net = space.network(copy.deepcopy(backbone), arch, 32)
    print(f"backbone fine-tuned {args.epochs} epochs in {time.perf_counter() - start:.0f} s", flush=True)
    train_exits(net, loader("train", 64), epochs=args.ee_epochs, joint=False, lr=0.05)
    logits, labels = collect_exit_logits(net, loader("val", 200))
    costs = net.exit_costs(32)
    b, c = costs["backbone_macs"], costs["head_macs"]
    backbone_macs = b[-1] + c[-1]
    backbone_top1 = int(logits[-1].argmax(1).eq(labels).sum()) / len(labels)
    print(f"backbone: {backbone_top1:.4f} top-1, {backbone_macs / 1e6:.3f} M MACs; exits after stages {stages} "
          f"(pooling {[e.pool for e in net.exits]}, head MACs {[round(x / 1e6, 3) for x in c[:-1]]} M); "
          f"{len(labels)} validation images; fine-tuning {tuned:.0f} s, total {time.perf_counter() - start:.0f} s")
    rows = []
    for t in (float(x) for x in args.thresholds.split(",")):
        thresholds = [t] * len(net.exits)
        stats = exit_statistics(logits, labels, thresholds)
        avg = average_macs(stats.ratios, b, c)
        rows.append({"t": t, "top1": stats.top1, "avg_macs": avg, "ratios": [round(r, 3) for r in stats.ratios],
                     "meets_bar": stats.top1 >= backbone_top1 - 0.01 and avg < backbone_macs})
        print(f"t={t:.2f}: top-1 {stats.top1:.4f} ({100 * (stats.top1 - backbone_top1):+.2f} points), avg_macs "
              f"{avg / 1e6:.3f} M ({avg / backbone_macs:.1%} of the backbone), exit ratios {rows[-1]['ratios']}")
    mmax = args.mmax_fraction * backbone_macs
    repaired = nachos_repair(logits, labels, [0.9] * len(net.exits), b, c, mmax=mmax,
                             top1_min=backbone_top1 - 0.01)
    print(f"NACHOS repair from t=0.9 to mmax {mmax / 1e6:.3f} M with top1_min {backbone_top1 - 0.01:.4f}: thresholds "
          f"{list(repaired.thresholds)}, avg_macs {repaired.avg_macs / 1e6:.3f} M, top-1 {repaired.top1:.4f}, "
          f"satisfied {repaired.satisfied}, {repaired.steps} steps")
    best = [r for r in rows if r["meets_bar"]]
    print(json.dumps({"backbone_top1": backbone_top1, "backbone_macs": backbone_macs,
                      "best": min(best, key=lambda r: r["avg_macs"]) if best else None}))


if __name__ == "__main__":
    main()
