"""Benchmark: does SAM (FlatNAS: adaptive, rho 2.0) give flatter networks than SGD? Weight-noise robustness and mCE.

The same small CNN (same initialisation, same batches) is trained on the embedded digits with SGD (CNAS's
recipe: lr 0.05 here, momentum 0.9, wd 5e-5, cosine per step) and with adaptive SAM over that SGD, for
several seeds. Per run: validation top-1, FlatNAS's ``robustness`` (mean |acc(w) - acc(w + 0.05 w z)| over
20 draws; lower is flatter), the unnormalised mCE on the 15 ImageNet-C corruptions x 5 severities of the
validation images, and seconds per training step. The ratio SAM/SGD of each figure is printed.

    python benchmarks/bench_sam.py [--seeds 5] [--steps 400] [--rhos 2.0,0.5] [--mce-per-class 4]
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nni_ext.data import write_digits
from nni_ext.data.in_memory import TensorBatches, load_split
from nni_ext.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from nni_ext.robustness import SAM, evaluate_corruptions, weight_noise_robustness, write_corruptions

MEAN, STD = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)


def small_cnn(seed: int, width: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 10))


def train(model: nn.Module, data, *, rho: float | None, steps: int, seed: int) -> tuple[nn.Module, float]:
    kw = dict(lr=0.05, momentum=0.9, weight_decay=5e-5)
    opt = (torch.optim.SGD(model.parameters(), **kw) if rho is None
           else SAM(model.parameters(), torch.optim.SGD, rho=rho, adaptive=True, **kw))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    batches = TensorBatches(data, batch_size=64, mean=MEAN, std=STD, seed=seed).cycle()
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        x, y = next(batches)
        loss_fn(model(x), y).backward()
        if rho is None:
            opt.step()
            opt.zero_grad()
        else:
            opt.first_step(zero_grad=True)
            loss_fn(model(x), y).backward()
            opt.second_step(zero_grad=True)
        sched.step()
    return model.eval(), (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--size", type=int, default=16, help="training resolution (default 16)")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--rhos", default="2.0,0.5", help="SAM radii to compare with SGD (adaptive)")
    parser.add_argument("--mce-per-class", type=int, default=4, help="validation images per class corrupted (0: skip)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rhos = [float(r) for r in args.rhos.split(",") if r]
    work = Path(tempfile.mkdtemp(prefix="bench_sam_"))
    write_digits(work / "digits", size=32)
    train_data = load_split(work / "digits", "train", image_size=args.size)
    val = load_split(work / "digits", "val", image_size=args.size)
    vx = (val.images.float() / 255 - MEAN.view(1, -1, 1, 1)) / STD.view(1, -1, 1, 1)
    if args.mce_per_class:
        start = time.perf_counter()
        write_corruptions(work / "digits", work / "c", per_class=args.mce_per_class, seed=0, workers=args.threads)
        print(f"corrupted {10 * args.mce_per_class} val images x 15 x 5 in {time.perf_counter() - start:.0f} s")

    methods = ["sgd"] + [f"sam{r:g}" for r in rhos]
    results: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
          f"{args.steps} steps, batch 64, {args.size} px, width {args.width}")
    print(f"{'seed':>4} {'method':>7} {'top1':>6} {'robust':>7} {'mCE %':>6} {'ms/step':>7}")
    for seed in range(args.seeds):
        for method, rho in zip(methods, [None, *rhos]):
            model, sec = train(small_cnn(seed, args.width), train_data, rho=rho, steps=args.steps, seed=seed)
            r = weight_noise_robustness(model, (vx, val.labels), sigma=0.05, draws=20, seed=0)
            mce = (evaluate_corruptions(model, work / "c", resolution=args.size, workers=0, clean=False).mce
                   if args.mce_per_class else float("nan"))
            results[method].append({"top1": r.accuracy, "robustness": r.robustness, "mce": mce, "sec": sec})
            print(f"{seed:>4} {method:>7} {r.accuracy:6.3f} {r.robustness:7.4f} {mce:6.1f} {1000 * sec:7.1f}",
                  flush=True)
    print("\nmean over seeds (ratio to SGD)")
    base = {k: np.mean([row[k] for row in results["sgd"]]) for k in ("top1", "robustness", "mce", "sec")}
    for method in methods:
        m = {k: np.mean([row[k] for row in results[method]]) for k in base}
        wins = sum(a["robustness"] < b["robustness"] for a, b in zip(results[method], results["sgd"]))
        print(f"{method:>7}: top1 {m['top1']:.3f}  robustness {m['robustness']:.4f} "
              f"(x{m['robustness'] / base['robustness']:.2f}, lower than SGD in {wins}/{args.seeds} seeds)  "
              f"mCE {m['mce']:.1f} % (x{m['mce'] / base['mce']:.2f})  {1000 * m['sec']:.1f} ms/step "
              f"(x{m['sec'] / base['sec']:.2f})")


if __name__ == "__main__":
    main()
