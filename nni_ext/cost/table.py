"""Per-search-space cost lookup tables: the cost of an architecture as a sum of table entries.

A :class:`CostTable` holds the exact FLOPs, params, activations and peak activation working set of every
cost unit of a space at one input size (see :meth:`nni_ext.spaces.SearchSpace.cost_units`). Looking an
architecture up costs a few microseconds and gives exactly what :func:`nni_ext.cost.count` gives for the
built network: FLOPs, params and activations are sums over the units, the peak is the maximum of the units'
own peaks (every unit reports the largest working set of its own layers). Tables are built once and cached
as JSON, keyed by the space's fingerprint and :data:`FORMAT_VERSION` (a table of an older format is rebuilt).
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
from .counting import FLOAT32_BYTES, Cost, count

#: 1: flops/params; 2: also activations and peak activation elements per unit
FORMAT_VERSION = 2


def default_cache_dir() -> Path:
    """``$NNI_EXT_CACHE`` or ``~/.cache/nni_ext``."""
    return Path(os.environ.get("NNI_EXT_CACHE") or Path.home() / ".cache" / "nni_ext")


class CostTable:
    """Exact FLOPs/params/activations/peak of every cost unit of ``space`` at ``input_size``.

    :attr:`entries` maps a unit to ``(flops, params)``, :attr:`memory` to ``(activations, peak elements)``;
    :meth:`cost` turns peak elements into bytes with :attr:`bytes_per_element` (float32: 4).

    Example:
        >>> from nni_ext.spaces import create_space
        >>> space = create_space("spos")
        >>> table = CostTable.cached(space, 224)
        >>> table.cost(space.official_architecture()).flops > 300e6
        True
    """

    def __init__(self, space: SearchSpace, input_size: int, entries: Mapping[str, tuple[int, int]],
                 memory: Mapping[str, tuple[int, int]] | None = None, *,
                 bytes_per_element: int = FLOAT32_BYTES) -> None:
        self.space = space
        self.input_size = int(input_size)
        self.entries: dict[str, tuple[int, int]] = {k: (int(v[0]), int(v[1])) for k, v in entries.items()}
        self.memory: dict[str, tuple[int, int]] = {k: (int(v[0]), int(v[1])) for k, v in (memory or {}).items()}
        self.bytes_per_element = int(bytes_per_element)

    # ---------------------------------------------------------- build / IO
    @classmethod
    def build(cls, space: SearchSpace, input_size: int | None = None) -> CostTable:
        """Count every cost unit of the space exactly (one small forward pass each)."""
        size = int(input_size or space.default_input_size)
        entries: dict[str, tuple[int, int]] = {}
        memory: dict[str, tuple[int, int]] = {}
        for unit in space.all_cost_units(size):
            module, shape = space.build_cost_unit(unit, size)
            unit_cost = count(module, shape, bytes_per_element=1)
            entries[unit] = (unit_cost.flops, unit_cost.params)
            memory[unit] = (unit_cost.activations, unit_cost.peak_activation_bytes)
        return cls(space, size, entries, memory)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "space": self.space.name, "fingerprint": self.space.fingerprint(),
                "config": self.space.config, "input_size": self.input_size,
                "units": "flops = multiply-accumulates; params = parameter count; activations = output elements "
                         "of conv/linear/BN/pooling/flatten layers; peak_activation_elements = largest input+output "
                         "elements of one such layer call",
                "entries": {k: {"flops": f, "params": p, "activations": self.memory[k][0],
                                "peak_activation_elements": self.memory[k][1]}
                            for k, (f, p) in self.entries.items()}}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as JSON, atomically."""
        return atomic_write_json(path, self.to_json(), indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike, space: SearchSpace) -> CostTable:
        """Read a table written by :meth:`save`; refuse one built for another space or configuration."""
        try:
            data = json.loads(Path(path).read_text())
            stale = data.get("format") != FORMAT_VERSION or data.get("fingerprint") != space.fingerprint()
            if not stale:
                entries = {k: (v["flops"], v["params"]) for k, v in data["entries"].items()}
                memory = {k: (v["activations"], v["peak_activation_elements"]) for k, v in data["entries"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TableError(f"cannot read cost table {path}: {exc}; delete it to rebuild") from None
        if stale:
            raise TableError(f"cost table {path} was built for another space or configuration ({data.get('space')}, "
                             f"fingerprint {data.get('fingerprint')}, table format {data.get('format')}, this "
                             f"version reads {FORMAT_VERSION}); delete it to rebuild")
        return cls(space, data["input_size"], entries, memory)

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
        """FLOPs (MACs), params and activations of ``arch`` (sums over its units) and its peak (their maximum)."""
        flops = params = activations = peak = 0
        for unit in self.space.cost_units(arch, self.input_size):
            try:
                f, p = self.entries[unit]
                a, m = self.memory[unit]
            except KeyError:
                raise TableError(f"cost table of {self.space.name!r} at {self.input_size}px has no entry "
                                 f"{unit!r}; rebuild it with CostTable.build") from None
            flops += f
            params += p
            activations += a
            peak = max(peak, m)
        return Cost(flops, params, activations, peak * self.bytes_per_element)

    def cost_many(self, archs: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """``(n, 2)`` int64 array of (flops, params) for many architectures."""
        return np.array([[c.flops, c.params] for c in map(self.cost, archs)], dtype=np.int64).reshape(-1, 2)
