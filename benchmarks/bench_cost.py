"""Benchmark: cost of one architecture by lookup table vs exact counting (torch.utils.flop_counter).

Prints the time per architecture of both, their ratio, and checks that they agree.
    python benchmarks/bench_cost.py [--space spos] [--archs 50] [--input-size 224]
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from nni_ext.cost import CostTable, count
from nni_ext.spaces import create_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="spos")
    parser.add_argument("--archs", type=int, default=50)
    parser.add_argument("--input-size", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    space = create_space(args.space)
    size = args.input_size or space.default_input_size
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(args.archs)]

    start = time.perf_counter()
    table = CostTable.build(space, size)
    build_s = time.perf_counter() - start

    start = time.perf_counter()
    exact = [count(space.build(a), size) for a in archs]
    exact_s = (time.perf_counter() - start) / len(archs)

    repeats = max(1, 20000 // len(archs))
    start = time.perf_counter()
    for _ in range(repeats):
        looked_up = [table.cost(a) for a in archs]
    lookup_s = (time.perf_counter() - start) / (repeats * len(archs))

    assert looked_up == exact, "lookup table disagrees with exact counting"
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    print(f"space {space.name} at {size}px, {len(archs)} random architectures (lookup == exact for all)")
    print(f"table build (once, then cached): {build_s:.2f} s for {len(table.entries)} units")
    print(f"exact count (build + flop_counter): {exact_s * 1e3:.1f} ms/arch")
    print(f"lookup table:                      {lookup_s * 1e6:.1f} us/arch")
    print(f"speed-up: {exact_s / lookup_s:.0f}x")


if __name__ == "__main__":
    main()
