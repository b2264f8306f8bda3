"""Per-search-space cost lookup tables: the cost of an architecture as a sum of table entries.

A :class:`CostTable` holds the exact FLOPs/params of every cost unit of a space at one input
size (see :meth:`nni_ext.spaces.SearchSpace.cost_units`). Looking an architecture up costs a
few microseconds and gives exactly what :func:`nni_ext.cost.count` gives for the built network.
Tables are built once and cached as JSON, keyed by the space's fingerprint.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .._io import atomic_write_json
from ..errors import TableError
from ..spaces.base import SearchSpace
from .counting import Cost, count

FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$NNI_EXT_CACHE`` or ``~/.cache/nni_ext``."""
    return Path(os.environ.get("NNI_EXT_CACHE") or Path.home() / ".cache" / "nni_ext")


class CostTable:
    """Exact FLOPs/params of every cost unit of ``space`` at ``input_size``.

    Example:
        >>> from nni_ext.spaces import create_space
        >>> space = create_space("spos")
        >>> table = CostTable.cached(space, 224)
        >>> table.cost(space.official_architecture()).flops > 300e6
        True
    """

    def __init__(self, space: SearchSpace, input_size: int, entries: Mapping[str, tuple[int, int]]) -> None:
        self.space = space
        self.input_size = int(input_size)
        self.entries: dict[str, tuple[int, int]] = {k: (int(v[0]), int(v[1])) for k, v in entries.items()}

    # ---------------------------------------------------------- build / IO
    @classmethod
    def build(cls, space: SearchSpace, input_size: int | None = None) -> CostTable:
        """Count every cost unit of the space exactly (one small forward pass each)."""
        size = int(input_size or space.default_input_size)
        entries: dict[str, tuple[int, int]] = {}
        for unit in space.all_cost_units(size):
            module, shape = space.build_cost_unit(unit, size)
            unit_cost = count(module, shape)
            entries[unit] = (unit_cost.flops, unit_cost.params)
        return cls(space, size, entries)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "space": self.space.name, "fingerprint": self.space.fingerprint(),
                "config": self.space.config, "input_size": self.input_size,
                "units": "flops = multiply-accumulates; params = parameter count",
                "entries": {k: {"flops": f, "params": p} for k, (f, p) in self.entries.items()}}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as JSON, atomically."""
        return atomic_write_json(path, self.to_json(), indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike, space: SearchSpace) -> CostTable:
        """Read a table written by :meth:`save`; refuse one built for another space or configuration."""
        try:
            data = json.loads(Path(path).read_text())
            entries = {k: (v["flops"], v["params"]) for k, v in data["entries"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TableError(f"cannot read cost table {path}: {exc}; delete it to rebuild") from None
        if data.get("format") != FORMAT_VERSION or data.get("fingerprint") != space.fingerprint():
            raise TableError(f"cost table {path} was built for another space or configuration "
                             f"({data.get('space')}, fingerprint {data.get('fingerprint')}); delete it to rebuild")
        return cls(space, data["input_size"], entries)

    @classmethod
    def cached(cls, space: SearchSpace, input_size: int | None = None,
               cache_dir: str | os.PathLike | None = None) -> CostTable:
        """Load the table from the cache, building and caching it on first use."""
        size = int(input_size or space.default_input_size)
        name = f"{space.name}-{space.fingerprint()}-{size}.json"
        path = Path(cache_dir or default_cache_dir()) / "cost_tables" / name
        if path.exists():
            try:
                return cls.load(path, space)
            except TableError:
                pass  # stale or corrupt: rebuild below
        table = cls.build(space, size)
        table.save(path)
        return table

    # -------------------------------------------------------------- lookup
    def cost(self, arch: Mapping[str, Any]) -> Cost:
        """FLOPs (MACs) and params of ``arch``: the sum of its units' entries."""
        flops = params = 0
        for unit in self.space.cost_units(arch, self.input_size):
            try:
                f, p = self.entries[unit]
            except KeyError:
                raise TableError(f"cost table of {self.space.name!r} at {self.input_size}px has no entry "
                                 f"{unit!r}; rebuild it with CostTable.build") from None
            flops += f
            params += p
        return Cost(flops, params)

    def cost_many(self, archs: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """``(n, 2)`` int64 array of (flops, params) for many architectures."""
        return np.array([[c.flops, c.params] for c in map(self.cost, archs)], dtype=np.int64).reshape(-1, 2)
