"""Tests of nni_ext.pcdarts.ensemble: MOOD-NAS's weighted ensemble of trained Pareto models."""
from __future__ import annotations

import numpy as np
import pytest

from nni_ext.pcdarts.ensemble import combine, ensemble_accuracy, equal_weights, minmax_scale, model_weights, summarize

# 3 models x 6 held-out samples. Sample 0 is right for every model, so it scores nothing.
CORRECT = np.array([[1, 1, 1, 1, 0, 0],
                    [1, 0, 1, 0, 1, 0],
                    [1, 0, 0, 0, 0, 1]], dtype=bool)
LABELS = np.array([0, 1, 0, 1, 0, 1])


def test_global_weights_by_hand():
    # points over samples 1..5: model 0 gets 1,2,3 -> 3; model 1 gets 2,4 -> 2; model 2 gets 5 -> 1
    np.testing.assert_allclose(model_weights(CORRECT), [1.0, 2 / 3, 1 / 3])
    np.testing.assert_allclose(model_weights(CORRECT.astype(int), LABELS), [1.0, 2 / 3, 1 / 3])


def test_per_class_weights_by_hand():
    # class 0 = samples 0, 2, 4 (0 scores nothing): model 0 gets 2; model 1 gets 2, 4; model 2 none -> 1, 2, 0
    # class 1 = samples 1, 3, 5: model 0 gets 1, 3; model 1 none; model 2 gets 5 -> 2, 0, 1
    # every per-class count starts at one (MOOD-NAS): 2, 3, 1 and 3, 1, 2, then divided by the class maximum
    expected = [[2 / 3, 1.0], [1.0, 1 / 3], [1 / 3, 2 / 3]]
    np.testing.assert_allclose(model_weights(CORRECT, LABELS, per_class=True), expected)
    wide = model_weights(CORRECT, LABELS, per_class=True, n_classes=4)  # classes without samples: equal
    np.testing.assert_allclose(wide, np.column_stack([expected, np.ones((3, 2))]))


def test_samples_every_model_gets_right_score_nothing():
    extra = np.hstack([CORRECT, np.ones((3, 4), dtype=bool), np.zeros((3, 2), dtype=bool)])
    np.testing.assert_allclose(model_weights(extra), model_weights(CORRECT))
    labels = np.concatenate([LABELS, [0, 1, 1, 0, 1, 0]])
    np.testing.assert_allclose(model_weights(extra, labels, per_class=True),
                               model_weights(CORRECT, LABELS, per_class=True))
    # nothing tells the models apart: equal weights
    np.testing.assert_array_equal(model_weights(np.ones((3, 5), dtype=bool)), np.ones(3))
    np.testing.assert_array_equal(model_weights(np.zeros((2, 5), dtype=bool)), np.ones(2))
    np.testing.assert_array_equal(model_weights(np.ones((3, 4), dtype=bool), np.array([0, 1, 0, 1]),
                                                per_class=True), np.ones((3, 2)))
    np.testing.assert_array_equal(equal_weights(3), np.ones(3))
    np.testing.assert_array_equal(equal_weights(3, 10), np.ones((3, 10)))


def test_minmax_scale_edge_cases():
    np.testing.assert_allclose(minmax_scale(np.array([[-2.0, 0.0, 2.0]])), [[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(minmax_scale(np.array([[3.0, 3.0, 3.0]])), [[0.0, 0.0, 0.0]])  # constant
    np.testing.assert_array_equal(minmax_scale(np.array([[7.0], [-1.0]])), [[0.0], [0.0]])  # one class
    np.testing.assert_array_equal(minmax_scale(np.array([0.0, 1.0])), [0.0, 1.0])  # 1-D: one sample
    big = minmax_scale(np.array([[1e300, -1e300, 0.0]]))
    assert np.isfinite(big).all()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5, 6)) * 10
    y = minmax_scale(x)
    assert y.shape == x.shape and not np.isnan(y).any()
    np.testing.assert_allclose(y.min(axis=-1), 0.0)
    np.testing.assert_allclose(y.max(axis=-1), 1.0)
    np.testing.assert_allclose(minmax_scale(3 * x + 7), y)  # invariant to a positive affine map
    with pytest.raises(ValueError, match="NaN"):
        minmax_scale(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="at least one class"):
        minmax_scale(np.zeros((2, 0)))


def _brute_force(logits: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    n_models, (n_samples, n_classes) = len(logits), logits[0].shape
    out = np.zeros((n_samples, n_classes))
    for m in range(n_models):
        for s in range(n_samples):
            row = [float(v) for v in logits[m][s]]
            low, high = min(row), max(row)
            for c in range(n_classes):
                scaled = (row[c] - low) / (high - low) if high > low else 0.0
                w = weights[m] if weights.ndim == 1 else weights[m, c]
                out[s, c] += scaled * w / n_models
    return out


def test_combine_equals_a_brute_force_loop():
    rng = np.random.default_rng(1)
    logits = [rng.normal(size=(7, 4)) for _ in range(3)]
    logits[1][2] = 5.0  # a constant row
    for weights in (rng.uniform(size=3), rng.uniform(size=(3, 4)), np.ones(3)):
        expected = _brute_force(logits, weights)
        np.testing.assert_allclose(combine(logits, weights), expected)
        np.testing.assert_allclose(combine(np.stack(logits), weights), expected)


def _hand_made_logits() -> tuple[list[np.ndarray], np.ndarray]:
    """One strong and two weak models on 3 classes; the weak ones agree on a wrong class where the strong is right."""
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    strong = np.array([[3, 0, 0], [0, 3, 1], [0, 1, 3], [2, 1, 0],
                       [0, 2, 1], [1, 0, 2], [3, 1, 0], [0, 1, 0]], dtype=float)    # right on all 8
    weak1 = np.array([[0, 2, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0],
                      [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]], dtype=float)     # right on 3, 4, 5
    weak2 = np.array([[0, 2, 1], [1, 0, 0], [1, 0, 0], [0, 0, 1],
                      [0, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)     # right on 4
    return [strong, weak1, weak2], labels


def test_weighted_ensemble_at_least_as_accurate_as_equal_weights():
    logits, labels = _hand_made_logits()
    correct = np.stack([m.argmax(axis=1) == labels for m in logits])
    # sample 4 is right for all; strong scores the other 7, weak1 samples 3 and 5, weak2 nothing
    np.testing.assert_allclose(model_weights(correct), [1.0, 2 / 7, 0.0])
    weighted = ensemble_accuracy(combine(logits, model_weights(correct)), labels)
    equal = ensemble_accuracy(combine(logits, equal_weights(3)), labels)
    assert (weighted, equal) == (1.0, 3 / 8)
    per_class = model_weights(correct, labels, per_class=True)
    np.testing.assert_allclose(per_class, [[1, 1, 1], [1 / 2, 1 / 3, 2 / 3], [1 / 4, 1 / 3, 1 / 3]])  # counts + 1
    assert ensemble_accuracy(combine(logits, per_class), labels) == 1.0

    rng = np.random.default_rng(2)   # random models: fit the weights on one half, test on the other
    n, classes = 400, 5
    labels = rng.integers(0, classes, n)
    strong = rng.normal(size=(n, classes))
    strong[np.arange(n), labels] += 2.5
    members = [strong, rng.normal(size=(n, classes)), rng.normal(size=(n, classes))]
    val, test = slice(0, n // 2), slice(n // 2, n)
    correct = np.stack([m[val].argmax(axis=1) == labels[val] for m in members])
    for w in (model_weights(correct), model_weights(correct, labels[val], per_class=True, n_classes=classes)):
        acc_w = ensemble_accuracy(combine([m[test] for m in members], w), labels[test])
        acc_eq = ensemble_accuracy(combine([m[test] for m in members], equal_weights(3)), labels[test])
        assert acc_w >= acc_eq


def test_summarize():
    logits, labels = _hand_made_logits()
    out = summarize(logits, labels, np.array([1.0, 0.0, 0.0]), [3.6, 1.0, 0.5])
    assert out == {"accuracy": 1.0, "model_accuracy": [1.0, 3 / 8, 1 / 8], "total_params": 5.1, "n_models": 3}
    assert ensemble_accuracy(np.array([[0.5, 0.5]]), np.array([0])) == 1.0  # a tie goes to the lowest class


def test_shape_mismatches_name_both_shapes():
    a, b = np.zeros((6, 3)), np.zeros((5, 3))
    with pytest.raises(ValueError, match=r"logits\[1\] has shape \(5, 3\) but logits\[0\] has shape \(6, 3\)"):
        combine([a, b], np.ones(2))
    with pytest.raises(ValueError, match=r"weights has shape \(3,\) but logits has shape \(2, 6, 3\)"):
        combine([a, a], np.ones(3))
    with pytest.raises(ValueError, match=r"weights has shape \(2, 4\) but logits has shape \(2, 6, 3\)"):
        combine([a, a], np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"labels has shape \(5,\) but correct \(3, 6\) has 6 samples"):
        model_weights(CORRECT, LABELS[:5])
    with pytest.raises(ValueError, match=r"labels has shape \(4,\) but scores \(6, 3\) has 6 samples"):
        ensemble_accuracy(a, np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match=r"params has shape \(3,\) but logits has shape \(2, 6, 3\)"):
        summarize([a, a], np.zeros(6, dtype=int), np.ones(2), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"correct has shape \(6,\)"):
        model_weights(CORRECT[0])
    with pytest.raises(ValueError, match="needs labels"):
        model_weights(CORRECT, per_class=True)
    with pytest.raises(ValueError, match="n_classes=1 but labels go up to 1"):
        model_weights(CORRECT, LABELS, per_class=True, n_classes=1)
    with pytest.raises(ValueError, match="other than 0/1"):
        model_weights(CORRECT * 2)
    with pytest.raises(ValueError, match="non-negative integers"):
        model_weights(CORRECT, LABELS - 1)
    with pytest.raises(ValueError, match="n_models"):
        equal_weights(0)
    with pytest.raises(ValueError, match="empty"):
        combine([], np.ones(0))
