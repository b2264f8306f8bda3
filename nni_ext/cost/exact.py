"""Exact costs of architectures for tuners: every key of ``EXACT_KEYS`` (and ``latency_ms``) from tables.

:class:`ExactCosts` gives ``flops``, ``params``, ``activations``, ``peak_activation_bytes`` and ``tiny_ml``
of an architecture of an nni_ext space from the space's cost tables (exact, never predicted nor trained), at
the architecture's own input resolution where the space has one (OFA's ``r``), so a tuner can check
constraints on them before dispatch and fill them into results.

``latency_ms`` is exact too where a table gives it: per-layer latency tables (:class:`LatencyTable`, e.g.
OFA's Note10 ones: the sum of ``space.latency_keys(arch, r)``'s means, one table per resolution or one for
all), or a space's own ``exact_metrics(arch)`` hook (NAS-Bench-201 with a ``dataset``: its measured latency).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from ..errors import TableError
from ..spaces.base import SearchSpace
from .counting import Cost
from .latency import LatencyTable, load_resolution_tables
from .table import CostTable
from .tiny_ml import EXACT_KEYS, TinyML

#: the largest number of architectures whose metrics are remembered (a tuner asks for the same ones often)
CACHE_SIZE = 200_000

LatencyTables = LatencyTable | Mapping[int, LatencyTable]


def load_latency_tables(path: str | os.PathLike) -> LatencyTables:
    """A folder of ``<resolution>_lookup_table.yaml`` (OFA's layout) or one table file holding every key."""
    path = Path(path)
    if path.is_dir():
        return load_resolution_tables(path)
    if not path.exists():
        raise TableError(f"latency table {path} does not exist; give a table file or a folder of "
                         "'<resolution>_lookup_table.yaml' files (e.g. OFA's note10/)")
    return LatencyTable.load(path)


class ExactCosts:
    """Exact ``flops``, ``params``, ``activations``, ``peak_activation_bytes``, ``tiny_ml`` (and ``latency_ms``).

    The input size of an architecture is the space's ``input_size_of(arch)`` where it has one (OFA's ``r``),
    else ``input_size`` (default: the space's); one cached :class:`CostTable` per input size.

    ``latency``: per-layer latency tables (one :class:`LatencyTable` for every input size, or
    ``{input size: table}``, or a path :func:`load_latency_tables` reads); ``latency_ms`` is then the sum of
    the table means of ``space.latency_keys(arch, size)``. Without them, a space with an ``exact_metrics(arch)``
    hook (and ``exact_metric_keys``) supplies its own exact metrics, e.g. NAS-Bench-201's tabulated latency.
    :attr:`keys` lists what :meth:`metrics` returns.
    """

    def __init__(self, space: SearchSpace, input_size: int | None = None, tiny_ml: TinyML | None = None,
                 cache_dir: str | os.PathLike | None = None,
                 latency: LatencyTables | str | os.PathLike | None = None) -> None:
        self.space = space
        self.input_size = int(input_size or space.default_input_size)
        self.tiny_ml = tiny_ml or TinyML()
        self.cache_dir = cache_dir
        self.tables: dict[int, CostTable] = {}
        self.latency = load_latency_tables(latency) if isinstance(latency, (str, os.PathLike)) else latency
        own = tuple(getattr(space, "exact_metric_keys", ()) or ())
        extra = ("latency_ms",) if self.latency is not None else ()
        #: every key :meth:`metrics` returns
        self.keys: tuple[str, ...] = tuple(dict.fromkeys((*EXACT_KEYS, *extra, *own)))
        self._cache: dict[tuple[Any, ...], dict[str, float]] = {}

    @classmethod
    def for_space(cls, name: str, space_args: Mapping[str, Any] | None = None, input_size: int | None = None,
                  tiny_ml: TinyML | None = None, latency: LatencyTables | str | os.PathLike | None = None
                  ) -> ExactCosts:
        """The exact costs of the registered space ``name`` (with ``space_args``), as a tuner's classArgs give it.

        The table at the default input size is built (or read from the cache) now, not at the first request.
        """
        from ..spaces import create_space

        model = cls(create_space(name, **dict(space_args or {})), input_size, tiny_ml, latency=latency)
        model.table(model.input_size)
        return model

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

    def latency_table(self, input_size: int) -> LatencyTable:
        """The per-layer latency table at ``input_size`` (one clear error when there is none for it)."""
        if self.latency is None:
            raise TableError("no latency table given; give latency_table (a file, or a folder of "
                             "'<resolution>_lookup_table.yaml')")
        if isinstance(self.latency, LatencyTable):
            return self.latency
        if input_size not in self.latency:
            raise TableError(f"no latency table for input size {input_size} (tables cover {sorted(self.latency)}); "
                             "add its <resolution>_lookup_table.yaml or restrict the space's resolutions")
        return self.latency[input_size]

    def latency_ms(self, params: Mapping[str, Any]) -> float:
        """Latency (ms) of an architecture: the sum of its layers' table means at its input size."""
        arch = self.space.validate(dict(params))
        return self._latency(arch, self.size_of(arch))

    def _latency(self, arch: Mapping[str, Any], size: int) -> float:
        return self.latency_table(size).predict(self.space.latency_keys(arch, size))

    def metrics(self, params: Mapping[str, Any]) -> dict[str, float]:
        """``{key: value}`` for every key of :attr:`keys` (remembered per architecture)."""
        key = tuple(sorted((k, repr(v)) for k, v in params.items()))
        hit = self._cache.get(key)
        if hit is not None:
            return dict(hit)
        arch = self.space.validate(dict(params))
        size = self.size_of(arch)
        c = self.table(size).cost(arch)
        out = {"flops": float(c.flops), "params": float(c.params), "activations": float(c.activations),
               "peak_activation_bytes": float(c.peak_activation_bytes),
               "tiny_ml": self.tiny_ml.score(c.params, c.flops, c.activations)}
        hook = getattr(self.space, "exact_metrics", None)
        if hook is not None:
            out.update({k: float(v) for k, v in hook(arch).items()})
        if self.latency is not None:
            out["latency_ms"] = self._latency(arch, size)  # validated once, above
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = out
        return dict(out)
