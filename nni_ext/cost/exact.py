"""Exact costs of architectures for tuners: every key of ``EXACT_KEYS`` from a space's cost tables.

:class:`ExactCosts` gives ``flops``, ``params``, ``activations``, ``peak_activation_bytes`` and ``tiny_ml``
of an architecture of an nni_ext space from the space's cost tables (exact, never predicted nor trained), at
the architecture's own input resolution where the space has one (OFA's ``r``), so a tuner can check
constraints on them before dispatch and fill them into results.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from ..spaces.base import SearchSpace
from .counting import Cost
from .table import CostTable
from .tiny_ml import TinyML


class ExactCosts:
    """Exact ``flops``, ``params``, ``activations``, ``peak_activation_bytes`` and ``tiny_ml`` of architectures.

    The input size of an architecture is the space's ``input_size_of(arch)`` where it has one (OFA's ``r``),
    else ``input_size`` (default: the space's); one cached :class:`CostTable` per input size.
    """

    def __init__(self, space: SearchSpace, input_size: int | None = None, tiny_ml: TinyML | None = None,
                 cache_dir: str | os.PathLike | None = None) -> None:
        self.space = space
        self.input_size = int(input_size or space.default_input_size)
        self.tiny_ml = tiny_ml or TinyML()
        self.cache_dir = cache_dir
        self.tables: dict[int, CostTable] = {}

    def table(self, input_size: int) -> CostTable:
        """The cost table at ``input_size`` (built or read from the cache on first use)."""
        if input_size not in self.tables:
            self.tables[input_size] = CostTable.cached(self.space, input_size, cache_dir=self.cache_dir)
        return self.tables[input_size]

    def size_of(self, arch: Mapping[str, Any]) -> int:
        own = getattr(self.space, "input_size_of", None)
        size = own(arch) if own is not None else None
        return int(size) if size is not None else self.input_size

    def cost(self, params: Mapping[str, Any]) -> Cost:
        """The :class:`Cost` of a parameter dict (validated against the space)."""
        arch = self.space.validate(dict(params))
        return self.table(self.size_of(arch)).cost(arch)

    def metrics(self, params: Mapping[str, Any]) -> dict[str, float]:
        """``{key: value}`` for every key of :data:`EXACT_KEYS`."""
        c = self.cost(params)
        return {"flops": float(c.flops), "params": float(c.params), "activations": float(c.activations),
                "peak_activation_bytes": float(c.peak_activation_bytes),
                "tiny_ml": self.tiny_ml.score(c.params, c.flops, c.activations)}
