"""Small pymoo pieces shared by the in-process searches (OFA² sub-networks, OFA³ ensembles)."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pymoo.core.callback import Callback
from pymoo.core.duplicate import DuplicateElimination
from pymoo.indicators.hv import HV

from .pareto import non_dominated_2d


class RowDuplicateElimination(DuplicateElimination):
    """Exact duplicates among integer or boolean rows, found by hashing (pymoo's default compares every pair)."""

    def _do(self, pop: Any, other: Any, is_duplicate: np.ndarray) -> np.ndarray:
        def rows(p: Any) -> np.ndarray:
            return np.ascontiguousarray(p.get("X"), dtype=np.int64)

        seen = set() if other is None else {r.tobytes() for r in rows(other)}
        for i, row in enumerate(rows(pop)):
            key = row.tobytes()
            if key in seen:
                is_duplicate[i] = True
            else:
                seen.add(key)
        return is_duplicate


class HypervolumeRecorder(Callback):
    """Per generation: hypervolume of the population's front and of the archive of every non-dominated point.

    ``rows`` holds ``(generation, evaluations, hv, hv_archive)``; ``hv_archive`` never decreases. Two objectives.
    """

    def __init__(self, reference: np.ndarray, log_every: int, total: int, logger: logging.Logger) -> None:
        super().__init__()
        self.indicator = HV(ref_point=np.asarray(reference, dtype=float))
        self.log_every, self.total, self.logger = log_every, total, logger
        self.archive = np.empty((0, 2))
        self.rows: list[tuple[int, int, float, float]] = []

    def notify(self, algorithm: Any) -> None:
        F = algorithm.pop.get("F")
        front = F[non_dominated_2d(F)]
        merged = np.vstack([self.archive, front])
        self.archive = merged[non_dominated_2d(merged)]
        hv, hv_archive = float(self.indicator(front)), float(self.indicator(self.archive))
        self.rows.append((algorithm.n_gen, algorithm.evaluator.n_eval, hv, hv_archive))
        if self.log_every and (algorithm.n_gen % self.log_every == 0 or algorithm.n_gen == self.total):
            self.logger.info("generation %d/%d: hypervolume %.4g (archive %.4g)", algorithm.n_gen, self.total, hv,
                             hv_archive)
