"""Tests of nni_ext.pcdarts.memory: MOOD-NAS's GPU-memory batch-size estimator."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures

from nni_ext.pcdarts.memory import (
    SEED_COLUMNS,
    BatchSizeEstimator,
    MemoryRecord,
    free_memory_mb,
    is_out_of_memory,
    measure_peak_mb,
    run_with_backoff,
)

BATCHES = np.array([8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024])
SIZES = np.array([0.5, 1.0, 2.0, 3.6, 5.0, 8.0])


def quadratic_law(rng: np.random.Generator):
    """A random degree-2 memory law in (params in millions, batch size), increasing in both."""
    c = rng.uniform([200, 20, 1.0, 0.2, 0.0, 0.0], [800, 80, 6.0, 2.0, 2e-3, 5.0])

    def law(p, b):
        p, b = np.asarray(p, dtype=float), np.asarray(b, dtype=float)
        return c[0] + c[1] * p + c[2] * b + c[3] * p * b + c[4] * b * b + c[5] * p * p
    return law


def fitted(law, rng: np.random.Generator, *, noise: float = 0.01, **kwargs) -> BatchSizeEstimator:
    est = BatchSizeEstimator(**kwargs)
    recs = [MemoryRecord(float(p), int(b), float(law(p, b) * (1 + noise * rng.standard_normal())))
            for p in SIZES for b in BATCHES]
    return est.fit(recs)


def test_fit_predicts_held_out_points_within_a_few_percent():
    rng = np.random.default_rng(0)
    for _ in range(5):
        law = quadratic_law(rng)
        est = fitted(law, rng)
        assert est.fitted
        p = rng.uniform(0.5, 8.0, size=50)
        b = rng.integers(8, 1025, size=50)
        pred = np.array([est.predict_mb(float(pi), int(bi)) for pi, bi in zip(p, b)])
        rel = np.abs(pred - law(p, b)) / law(p, b)
        assert rel.max() < 0.05, rel.max()


def test_propose_never_exceeds_the_limit_and_is_the_largest_that_fits():
    rng = np.random.default_rng(1)
    proposed = refused = 0
    for _ in range(20):
        law = quadratic_law(rng)
        margin = float(rng.choice([0.0, 250.0, 500.0]))
        max_batch = int(rng.choice([256, 1000, 1024]))
        est = fitted(law, rng, margin_mb=margin, max_batch=max_batch)
        for _ in range(25):
            p = float(rng.uniform(0.3, 10.0))
            limit = float(rng.uniform(200.0, 40000.0))
            budget = limit - margin
            try:
                b = est.propose(p, limit_mb=limit)
            except ValueError as exc:
                assert est.predict_mb(p, 8) > budget, exc
                refused += 1
                continue
            proposed += 1
            assert 8 <= b <= max_batch and b % 8 == 0
            assert est.predict_mb(p, b) <= budget
            assert b + 8 > max_batch or est.predict_mb(p, b + 8) > budget
            preferred = int(rng.integers(1, 2 * max_batch))
            q = est.propose(p, limit_mb=limit, preferred=preferred)
            assert q <= b and est.predict_mb(p, q) <= budget
            assert q == max(8, min(b, preferred - preferred % 8 if preferred >= 8 else preferred))
    assert proposed > 100 and refused > 0


def test_backoff_keeps_later_proposals_below_the_failed_size():
    rng = np.random.default_rng(2)
    est = fitted(quadratic_law(rng), rng)
    limit = est.predict_mb(3.6, 600) + est.margin_mb
    b = est.propose(3.6, limit_mb=limit)
    assert b == 600 - 600 % 8
    retry = est.backoff(b)  # params_m defaults to the last propose()
    assert retry == (b // 2) - (b // 2) % 8
    assert est.failures == {3.6: b}
    for lim in (limit, 2 * limit, 10 * limit):
        assert est.propose(3.6, limit_mb=lim) < b
        assert est.propose(5.0, limit_mb=lim) < b  # a larger model cannot fit either
    assert est.propose(0.5, limit_mb=10 * limit) > b  # a smaller model is not held back
    est.backoff(8, params_m=3.6)
    with pytest.raises(ValueError, match="ran out of memory before"):
        est.propose(3.6, limit_mb=limit)


def test_fewer_than_six_records_fall_back_to_a_bound_below_the_limit():
    rng = np.random.default_rng(3)
    for _ in range(200):
        c = rng.uniform([100, 10, 0.5, 0.1], [900, 100, 5.0, 2.0])

        def law(p, b, c=c):
            return c[0] + c[1] * p + c[2] * b + c[3] * p * b
        n = int(rng.integers(1, 6))
        recs = [MemoryRecord(float(p), int(b), float(law(p, b)))
                for p, b in zip(rng.uniform(0.5, 8, n), rng.integers(8, 513, n))]
        est = BatchSizeEstimator(prior=recs)
        assert not est.fitted
        p, limit = float(rng.uniform(0.5, 10)), float(rng.uniform(1000, 30000))
        try:
            b = est.propose(p, limit_mb=limit)
        except ValueError:
            assert est.predict_mb(p, 8) > limit - est.margin_mb
            continue
        assert law(p, b) <= est.predict_mb(p, b) <= limit - est.margin_mb
    assert BatchSizeEstimator(min_batch=4).propose(3.6, limit_mb=100.0) == 4  # no data: min_batch


def test_fallback_becomes_the_regression_at_six_records():
    points = [(1.0, 8), (1.0, 64), (2.0, 32), (4.0, 8), (4.0, 64), (3.0, 128)]
    est = BatchSizeEstimator(alpha=0.5)
    for p, b in points:
        assert not est.fitted
        est.add(p, b, 300 + 40 * p + 3 * b + p * b)
    assert est.fitted and len(est.records) == 6
    X = np.array(points, dtype=float)
    y = 300 + 40 * X[:, 0] + 3 * X[:, 1] + X[:, 0] * X[:, 1]
    seed_model = make_pipeline(PolynomialFeatures(2), Ridge(alpha=0.5)).fit(X, y)  # MOOD-NAS's regression
    assert est.predict_mb(2.5, 100) == pytest.approx(seed_model.predict([[2.5, 100]])[0])


def test_csv_round_trip_with_the_seed_column_names(tmp_path):
    seed = tmp_path / "batch_data.csv"
    seed.write_text(",model size,batch size,GPU mb\n0,3.63,200,9011.5\n1,1.2,96,2500\n2,3.63,64,3100.0\n")
    est = BatchSizeEstimator.from_csv(seed, margin_mb=100.0)
    assert est.margin_mb == 100.0
    assert est.records == (MemoryRecord(3.63, 200, 9011.5), MemoryRecord(1.2, 96, 2500.0),
                           MemoryRecord(3.63, 64, 3100.0))
    out = est.to_csv(tmp_path / "sub" / "out.csv")
    assert out.read_text().splitlines()[0] == ",".join(SEED_COLUMNS)
    assert BatchSizeEstimator.from_csv(out).records == est.records
    assert not list(out.parent.glob(".*.tmp"))
    snake = tmp_path / "snake.csv"
    snake.write_text("params_m,batch_size,peak_mb\n2.0,32.0,1500\n")
    assert BatchSizeEstimator.from_csv(snake).records == (MemoryRecord(2.0, 32, 1500.0),)


def test_csv_errors_name_the_file_and_the_columns(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("size,batch,mem\n1,2,3\n")
    with pytest.raises(ValueError, match=r"bad\.csv.*model size, batch size, GPU mb.*params_m"):
        BatchSizeEstimator.from_csv(bad)
    with pytest.raises(ValueError, match="not found"):
        BatchSizeEstimator.from_csv(tmp_path / "missing.csv")
    bad.write_text("model size,batch size,GPU mb\n1.0,abc,300\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 2"):
        BatchSizeEstimator.from_csv(bad)
    bad.write_text("model size,batch size,GPU mb\n1.0,32,-5\n")
    with pytest.raises(ValueError, match="peak_mb"):
        BatchSizeEstimator.from_csv(bad)


def test_bad_input_raises_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match="alpha"):
        BatchSizeEstimator(alpha=-1.0)
    with pytest.raises(ValueError, match="margin_mb"):
        BatchSizeEstimator(margin_mb=-1)
    with pytest.raises(ValueError, match="min_batch"):
        BatchSizeEstimator(min_batch=0)
    with pytest.raises(ValueError, match="max_batch=4 is below min_batch=8"):
        BatchSizeEstimator(max_batch=4)
    with pytest.raises(ValueError, match="MemoryRecord"):
        BatchSizeEstimator(prior=[(1.0, 8, 100.0)])  # type: ignore[list-item]
    est = BatchSizeEstimator(prior=[MemoryRecord(2.0, 32, 1000.0)])
    with pytest.raises(ValueError, match="limit_mb"):
        est.propose(2.0, limit_mb=-5.0)
    with pytest.raises(ValueError, match="params_m"):
        est.propose(float("nan"), limit_mb=5000.0)
    with pytest.raises(ValueError, match="preferred"):
        est.propose(2.0, limit_mb=5000.0, preferred=0)
    with pytest.raises(ValueError, match="batch_size"):
        est.add(2.0, 3.5, 100.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"2M-parameter model is predicted to need 1000 MB.*limit 700 MB"):
        BatchSizeEstimator(min_batch=32, prior=[MemoryRecord(2.0, 32, 1000.0)]).propose(2.0, limit_mb=700.0)
    with pytest.raises(ValueError, match="no measurements"):
        BatchSizeEstimator().predict_mb(1.0, 8)
    with pytest.raises(ValueError, match="params_m"):
        BatchSizeEstimator().backoff(64)


def test_out_of_memory_error_can_be_built_without_a_gpu():
    exc = torch.cuda.OutOfMemoryError("CUDA out of memory")
    assert isinstance(exc, RuntimeError) and is_out_of_memory(exc)
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_run_with_backoff_ends_below_the_failing_threshold():
    tried = []

    def train(b: int) -> str:
        tried.append(b)
        if b >= 100:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return f"trained at {b}"

    est = BatchSizeEstimator(prior=[MemoryRecord(3.6, 64, 2000.0)])
    result, b = run_with_backoff(train, 512, estimator=est, params_m=3.6, min_batch=8)
    assert (result, b) == ("trained at 64", 64) and tried == [512, 256, 128, 64]
    assert est.failures == {3.6: 128}
    assert est.propose(3.6, limit_mb=1e6) < 128

    def old_style(b: int) -> int:
        if b > 20:
            raise RuntimeError("CUDA error: out of memory")
        return b
    assert run_with_backoff(old_style, 100) == (8, 8)  # 100 -> 48 -> 24 -> 8 (halved, multiples of 8)


def test_run_with_backoff_gives_up_at_min_batch_and_passes_other_errors():
    def never(b: int) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    with pytest.raises(ValueError, match="batch size 16 still runs out of memory.*min_batch is 16"):
        run_with_backoff(never, 64, min_batch=16)

    def broken(b: int) -> None:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    with pytest.raises(RuntimeError, match="shapes"):
        run_with_backoff(broken, 64)
    with pytest.raises(ValueError, match="params_m"):
        run_with_backoff(broken, 64, estimator=BatchSizeEstimator())


def test_cpu_device_reports_no_memory_but_runs_the_step():
    ran = []
    assert measure_peak_mb(lambda: ran.append(1), "cpu") is None and ran == [1]
    assert free_memory_mb(torch.device("cpu")) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_peak_and_free_memory():
    free = free_memory_mb("cuda")
    assert free is not None and free > 0

    def step() -> None:
        x = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")
        del x
    peak = measure_peak_mb(step, "cuda")
    assert peak is not None and peak >= 64
