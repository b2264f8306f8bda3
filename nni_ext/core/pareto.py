"""Pareto kernels every part shares: objective senses, constrained non-domination, hypervolume.

Everything works on minimisation matrices ``F`` (one row per point); :class:`Objectives` turns metric
dicts with maximised keys (``default`` is usually accuracy) into such matrices and back. Keys are made
canonical through :mod:`nni_ext.core.metrics` (``latency`` is ``latency_ms``).

Example:
    >>> objs = Objectives.parse({"default": "maximize", "flops": "minimize"})
    >>> F = objs.matrix([{"default": 0.9, "flops": 300.0}, {"default": 0.8, "flops": 200.0},
    ...                  {"default": 0.7, "flops": 250.0}])
    >>> non_dominated(F).tolist()
    [0, 1]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .metrics import canonical, default_sense

MAXIMIZE = ("maximize", "max", "maximise")
MINIMIZE = ("minimize", "min", "minimise")


@dataclass(frozen=True)
class Objectives:
    """Metric keys and their senses; ``sign`` is -1 for maximised keys (so ``sign * value`` is minimised)."""

    keys: tuple[str, ...]
    maximize: tuple[bool, ...]

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | Sequence[str] | str) -> Objectives:
        """From ``{"default": "maximize", "flops": "minimize"}`` or ``"default:max,flops:min"``."""
        if isinstance(spec, str):
            pairs = []
            for part in filter(None, (p.strip() for p in spec.split(","))):
                key, _, sense = part.partition(":")
                pairs.append((key.strip(), sense.strip() or default_sense(key.strip()) or "minimize"))
            spec = dict(pairs)
        elif isinstance(spec, Sequence):
            spec = {str(k): default_sense(str(k)) or "minimize" for k in spec}
        if not isinstance(spec, Mapping) or not spec:
            raise ValueError("objectives must name at least one metric key, e.g. "
                             "{default: maximize, flops: minimize}")
        keys, senses = [], []
        for key, sense in spec.items():
            text = str(sense).lower()
            if text not in MAXIMIZE + MINIMIZE:
                raise ValueError(f"objective {key!r} has sense {sense!r}; use 'maximize' or 'minimize'")
            name = canonical(str(key))
            if name in keys:
                raise ValueError(f"objective {key!r} is named twice (as {name!r}); name each metric once")
            keys.append(name)
            senses.append(text in MAXIMIZE)
        return cls(tuple(keys), tuple(senses))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def sign(self) -> np.ndarray:
        return np.where(np.array(self.maximize), -1.0, 1.0)

    def vector(self, metrics: Mapping[str, Any]) -> np.ndarray:
        """Minimisation vector of one metric dict; NaN where a key is missing or not a finite number."""
        out = np.full(len(self.keys), np.nan)
        for i, key in enumerate(self.keys):
            value = metrics.get(key)
            if value is None:  # a dict not decoded through core.metrics: look for an alias
                value = next((v for k, v in metrics.items() if canonical(str(k)) == key), None)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out[i] = float(value)
        return out * self.sign

    def matrix(self, rows: Iterable[Mapping[str, Any]]) -> np.ndarray:
        vectors = [self.vector(m) for m in rows]
        return np.array(vectors, dtype=float).reshape(len(vectors), len(self.keys))

    def values(self, F: np.ndarray) -> np.ndarray:
        """Back from minimisation values to the metrics' own units."""
        return np.asarray(F, dtype=float) * self.sign

    def describe(self) -> dict[str, str]:
        return {k: "maximize" if m else "minimize" for k, m in zip(self.keys, self.maximize)}


def non_dominated(F: np.ndarray, cv: np.ndarray | None = None) -> np.ndarray:
    """Indices of the first front under constrained domination (feasible first; if none, least violation)."""
    F = np.asarray(F, dtype=float)
    if len(F) == 0:
        return np.zeros(0, dtype=int)
    ranks = constrained_ranks(F, cv)
    return np.flatnonzero(ranks == 0)


def non_dominated_2d(F: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of a 2-objective minimisation matrix (first of duplicates kept)."""
    order = np.lexsort((F[:, 0], F[:, 1]))  # by efficiency, then error
    best = np.minimum.accumulate(F[order, 0])
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = F[order[1:], 0] < best[:-1]
    return order[keep]


def constrained_ranks(F: np.ndarray, cv: np.ndarray | None = None) -> np.ndarray:
    """Rank of every point under constrained domination (pymoo's and Optuna's semantics).

    Feasible points (``cv <= 0``) get their non-dominated front index (0, 1, …); every infeasible point
    ranks after all feasible ones, ordered by total violation (equal violations share a rank).
    """
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    F = np.asarray(F, dtype=float)
    n = len(F)
    cv = np.zeros(n) if cv is None else np.asarray(cv, dtype=float).reshape(n)
    ranks = np.zeros(n, dtype=int)
    feasible = np.flatnonzero(cv <= 0)
    worst = -1
    if len(feasible):
        fronts = NonDominatedSorting().do(F[feasible])
        for r, front in enumerate(fronts):
            ranks[feasible[front]] = r
        worst = len(fronts) - 1
    infeasible = np.flatnonzero(cv > 0)
    if len(infeasible):
        _, order = np.unique(cv[infeasible], return_inverse=True)
        ranks[infeasible] = worst + 1 + order
    return ranks


def default_reference_point(F: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """Nadir of ``F`` pushed out by ``margin`` of the range (of the magnitude where the range is 0)."""
    F = np.asarray(F, dtype=float)
    nadir, ideal = F.max(axis=0), F.min(axis=0)
    span = nadir - ideal
    span = np.where(span > 0, span, np.maximum(np.abs(nadir), 1.0))
    return nadir + margin * span


def hypervolume(F: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume dominated by ``F`` (minimisation) up to ``reference``; points outside it add nothing."""
    from pymoo.indicators.hv import HV

    F = np.asarray(F, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if len(F) == 0:
        return 0.0
    F = F[np.all(F < reference, axis=1)]
    if F.shape[1] == 1:  # one objective: the distance from the best point to the reference
        return float(reference[0] - F[:, 0].min()) if len(F) else 0.0
    return float(HV(ref_point=reference)(F)) if len(F) else 0.0
