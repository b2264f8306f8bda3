"""Soft-voting ensemble accuracy and latency from sparse top-k tables, for a whole population at once.

The ensemble of a membership row ``b`` (``b[m] = 1`` when model ``m`` is a member) predicts, for each
image, the class with the largest summed top-k probability over its members (unweighted soft voting,
the seed's ``EnsembleProblemSoft``; a class outside a member's top-k adds 0).

**Tie rule.** An image counts as correct only if the label's summed probability is *strictly* larger than
every other class's; a tie for the top score is an error (there is no winner, and ``np.argmax``'s
pick of the lowest class id would be arbitrary). Decisive sums are taken in float64 over float32
probabilities, which is exact for probabilities above about 1e-7, so the decision does not depend on
summation order.

**How it is fast.** :class:`SoftVotingScorer` compiles the tables once, per image:

* classes whose probability is strictly below the label's in every model can never win and are dropped;
* an image where some class is at least the label's in every model is wrong for every ensemble, and an
  image with no class left is right for every non-empty ensemble (constants, never recomputed);
* among the remaining ("threat") classes of a contested image, one that another threat matches or beats
  in every model is dropped too (it can never be the strongest rival).

A contested image is right for ensemble ``b`` iff ``b @ (p_label - p_t) > 0`` for each of its threats
``t``, so a population ``B`` (``P x models``) is scored with float32 matrix products against the
``threats x models`` margins, a minimum per image and a count; products within their rounding bound
of 0 are recomputed exactly in float64, so the result equals the dense computation. The margins are
stored in blocks of about 2,000 threats of images with as many threats, threat ``j`` of every image of
a block in one slab of rows, so that a block's product ``(threats, P)``, its minimum over the slabs and
the counts stay in the CPU cache; the blocks are shared out between threads (one per core, at most 4),
each running single-threaded BLAS. Memory is ``threats x models`` (float64 and float32 copies), never
models x images x classes. A per-row cache is available (``cache_size``) but off by default: a search
with duplicate elimination re-scores about 1 % of its rows, too few to pay for the look-ups.

Example:
    >>> from nni_ext.ensemble.tables import synthetic_tables
    >>> t = synthetic_tables(models=4, images=200, classes=50, seed=0)
    >>> B = np.array([[1, 0, 0, 0], [1, 1, 1, 1]], dtype=bool)
    >>> bool(np.allclose(SoftVotingScorer(t).accuracy(B), dense_accuracy(t, B)))
    True
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .tables import TopKTables

log = logging.getLogger(__name__)

Criterion = Literal["max", "sum"]
CRITERIA = ("max", "sum")


def ensemble_latency(membership: np.ndarray, latency: np.ndarray, *, criterion: str) -> np.ndarray:
    """``(P,)`` latency of each ensemble: ``max`` of its members' (run in parallel) or their ``sum`` (in turn).

    An empty ensemble has latency 0.
    """
    B = _membership(membership, len(latency))
    lat = np.asarray(latency, dtype=float)
    if criterion == "max":
        return np.where(B, lat[None, :], 0.0).max(axis=1, initial=0.0)
    if criterion == "sum":
        return B.astype(float) @ lat
    raise ValueError(f"criterion={criterion!r}; use 'max' (members run in parallel) or 'sum' (one after another)")


def _membership(membership: np.ndarray, n_models: int) -> np.ndarray:
    B = np.asarray(membership)
    if B.ndim == 1:
        B = B[None, :]
    if B.ndim != 2 or B.shape[1] != n_models:
        raise ValueError(f"membership has shape {np.shape(membership)}; expected (ensembles, {n_models}) of 0/1")
    return B.astype(bool, copy=False)


@dataclass(frozen=True)
class CompileStats:
    """How the tables reduced: images decided for every ensemble and what the matrix products cover."""

    images: int
    always_right: int
    always_wrong: int
    contested: int
    threats: int
    seconds: float


class SoftVotingScorer:
    """Accuracy of soft-voting ensembles of the models in ``tables`` (see the module docstring).

    Args:
        tables: the models' top-k tables.
        chunk: images compiled at a time (bounds the compile's memory).
        cache_size: membership rows whose correct-count is remembered (0, the default: no cache; an
            NSGA-II run with duplicate elimination re-scores about 1 % of its rows, so a cache rarely pays).
        block: threats scored at a time (their products and minima stay in the CPU cache).
        threads: threads scoring blocks side by side (default: the usable CPU cores, at most 4).
    """

    def __init__(self, tables: TopKTables, *, chunk: int = 512, cache_size: int = 0, block: int = 2048,
                 threads: int | None = None) -> None:
        import time

        if chunk < 1:
            raise ValueError(f"chunk={chunk} must be at least 1")
        if cache_size < 0:
            raise ValueError(f"cache_size={cache_size} must be 0 (no cache) or more")
        if block < 1:
            raise ValueError(f"block={block} must be at least 1")
        start = time.perf_counter()
        self.n_models, self.n_images = tables.n_models, tables.n_images
        self.cache_size = cache_size
        self._cache: dict[bytes, int] = {}
        margins, counts = [], []
        right = wrong = 0
        self.threads = _default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"threads={threads} must be at least 1")

        def compile_chunk(a: int) -> tuple[np.ndarray, np.ndarray, int, int]:
            b = min(a + chunk, self.n_images)
            return _compile_chunk(tables.ids[:, a:b], tables.probs[:, a:b], tables.labels[a:b])

        starts_ = range(0, self.n_images, chunk)
        if self.threads > 1 and len(starts_) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.threads) as pool:
                compiled = list(pool.map(compile_chunk, starts_))
        else:
            compiled = [compile_chunk(a) for a in starts_]
        for m, c, r, w in compiled:
            margins.append(m)
            counts.append(c)
            right, wrong = right + r, wrong + w
        self.always_right = right
        per_image = np.concatenate(counts)
        order = np.argsort(per_image, kind="stable")  # by number of threats
        starts = np.concatenate([[0], np.cumsum(per_image)[:-1]])
        columns = np.concatenate([np.arange(starts[i], starts[i] + per_image[i]) for i in order]) \
            if len(order) else np.zeros(0, dtype=np.int64)
        #: (threats, models) exact margins p_label - p_threat (float64); threats of one image are adjacent,
        #: images sorted by their number of threats
        self.A = np.ascontiguousarray(np.concatenate(margins, axis=0)[columns])
        counts_sorted = per_image[order]
        sizes, size_start = np.unique(counts_sorted, return_index=True)
        col_start = np.concatenate([[0], np.cumsum(counts_sorted)])[size_start]
        #: (threats per image, first column, number of images) of each run of images with as many threats
        self._groups = [(int(t), int(c), int(n)) for t, c, n in
                        zip(sizes, col_start, np.diff(np.append(size_start, len(counts_sorted))))]
        self._first = np.concatenate([[0], np.cumsum(counts_sorted)[:-1]]).astype(np.intp)  # per contested image
        self._count = counts_sorted.astype(np.intp)
        self._blocks = self._make_blocks(block)
        self._parts = _share_out(self._blocks, self.threads)
        self._executor: Any = None
        self._executor_pid = 0
        self.stats = CompileStats(images=self.n_images, always_right=right, always_wrong=wrong,
                                  contested=len(per_image), threats=int(self.A.shape[0]),
                                  seconds=time.perf_counter() - start)
        log.info("compiled %d images: %d always right, %d always wrong, %d contested with %d threats (%.2f s)",
                 self.n_images, right, wrong, self.stats.contested, self.stats.threats, self.stats.seconds)

    def _make_blocks(self, block: int) -> list[tuple[int, int, int, np.ndarray]]:
        """Blocks of contested images with as many threats each: ``(threats per image, first image, images,
        float32 margins (threats, models))``, threat ``j`` of every image in a contiguous slab of rows.
        """
        blocks = []
        image = 0
        for t, c, n in self._groups:
            step = max(1, block // t)
            for i0 in range(0, n, step):
                k = min(step, n - i0)
                rows = (c + (i0 + np.arange(k))[None, :] * t + np.arange(t)[:, None]).ravel()  # slab j, image i
                blocks.append((t, image + i0, k, self.A[rows].astype(np.float32)))
            image += n
        return blocks

    def correct(self, membership: np.ndarray) -> np.ndarray:
        """``(P,)`` number of images each ensemble gets right (0 for an empty ensemble)."""
        B = _membership(membership, self.n_models)
        if not self.cache_size:
            return self._correct(B)
        keys = [row.tobytes() for row in np.packbits(B, axis=1)]
        out = np.empty(len(B), dtype=np.int64)
        todo: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            hit = self._cache.get(key)
            if hit is None:
                todo.setdefault(key, []).append(i)
            else:
                out[i] = hit
        if todo:
            first = [rows[0] for rows in todo.values()]
            fresh = self._correct(B[first])
            if len(self._cache) + len(todo) > self.cache_size:
                self._cache.clear()
            for (key, rows), value in zip(todo.items(), fresh):
                out[rows] = value
                self._cache[key] = int(value)
        return out

    def accuracy(self, membership: np.ndarray) -> np.ndarray:
        """``(P,)`` share of images each ensemble gets right (soft voting, ties are errors)."""
        return self.correct(membership) / self.n_images

    def _correct(self, B: np.ndarray) -> np.ndarray:
        count = np.full(len(B), self.always_right, dtype=np.int64)
        if len(self.A) and len(B):
            count += self._contested_right(B)
        count[~B.any(axis=1)] = 0
        return count

    def _contested_right(self, B: np.ndarray) -> np.ndarray:
        """``(P,)`` contested images right: the smallest margin over an image's threats is positive.

        Block by block (so a block's products and minima stay in the CPU cache; the blocks are shared
        out between ``threads`` threads, each running single-threaded BLAS), a float32 product gives
        every margin within ``tol`` (its rounding bound); (image, ensemble) pairs whose smallest margin
        lies within ``tol`` of 0 are recomputed exactly in float64.
        """
        BT = np.ascontiguousarray(B.T, dtype=np.float32)  # (models, P)
        # |float32 result - exact| <= (M + 1) u sum|a|, |a| <= 1: the dot's rounding plus that of A32
        tol = ((self.n_models + 2) * 2.0 ** -24 * B.sum(axis=1) * 1.01).astype(np.float32)
        parts = self._parts
        with _single_threaded_blas():
            others = [self._pool().submit(_score_blocks, part, BT, tol) for part in parts[1:]]
            results = [_score_blocks(parts[0], BT, tol)]  # this thread scores the first share meanwhile
            results += [f.result() for f in others]
        right = np.sum([r for r, _, _ in results], axis=0)
        images = [i for _, i, _ in results if len(i)]
        if images:
            members = np.concatenate([m for _, i, m in results if len(i)])
            right += self._exact_right(B, np.concatenate(images), members)
        return right

    def _pool(self) -> Any:
        import os

        if self._executor is None or self._executor_pid != os.getpid():  # a forked copy has no worker threads
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max(1, len(self._parts) - 1), thread_name_prefix="soft-voting")
            self._executor_pid = os.getpid()
        return self._executor

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_executor"] = None  # threads do not pickle; a copy starts its own
        return state

    def _exact_right(self, B: np.ndarray, images: np.ndarray, members: np.ndarray) -> np.ndarray:
        """``(P,)`` how many of the (contested image, ensemble) pairs are right, in float64."""
        n = self._count[images]
        owner = np.repeat(np.arange(len(images)), n)
        cols = np.repeat(self._first[images] - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
        exact = np.einsum("ij,ij->i", self.A[cols], B[members[owner]].astype(np.float64))
        smallest = np.minimum.reduceat(exact, np.cumsum(n) - n)
        return np.bincount(members[smallest > 0], minlength=len(B))


def _default_threads() -> int:
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _share_out(blocks: list, parts: int) -> list[list]:
    """Consecutive runs of ``blocks`` with about as many threats each (at most ``parts`` non-empty runs)."""
    if not blocks:
        return [[]]
    work = np.cumsum([len(b[3]) for b in blocks])
    cut = np.searchsorted(work, work[-1] * np.arange(1, parts) / parts)
    bounds = [0, *sorted({int(c) + 1 for c in cut}), len(blocks)]
    return [blocks[i:j] for i, j in itertools.pairwise(bounds) if j > i]


_BLAS: dict[str, Any] = {}


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread inside (threadpoolctl, when installed): each block's product is small, and
    BLAS threads that spin-wait for each other lose badly on a shared or busy CPU; we thread by blocks.
    """
    limit = None
    try:
        if "controller" not in _BLAS:
            from threadpoolctl import ThreadpoolController

            _BLAS["controller"] = ThreadpoolController()
        limit = _BLAS["controller"].limit(limits=1, user_api="blas")
    except Exception:  # noqa: BLE001 - threadpoolctl missing or unable: BLAS keeps its own threads
        limit = None
    try:
        yield
    finally:
        if limit is not None:
            limit.restore_original_limits()


def _score_blocks(blocks: list, BT: np.ndarray, tol: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score some blocks (see :meth:`SoftVotingScorer._contested_right`) for the ensembles ``BT`` (models, P).

    Returns ``(P,)`` sure right counts and the (contested image, ensemble) pairs within ``tol`` of 0.
    """
    P = BT.shape[1]
    neg = -tol
    width = max(len(b[3]) for b in blocks) if blocks else 0
    G = np.empty(width * P, dtype=np.float32)
    flags = np.empty(width * P, dtype=bool)
    right = np.zeros(P, dtype=np.int64)
    images, members = [], []
    for t, first, k, A32 in blocks:
        g = G[:t * k * P].reshape(t * k, P)
        np.matmul(A32, BT, out=g)
        smallest = g[:k]
        for j in range(1, t):
            np.minimum(smallest, g[j * k:(j + 1) * k], out=smallest)
        flag = flags[:k * P].reshape(k, P)
        np.greater(smallest, tol, out=flag)
        sure = flag.view(np.uint8).sum(axis=0, dtype=np.int64)
        right += sure
        np.greater_equal(smallest, neg, out=flag)
        if np.count_nonzero(flag) > sure.sum():  # some pair within tol of 0: recompute it exactly
            i, m = np.nonzero(np.abs(smallest) <= tol)
            images.append(i + first)
            members.append(m)
    if images:
        return right, np.concatenate(images), np.concatenate(members)
    return right, np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)


def _compile_chunk(ids: np.ndarray, probs: np.ndarray, labels: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Reduce the tables of some images; see :class:`SoftVotingScorer`.

    Returns ``(margins (threats, models), threats per contested image, always right, always wrong)``.
    """
    M, n, k = ids.shape
    cls = ids.transpose(1, 0, 2).reshape(n, M * k)
    p = probs.transpose(1, 0, 2).reshape(n, M * k).astype(np.float64)
    model = np.repeat(np.arange(M), k)
    # local class index per image: 0..U-1 in class-id order
    order = np.argsort(cls, axis=1, kind="stable")
    sorted_cls = np.take_along_axis(cls, order, axis=1)
    local_sorted = np.concatenate([np.zeros((n, 1), dtype=np.int64),
                                   np.cumsum(sorted_cls[:, 1:] != sorted_cls[:, :-1], axis=1)], axis=1)
    local = np.empty_like(local_sorted)
    np.put_along_axis(local, order, local_sorted, axis=1)
    n_local = local_sorted[:, -1] + 1
    U = int(n_local.max())
    rows = np.arange(n)[:, None]
    W = np.bincount(((rows * U + local) * M + model[None, :]).ravel(), weights=p.ravel(),
                    minlength=n * U * M).reshape(n, U, M)  # (image, local class, model); duplicates add up
    is_label = cls == labels[:, None]
    label_local = np.where(is_label.any(axis=1), np.where(is_label, local, -1).max(axis=1), -1)
    p_label = np.where(label_local[:, None] >= 0, W[np.arange(n), np.maximum(label_local, 0)], 0.0)  # (n, M)
    valid = np.arange(U)[None, :] < n_local[:, None]
    valid &= np.arange(U)[None, :] != label_local[:, None]
    ge = W >= p_label[:, None, :]
    candidate = valid & ge.any(axis=2)  # can tie or beat the label for some ensemble
    wrong = (candidate & ge.all(axis=2)).any(axis=1)
    right = ~wrong & ~candidate.any(axis=1)
    contested = np.flatnonzero(~wrong & ~right)
    if not len(contested):
        return np.zeros((0, M)), np.zeros(0, dtype=np.int64), int(right.sum()), int(wrong.sum())
    cand = candidate[contested]
    width = int(cand.sum(axis=1).max())
    slot = np.argsort(~cand, axis=1, kind="stable")[:, :width]  # candidate columns first
    live = np.take_along_axis(cand, slot, axis=1)  # (c, width)
    Wc = W[contested[:, None], slot]  # (c, width, M)
    keep = live & ~_dominated(Wc, live)
    margins = (p_label[contested][:, None, :] - Wc)[keep]  # (threats, M), exact in float64
    return margins, keep.sum(axis=1).astype(np.int64), int(right.sum()), int(wrong.sum())


def _dominated(W: np.ndarray, live: np.ndarray, budget: int = 20_000_000) -> np.ndarray:
    """``(c, t)``: threat ``j`` of image ``i`` is matched or beaten in every model by another live threat.

    Of identical threats the first is kept. Works in slices of images so the pairwise array stays small.
    """
    c, t, M = W.shape
    out = np.zeros((c, t), dtype=bool)
    step = max(1, budget // max(1, t * t * M))
    idx = np.arange(t)
    for a in range(0, c, step):
        w, alive = W[a:a + step], live[a:a + step]
        ge = (w[:, :, None, :] >= w[:, None, :, :]).all(axis=3)  # ge[i, d, j]: d >= j everywhere
        gt = (w[:, :, None, :] > w[:, None, :, :]).any(axis=3)
        beats = ge & (gt | (idx[:, None] < idx[None, :])[None]) & alive[:, :, None]
        beats[:, idx, idx] = False
        out[a:a + step] = beats.any(axis=1)
    return out


def dense_accuracy(tables: TopKTables, membership: np.ndarray, *, classes: int | None = None) -> np.ndarray:
    """Brute-force reference: per ensemble, a dense ``images x classes`` sum of member probabilities.

    Slow and memory-hungry (it is the computation the sparse scorer avoids); for tests and benchmarks.
    """
    B = _membership(membership, tables.n_models)
    C = int(classes or tables.n_classes)
    N = tables.n_images
    dense = np.zeros((tables.n_models, N, C), dtype=np.float32)
    rows = np.broadcast_to(np.arange(N)[:, None], tables.ids.shape[1:])
    for m in range(tables.n_models):
        np.add.at(dense[m], (rows, tables.ids[m]), tables.probs[m])
    return dense_accuracy_from(dense, tables.labels, B)


def dense_accuracy_from(dense: np.ndarray, labels: np.ndarray, membership: np.ndarray) -> np.ndarray:
    """Accuracy of each ensemble from a dense ``(models, images, classes)`` probability array (ties: errors)."""
    B = _membership(membership, dense.shape[0])
    N = dense.shape[1]
    out = np.zeros(len(B))
    for e, row in enumerate(B):
        if not row.any():
            continue
        total = dense[row].sum(axis=0, dtype=np.float64)
        label = total[np.arange(N), labels].copy()
        total[np.arange(N), labels] = -np.inf
        out[e] = np.count_nonzero(label > total.max(axis=1)) / N
    return out
