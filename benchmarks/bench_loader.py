"""Benchmark: images/s of the DALI CPU pipeline vs the torchvision loader on the digits folder.

    python benchmarks/bench_loader.py [--root data/digits] [--crop-size 32 224] [--workers 2] [--epochs 3]

Writes the digits dataset first if ``--root`` does not exist. Both loaders run the same
training transforms (random-resized-crop + flip) and the same val transforms.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from nni_ext.data import Preprocessing, build_loader, dali_available, write_digits


def images_per_second(root: Path, split: str, backend: str, crop: int, workers: int, epochs: int) -> float:
    loader = build_loader(root, split, batch_size=128, backend=backend, device="cpu", num_workers=workers,
                          preprocessing=Preprocessing.for_crop(crop))
    for _ in loader:  # warm-up epoch (worker start, page cache)
        pass
    start, n = time.perf_counter(), 0
    for _ in range(epochs):
        for _, labels in loader:
            n += len(labels)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/digits")
    parser.add_argument("--crop-size", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    root = Path(args.root)
    if not (root / "train").is_dir():
        write_digits(root)
    if not dali_available():
        raise SystemExit("DALI is not installed: pip install -e '.[dali]'")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.workers} workers, "
          f"torch {torch.__version__}")
    print("split  crop  torchvision img/s  DALI-CPU img/s  DALI/torchvision")
    for crop in args.crop_size:
        for split in ("train", "val"):
            tv = images_per_second(root, split, "torchvision", crop, args.workers, args.epochs)
            dali = images_per_second(root, split, "dali", crop, args.workers, args.epochs)
            print(f"{split:<6} {crop:>4}  {tv:>17.0f}  {dali:>14.0f}  {dali / tv:>16.2f}x")


if __name__ == "__main__":
    main()
