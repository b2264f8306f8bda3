"""MOOD-NAS's GPU-memory batch-size estimator: predict peak memory, propose a batch size, back off on OOM.

MOOD-NAS predicts the peak GPU memory (MB) of training a network from its size (parameters, in
millions) and the batch size with a degree-2 polynomial ridge regression
(``make_pipeline(PolynomialFeatures(2), Ridge(alpha))``), trained on a CSV with the columns
``model size``, ``batch size`` and ``GPU mb``. :class:`BatchSizeEstimator` is that regression plus
the rules to turn it into a batch size: keep a safety margin under the memory limit, round to a
multiple of 8, fall back to a conservative rule while there are too few measurements, and remember
out-of-memory failures. Memory is in MiB (``2**20`` bytes) throughout.

Example:
    >>> est = BatchSizeEstimator(margin_mb=100.0)
    >>> for p in (1.0, 2.0, 4.0):
    ...     for b in (32, 128):
    ...         est.add(p, b, 300.0 + 50.0 * p + (2.0 + 0.5 * p) * b)
    >>> b = est.propose(2.0, limit_mb=1000.0)
    >>> b % 8 == 0 and est.predict_mb(2.0, b) <= 900.0 < est.predict_mb(2.0, b + 8)
    True
"""
from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import numpy as np
import torch
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import PolynomialFeatures

from nni_ext._io import atomic_write_csv

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Column names of MOOD-NAS's ``batch_data.csv`` (written by :meth:`BatchSizeEstimator.to_csv`).
SEED_COLUMNS = ("model size", "batch size", "GPU mb")
#: snake_case column names, also accepted by :meth:`BatchSizeEstimator.from_csv`.
SNAKE_COLUMNS = ("params_m", "batch_size", "peak_mb")
#: A degree-2 polynomial in 2 variables has 6 coefficients; fewer measurements use the fallback rule.
MIN_FIT_RECORDS = 6
_MIB = float(2**20)


@dataclass(frozen=True)
class MemoryRecord:
    """One measurement: a network of ``params_m`` million parameters peaked at ``peak_mb`` MiB at ``batch_size``."""

    params_m: float
    batch_size: int
    peak_mb: float


def _number(name: str, value: Any, *, fix: str, positive: bool = True) -> float:
    """``value`` as a finite float (``> 0`` when ``positive``), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}; {fix}")
    out = float(value)
    if not math.isfinite(out) or (positive and out <= 0):
        raise ValueError(f"{name} must be a finite number{' > 0' if positive else ''}, got {value!r}; {fix}")
    return out


def _count(name: str, value: Any, *, fix: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}; {fix}")
    return int(value)


def _round8(batch: int) -> int:
    """Round down to a multiple of 8 when ``batch >= 8``; smaller sizes are kept as they are."""
    return batch - batch % 8 if batch >= 8 else batch


class BatchSizeEstimator:
    """Predict peak GPU memory from (model size, batch size) and propose the largest batch that fits.

    With at least :data:`MIN_FIT_RECORDS` (6) measurements the prediction is the MOOD-NAS regression,
    ``make_pipeline(PolynomialFeatures(2), Ridge(alpha))`` on ``(params_m, batch_size) -> peak_mb``.

    **Fallback with fewer measurements.** Each measurement ``(p0, b0, m0)`` gives the bound
    ``m0 * max(1, b / b0) * max(1, p / p0)``, and the prediction is the smallest of these bounds: the
    closest measurement, scaled linearly up (never down) in batch size and in model size. It is an
    upper bound of the true memory whenever memory is a polynomial with non-negative coefficients of
    degree at most 1 in each variable (fixed cost + weights + activations per sample), which is how
    training memory behaves. With no measurement at all :meth:`propose` returns ``min_batch``.

    **Out-of-memory failures.** :meth:`backoff` records that ``batch_size`` failed for a model size;
    from then on proposals for that model size, and for larger ones, stay strictly below it (also
    when a later call gives a larger limit). Failures are not written by :meth:`to_csv`.

    Args:
        alpha: Ridge regularisation strength.
        margin_mb: Memory kept free under the limit given to :meth:`propose`.
        min_batch: Smallest batch size :meth:`propose` may return; if even it does not fit, it raises.
        max_batch: Largest batch size :meth:`propose` may return.
        prior: Measurements to start from (e.g. :meth:`from_csv` of another GPU's data).

    Example:
        >>> est = BatchSizeEstimator(prior=[MemoryRecord(3.6, 64, 2100.0)])
        >>> est.propose(3.6, limit_mb=4000.0)  # fallback: 2100 MB * b / 64 <= 3500 MB
        104
        >>> est.backoff(104, params_m=3.6)
        48
        >>> est.propose(3.6, limit_mb=8000.0)  # stays below the failed 104
        96
    """

    def __init__(self, *, alpha: float = 1.0, margin_mb: float = 500.0, min_batch: int = 8,
                 max_batch: int = 1024, prior: Sequence[MemoryRecord] | None = None) -> None:
        self.alpha = _number("alpha", alpha, fix="pass a ridge strength such as alpha=1.0", positive=False)
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}; pass a ridge strength such as alpha=1.0")
        self.margin_mb = _number("margin_mb", margin_mb, positive=False,
                                 fix="pass the MB to keep free, e.g. margin_mb=500.0")
        if self.margin_mb < 0:
            raise ValueError(f"margin_mb must be >= 0, got {margin_mb!r}; pass the MB to keep free, e.g. 500.0")
        self.min_batch = _count("min_batch", min_batch, fix="pass e.g. min_batch=8")
        self.max_batch = _count("max_batch", max_batch, fix="pass e.g. max_batch=1024")
        if self.max_batch < self.min_batch:
            raise ValueError(f"max_batch={max_batch} is below min_batch={min_batch}; pass max_batch >= min_batch")
        self._records: list[MemoryRecord] = []
        self._failures: dict[float, int] = {}
        self._last_params: float | None = None
        self._model: Pipeline | None = None
        if prior is not None:
            self.fit(prior)

    # ---------------------------------------------------------------- measurements and fitting
    @property
    def records(self) -> tuple[MemoryRecord, ...]:
        """The measurements the estimator is fitted on."""
        return tuple(self._records)

    @property
    def fitted(self) -> bool:
        """True when the regression is in use (at least 6 measurements), False while on the fallback rule."""
        return self._model is not None

    @property
    def failures(self) -> dict[float, int]:
        """Smallest batch size that ran out of memory, per model size (params in millions)."""
        return dict(self._failures)

    def add(self, params_m: float, batch_size: int, peak_mb: float) -> None:
        """Record one measurement and refit.

        Args:
            params_m: Model size in millions of parameters.
            batch_size: Batch size of the measured step.
            peak_mb: Peak GPU memory of the step, in MiB (e.g. :func:`measure_peak_mb`).

        Example:
            >>> est = BatchSizeEstimator()
            >>> est.add(3.6, 96, 3000.0)
            >>> len(est.records), est.fitted
            (1, False)
        """
        self._records.append(self._record(params_m, batch_size, peak_mb))
        self._refit()

    def fit(self, records: Iterable[MemoryRecord]) -> BatchSizeEstimator:
        """Replace the measurements with ``records`` and refit; returns ``self``.

        Example:
            >>> recs = [MemoryRecord(p, b, 100 + 10 * p * b) for p in (1, 2, 3) for b in (8, 64)]
            >>> BatchSizeEstimator().fit(recs).fitted
            True
        """
        checked = []
        for i, rec in enumerate(records):
            if not isinstance(rec, MemoryRecord):
                raise ValueError(f"records[{i}] is a {type(rec).__name__}, not a MemoryRecord; "
                                 "pass MemoryRecord(params_m, batch_size, peak_mb) items")
            checked.append(self._record(rec.params_m, rec.batch_size, rec.peak_mb))
        self._records = checked
        self._refit()
        return self

    @staticmethod
    def _record(params_m: Any, batch_size: Any, peak_mb: Any) -> MemoryRecord:
        return MemoryRecord(
            _number("params_m", params_m, fix="give the model size in millions of parameters"),
            _count("batch_size", batch_size, fix="give the batch size of the measured step"),
            _number("peak_mb", peak_mb, fix="give the measured peak GPU memory in MiB"))

    def _refit(self) -> None:
        if len(self._records) < MIN_FIT_RECORDS:
            self._model = None
            return
        X = np.array([[r.params_m, r.batch_size] for r in self._records], dtype=float)
        y = np.array([r.peak_mb for r in self._records], dtype=float)
        self._model = make_pipeline(PolynomialFeatures(2), Ridge(alpha=self.alpha)).fit(X, y)

    # ---------------------------------------------------------------- prediction
    def predict_mb(self, params_m: float, batch_size: int) -> float:
        """Predicted peak memory (MiB) of training a ``params_m``-million-parameter model at ``batch_size``.

        Uses the regression when fitted, else the fallback bound (see the class docstring); raises
        ValueError with no measurement at all.

        Example:
            >>> BatchSizeEstimator(prior=[MemoryRecord(2.0, 32, 1000.0)]).predict_mb(2.0, 64)
            2000.0
        """
        p = _number("params_m", params_m, fix="give the model size in millions of parameters")
        b = _count("batch_size", batch_size, fix="give a batch size >= 1")
        return float(self._predict(p, np.array([b], dtype=float))[0])

    def _predict(self, params_m: float, batches: np.ndarray) -> np.ndarray:
        if self._model is not None:
            X = np.column_stack([np.full(len(batches), params_m), batches])
            return np.asarray(self._model.predict(X), dtype=float)
        if not self._records:
            raise ValueError("the estimator has no measurements; add() some, or pass prior=... or from_csv()")
        p0 = np.array([r.params_m for r in self._records])
        b0 = np.array([r.batch_size for r in self._records], dtype=float)
        m0 = np.array([r.peak_mb for r in self._records])
        bound = (m0[None, :] * np.maximum(1.0, batches[:, None] / b0[None, :])
                 * np.maximum(1.0, params_m / p0)[None, :])
        return np.asarray(bound.min(axis=1), dtype=float)

    # ---------------------------------------------------------------- proposing and backing off
    def _failed_cap(self, params_m: float) -> int | None:
        """Largest batch size still allowed after recorded failures for this or a smaller model size."""
        failed = [b for p, b in self._failures.items() if p <= params_m * (1 + 1e-9)]
        return min(failed) - 1 if failed else None

    def propose(self, params_m: float, *, limit_mb: float, preferred: int | None = None) -> int:
        """The largest batch size whose predicted memory is at most ``limit_mb - margin_mb``.

        Candidates are ``min_batch`` and the multiples of 8 from ``min_batch`` to ``max_batch`` (and the
        sizes below 8 when ``min_batch < 8``), never above a size that ran out of memory (see
        :meth:`backoff`). The proposal is the largest candidate such that it and every smaller
        candidate are predicted to fit, so a fit that bends down at large batch sizes cannot
        lure it past a size predicted not to fit. ``preferred`` (rounded down to a multiple of 8
        when >= 8) is returned instead when it is not larger than that (nor below ``min_batch``). With
        no measurement there is nothing to predict from and the proposal is ``min_batch``.

        Args:
            params_m: Model size in millions of parameters.
            limit_mb: GPU memory available for the run, in MiB (e.g. :func:`free_memory_mb`).
            preferred: Batch size to use if it is predicted to fit.

        Returns:
            A batch size ``>= min_batch`` (so ``>= 1``).

        Raises:
            ValueError: On bad input, or when even ``min_batch`` is predicted not to fit or has run
                out of memory before.

        Example:
            >>> est = BatchSizeEstimator(margin_mb=0.0, prior=[MemoryRecord(1.0, 100, 1000.0)])
            >>> est.propose(1.0, limit_mb=2000.0), est.propose(1.0, limit_mb=2000.0, preferred=60)
            (200, 56)
        """
        p = _number("params_m", params_m, fix="give the model size in millions of parameters")
        limit = _number("limit_mb", limit_mb, fix="give the GPU memory available in MiB")
        if preferred is not None:
            preferred = _round8(_count("preferred", preferred, fix="pass a batch size >= 1 or None"))
        self._last_params = p
        budget = limit - self.margin_mb
        cap = self.max_batch
        failed = self._failed_cap(p)
        if failed is not None:
            cap = min(cap, failed)
            if cap < self.min_batch:
                raise ValueError(f"batch size {self.min_batch} (min_batch) for a {p:g}M-parameter model ran out "
                                 f"of memory before (failed at {failed + 1}); lower min_batch or use a larger GPU")
        if not self._records:
            choice = self.min_batch
        else:
            small = np.arange(self.min_batch, min(cap, 7) + 1)
            eights = np.arange(8, cap + 1, 8)
            cands = np.unique(np.concatenate([[self.min_batch], small, eights[eights >= self.min_batch]]))
            mb = self._predict(p, cands.astype(float))
            fits = mb <= budget
            if not fits[0]:
                raise ValueError(f"batch size {self.min_batch} (min_batch) for a {p:g}M-parameter model is "
                                 f"predicted to need {mb[0]:.0f} MB, above the limit {limit:.0f} MB minus the "
                                 f"margin {self.margin_mb:.0f} MB; lower min_batch or margin_mb, or use a "
                                 "larger GPU")
            prefix = int(np.argmin(fits)) if not fits.all() else len(fits)
            choice = int(cands[prefix - 1])
        if preferred is not None:
            choice = max(min(preferred, choice), self.min_batch)
        return choice

    def backoff(self, batch_size: int, *, params_m: float | None = None) -> int:
        """Record that ``batch_size`` ran out of memory and return the size to retry with.

        The retry size is half of ``batch_size``, rounded down to a multiple of 8 when >= 8, and at
        least 1. Later proposals for this model size (and larger ones) stay below ``batch_size``.

        Args:
            batch_size: The batch size that failed.
            params_m: Model size in millions of parameters; default: that of the last :meth:`propose`.

        Example:
            >>> BatchSizeEstimator().backoff(200, params_m=3.6)
            96
        """
        b = _count("batch_size", batch_size, fix="give the batch size that ran out of memory")
        if params_m is None:
            if self._last_params is None:
                raise ValueError("backoff() got no params_m and propose() was never called; "
                                 "pass params_m=<model size in millions>")
            p = self._last_params
        else:
            p = _number("params_m", params_m, fix="give the model size in millions of parameters")
        self._failures[p] = min(b, self._failures.get(p, b))
        return max(1, _round8(b // 2))

    # ---------------------------------------------------------------- CSV
    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the measurements to ``path`` atomically, with MOOD-NAS's column names.

        Example:
            >>> import tempfile
            >>> est = BatchSizeEstimator(prior=[MemoryRecord(3.6, 96, 3000.0)])
            >>> with tempfile.TemporaryDirectory() as d:
            ...     BatchSizeEstimator.from_csv(est.to_csv(f"{d}/batch_data.csv")).records
            (MemoryRecord(params_m=3.6, batch_size=96, peak_mb=3000.0),)
        """
        rows = [dict(zip(SEED_COLUMNS, (r.params_m, r.batch_size, r.peak_mb))) for r in self._records]
        return atomic_write_csv(path, rows, list(SEED_COLUMNS))

    @classmethod
    def from_csv(cls, path: str | os.PathLike, **kwargs: Any) -> BatchSizeEstimator:
        """An estimator fitted on a CSV with columns ``model size, batch size, GPU mb`` (or snake_case).

        The snake_case names ``params_m, batch_size, peak_mb`` are accepted too; other columns (such
        as a pandas index) are ignored.

        Args:
            path: The CSV file.
            **kwargs: Keyword arguments of the constructor (``alpha``, ``margin_mb``, ...).

        Example:
            See :meth:`to_csv`.
        """
        path = Path(path)
        expected = f"{', '.join(SEED_COLUMNS)} (or {', '.join(SNAKE_COLUMNS)})"
        if not path.is_file():
            raise ValueError(f"memory CSV {path} not found; give a CSV with the columns {expected}")
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            names = next((cols for cols in (SEED_COLUMNS, SNAKE_COLUMNS) if set(cols) <= set(header)), None)
            if names is None:
                raise ValueError(f"memory CSV {path} has the columns {header}; expected {expected}")
            records = []
            for line, row in enumerate(reader, start=2):
                row = {(k or "").strip(): v for k, v in row.items()}
                try:
                    p, b, m = (float(row[c]) for c in names)
                except (TypeError, ValueError):
                    raise ValueError(f"memory CSV {path}, line {line}: {[row.get(c) for c in names]} are not "
                                     f"all numbers; expected {expected}") from None
                if not b.is_integer():
                    raise ValueError(f"memory CSV {path}, line {line}: batch size {b} is not a whole number")
                try:
                    records.append(cls._record(p, int(b), m))
                except ValueError as exc:
                    raise ValueError(f"memory CSV {path}, line {line}: {exc}") from None
        return cls(prior=records, **kwargs)


# -------------------------------------------------------------------- torch helpers
def _cuda(device: torch.device | str | int) -> torch.device | None:
    """``device`` as a torch device when it is a CUDA device and CUDA is available, else None."""
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return None
    return dev


def free_memory_mb(device: torch.device | str | int) -> float | None:
    """Free memory (MiB) on a CUDA device, from ``torch.cuda.mem_get_info``; None on CPU or without CUDA.

    Example:
        >>> free_memory_mb("cpu") is None
        True
    """
    dev = _cuda(device)
    if dev is None:
        return None
    free, _total = torch.cuda.mem_get_info(dev)
    return free / _MIB


def measure_peak_mb(step: Callable[[], None], device: torch.device | str | int) -> float | None:
    """Run ``step()`` once and return its peak allocated CUDA memory in MiB (None on CPU, after running it).

    Resets ``torch.cuda.reset_peak_memory_stats`` first, so the peak is the step's own, and reads
    ``torch.cuda.max_memory_allocated`` after it (memory PyTorch's allocator handed out, without the
    CUDA context).

    Example:
        >>> measure_peak_mb(lambda: None, "cpu") is None
        True
    """
    dev = _cuda(device)
    if dev is None:
        step()
        return None
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    step()
    torch.cuda.synchronize(dev)
    return torch.cuda.max_memory_allocated(dev) / _MIB


def is_out_of_memory(exc: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError`` and for a RuntimeError whose message says "out of memory"."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def run_with_backoff(train: Callable[[int], T], batch_size: int, *, estimator: BatchSizeEstimator | None = None,
                     params_m: float | None = None, min_batch: int | None = None) -> tuple[T, int]:
    """Call ``train(batch_size)``, halving the batch size after each CUDA out-of-memory error.

    On an out-of-memory error (see :func:`is_out_of_memory`) the CUDA cache is emptied, the failure
    is recorded with ``estimator.backoff`` (which gives the next size; without an estimator it is
    halved the same way) and ``train`` is called again, never below ``min_batch``. Other errors
    propagate unchanged.

    Args:
        train: Trains (or runs a step) at the given batch size; its result is returned.
        batch_size: The first batch size to try.
        estimator: Records the failures, so its later proposals stay below them.
        params_m: Model size in millions of parameters, for ``estimator``.
        min_batch: Smallest size to try; default ``estimator.min_batch``, or 1 without an estimator.

    Returns:
        ``(train's result, the batch size that worked)``.

    Raises:
        ValueError: When ``min_batch`` still runs out of memory, or on bad input.

    Example:
        >>> def train(b):
        ...     if b > 50:
        ...         raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        ...     return "ok"
        >>> run_with_backoff(train, 256)
        ('ok', 32)
    """
    b = _count("batch_size", batch_size, fix="give the first batch size to try")
    if min_batch is None:
        low = estimator.min_batch if estimator is not None else 1
    else:
        low = _count("min_batch", min_batch, fix="give the smallest batch size to try")
    if estimator is not None and params_m is None:
        raise ValueError("run_with_backoff got an estimator but no params_m; pass params_m=<model size in millions>")
    while True:
        try:
            return train(b), b
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # outside the except block, so the traceback (and the tensors its frames hold) can be freed
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if estimator is not None:
            smaller = estimator.backoff(b, params_m=params_m)
        else:
            smaller = max(1, _round8(b // 2))
        if b <= low:
            raise ValueError(f"batch size {b} still runs out of memory ({message}) and min_batch is {low}; "
                             "use a smaller model, a larger GPU or a lower min_batch")
        log.warning("batch size %d ran out of memory; retrying with %d", b, max(smaller, low))
        b = max(smaller, low)
