"""Benchmark: SPOS tester seconds per architecture (BN recalibration + evaluation), torchvision vs DALI loaders.

    python benchmarks/bench_tester.py --checkpoint runs/quickstart/supernet/checkpoint.pth \
        --data runs/quickstart/data/digits

Runs the tester in-process (no interpreter start-up) for ``--archs`` random architectures of the
checkpoint's space with each loader back-end, and prints seconds per architecture and the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nni_ext.data import dali_available
from nni_ext.trainers.checkpoint import read_checkpoint, space_of
from nni_ext.trials.spos_tester import build_arg_parser, run


def seconds_per_arch(checkpoint: str, data: str, backend: str, archs: list[dict], recal: int) -> float:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, arch in enumerate(archs):
            path = Path(tmp) / f"arch{i}.json"
            path.write_text(json.dumps(arch))
            args = build_arg_parser().parse_args(["--checkpoint", checkpoint, "--data", data, "--arch", str(path),
                                                  "--backend", backend, "--recal-batches", str(recal),
                                                  "--workers", "2"])
            start = time.perf_counter()
            run(args)
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--archs", type=int, default=5)
    parser.add_argument("--recal-batches", type=int, default=20)
    args = parser.parse_args()
    space = space_of(read_checkpoint(args.checkpoint))
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(args.archs)]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"{args.archs} architectures, {args.recal_batches} recalibration batches of 128, full val split")
    tv = seconds_per_arch(args.checkpoint, args.data, "torchvision", archs, args.recal_batches)
    print(f"torchvision: {tv:.2f} s/architecture")
    if dali_available():
        dali = seconds_per_arch(args.checkpoint, args.data, "dali", archs, args.recal_batches)
        print(f"DALI (CPU):  {dali:.2f} s/architecture  ({tv / dali:.2f}x faster than torchvision)")


if __name__ == "__main__":
    main()
