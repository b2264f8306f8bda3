"""Objectives a tuner derives from what trials report, over its whole archive (FlatNAS's ``top1_robust``).

``top1_robust = alpha * err + alpha_norm * (1 - alpha) * robustness`` (FlatNAS, CNAS ``train.py``): ``err`` is
the top-1 error (``1 - default``), ``robustness`` what the trial reports (mean accuracy drop under
multiplicative Gaussian weight noise, :mod:`nni_ext.robustness`), ``alpha`` 0.5, and ``alpha_norm =
mean(err) / mean(robustness)`` over the results so far, so both terms weigh alike whatever their scales.
Because ``alpha_norm`` moves as results arrive, the archive rescores every result with the current value
(FlatNAS rescores its archive each iteration; an NNI tuner has no iterations, so it is done per result).

A trial never reports ``top1_robust``: it reports ``default`` and ``robustness``, and a tuner whose
objectives name ``top1_robust`` derives it (:class:`nni_ext.core.archive.Archive` does this).

Example:
    >>> values, alpha_norm = top1_robust(np.array([0.1, 0.2]), np.array([0.05, 0.15]))
    >>> round(alpha_norm, 3), [round(v, 3) for v in values]
    (1.5, [0.088, 0.212])
"""
from __future__ import annotations

import math

import numpy as np

#: FlatNAS's weight of the error term
ALPHA = 0.5
#: the keys a trial must report for ``top1_robust``
TOP1_ROBUST_INPUTS = ("default", "robustness")
DERIVED_KEYS = ("top1_robust",)


def top1_robust(err: np.ndarray, robustness: np.ndarray, *, alpha: float = ALPHA,
                alpha_norm: float | None = None) -> tuple[np.ndarray, float]:
    """``(top1_robust per result, alpha_norm)``; ``alpha_norm`` from these results unless given.

    ``alpha_norm`` is 1 when the mean robustness is 0 (no result is sensitive to weight noise: only the
    error counts then).
    """
    err, robustness = np.asarray(err, dtype=float), np.asarray(robustness, dtype=float)
    if alpha_norm is None:
        mean_rob = float(robustness.mean()) if robustness.size else 0.0
        alpha_norm = float(err.mean()) / mean_rob if mean_rob > 0 else 1.0
    if not math.isfinite(alpha_norm):
        alpha_norm = 1.0
    return alpha * err + alpha_norm * (1 - alpha) * robustness, float(alpha_norm)
