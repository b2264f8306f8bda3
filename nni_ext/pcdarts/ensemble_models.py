"""Ensembles of trained PC-DARTS models from their saved predictions (``nni-ext pcdarts ensemble``).

Each model folder is an output of ``nni-ext pcdarts train`` holding ``predictions.pt`` (logits and
labels of the held-out and test splits) and ``result.json`` (its parameter count). Weights come
from the held-out split (:func:`nni_ext.pcdarts.ensemble.model_weights`, MOOD-NAS's rule) or are
equal; the ensemble is evaluated on the test split only.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._io import atomic_write_json
from ..errors import NniExtError

WEIGHTINGS = ("calculate", "per-class", "equal")


def _load(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(predictions, result)`` of a trained model's folder; ``predictions.pt`` loads with ``weights_only=True``."""
    from ..trainers.checkpoint import safe_torch_load

    pred, result = folder / "predictions.pt", folder / "result.json"
    if not pred.is_file() or not result.is_file():
        raise NniExtError(f"{folder} has no predictions.pt/result.json; give output folders of `nni-ext pcdarts train`")
    predictions = safe_torch_load(pred, "predictions file")
    splits = predictions if isinstance(predictions, dict) else {}
    if not isinstance(splits.get("test"), dict) or any(
            not isinstance(part, dict) or not {"logits", "labels"} <= part.keys() for part in splits.values()):
        raise NniExtError(f"predictions file {pred} does not hold {{split: {{logits, labels}}}} with a 'test' split; "
                          f"give output folders of `nni-ext pcdarts train`")
    try:
        summary = json.loads(result.read_text())
    except (OSError, ValueError) as exc:
        raise NniExtError(f"cannot read {result}: {exc}") from None
    if not isinstance(summary, dict):
        raise NniExtError(f"{result} holds no JSON object; give output folders of `nni-ext pcdarts train`")
    return predictions, summary


def ensemble_trained_models(folders: Sequence[str | Path], *, weighting: str = "calculate",
                            out: str | Path | None = None) -> dict[str, Any]:
    """Combine trained models; returns accuracy, per-model accuracy, weights and total params (and writes JSON)."""
    from .ensemble import combine, ensemble_accuracy, equal_weights, model_weights

    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting={weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    loaded = [_load(Path(f)) for f in folders]
    names = [Path(f).name for f in folders]
    test_logits = [np.asarray(p["test"]["logits"]) for p, _ in loaded]
    labels = np.asarray(loaded[0][0]["test"]["labels"])
    for name, (p, _) in zip(names, loaded):
        if not np.array_equal(np.asarray(p["test"]["labels"]), labels):
            raise NniExtError(f"{name} was tested on other images than {names[0]} (labels differ); train all models "
                              f"on the same data and test split")
    n_classes = test_logits[0].shape[1]
    if weighting == "equal":
        weights = equal_weights(len(loaded))
    else:
        missing = [n for n, (p, _) in zip(names, loaded) if "held_out" not in p]
        if missing:
            raise NniExtError(f"{', '.join(missing)} have no held-out predictions: train with --train-portion < 1 "
                              f"(e.g. 0.9) or use --weights equal")
        held_labels = np.asarray(loaded[0][0]["held_out"]["labels"])
        correct = np.stack([np.asarray(p["held_out"]["logits"]).argmax(1) == held_labels for p, _ in loaded])
        weights = model_weights(correct, held_labels, per_class=weighting == "per-class")
    scores = combine(test_logits, weights)
    accuracy = ensemble_accuracy(scores, labels)
    model_acc = [float((lg.argmax(1) == labels).mean()) for lg in test_logits]
    params = int(sum(int(r.get("params", 0)) for _, r in loaded))
    w = np.asarray(weights, dtype=float)
    summary = {"models": names, "weighting": weighting, "accuracy": float(accuracy), "model_accuracy": model_acc,
               "weights": w.tolist(), "params": params, "classes": n_classes,
               "weights_summary": [f"{x:.3f}" if np.ndim(x) == 0 else f"mean {np.mean(x):.3f}" for x in w]}
    if out is not None:
        atomic_write_json(Path(out) / "ensemble.json", summary)
    return summary
