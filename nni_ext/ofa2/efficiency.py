"""Vectorised efficiency of OFA MobileNetV3 populations: FLOPs/params and per-layer-table latency.

Both models precompute, per resolution, the cost of the fixed layers and of every elastic block
for every (kernel size, expand ratio), so the cost of a population is one gather and one sum
over an ``(n, 20)`` array: a few microseconds for 100 architectures.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..cost import CostTable, LatencyTable, load_resolution_tables
from ..errors import TableError
from ..spaces.ofa_mbv3 import (
    D_COLS,
    DEPTHS,
    E_COLS,
    EXPAND_RATIOS,
    FIXED_UNITS,
    KERNEL_SIZES,
    KS_COLS,
    N_BLOCKS,
    R_COL,
    OfaMbv3Space,
    active_mask,
)


class _LayerSum:
    """Per-resolution cost = fixed layers + the sum of the active blocks' entries (``m`` metrics)."""

    #: short name, unit and default hypervolume reference of the objective returned by ``__call__``
    name: str = ""
    unit: str = ""
    reference: float = 0.0

    def __init__(self, space: OfaMbv3Space, entry: Callable[[int, str], np.ndarray]) -> None:
        """``entry(resolution, cost unit) -> (m,) costs``; builds the gather arrays."""
        self.space = space
        res = space.resolutions
        fixed = [sum(entry(r, u) for u in FIXED_UNITS) for r in res]
        self.fixed = np.stack(fixed).astype(np.float64)  # (R, m)
        blocks = [[[[entry(r, space.block_unit(b, k, e)) for e in EXPAND_RATIOS] for k in KERNEL_SIZES]
                   for b in range(N_BLOCKS)] for r in res]
        self.blocks = np.asarray(blocks, dtype=np.float64)  # (R, 20, 3, 3, m)
        self._block_index = np.arange(N_BLOCKS)[None, :]

    def totals(self, matrix: np.ndarray) -> np.ndarray:
        """``(n, m)`` costs of the rows of an index matrix."""
        X = np.asarray(matrix, dtype=np.int64)
        if X.ndim != 2 or X.shape[1] != len(self.space.labels):
            raise ValueError(f"population matrix must have shape (n, {len(self.space.labels)}); got {X.shape}")
        r = X[:, R_COL]
        per_block = self.blocks[r[:, None], self._block_index, X[:, KS_COLS], X[:, E_COLS]]  # (n, 20, m)
        active = active_mask(np.asarray(DEPTHS)[X[:, D_COLS]])
        return self.fixed[r] + np.einsum("nb,nbm->nm", active.astype(np.float64), per_block)

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        """``(n,)`` objective values in :attr:`unit`."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"objective": self.name, "unit": self.unit}


class FlopsModel(_LayerSum):
    """FLOPs (multiply-accumulates) and params from the space's exact per-layer cost tables.

    Equal to :func:`nni_ext.cost.count` of the built sub-network at its resolution.
    """

    name, unit, reference = "flops", "MFLOPs (multiply-accumulates)", 1000.0

    def __init__(self, space: OfaMbv3Space | None = None, *, tables: Mapping[int, CostTable] | None = None,
                 cache_dir: str | os.PathLike | None = None) -> None:
        space = space if space is not None else OfaMbv3Space()
        built = dict(tables) if tables is not None else {}
        for r in space.resolutions:
            if r not in built:
                built[r] = CostTable.cached(space, r, cache_dir=cache_dir)

        def entry(r: int, unit: str) -> np.ndarray:
            try:
                return np.asarray(built[r].entries[unit], dtype=np.float64)
            except KeyError:
                raise TableError(f"cost table at {r}px has no unit {unit!r}; rebuild it with CostTable.build") from None

        super().__init__(space, entry)

    def flops(self, matrix: np.ndarray) -> np.ndarray:
        """``(n,)`` int64 FLOPs (MACs)."""
        return np.rint(self.totals(matrix)[:, 0]).astype(np.int64)

    def params(self, matrix: np.ndarray) -> np.ndarray:
        """``(n,)`` int64 parameter counts."""
        return np.rint(self.totals(matrix)[:, 1]).astype(np.int64)

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return self.totals(matrix)[:, 0] / 1e6


class LatencyModel(_LayerSum):
    """Latency (ms) as the sum of per-layer table means (OFA's layout and keys; e.g. the Note10 tables)."""

    name, unit, reference = "latency", "ms", 100.0

    def __init__(self, space: OfaMbv3Space | None = None, *, tables: Mapping[int, LatencyTable] | LatencyTable,
                 source: str = "<memory>") -> None:
        space = space if space is not None else OfaMbv3Space()
        per_res = tables if isinstance(tables, Mapping) else {r: tables for r in space.resolutions}
        missing = [r for r in space.resolutions if r not in per_res]
        if missing:
            raise TableError(f"no latency table for resolution {missing[0]} (tables cover {sorted(per_res)}); "
                             "add its <resolution>_lookup_table.yaml or restrict the space's resolutions")
        self.source = source

        def entry(r: int, unit: str) -> np.ndarray:
            return np.array([per_res[r].mean(keys[r][unit])])

        keys = {r: {unit: key for key, unit in space.all_latency_keys(r).items()} for r in space.resolutions}
        super().__init__(space, entry)

    @classmethod
    def from_path(cls, path: str | os.PathLike, *, space: OfaMbv3Space | None = None) -> LatencyModel:
        """A folder of ``<resolution>_lookup_table.yaml`` (like OFA's note10/) or one table holding every key."""
        path = Path(path)
        if path.is_dir():
            return cls(space, tables=load_resolution_tables(path), source=str(path))
        return cls(space, tables=LatencyTable.load(path), source=str(path))

    def latency(self, matrix: np.ndarray) -> np.ndarray:
        """``(n,)`` latency in milliseconds."""
        return self.totals(matrix)[:, 0]

    __call__ = latency

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tables": self.source}
