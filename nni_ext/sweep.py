"""Kernels of MOOD-NAS's adaptive weighted-sum sweep over a regularisation strength ν (numpy only, no NNI).

A trial minimises ``(1 - ν) * C + ν * R`` (``C`` the criterion loss, ``R`` the regularisation loss) and
reports the pair ``(R, C)``. The sweep keeps the non-dominated pairs, sorted by ``R``; between every two
neighbours ``a``, ``b`` it measures the distance in objectives normalised to [0, 1] over the front, and
proposes for the widest gap the weight normal to the segment ``ab`` in the trial's raw units: the ν for
which ``a`` and ``b`` have the same weighted sum, so that a trial with that ν lands between them on a
convex front. A gap is *visited* once its ν has been tried (or is being tried); the sweep ends when the
widest unvisited gap is narrower than ``delta``.

Differences from MOOD-NAS's ``WeightEstimator`` (github.com/iksmada/MOOD-NAS): the same normal weight
(its 2-D linear solve ``w·(b - a) = 0, w_R + w_C = 1`` gives ν = w_R below), but distances are normalised
by the front's min/max (MOOD-NAS divides by the max only), pairs are always adjacent (its search skips a
point after a visited pair), "visited" is defined by the ν tried rather than by the pair of points (so a
resumed sweep recovers it from the tried ν alone), and it stops when the widest unvisited gap is below
``delta`` (MOOD-NAS: at or below).

Example:
    >>> def trial(nu):  # minimiser of (1-nu)*C + nu*R on the front sqrt(R) + sqrt(C) = 1
    ...     return (1 - nu) ** 2, nu ** 2  # on this front the normal weight of two points is their mean ν
    >>> tried = run_sweep(trial, initial=(0.2, 0.0), delta=0.3)
    >>> [round(nu, 4) for nu, _, _ in tried]
    [0.2, 0.0, 0.1, 0.15, 0.05, 0.175, 0.125, 0.075]
    >>> F = np.array([(r, c) for _, r, c in tried])
    >>> bool(normalised_gaps(F[front_order(F)]).max() < 0.3)
    True
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np

from .pareto import non_dominated_2d

#: two weights closer than this (relative) are the same weight
WEIGHT_RTOL = 1e-12


class Gap(NamedTuple):
    """A pair of neighbours on the front: normalised ``distance``, row indices ``left``/``right`` of the
    points (``left`` has the smaller ``R``) and the normal weight ``nu`` between them."""

    distance: float
    left: int
    right: int
    nu: float


def front_order(F: np.ndarray) -> np.ndarray:
    """Row indices of the non-dominated rows of ``F`` (columns ``R``, ``C``, both minimised), sorted by ``R``.

    Rows with a non-finite value are ignored; of duplicate rows the first is kept. Along the result ``R``
    strictly increases and ``C`` strictly decreases.

    Example:
        >>> front_order(np.array([[1.0, 0.0], [0.5, 0.5], [0.6, 0.6], [0.0, 1.0], [0.5, 0.5]])).tolist()
        [3, 1, 0]
    """
    F = np.asarray(F, dtype=float).reshape(-1, 2)
    rows = np.flatnonzero(np.isfinite(F).all(axis=1))
    if len(rows) == 0:
        return np.zeros(0, dtype=int)
    keep = rows[non_dominated_2d(F[rows])]
    return keep[np.lexsort((keep, F[keep, 0]))]


def normalised_gaps(front: np.ndarray) -> np.ndarray:
    """Euclidean distances between consecutive rows of ``front`` (sorted by ``R``), each objective scaled to
    [0, 1] by its min/max over ``front`` (an objective without spread is left unscaled).

    Example:
        >>> normalised_gaps(np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 0.0]])).round(4).tolist()
        [0.7071, 0.7071]
    """
    front = np.asarray(front, dtype=float).reshape(-1, 2)
    if len(front) < 2:
        return np.zeros(0)
    low, high = front.min(axis=0), front.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    scaled = (front - low) / span
    return np.linalg.norm(np.diff(scaled, axis=0), axis=1)


def normal_weight(a: Sequence[float], b: Sequence[float]) -> float:
    """The ν for which ``(1 - ν) * C + ν * R`` is equal at ``a = (R_a, C_a)`` and ``b = (R_b, C_b)``.

    With ``R_a < R_b`` and ``C_a > C_b``: ``ν = (C_a - C_b) / ((C_a - C_b) + (R_b - R_a))``, in (0, 1).
    The order of ``a`` and ``b`` does not matter; two points where one dominates the other (or equal
    points) have no such weight in [0, 1] and raise ``ValueError``.

    Example:
        >>> normal_weight((0.64, 0.04), (1.0, 0.0))
        0.1
    """
    (ra, ca), (rb, cb) = (float(a[0]), float(a[1])), (float(b[0]), float(b[1]))
    if ra > rb:
        (ra, ca), (rb, cb) = (rb, cb), (ra, ca)
    dc, dr = ca - cb, rb - ra
    if not (dc > 0 and dr > 0):
        raise ValueError(f"points {tuple(a)} and {tuple(b)} are not mutually non-dominated; "
                         "no weight in (0, 1) is normal to the segment between them")
    return dc / (dc + dr)


def same_weight(x: float, y: float, rtol: float = WEIGHT_RTOL) -> bool:
    """Whether two weights are the same (within ``rtol`` relative)."""
    return x == y or abs(x - y) <= rtol * max(abs(x), abs(y))


def was_tried(nu: float, tried: Iterable[float], rtol: float = WEIGHT_RTOL) -> bool:
    """Whether ``nu`` equals (within ``rtol``) one of ``tried``."""
    return any(same_weight(nu, t, rtol) for t in tried)


def open_gaps(F: np.ndarray, tried: Iterable[float], delta: float) -> list[Gap]:
    """The unvisited gaps of the front of ``F`` at least ``delta`` wide, widest first.

    ``F`` holds every successful result ``(R, C)`` (dominated ones are dropped here); ``tried`` every ν
    tried or being tried. A gap whose normal weight is in ``tried`` is visited. Equal distances keep the
    order along the front (smaller ``R`` first).

    Example:
        >>> F = np.array([[0.64, 0.04], [1.0, 0.0], [0.81, 0.01]])
        >>> [(round(g.distance, 3), g.left, g.right, round(g.nu, 4)) for g in open_gaps(F, [0.2, 0.0, 0.1], 0.15)]
        [(0.886, 0, 2, 0.15), (0.584, 2, 1, 0.05)]
    """
    F = np.asarray(F, dtype=float).reshape(-1, 2)
    tried = [float(t) for t in tried]
    order = front_order(F)
    distances = normalised_gaps(F[order])
    gaps = []
    for k, d in enumerate(distances):
        if not d >= delta:
            continue
        left, right = int(order[k]), int(order[k + 1])
        nu = normal_weight(F[left], F[right])
        if not was_tried(nu, tried):
            gaps.append(Gap(float(d), left, right, nu))
    gaps.sort(key=lambda g: -g.distance)  # stable: ties stay in front order
    return gaps


def run_sweep(trial: Callable[[float], tuple[float, float] | None], *, initial: Sequence[float] = (0.2, 0.0),
              delta: float = 0.15, max_trials: int | None = None) -> list[tuple[float, float, float]]:
    """The whole sweep, one trial at a time: ``trial(nu)`` returns ``(R, C)`` or ``None`` (a failure).

    Returns ``(nu, R, C)`` for every trial in order (NaN for failures). This is the reference the
    :class:`nni_ext.tuners.RegularizationSweep` tuner follows with ``trialConcurrency: 1``.
    """
    tried: list[float] = []
    points: list[tuple[float, float]] = []
    out: list[tuple[float, float, float]] = []
    while max_trials is None or len(tried) < max_trials:
        pending = [v for v in initial if not was_tried(v, tried)]
        if pending:
            nu = float(pending[0])
        else:
            gaps = open_gaps(np.array(points, dtype=float).reshape(-1, 2), tried, delta)
            if not gaps:
                break
            nu = gaps[0].nu
        tried.append(nu)
        result = trial(nu)
        r, c = (math.nan, math.nan) if result is None else (float(result[0]), float(result[1]))
        if math.isfinite(r) and math.isfinite(c):
            points.append((r, c))
        out.append((nu, r, c))
    return out
