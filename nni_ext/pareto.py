"""Pareto kernels on top of pymoo: objective senses, constrained non-domination, hypervolume, picking points.

Everything works on minimisation matrices ``F`` (one row per point); :class:`Objectives` turns metric
dicts with maximised keys (``default`` is usually accuracy) into such matrices and back.

Example:
    >>> objs = Objectives.parse({"default": "maximize", "flops": "minimize"})
    >>> F = objs.matrix([{"default": 0.9, "flops": 300.0}, {"default": 0.8, "flops": 200.0},
    ...                  {"default": 0.7, "flops": 250.0}])
    >>> non_dominated(F).tolist()
    [0, 1]
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

MAXIMIZE = ("maximize", "max", "maximise")
MINIMIZE = ("minimize", "min", "minimise")


@dataclass(frozen=True)
class Objectives:
    """Metric keys and their senses; ``sign`` is -1 for maximised keys (so ``sign * value`` is minimised)."""

    keys: tuple[str, ...]
    maximize: tuple[bool, ...]

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | Sequence[str] | str) -> "Objectives":
        """From ``{"default": "maximize", "flops": "minimize"}`` or ``"default:max,flops:min"``."""
        if isinstance(spec, str):
            pairs = []
            for part in filter(None, (p.strip() for p in spec.split(","))):
                key, _, sense = part.partition(":")
                pairs.append((key.strip(), sense.strip() or "minimize"))
            spec = dict(pairs)
        elif isinstance(spec, Sequence):
            spec = {str(k): "minimize" for k in spec}
        if not isinstance(spec, Mapping) or not spec:
            raise ValueError("objectives must name at least one metric key, e.g. "
                             "{default: maximize, flops: minimize}")
        keys, senses = [], []
        for key, sense in spec.items():
            text = str(sense).lower()
            if text not in MAXIMIZE + MINIMIZE:
                raise ValueError(f"objective {key!r} has sense {sense!r}; use 'maximize' or 'minimize'")
            keys.append(str(key))
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
    return float(HV(ref_point=reference)(F)) if len(F) else 0.0


_PREF = re.compile(r"^\s*([^#+]+?)\s*#\s*([-+0-9.eE_]+)\s*$")


def parse_preference(text: str, objectives: Objectives) -> np.ndarray:
    """``"default#0.80+flops#150e6"`` -> a minimisation reference vector (objectives not named: their ideal)."""
    wanted: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split("+"))):
        match = _PREF.match(part)
        if not match:
            raise ValueError(f"preference {part!r} must look like KEY#VALUE, e.g. default#0.80+flops#150e6")
        key, value = match.group(1), match.group(2).replace("_", "")
        if key not in objectives.keys:
            raise ValueError(f"preference names {key!r}, which is not an objective; objectives: "
                             f"{', '.join(objectives.keys)}")
        try:
            wanted[key] = float(value)
        except ValueError:
            raise ValueError(f"preference {part!r}: {value!r} is not a number") from None
    if not wanted:
        raise ValueError("the preference is empty; write it like default#0.80+flops#150e6")
    return np.array([wanted.get(k, np.nan) for k in objectives.keys]) * objectives.sign


def _normalise(F: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    ideal, nadir = F.min(axis=0), F.max(axis=0)
    span = np.where(nadir > ideal, nadir - ideal, 1.0)
    return [(x - ideal) / span for x in (F, *others)]


def rank_by_preference(F: np.ndarray, preference: np.ndarray) -> np.ndarray:
    """Indices of ``F`` ordered by achievement scalarization (pymoo's ASF) towards ``preference``.

    Objectives are normalised to [0, 1] over ``F``; an objective the preference leaves out (NaN) is
    aimed at its ideal value.
    """
    from pymoo.decomposition.asf import ASF

    F = np.asarray(F, dtype=float)
    preference = np.where(np.isnan(preference), F.min(axis=0), preference)
    Fn, zn = _normalise(F, preference[None, :])
    scores = ASF().do(Fn, weights=np.ones(F.shape[1]), utopian_point=zn[0])
    return np.argsort(np.asarray(scores).reshape(-1), kind="stable")


def rank_by_tradeoff(F: np.ndarray, epsilon: float = 0.125) -> np.ndarray:
    """Indices of a front ordered by trade-off (the least gain-per-sacrifice to a neighbour, largest first).

    The measure of pymoo's ``HighTradeoffPoints`` (Rachmawati & Srinivasan), on objectives normalised
    over ``F``; extreme points, which have no neighbour to trade with, come last.
    """
    from pymoo.core.decision_making import NeighborFinder

    F = np.asarray(F, dtype=float)
    if len(F) <= 2:
        return np.arange(len(F))
    (Fn,) = _normalise(F)
    finder = NeighborFinder(Fn, epsilon=epsilon, n_min_neigbors="auto", consider_2d=False)
    mu = np.full(len(F), -np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(len(F)):
            diff = Fn[finder.find(i)] - Fn[i]
            sacrifice, gain = np.maximum(0, diff).sum(axis=1), np.maximum(0, -diff).sum(axis=1)
            ratio = sacrifice / gain
            mu[i] = np.nanmin(ratio) if np.isfinite(ratio).any() else -np.inf
    return np.argsort(-mu, kind="stable")


def pick(F: np.ndarray, n: int, *, preference: np.ndarray | None = None, always: int | None = None) -> list[int]:
    """Pick ``n`` indices of ``F``: by preference (ASF) or else by trade-off; ``always`` is included first."""
    if n < 1:
        raise ValueError(f"n={n} must be at least 1")
    order = rank_by_preference(F, preference) if preference is not None else rank_by_tradeoff(F)
    chosen = [] if always is None else [int(always)]
    for i in order:
        if len(chosen) >= n:
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    return chosen
