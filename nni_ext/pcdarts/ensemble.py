"""MOOD-NAS's weighted ensemble of trained Pareto models: model weights from held-out hits, min-max-scaled voting.

Weights come from a held-out set: a model scores a point for each sample it gets right that not
every model gets right (samples all models get right say nothing about who is better), and the
scores are divided by the largest one, so the best model has weight 1. With ``per_class=True`` the
scores and their normalisation are per class. The ensemble scales each model's logits of a sample
to [0, 1] (per-sample min-max), multiplies them by the weights and averages over the models; the
predicted class is the arg-max.

Example:
    >>> correct = np.array([[1, 1, 0], [1, 0, 1], [1, 0, 0]], dtype=bool)
    >>> model_weights(correct).tolist()
    [1.0, 1.0, 0.0]
    >>> logits = np.array([[[2.0, 0.0]], [[0.0, 1.0]], [[0.0, 5.0]]])  # 3 models, 1 sample, 2 classes
    >>> combine(logits, np.array([1.0, 0.5, 0.0])).tolist()
    [[0.3333333333333333, 0.16666666666666666]]
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _correct_matrix(correct: Any) -> np.ndarray:
    arr = np.asarray(correct)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"correct has shape {arr.shape}; pass a (models x samples) boolean matrix "
                         "with at least one model")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError("correct holds values other than 0/1 (True/False); pass a boolean "
                             "(models x samples) matrix of which model got each sample right")
        arr = arr.astype(bool)
    return arr


def _labels(labels: Any, n_samples: int, *, what: str) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1 or len(lab) != n_samples:
        raise ValueError(f"labels has shape {lab.shape} but {what} has {n_samples} samples; "
                         f"pass one integer label per sample, shape ({n_samples},)")
    if lab.size and (not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0):
        raise ValueError(f"labels must be non-negative integers, got dtype {lab.dtype}"
                         f"{'' if not lab.size else f' with minimum {lab.min()}'}; pass class indices")
    return lab.astype(np.int64)


def _normalise(scores: np.ndarray) -> np.ndarray:
    """Divide each column by its maximum; a column whose scores are all 0 becomes ones (equal weights)."""
    top = scores.max(axis=0, keepdims=True)
    safe = np.where(top > 0, top, 1.0)
    return np.where(top > 0, scores / safe, 1.0)


def model_weights(correct: np.ndarray, labels: np.ndarray | None = None, *, per_class: bool = False,
                  n_classes: int | None = None) -> np.ndarray:
    """Weight of each model from which held-out samples it gets right.

    A model scores one point for each sample it gets right that not all models get right; the
    weights are the scores divided by the largest score, so the best model has weight 1 and a model
    that is right only where everyone is right has weight 0. When no sample tells the models apart
    (all scores are 0: every sample is right for all models or for none) the weights are equal
    (ones). With ``per_class=True`` the points and the normalisation are taken per class of the
    samples' labels, and every count starts at one as in MOOD-NAS (so no model's class column is
    zeroed); a class with no distinguishing sample (or no sample) gets equal weights.

    Args:
        correct: ``(models, samples)`` boolean matrix, True where the model got the sample right.
        labels: ``(samples,)`` class indices; needed for ``per_class``, checked but unused otherwise.
        per_class: Weights per model and class instead of per model.
        n_classes: Number of classes for ``per_class`` (default ``labels.max() + 1``).

    Returns:
        ``(models,)`` weights, or ``(models, n_classes)`` with ``per_class``; the maximum of each
        (column) is 1.

    Example:
        >>> correct = np.array([[1, 1, 1, 0], [1, 0, 0, 1]], dtype=bool)
        >>> model_weights(correct).tolist()
        [1.0, 0.5]
        >>> model_weights(correct, np.array([0, 0, 1, 1]), per_class=True).tolist()
        [[1.0, 1.0], [0.5, 1.0]]
    """
    hits = _correct_matrix(correct)
    useful = hits & ~hits.all(axis=0, keepdims=True)
    if labels is not None:
        lab = _labels(labels, hits.shape[1], what=f"correct {hits.shape}")
    if not per_class:
        return _normalise(useful.sum(axis=1).astype(float)[:, None])[:, 0]
    if labels is None:
        raise ValueError("model_weights(per_class=True) needs labels; pass the held-out samples' labels")
    classes = int(lab.max()) + 1 if lab.size else 0
    if n_classes is not None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < classes:
            raise ValueError(f"n_classes={n_classes!r} but labels go up to {classes - 1}; "
                             f"pass n_classes >= {max(classes, 1)} or leave it None")
        classes = int(n_classes)
    onehot = np.zeros((hits.shape[1], classes))
    onehot[np.arange(hits.shape[1]), lab] = 1.0
    return _normalise(1.0 + useful.astype(float) @ onehot)  # MOOD-NAS starts every per-class count at one


def equal_weights(n_models: int, n_classes: int | None = None) -> np.ndarray:
    """Ones: weight 1 for each model (``(n_models,)``), or each model and class (``(n_models, n_classes)``).

    Example:
        >>> equal_weights(2, 3).shape
        (2, 3)
    """
    checks = [("n_models", n_models)] + ([] if n_classes is None else [("n_classes", n_classes)])
    for name, value in checks:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}; pass a positive count")
    return np.ones(n_models if n_classes is None else (n_models, n_classes))


def minmax_scale(logits: np.ndarray) -> np.ndarray:
    """Scale each sample's logits to [0, 1] along the last (class) axis: ``(x - min) / (max - min)``.

    A sample whose logits are all equal becomes all zeros (it votes for nothing) rather than NaN.

    Args:
        logits: ``(..., classes)`` finite logits.

    Example:
        >>> minmax_scale(np.array([[1.0, 3.0, 2.0], [4.0, 4.0, 4.0]])).tolist()
        [[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]]
    """
    x = np.asarray(logits, dtype=float)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"logits has shape {x.shape}; pass (..., classes) with at least one class")
    if not np.isfinite(x).all():
        raise ValueError("logits holds NaN or infinite values; pass finite logits")
    low = x.min(axis=-1, keepdims=True)
    span = x.max(axis=-1, keepdims=True) - low
    return np.divide(x - low, span, out=np.zeros_like(x), where=span > 0)


def _stack(logits: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """``(models, samples, classes)`` array from a list of ``(samples, classes)`` arrays, checking shapes."""
    if isinstance(logits, np.ndarray):
        if logits.ndim != 3:
            raise ValueError(f"logits has shape {logits.shape}; pass (models, samples, classes) "
                             "or a list of (samples, classes) arrays")
        return logits.astype(float, copy=False)
    arrays = [np.asarray(a, dtype=float) for a in logits]
    if not arrays:
        raise ValueError("logits is empty; pass at least one model's (samples, classes) logits")
    first = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.ndim != 2:
            raise ValueError(f"logits[{i}] has shape {a.shape}; each model's logits must be (samples, classes)")
        if a.shape != first:
            raise ValueError(f"logits[{i}] has shape {a.shape} but logits[0] has shape {first}; "
                             "pass every model's logits for the same samples and classes")
    return np.stack(arrays)


def combine(logits: Sequence[np.ndarray] | np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted average of the models' min-max-scaled logits: ``(samples, classes)`` ensemble scores.

    ``scores[s, c] = mean over m of minmax_scale(logits[m])[s, c] * w``, where ``w = weights[m]`` for
    per-model weights ``(models,)`` and ``w = weights[m, c]`` for per-class weights
    ``(models, classes)``: a per-class weight multiplies that class's column of the model's scaled
    logits (the class voted for, not the sample's true label, which is unknown at test time).

    Args:
        logits: ``(models, samples, classes)`` array, or a list of ``(samples, classes)`` arrays.
        weights: ``(models,)`` or ``(models, classes)``, e.g. from :func:`model_weights`.

    Example:
        >>> combine([np.array([[0.0, 2.0]]), np.array([[3.0, 1.0]])], np.array([1.0, 0.5])).tolist()
        [[0.25, 0.5]]
    """
    L = _stack(logits)
    w = np.asarray(weights, dtype=float)
    n_models, _samples, n_classes = L.shape
    if w.shape not in ((n_models,), (n_models, n_classes)):
        raise ValueError(f"weights has shape {w.shape} but logits has shape {L.shape} (models, samples, classes); "
                         f"pass weights of shape ({n_models},) or ({n_models}, {n_classes})")
    if not np.isfinite(w).all():
        raise ValueError("weights holds NaN or infinite values; pass finite weights")
    scaled = minmax_scale(L)
    if w.ndim == 1:
        return np.einsum("msc,m->sc", scaled, w) / n_models
    return np.einsum("msc,mc->sc", scaled, w) / n_models


def ensemble_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose arg-max score is the label (a tie goes to the lowest class, as ``np.argmax``).

    Example:
        >>> ensemble_accuracy(np.array([[0.2, 0.8], [0.9, 0.1]]), np.array([1, 1]))
        0.5
    """
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError(f"scores has shape {s.shape}; pass (samples, classes) scores, e.g. from combine()")
    lab = _labels(labels, s.shape[0], what=f"scores {s.shape}")
    if not len(lab):
        raise ValueError("scores has no samples; accuracy of an empty set is undefined")
    return float(np.mean(s.argmax(axis=1) == lab))


def summarize(logits_list: Sequence[np.ndarray] | np.ndarray, labels: np.ndarray, weights: np.ndarray,
              params: Sequence[float]) -> dict[str, Any]:
    """Accuracy of the weighted ensemble and of each member, and the members' total parameters.

    Args:
        logits_list: The members' logits, as for :func:`combine`.
        labels: ``(samples,)`` true classes.
        weights: As for :func:`combine`.
        params: Each member's parameter count (any unit; they are summed).

    Returns:
        ``{"accuracy", "model_accuracy" (list), "total_params", "n_models"}``.

    Example:
        >>> logits = [np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 1.0], [0.0, 1.0]])]
        >>> summarize(logits, np.array([0, 1]), np.ones(2), [3.6, 1.2])["model_accuracy"]
        [1.0, 0.5]
    """
    L = _stack(logits_list)
    p = np.asarray(params, dtype=float)
    if p.shape != (L.shape[0],):
        raise ValueError(f"params has shape {p.shape} but logits has shape {L.shape}; "
                         f"pass one parameter count per model, shape ({L.shape[0]},)")
    lab = _labels(labels, L.shape[1], what=f"logits {L.shape}")
    return {
        "accuracy": ensemble_accuracy(combine(L, weights), lab),
        "model_accuracy": [ensemble_accuracy(m, lab) for m in L],
        "total_params": float(p.sum()),
        "n_models": int(L.shape[0]),
    }
