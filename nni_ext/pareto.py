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

import re

import numpy as np

from .core.pareto import MAXIMIZE as MAXIMIZE
from .core.pareto import MINIMIZE as MINIMIZE
from .core.pareto import Objectives as Objectives
from .core.pareto import constrained_ranks as constrained_ranks
from .core.pareto import default_reference_point as default_reference_point
from .core.pareto import hypervolume as hypervolume
from .core.pareto import non_dominated as non_dominated
from .core.pareto import non_dominated_2d as non_dominated_2d

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
