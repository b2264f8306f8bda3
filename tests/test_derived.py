"""Objectives the tuner derives over its archive: FlatNAS's ``top1_robust`` (nni_ext.core.derived)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nni_ext.core.archive import Archive, ArchiveFiles
from nni_ext.core.derived import top1_robust
from nni_ext.testing import simulate
from nni_ext.tuners import MSuNASTuner, NSGA2Tuner

OBJECTIVES = {"top1_robust": "minimize", "flops": "minimize"}


def _report(default: float, robustness: float, flops: float) -> str:
    return json.dumps({"default": default, "robustness": robustness, "flops": flops})


def test_archive_rescores_every_result_with_the_current_alpha_norm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    archive = Archive(OBJECTIVES, reference_point={"top1_robust": 1.0, "flops": 10.0})
    rows = [(0.9, 0.02, 3.0), (0.8, 0.10, 1.0), (0.7, 0.01, 2.0), (0.95, 0.30, 5.0)]
    for i, row in enumerate(rows):
        archive.add({"x": i}, _report(*row), parameter_id=i)
        seen = rows[:i + 1]
        err, rob = np.array([1 - r[0] for r in seen]), np.array([r[1] for r in seen])
        alpha_norm = err.mean() / rob.mean()
        assert archive.alpha_norm == pytest.approx(alpha_norm)
        want = 0.5 * err + alpha_norm * 0.5 * rob
        assert [r.metrics["top1_robust"] for r in archive.finished] == pytest.approx(want)
        assert [r.F[0] for r in archive.finished] == pytest.approx(want)
    # the front is the one of the rescored values, not of the values when each result arrived
    F = np.array([r.F for r in archive.finished])
    expected = {i for i in range(len(F)) if not any((F[j] <= F[i]).all() and (F[j] < F[i]).any()
                                                    for j in range(len(F)))}
    assert {r.params["x"] for r in archive.front()} == expected
    files = ArchiveFiles(tmp_path)
    files.write(archive)
    assert files.read_meta()["alpha_norm"] == pytest.approx(archive.alpha_norm)
    back = files.read()  # replayed from history.csv: the same rescored values
    assert [r.metrics["top1_robust"] for r in back.finished] == pytest.approx(
        [r.metrics["top1_robust"] for r in archive.finished])


def test_a_result_without_robustness_fails_with_its_reason() -> None:
    archive = Archive(OBJECTIVES)
    record = archive.add({"x": 0}, json.dumps({"default": 0.9, "flops": 1.0}))
    assert not record.ok and "top1_robust needs the trial to report robustness" in record.reason
    record = archive.add({"x": 1}, _report(0.9, 0.05, 1.0))
    assert record.ok and archive.alpha_norm == pytest.approx(0.1 / 0.05)


@pytest.mark.parametrize("tuner_cls", [NSGA2Tuner, MSuNASTuner])
def test_tuners_search_on_the_derived_objective(tuner_cls: type, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """NSGA2 and MSuNAS optimise top1_robust from trials that report only default, robustness and flops."""
    space = {"a": {"_type": "choice", "_value": list(range(8))}, "b": {"_type": "choice", "_value": list(range(8))}}
    extra = {"initial_samples": 10, "batch_size": 4, "surrogate": "rbf"} if tuner_cls is MSuNASTuner else \
        {"population_size": 8}
    tuner = tuner_cls(objectives=OBJECTIVES, seed=0, output_dir=str(tmp_path), **extra)

    def trial(p: dict) -> str:  # accuracy rises with a, robustness worsens with b, flops with a + b
        return _report(0.5 + 0.05 * p["a"], 0.01 + 0.02 * p["b"], 1.0 + p["a"] + p["b"])

    done = simulate(tuner, space, trial, n_trials=30, concurrency=2)
    assert len(done) == 30
    ok = [r for r in tuner.archive.finished if r.ok]
    err = np.array([1 - r.metrics["default"] for r in ok])
    values, alpha_norm = top1_robust(err, np.array([r.metrics["robustness"] for r in ok]))
    assert tuner.archive.alpha_norm == pytest.approx(alpha_norm)
    assert [r.metrics["top1_robust"] for r in ok] == pytest.approx(values)
    history = (tmp_path / "history.csv").read_text()
    assert "top1_robust" in history.splitlines()[0] and "robustness" in history.splitlines()[0]
