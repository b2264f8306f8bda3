"""Path samplers for supernet training: plain uniform, and SPOS's FLOPs-uniform scheme.

FLOPs-uniform (the official SPOS recipe): pick one of ``bins`` equal-width FLOPs bins between
``low`` and ``high`` uniformly, then draw uniform random paths until one falls in that bin;
after ``max_draws`` failures take an unconstrained uniform path. FLOPs come from the space's
lookup table (microseconds per path), so sampling costs nothing next to a training step.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..cost import CostTable
from ..errors import NniExtError

#: the official SPOS bounds (MACs) and bin count for the ImageNet space at 224 px
SPOS_FLOPS_RANGE = (290e6, 360e6)
SPOS_FLOPS_BINS = 7


class UniformSampler:
    """Every layer picks one of its ``num_choices`` candidates uniformly at random."""

    def __init__(self, num_layers: int, num_choices: int = 4, *, seed: int = 0) -> None:
        self.num_layers, self.num_choices = num_layers, num_choices
        self.rng = np.random.default_rng(seed)

    def uniform_path(self) -> list[int]:
        return self.rng.integers(self.num_choices, size=self.num_layers).tolist()

    def sample(self) -> list[int]:
        return self.uniform_path()

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class FlopsUniformSampler(UniformSampler):
    """SPOS's FLOPs-uniform path sampler over a :class:`CostTable` of a SPOS space."""

    def __init__(self, table: CostTable, *, low: float, high: float, bins: int = SPOS_FLOPS_BINS,
                 max_draws: int = 500, seed: int = 0) -> None:
        from ..spaces.spos import SPOS_CANDIDATES

        labels = table.space.labels
        super().__init__(len(labels), len(SPOS_CANDIDATES), seed=seed)
        if not low < high:
            raise NniExtError(f"FLOPs range low={low:g} must be below high={high:g}")
        if bins < 1 or max_draws < 1:
            raise NniExtError(f"bins={bins} and max_draws={max_draws} must be >= 1")
        # per-layer FLOPs of each candidate, so a path's FLOPs is one vectorised sum
        base = sum(table.entries[u][0] for u in table.space.all_cost_units(table.input_size) if "=" not in u)
        self.base = base
        self.layer_flops = np.array([[table.entries[f"{label}={kind}"][0] for kind in SPOS_CANDIDATES]
                                     for label in labels], dtype=np.int64)
        smallest = base + int(self.layer_flops.min(axis=1).sum())
        largest = base + int(self.layer_flops.max(axis=1).sum())
        if high <= smallest or low >= largest:
            raise NniExtError(f"FLOPs range [{low:g}, {high:g}] misses the space, whose architectures have "
                              f"{smallest:g} to {largest:g} FLOPs at {table.input_size}px")
        self.low, self.high, self.bins, self.max_draws = float(low), float(high), bins, max_draws
        self.edges = np.linspace(low, high, bins + 1)
        self.timeouts = 0

    def flops(self, path: list[int]) -> int:
        return self.base + int(self.layer_flops[np.arange(self.num_layers), path].sum())

    def sample(self) -> list[int]:
        b = int(self.rng.integers(self.bins))
        lo, hi = self.edges[b], self.edges[b + 1]
        for _ in range(self.max_draws):
            path = self.uniform_path()
            if lo <= self.flops(path) <= hi:
                return path
        self.timeouts += 1
        return self.uniform_path()

    @staticmethod
    def auto_range(table: CostTable, *, samples: int = 2000, seed: int = 0) -> tuple[float, float]:
        """5th-95th percentile of uniform paths' FLOPs: a range for spaces other than the ImageNet one."""
        rng = np.random.default_rng(seed)
        flops = [table.cost(table.space.sample(rng)).flops for _ in range(samples)]
        return float(np.percentile(flops, 5)), float(np.percentile(flops, 95))
