"""Small pymoo pieces shared by the in-process searches (OFA² sub-networks, OFA³ ensembles).

pymoo keeps one Python object per individual; reading a population through ``Population.get`` costs a
method call per individual and key, which at 100 individuals x thousands of generations adds up to more
than the searches' own vectorised work. The pieces here read the individuals' arrays directly and do the
rest with whole-population numpy operations, with the same results as pymoo's own.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pymoo.core.callback import Callback
from pymoo.core.duplicate import DuplicateElimination
from pymoo.indicators.hv import HV

from .pareto import non_dominated_2d


def population_X(pop: Any) -> np.ndarray:
    """The decision rows of a pymoo population as one array (as ``pop.get("X")``, without its per-key calls)."""
    return np.array([ind.X for ind in pop])


def _row_keys(X: np.ndarray) -> list[bytes]:
    rows = np.ascontiguousarray(X, dtype=np.int64).reshape(len(X), -1)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel().tolist()


class RowDuplicateElimination(DuplicateElimination):
    """Exact duplicates among integer or boolean rows, found by hashing (pymoo's default compares every pair).

    Rows are compared as int64 values; the first of several equal rows is kept.
    """

    def _do(self, pop: Any, other: Any, is_duplicate: np.ndarray) -> np.ndarray:
        seen = set() if other is None else set(_row_keys(population_X(other)))
        for i, key in enumerate(_row_keys(population_X(pop))):
            if key in seen:
                is_duplicate[i] = True
            else:
                seen.add(key)
        return is_duplicate


def fast_binary_tournament(pop: Any, P: np.ndarray, algorithm: Any, **kwargs: Any) -> np.ndarray:
    """pymoo's NSGA-II ``binary_tournament``, vectorised over the tournaments.

    Same decisions and same draws from ``algorithm.random_state`` (one ``choice`` per tie, in tournament
    order), so a seeded run selects the same parents: an infeasible pair is decided by constraint
    violation, a feasible one by domination (or rank) and then by crowding distance (larger wins).
    """
    n_tournaments, n_parents = P.shape
    if n_parents != 2:
        raise ValueError("Only implemented for binary tournament!")
    a, b = P[:, 0], P[:, 1]
    cv = np.array([ind.CV[0] for ind in pop], dtype=float)
    F = np.array([ind.F for ind in pop], dtype=float)
    crowding = np.array([ind.data.get("crowding", np.nan) for ind in pop], dtype=float)
    S = np.full(n_tournaments, -1, dtype=np.int64)
    random = np.zeros(n_tournaments, dtype=bool)
    infeasible = (cv[a] > 0.0) | (cv[b] > 0.0)
    # infeasible pairs: smaller violation wins, a tie is drawn
    S = np.where(infeasible & (cv[a] < cv[b]), a, S)
    S = np.where(infeasible & (cv[b] < cv[a]), b, S)
    random |= infeasible & ~(cv[a] < cv[b]) & ~(cv[b] < cv[a])
    feasible = ~infeasible
    if algorithm.tournament_type == "comp_by_dom_and_crowding":
        lt = (F[a] < F[b]).any(axis=1)
        gt = (F[b] < F[a]).any(axis=1)
        a_wins, b_wins = lt & ~gt, gt & ~lt
    elif algorithm.tournament_type == "comp_by_rank_and_crowding":
        rank = np.array([ind.data.get("rank", np.nan) for ind in pop], dtype=float)
        a_wins, b_wins = rank[a] < rank[b], rank[b] < rank[a]
    else:
        raise ValueError(f"unknown tournament type {algorithm.tournament_type!r}")
    S = np.where(feasible & a_wins, a, S)
    S = np.where(feasible & b_wins, b, S)
    open_ = feasible & ~a_wins & ~b_wins  # then by crowding distance, larger is better
    S = np.where(open_ & (crowding[a] > crowding[b]), a, S)
    S = np.where(open_ & (crowding[a] < crowding[b]), b, S)
    random |= open_ & ~(crowding[a] > crowding[b]) & ~(crowding[a] < crowding[b])
    for i in np.flatnonzero(random):
        S[i] = algorithm.random_state.choice([a[i], b[i]])
    return S[:, None]


def hypervolume_2d(F: np.ndarray, reference: np.ndarray) -> float:
    """Exact hypervolume of two minimised objectives up to ``reference`` (a sort and a sum)."""
    F = np.asarray(F, dtype=float).reshape(-1, 2)
    F = F[np.all(F < reference, axis=1)]
    if not len(F):
        return 0.0
    F = F[np.lexsort((F[:, 1], F[:, 0]))]
    best = np.minimum.accumulate(F[:, 1])
    keep = np.ones(len(F), dtype=bool)
    keep[1:] = F[1:, 1] < best[:-1]
    G = F[keep]
    widths = np.diff(np.append(G[:, 0], reference[0]))
    return float(np.dot(widths, reference[1] - G[:, 1]))


class HypervolumeRecorder(Callback):
    """Per generation: hypervolume of the population's front and of the archive of every non-dominated point.

    ``rows`` holds ``(generation, evaluations, hv, hv_archive)``; ``hv_archive`` never decreases. Two objectives
    (computed exactly with a sort; pymoo's indicator for more).
    """

    def __init__(self, reference: np.ndarray, log_every: int, total: int, logger: logging.Logger) -> None:
        super().__init__()
        self.reference = np.asarray(reference, dtype=float)
        self.indicator = HV(ref_point=self.reference)
        self.log_every, self.total, self.logger = log_every, total, logger
        self.archive = np.empty((0, 2))
        self.rows: list[tuple[int, int, float, float]] = []

    def _hv(self, F: np.ndarray) -> float:
        if len(self.reference) == 2:
            return hypervolume_2d(F, self.reference)
        return float(self.indicator(F)) if len(F) else 0.0

    def notify(self, algorithm: Any) -> None:
        F = np.array([ind.F for ind in algorithm.pop], dtype=float)
        front = F[non_dominated_2d(F)]
        merged = np.vstack([self.archive, front])
        self.archive = merged[non_dominated_2d(merged)]
        hv, hv_archive = self._hv(front), self._hv(self.archive)
        self.rows.append((algorithm.n_gen, algorithm.evaluator.n_eval, hv, hv_archive))
        if self.log_every and (algorithm.n_gen % self.log_every == 0 or algorithm.n_gen == self.total):
            self.logger.info("generation %d/%d: hypervolume %.4g (archive %.4g)", algorithm.n_gen, self.total, hv,
                             hv_archive)
