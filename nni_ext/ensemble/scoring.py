"""Soft-voting ensemble accuracy and latency from sparse top-k tables, for a whole population at once.

The ensemble of a membership row ``b`` (``b[m] = 1`` when model ``m`` is a member) predicts, for each
image, the class with the largest summed top-k probability over its members (unweighted soft voting,
the seed's ``EnsembleProblemSoft``; a class outside a member's top-k adds 0).

**Tie rule.** An image counts as correct only if the label's summed probability is *strictly* larger than
every other class's; a tie for the top score is an error (there is no winner, and ``np.argmax``'s
pick of the lowest class id would be arbitrary); so is a label scoring 0, which ties every class no member
lists (there is one unless an image's lists cover all ``classes``). Decisive sums are taken in float64 over float32
probabilities, which is exact for probabilities above about 1e-7, so the decision does not depend on
summation order.

**How it is fast.** :class:`SoftVotingScorer` compiles the tables once, image by image:

* classes whose probability is strictly below the label's in every model can never win and are dropped;
* an image where some class is at least the label's in every model is wrong for every ensemble, and an
  image with no class left is right for every non-empty ensemble (constants, never recomputed);
* among the remaining ("threat") classes of a contested image, one that another threat matches or beats
  in every model is dropped too (it can never be the strongest rival).

A contested image is right for ensemble ``b`` iff ``b @ (p_label - p_t) > 0`` for each of its threats
``t``. An image keeps at most ``reps + 2`` dense rows, whatever the number of its threats: all of them
(as margins) when it has at most ``reps + 1``, else its ``reps`` strongest threats (largest summed
probability) and one *envelope* row ``p_label - max_t p_t`` (per model, over the other threats), which is
at most every other threat's margin. When at least 4 of those others are listed by one or two models
only (models that err each their own way), they leave the envelope: whatever the members, such a threat
scores at most its sum over all the models, so the label's row ``p_label`` must exceed the largest of
these sums. A population ``B`` (``P x models``) is scored with float32 matrix products against these
rows: a pair (image, ensemble) is surely right when every bound holds by more than its rounding bound,
surely wrong when a strong threat's margin is below minus that bound, and otherwise (a rival other than
the strongest could win, or a margin within its rounding bound of 0, a tie) decided exactly in float64
from the image's sparse threats: the label's sum against each member's threat listed by that model alone
(after the pruning a model has at most one: a max over the members), then against the members' sum of
the other threats' per-model maximum, and only when that does not settle it against each of those
threats. On ``synthetic_tables`` of every ``spread`` the rows decide all but 0.2-1.5 % of the pairs of a
search's populations (see ``benchmarks/RESULTS.md``).

The rows are stored in blocks of about 2,000 rows of images with as many rows, row ``j`` of every image
of a block in one slab, so that a block's product ``(rows, P)``, its minimum over the slabs and the counts
stay in the CPU cache; the blocks are shared out between threads (one per core, at most 4), each running
single-threaded BLAS, then sifting its products and checking its undecided pairs in numba kernels that
release the GIL (compiled on first use and cached on disk).

**Memory** does not depend on how the classes spread: per contested image ``reps + 2`` float32 rows of
``models`` margins, three rows of ``models`` probabilities (the label's, the single-model threats', the
other threats' maximum) and those other threats' nonzero probabilities, at most ``models x k`` of them
(the image's own top-k entries; float32 where exact): never ``threats x models``, let alone
models x images x classes (:meth:`SoftVotingScorer.nbytes`). The compile works on ``chunk`` images at a
time. A per-row cache is available (``cache_size``) but off by default: a search with duplicate
elimination re-scores about 1 % of its rows, too few to pay for the look-ups.

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
    """How the tables reduced: images decided for every ensemble and what the matrix products cover.

    ``threats`` counts the contested images' threat classes; ``rows`` the dense rows they keep (at most
    ``reps + 2`` per image); ``enveloped`` the images whose weaker threats share an envelope row (and the
    label's row: ``label_rows`` of them); ``entries`` the nonzero probabilities kept for the exact checks of
    the threats listed by more than one model.
    """

    images: int
    always_right: int
    always_wrong: int
    contested: int
    threats: int
    seconds: float
    rows: int = 0
    enveloped: int = 0
    entries: int = 0
    label_rows: int = 0


class SoftVotingScorer:
    """Accuracy of soft-voting ensembles of the models in ``tables`` (see the module docstring).

    Args:
        tables: the models' top-k tables.
        chunk: images compiled at a time (bounds the compile's memory).
        cache_size: membership rows whose correct-count is remembered (0, the default: no cache; an
            NSGA-II run with duplicate elimination re-scores about 1 % of its rows, so a cache rarely pays).
        block: dense rows scored at a time (their products and minima stay in the CPU cache).
        threads: threads scoring blocks side by side (default: the usable CPU cores, at most 4).
        classes: the number of classes (default: ``tables.n_classes``, one more than the largest id seen).
            A class no model lists for an image scores 0, so a label scoring 0 ties it: an error.
        reps: strongest threats per image kept as dense rows beside the envelope of the others (and the
            label's row); an image with at most ``reps + 1`` threats keeps them all. More rows decide more
            pairs by the products and leave fewer to the exact check, at the cost of larger products.
    """

    def __init__(self, tables: TopKTables, *, chunk: int = 512, cache_size: int = 0, block: int = 2048,
                 threads: int | None = None, classes: int | None = None, reps: int = 1) -> None:
        import time

        if chunk < 1:
            raise ValueError(f"chunk={chunk} must be at least 1")
        if cache_size < 0:
            raise ValueError(f"cache_size={cache_size} must be 0 (no cache) or more")
        if block < 1:
            raise ValueError(f"block={block} must be at least 1")
        if reps < 1:
            raise ValueError(f"reps={reps} must be at least 1")
        start = time.perf_counter()
        self.n_models, self.n_images = tables.n_models, tables.n_images
        if self.n_models > 32767:
            raise ValueError(f"{self.n_models} models; the scorer handles at most 32767")
        self.cache_size, self.reps = cache_size, int(reps)
        self.n_classes = tables.n_classes if classes is None else int(classes)
        if self.n_classes < tables.n_classes:
            raise ValueError(f"classes={classes} but the tables hold class id {tables.n_classes - 1}")
        self._cache: dict[bytes, int] = {}
        self.threads = _default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"threads={threads} must be at least 1")
        kernels = _kernels()

        def compile_chunk(a: int) -> tuple[np.ndarray, ...]:
            b = min(a + chunk, self.n_images)
            return _compile_chunk(kernels["compile"], tables.ids[:, a:b], tables.probs[:, a:b], tables.labels[a:b],
                                  self.reps, self.n_classes)

        starts_ = range(0, self.n_images, chunk)
        if self.threads > 1 and len(starts_) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.threads) as pool:
                compiled = list(pool.map(compile_chunk, starts_))
        else:
            compiled = [compile_chunk(a) for a in starts_]
        fields: list[Any] = [list(field) for field in zip(*compiled)]
        del compiled

        def gather(i: int) -> np.ndarray:  # one field of every chunk, the chunks' copies freed as we go
            whole = np.concatenate(fields[i])
            fields[i] = None
            return whole

        status = gather(0)
        right, wrong = int(np.count_nonzero(status == 0)), int(np.count_nonzero(status == 1))
        self.always_right = right
        n_threats = gather(1).astype(np.intp)  # per contested image
        n_rows = gather(2).astype(np.intp)
        rows = gather(3)  # (rows, models) float32, image after image
        # probabilities in float32 where that is exact (a model listing a class twice sums two of them)
        #: (contested, models): the label's probability in each model
        self._plabel = gather(4)
        #: (contested, models): the probability of the threat only that model lists (0: none)
        self._single = gather(5)
        #: (contested, models): the largest probability of the other threats in each model
        self._multi = gather(10)
        n_multi = gather(6).astype(np.intp)
        entries_per_threat = gather(7).astype(np.intp)
        #: the other threats' nonzero probabilities, threat after threat (strongest first), image after image
        self._e_model = gather(8)
        self._e_value = gather(9)
        mode = gather(11).astype(np.intp)  # 0: all threats in rows, 1: + envelope, 2: + envelope and label
        lone_max = gather(12)
        self._t_ptr = np.concatenate([[0], np.cumsum(n_multi)]).astype(np.intp)  # other threats of image i
        self._e_ptr = np.concatenate([[0], np.cumsum(entries_per_threat)]).astype(np.intp)  # entries of threat t
        # images grouped by (rows, mode), each group's rows slab by slab
        order = np.argsort(n_rows * 3 + mode, kind="stable")
        #: contested image (its index in the compile's order) of each position of the blocks' order
        self._image = order.astype(np.intp)
        #: per position: the largest probability of a single-model threat left out of the rows (mode 2)
        self._lone_max = lone_max[order]
        row_start = np.concatenate([[0], np.cumsum(n_rows)[:-1]]).astype(np.intp)
        self._blocks = self._make_blocks(rows, row_start, n_rows, mode, order, block)
        del rows
        self._parts = _share_out(self._blocks, self.threads)
        self._executor: Any = None
        self._executor_pid = 0
        self.stats = CompileStats(images=self.n_images, always_right=right, always_wrong=wrong,
                                  contested=len(n_threats), threats=int(n_threats.sum()),
                                  seconds=time.perf_counter() - start, rows=int(n_rows.sum()),
                                  enveloped=int(np.count_nonzero(mode)), entries=len(self._e_value),
                                  label_rows=int(np.count_nonzero(mode == 2)))
        log.info("compiled %d images: %d always right, %d always wrong, %d contested with %d threats in %d rows "
                 "(%d images with an envelope row) (%.2f s)", self.n_images, right, wrong, self.stats.contested,
                 self.stats.threats, self.stats.rows, self.stats.enveloped, self.stats.seconds)

    @staticmethod
    def _make_blocks(rows: np.ndarray, row_start: np.ndarray, n_rows: np.ndarray, mode: np.ndarray,
                     order: np.ndarray, block: int) -> list[tuple[int, int, int, np.ndarray, int]]:
        """Blocks of contested images with as many rows each: ``(rows per image, first position, images,
        float32 margins (rows, models), mode)``, row ``j`` of every image in a contiguous slab; ``mode`` 0:
        the rows are all the threats, 1: the last row is an envelope, 2: the last two rows are an envelope
        and the label's probabilities. Positions index the scorer's ``_image`` order.
        """
        blocks: list[tuple[int, int, int, np.ndarray, int]] = []
        if not len(order):
            return blocks
        kind = (n_rows * 3 + mode)[order]
        bounds = np.flatnonzero(np.diff(kind)) + 1
        for a, b in itertools.pairwise([0, *bounds.tolist(), len(order)]):
            t, env = int(n_rows[order[a]]), int(mode[order[a]])
            step = max(1, block // t)
            for i0 in range(a, b, step):
                k = min(step, b - i0)
                take = (row_start[order[i0:i0 + k]][None, :] + np.arange(t)[:, None]).ravel()  # slab j, image i
                blocks.append((t, i0, k, rows[take], env))
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
        if self._blocks and len(B):
            count += self._contested_right(B)
        count[~B.any(axis=1)] = 0
        return count

    def _contested_right(self, B: np.ndarray) -> np.ndarray:
        """``(P,)`` contested images right: the smallest margin over an image's threats is positive.

        Block by block (so a block's products and minima stay in the CPU cache; the blocks are shared
        out between ``threads`` threads, each running single-threaded BLAS), a float32 product gives
        every row's margin within ``tol`` (its rounding bound); the (image, ensemble) pairs the rows do
        not decide are checked exactly in float64 from the image's sparse threats.
        """
        BT = np.ascontiguousarray(B.T, dtype=np.float32)  # (models, P)
        size = B.sum(axis=1)
        idx = np.ascontiguousarray(np.argsort(~B, axis=1, kind="stable"))  # members first, by model
        exact = (np.ascontiguousarray(B, dtype=np.float64), idx, size, self._image, self._lone_max, self._plabel,
                 self._single, self._multi, self._t_ptr, self._e_ptr, self._e_model, self._e_value, _kernels())
        # |float32 result - exact| <= (M + 1) u sum|a|, |a| <= 1: the dot's rounding plus that of A32
        tol = ((self.n_models + 2) * 2.0 ** -24 * B.sum(axis=1) * 1.01).astype(np.float32)
        parts = self._parts
        with _single_threaded_blas():
            others = [self._pool().submit(_score_blocks, part, BT, tol, exact) for part in parts[1:]]
            results = [_score_blocks(parts[0], BT, tol, exact)]  # this thread scores the first share meanwhile
            results += [f.result() for f in others]
        return np.sum(results, axis=0)

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

    def nbytes(self) -> int:
        """Bytes held by the compiled tables (rows, label probabilities, sparse threats and indices)."""
        arrays = [self._plabel, self._single, self._multi, self._e_model, self._e_value, self._t_ptr, self._e_ptr,
                  self._image, self._lone_max]
        return sum(a.nbytes for a in arrays) + sum(b[3].nbytes for b in self._blocks)


def _narrow(values: np.ndarray) -> np.ndarray:
    """``values`` as float32 when that loses nothing, else as they are (float64)."""
    narrow = values.astype(np.float32)
    return narrow if np.array_equal(narrow, values) else values


def _default_threads() -> int:
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _share_out(blocks: list, parts: int) -> list[list]:
    """Consecutive runs of ``blocks`` with about as many rows each (at most ``parts`` non-empty runs)."""
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


def _score_blocks(blocks: list, BT: np.ndarray, tol: np.ndarray, exact: tuple) -> np.ndarray:
    """Score some blocks (see :meth:`SoftVotingScorer._contested_right`) for the ensembles ``BT`` (models, P).

    Per block: a float32 product, then (numba, :func:`_sift`) per pair the smallest margin over the strong
    threats' rows and, for an image whose other threats share an envelope row, the smaller of that and the
    envelope: the pair is right when the latter exceeds ``tol`` (and, where threats listed by one or two
    models were left to the label's row, when the label's sum exceeds the largest of their sums by ``tol``),
    wrong when a strong threat's margin is below ``-tol``, else checked exactly (:func:`_exact_right`).
    Returns ``(P,)`` right counts.
    """
    Bf, idx, size, image, lone_max, plabel, single, multi, t_ptr, e_ptr, e_model, e_value, kernels = exact
    sift, check = kernels["sift"], kernels["exact"]
    P = BT.shape[1]
    width = max(len(b[3]) for b in blocks) if blocks else 0
    G = np.empty(width * P, dtype=np.float32)
    height = max(b[2] for b in blocks) if blocks else 0
    images = np.empty(height * P, dtype=np.intp)
    members = np.empty(height * P, dtype=np.intp)
    right = np.zeros(P, dtype=np.int64)
    for t, first, k, A32, mode in blocks:
        g = G[:t * k * P].reshape(t * k, P)
        np.matmul(A32, BT, out=g)
        n = sift(g, t, k, mode, tol, right, image[first:first + k], lone_max[first:first + k], images, members)
        if n:
            right += check(Bf, idx, size, images[:n], members[:n], plabel, single, multi, t_ptr, e_ptr, e_model,
                           e_value)
    return right


def _sift(g: np.ndarray, t: int, k: int, mode: int, tol: np.ndarray, right: np.ndarray, image: np.ndarray,
          lone_max: np.ndarray, images: np.ndarray, members: np.ndarray) -> int:
    """Count a block's surely right pairs into ``right`` and list the undecided ones (numba kernel).

    ``g`` is the block's ``(t * k, P)`` product (slab ``j``: row ``j`` of its ``k`` images); ``mode`` as in
    :meth:`SoftVotingScorer._make_blocks` (with 2, the label's sum must exceed ``lone_max`` of the image).
    Writes the undecided pairs' images (``image`` maps the block's images) and ensembles to ``images`` and
    ``members``, and returns how many there are.
    """
    P = g.shape[1]
    strong = t - mode
    n = 0
    smallest = np.empty(P, dtype=g.dtype)  # over the strong threats' margins
    bound = np.empty(P, dtype=np.float64)  # over every bound
    for i in range(k):  # simple loops over the ensembles, which the compiler vectorises
        for e in range(P):
            smallest[e] = g[i, e]
        for j in range(1, strong):
            row = j * k + i
            for e in range(P):
                smallest[e] = min(smallest[e], g[row, e])
        if mode > 0:
            row = strong * k + i
            for e in range(P):
                bound[e] = min(smallest[e], g[row, e])
        else:
            for e in range(P):
                bound[e] = smallest[e]
        if mode == 2:
            row = (strong + 1) * k + i
            lone = lone_max[i]
            for e in range(P):
                bound[e] = min(bound[e], g[row, e] - lone)
        undecided = 0
        for e in range(P):
            sure = bound[e] > tol[e]
            right[e] += sure
            undecided += (not sure) & (smallest[e] >= -tol[e])
        if undecided:
            for e in range(P):
                if not bound[e] > tol[e] and smallest[e] >= -tol[e]:
                    images[n] = image[i]
                    members[n] = e
                    n += 1
    return n


_KERNELS: dict[str, Any] = {}


def _kernels() -> dict[str, Any]:
    """The numba-compiled kernels (compiled on first use, cached on disk when the package folder is writable)."""
    if not _KERNELS:
        try:
            import numba
        except ImportError as exc:  # a declared dependency of nni-ext
            raise ImportError("the OFA³ soft-voting scorer needs numba; pip install 'numba>=0.57'") from exc
        jit = numba.njit(cache=True, nogil=True)
        _KERNELS.update(compile=jit(_compile_images), exact=jit(_exact_right), sift=jit(_sift))
    return _KERNELS


def _exact_right(Bf: np.ndarray, idx: np.ndarray, size: np.ndarray, images: np.ndarray, members: np.ndarray,
                 plabel: np.ndarray, single: np.ndarray, multi: np.ndarray, t_ptr: np.ndarray, e_ptr: np.ndarray,
                 e_model: np.ndarray, e_value: np.ndarray) -> np.ndarray:
    """``(P,)`` how many of the (contested image, ensemble) pairs are right, in float64 (numba kernel).

    Right iff the label's summed probability is strictly larger than every threat's: than each member's
    single-model threat (``single``: its probability in the one model listing it) and than each other
    threat's sum (strongest first), unless the members' sum of ``multi`` (per model, the largest of these
    other threats' probabilities) is already below the label's. ``Bf`` is the membership as 0.0/1.0,
    ``idx[e, :size[e]]`` the members of ensemble ``e``.
    """
    P = Bf.shape[0]
    right = np.zeros(P, dtype=np.int64)
    for q in range(len(images)):
        i, e = images[q], members[q]
        label = 0.0
        top = 0.0
        envelope = 0.0
        for a in range(size[e]):
            m = idx[e, a]
            label += plabel[i, m]
            top = max(top, single[i, m])
            envelope += multi[i, m]
        if top >= label:
            continue
        if envelope < label:
            right[e] += 1
            continue
        ok = True
        for t in range(t_ptr[i], t_ptr[i + 1]):
            score = 0.0
            for x in range(e_ptr[t], e_ptr[t + 1]):
                score += e_value[x] * Bf[e, e_model[x]]
            if score >= label:
                ok = False
                break
        if ok:
            right[e] += 1
    return right


def _compile_chunk(kernel: Any, ids: np.ndarray, probs: np.ndarray, labels: np.ndarray, reps: int,
                   classes: int) -> tuple:
    """Reduce the tables of some images with :func:`_compile_images` into buffers allocated here (so that
    tracemalloc sees them), and return trimmed copies (probabilities in float32 where that is exact, models
    in one byte where they fit).
    """
    M, n, k = ids.shape
    E = M * k
    modes, lone_max = np.empty(n, dtype=np.int8), np.zeros(n)
    out = (np.empty(n, dtype=np.int8), np.empty(n, dtype=np.int32), np.empty(n, dtype=np.int32),
           np.empty((n * (reps + 2), M), dtype=np.float32), np.empty((n, M)), np.zeros((n, M)), np.zeros((n, M)),
           np.empty(n, dtype=np.int32), np.empty(n * E, dtype=np.int32), np.empty(n * E, dtype=np.int16),
           np.empty(n * E))
    c, r, nt, ne = kernel(np.ascontiguousarray(ids), np.ascontiguousarray(probs), np.ascontiguousarray(labels),
                          reps, classes, modes, lone_max, *out)
    status, n_threats, n_rows, rows, plabels, singles, multis, n_multi, per_threat, e_model, e_value = out
    return (status, n_threats[:c].copy(), n_rows[:c].copy(), rows[:r].copy(), _narrow(plabels[:c]),
            _narrow(singles[:c]), n_multi[:c].copy(), per_threat[:nt].copy(),
            e_model[:ne].astype(np.uint8 if M <= 256 else np.int16), _narrow(e_value[:ne]), _narrow(multis[:c]),
            modes[:c].copy(), lone_max[:c].copy())


def _compile_images(ids: np.ndarray, probs: np.ndarray, labels: np.ndarray, reps: int, classes: int,
                    modes: np.ndarray, lone_max: np.ndarray, status: np.ndarray,
                    n_threats: np.ndarray, n_rows: np.ndarray, rows: np.ndarray, plabels: np.ndarray,
                    singles: np.ndarray, multis: np.ndarray, n_multi: np.ndarray, per_threat: np.ndarray,
                    e_model: np.ndarray, e_value: np.ndarray) -> tuple[int, int, int, int]:
    """Reduce the tables of some images (numba kernel); see :class:`SoftVotingScorer`.

    ``ids`` and ``probs`` are ``(models, images, k)``; ``classes`` the number of classes (a class no model
    lists for an image scores 0 for every ensemble, so the label must score more). Writes, per image, its
    status (0 right for every ensemble, 1 wrong for every ensemble, 2 contested) and, per contested image:

    * its number of threats and of dense rows, and the rows (float32, ``models`` wide): the margins of its
      strongest threats (all of them when at most ``reps + 1``; ``modes`` 0), else of the ``reps`` strongest
      and the envelope of the others (``modes`` 1), or, when at least 4 of the others are listed by one or
      two models only, the envelope of the rest of them and the label's probabilities (``modes`` 2; the
      largest sum of those few-model threats in ``lone_max``);
    * the label's probabilities, (models,) float64;
    * the threats listed by one model only as one (models,) float64 row (each its probability there:
      after the pruning a model has at most one);
    * the other threats' nonzero probabilities (number of threats, entries per threat, their models and
      values), strongest threat first, and their envelope, (models,) float64 (per model, the largest).

    A threat with no nonzero probability scores 0: the exact check's ``label > 0`` covers it.
    Returns how many contested images, rows, other threats and entries it wrote.
    """
    M, n, k = ids.shape
    E = M * k
    key = np.empty(E, dtype=np.int64)
    cls = np.empty(E, dtype=np.int64)
    mod = np.empty(E, dtype=np.int64)
    val = np.empty(E, dtype=np.float64)
    u_first = np.empty(E + 1, dtype=np.int64)  # merged entries of local class u: u_first[u]:u_first[u + 1]
    u_cls = np.empty(E, dtype=np.int64)
    m_mod = np.empty(E, dtype=np.int64)
    m_val = np.empty(E, dtype=np.float64)
    cand = np.empty(E, dtype=np.int64)  # candidate j -> local class
    W = np.zeros((E, M), dtype=np.float64)  # dense rows of the candidates
    kept = np.empty(E, dtype=np.int64)
    nnz = np.empty(E, dtype=np.int64)
    strength = np.empty(E, dtype=np.float64)
    plabel = np.empty(M, dtype=np.float64)
    c = 0  # contested images so far
    r = 0  # rows so far
    nt = 0  # threats so far
    ne = 0  # entries so far
    for i in range(n):
        y = labels[i]
        plabel[:] = 0.0
        cnt = 0
        for m in range(M):
            for s in range(k):
                cl = ids[m, i, s]
                if cl == y:
                    plabel[m] += probs[m, i, s]
                else:
                    cls[cnt] = cl
                    mod[cnt] = m
                    val[cnt] = probs[m, i, s]
                    key[cnt] = cl * M + m
                    cnt += 1
        order = np.argsort(key[:cnt], kind="mergesort")
        # merge the entries: per class (in class-id order), per model (duplicates add up)
        U = 0
        x = 0
        for a in range(cnt):
            o = order[a]
            if a == 0 or cls[o] != u_cls[U - 1]:
                u_first[U] = x
                u_cls[U] = cls[o]
                U += 1
            elif mod[o] == m_mod[x - 1]:
                m_val[x - 1] += val[o]
                continue
            m_mod[x] = mod[o]
            m_val[x] = val[o]
            x += 1
        u_first[U] = x
        zero_label = 0
        for m in range(M):
            if plabel[m] <= 0.0:
                zero_label += 1
        n_cand = 0
        always_wrong = False
        for u in range(U):
            ge = 0
            zl = 0
            for x in range(u_first[u], u_first[u + 1]):
                if m_val[x] >= plabel[m_mod[x]]:
                    ge += 1
                if plabel[m_mod[x]] <= 0.0:
                    zl += 1
            unlisted_ge = zero_label - zl  # a model not listing u gives it 0 >= the label's 0
            if ge + unlisted_ge > 0:
                cand[n_cand] = u
                n_cand += 1
                if ge + unlisted_ge == M:
                    always_wrong = True
                    break
        if always_wrong:
            status[i] = 1
            continue
        if n_cand == 0:
            if classes - 1 > U and zero_label > 0:  # a class no model lists ties the label's 0 in some model
                if zero_label == M:
                    status[i] = 1
                    continue
                cand[0] = -1  # that class: a threat of zeros (any listed candidate would dominate it)
                n_cand = 1
            else:
                status[i] = 0
                continue
        status[i] = 2
        for j in range(n_cand):
            u = cand[j]
            W[j, :] = 0.0
            if u >= 0:
                for x in range(u_first[u], u_first[u + 1]):
                    W[j, m_mod[x]] = m_val[x]
        # drop a candidate that another matches or beats in every model (of identical ones, keep the first)
        T = 0
        for j in range(n_cand):
            m0 = -1
            if cand[j] >= 0:
                for x in range(u_first[cand[j]], u_first[cand[j] + 1]):
                    if m_val[x] > 0.0:
                        m0 = m_mod[x]
                        break
            dominated = False
            for d in range(n_cand):
                if d == j:
                    continue
                if m0 >= 0 and W[d, m0] < W[j, m0]:  # cheap test first: most rivals fail it
                    continue
                ge_all = True
                gt_any = False
                for m in range(M):
                    if W[d, m] < W[j, m]:
                        ge_all = False
                        break
                    if W[d, m] > W[j, m]:
                        gt_any = True
                if ge_all and (gt_any or d < j):
                    dominated = True
                    break
            if not dominated:
                kept[T] = j
                T += 1
        for a in range(T):
            total = 0.0
            for m in range(M):
                total += W[kept[a], m]
            strength[a] = -total
        by_strength = np.argsort(strength[:T], kind="mergesort")  # strongest first
        full = T <= reps + 1
        strong = T if full else reps
        for a in range(strong):
            j = kept[by_strength[a]]
            for m in range(M):
                rows[r, m] = plabel[m] - W[j, m]
            r += 1
        mode = 0
        if not full:
            # threats listed by one or two models only: whatever the members, each scores at most its sum over
            # all the models, and the largest such sum is a tighter bound for them than an envelope row
            lone = 0
            smax = 0.0
            for a in range(strong, T):
                j = kept[by_strength[a]]
                count = 0
                most = 0.0  # its largest score: the sum of its positive probabilities
                for m in range(M):
                    if W[j, m] != 0.0:
                        count += 1
                        most += max(W[j, m], 0.0)
                nnz[a] = count
                if count <= 2:
                    lone += 1
                    smax = max(smax, most)
            mode = 2 if lone >= 4 else 1
            for m in range(M):
                top = 0.0
                for a in range(strong, T):
                    if mode == 2 and nnz[a] <= 2:
                        continue
                    top = max(top, W[kept[by_strength[a]], m])
                rows[r, m] = plabel[m] - top
            r += 1
            if mode == 2:
                for m in range(M):
                    rows[r, m] = plabel[m]
                r += 1
                lone_max[c] = smax
        modes[c] = mode
        plabels[c, :] = plabel
        multi = 0
        for a in range(T):
            j = kept[by_strength[a]]
            count = 0
            last = 0
            for m in range(M):
                if W[j, m] != 0.0:
                    count += 1
                    last = m
            if count == 1:
                singles[c, last] = max(singles[c, last], W[j, last])
            elif count > 1:
                for m in range(M):
                    if W[j, m] != 0.0:
                        e_model[ne] = m
                        e_value[ne] = W[j, m]
                        ne += 1
                        multis[c, m] = max(multis[c, m], W[j, m])
                per_threat[nt] = count
                nt += 1
                multi += 1
        n_multi[c] = multi
        n_threats[c] = T
        n_rows[c] = strong + mode
        c += 1
    return c, r, nt, ne


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
