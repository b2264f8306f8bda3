"""Top-k prediction tables of a population (the OFA³ seed's ``model_XX_class.csv`` / ``model_XX_prob.csv``).

File format, one pair per model, one row per image in the evaluation order (ImageFolder order):

* ``model_XX_class.csv``: the top-k predicted class ids (best first), then the ground-truth label;
* ``model_XX_prob.csv``: the matching k softmax probabilities.

:func:`write_tables` writes pandas' ``to_csv(index=False)`` layout with a header row
(``top1,...,top5,label`` and ``top1,...,top5``; probabilities with 9 significant digits, so float32
values round-trip exactly). :func:`read_tables` also reads the other layouts a notebook may have
written: without a header row, or with a leading row-index column (pandas' default ``to_csv()``).

Example:
    >>> import tempfile
    >>> t = synthetic_tables(models=3, images=20, classes=50, seed=0)
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_tables(t, folder)
    >>> back = read_tables(folder)
    >>> back.names, back.ids.shape, bool((back.probs == t.probs).all())
    (('model_00', 'model_01', 'model_02'), (3, 20, 5), True)
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .._io import atomic_write
from ..errors import DataError, TableError

CLASS_SUFFIX, PROB_SUFFIX = "_class.csv", "_prob.csv"
_NUMBER = re.compile(r"(\d+)")


@dataclass(frozen=True)
class TopKTables:
    """Top-k predictions of ``models`` networks on the same ``images``.

    Attributes:
        ids: int32 ``(models, images, k)`` class ids, best first.
        probs: float32 ``(models, images, k)`` the matching softmax probabilities.
        labels: int64 ``(images,)`` ground-truth class ids.
        names: one name per model (``model_00``, ...), the stem of its files.
    """

    ids: np.ndarray
    probs: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        ids, probs, labels = np.asarray(self.ids), np.asarray(self.probs), np.asarray(self.labels)
        if ids.ndim != 3 or probs.shape != ids.shape:
            raise ValueError(f"ids {ids.shape} and probs {probs.shape} must both be (models, images, k)")
        if labels.shape != ids.shape[1:2]:
            raise ValueError(f"labels {labels.shape} must be (images,) = ({ids.shape[1]},)")
        if len(self.names) != ids.shape[0] or len(set(self.names)) != len(self.names):
            raise ValueError(f"names must be {ids.shape[0]} distinct model names, got {list(self.names)[:5]}...")
        object.__setattr__(self, "ids", ids.astype(np.int32, copy=False))
        object.__setattr__(self, "probs", probs.astype(np.float32, copy=False))
        object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))

    @property
    def n_models(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_images(self) -> int:
        return int(self.ids.shape[1])

    @property
    def k(self) -> int:
        return int(self.ids.shape[2])

    @property
    def n_classes(self) -> int:
        """One more than the largest class id seen (a lower bound of the real number of classes)."""
        return int(max(self.ids.max(initial=-1), self.labels.max(initial=-1))) + 1

    def top1_accuracy(self) -> np.ndarray:
        """``(models,)`` share of images whose top-1 id equals the label."""
        return (self.ids[:, :, 0] == self.labels[None, :]).mean(axis=1)

    def select(self, models: Sequence[int]) -> TopKTables:
        """The tables of a subset of models (indices), in the given order."""
        idx = np.asarray(models, dtype=int)
        return TopKTables(self.ids[idx], self.probs[idx], self.labels, tuple(self.names[i] for i in idx))


def _natural_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in _NUMBER.split(name))


def model_files(folder: str | Path) -> dict[str, tuple[Path, Path]]:
    """``name -> (class file, prob file)`` of a tables folder, in natural name order (``model_2`` < ``model_10``)."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"tables folder {root} does not exist; give the folder holding model_XX_class.csv and "
                        "model_XX_prob.csv files")
    classes = {p.name[:-len(CLASS_SUFFIX)]: p for p in root.glob(f"*{CLASS_SUFFIX}")}
    probs = {p.name[:-len(PROB_SUFFIX)]: p for p in root.glob(f"*{PROB_SUFFIX}")}
    if not classes and not probs:
        raise DataError(f"tables folder {root} holds no model_XX_class.csv / model_XX_prob.csv files")
    lonely = sorted(set(classes) ^ set(probs), key=_natural_key)
    if lonely:
        raise DataError(f"tables folder {root}: model(s) {', '.join(lonely)} lack the matching "
                        f"{CLASS_SUFFIX} or {PROB_SUFFIX} file")
    return {n: (classes[n], probs[n]) for n in sorted(classes, key=_natural_key)}


def _header(path: Path) -> list[str] | None:
    """The first row if it is a header (any field not a number), else ``None``."""
    with open(path, newline="", encoding="utf-8") as fh:
        first = next(csv.reader(fh), None)
    if first is None:
        return None
    for field in first:
        try:
            float(field)
        except ValueError:
            return first
    return None


def _read_matrix(path: Path, dtype: type) -> tuple[np.ndarray, list[str] | None]:
    import pandas as pd

    header = _header(path)
    try:
        frame = pd.read_csv(path, header=None, skiprows=1 if header is not None else 0, dtype=dtype)
    except pd.errors.EmptyDataError:
        return np.zeros((0, 0), dtype=dtype), header
    except ValueError as exc:
        raise DataError(f"{path}: not a table of numbers ({exc})") from None
    return frame.to_numpy(), header


def _has_index(header: list[str] | None, probs: np.ndarray) -> bool:
    """Whether the tables carry a leading row-index column (pandas' default ``to_csv()``)."""
    if header is not None:
        return header[0].strip().lower() in ("", "index", "unnamed: 0")
    first = probs[:, 0] if probs.size else probs
    return len(first) > 2 and bool(np.all(first == np.arange(len(first))))  # probabilities never exceed 1


def read_model(class_path: str | Path, prob_path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One model's ``(ids (images, k), probs (images, k), labels (images,))`` from its two files."""
    class_path, prob_path = Path(class_path), Path(prob_path)
    ids, _ = _read_matrix(class_path, np.int64)
    probs, header = _read_matrix(prob_path, np.float64)
    for path, table in ((class_path, ids), (prob_path, probs)):
        if table.size == 0:
            raise DataError(f"{path.name} has no rows; regenerate the model's tables")
    if _has_index(header, probs):
        ids, probs = ids[:, 1:], probs[:, 1:]
    if len(ids) != len(probs):
        raise DataError(f"{class_path.name} has {len(ids)} rows but {prob_path.name} has {len(probs)}; "
                        "regenerate the model's tables")
    if ids.shape[1] != probs.shape[1] + 1 or probs.shape[1] < 1:
        raise DataError(f"{class_path.name} has {ids.shape[1]} columns and {prob_path.name} {probs.shape[1]}; "
                        "expected k class ids plus the label, and k probabilities")
    return ids[:, :-1].astype(np.int32), probs.astype(np.float32), ids[:, -1]


def read_tables(folder: str | Path, *, models: Sequence[str] | None = None) -> TopKTables:
    """Read every (or the named) model's tables from ``folder`` and check they describe the same images.

    Raises:
        DataError: an empty or missing folder, a model lacking one of its files, different row counts or
            different labels between models (the message names the models and the first differing row).
    """
    files = model_files(folder)
    if models is not None:
        missing = [m for m in models if m not in files]
        if missing:
            raise DataError(f"tables folder {folder} lacks model(s) {', '.join(missing)}; it holds "
                            f"{', '.join(list(files)[:8])}{', ...' if len(files) > 8 else ''}")
        files = {m: files[m] for m in models}
    names = list(files)
    ids, probs, labels = [], [], None
    for name in names:
        i, p, y = read_model(*files[name])
        if labels is not None:
            first = names[0]
            if len(y) != len(labels):
                raise DataError(f"tables of {name} have {len(y)} rows but those of {first} have {len(labels)}; "
                                "every model must be evaluated on the same images")
            diff = np.flatnonzero(y != labels)
            if len(diff):
                r = int(diff[0])
                raise DataError(f"labels of {name} differ from those of {first} in {len(diff)} rows (first: row "
                                f"{r}, {int(y[r])} vs {int(labels[r])}); evaluate every model on the same images "
                                "in the same order")
            if i.shape[1] != ids[0].shape[1]:
                raise DataError(f"{name} lists top-{i.shape[1]} but {first} top-{ids[0].shape[1]}")
        else:
            labels = y
        ids.append(i)
        probs.append(p)
    if labels is None or len(labels) == 0:
        raise DataError(f"tables in {folder} have no rows")
    return TopKTables(np.stack(ids), np.stack(probs), labels, tuple(names))


def write_model(folder: str | Path, name: str, ids: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> None:
    """Write one model's ``NAME_class.csv`` and ``NAME_prob.csv`` (atomically, class file last)."""
    import pandas as pd

    ids, probs = np.asarray(ids), np.asarray(probs, dtype=np.float32)
    k = ids.shape[1]
    top = [f"top{j + 1}" for j in range(k)]
    classes = pd.DataFrame(np.column_stack([ids, np.asarray(labels)]).astype(np.int64), columns=[*top, "label"])
    root = Path(folder)
    atomic_write(root / f"{name}{PROB_SUFFIX}",
                 lambda tmp: pd.DataFrame(probs, columns=top).to_csv(tmp, index=False, float_format="%.9g"))
    atomic_write(root / f"{name}{CLASS_SUFFIX}", lambda tmp: classes.to_csv(tmp, index=False))


def write_tables(tables: TopKTables, folder: str | Path) -> list[Path]:
    """Write every model's pair of files into ``folder``; returns the class files written."""
    root = Path(folder)
    for m, name in enumerate(tables.names):
        write_model(root, name, tables.ids[m], tables.probs[m], tables.labels)
    return [root / f"{n}{CLASS_SUFFIX}" for n in tables.names]


def model_names(n: int) -> tuple[str, ...]:
    """The seed's names ``model_00``, ``model_01``, ... for ``n`` models."""
    return tuple(f"model_{i:02d}" for i in range(n))


def read_latency(path: str | Path, names: Sequence[str]) -> np.ndarray:
    """Member latencies (ms), in the order of ``names``, from a CSV file.

    The file has a header row naming a model column (``model``, ``name`` or ``index``) and a latency
    column (``latency_ms``, ``latency`` or ``ms``), one row per model, e.g.::

        model,latency_ms
        model_00,12.5
        model_01,14.1

    A model is named as in the tables (``model_07``) or by its number (``7``, matched to ``model_07``).
    Extra rows are ignored.

    Raises:
        TableError: the file lacks one of the columns, a model of ``names``, or holds a non-positive latency.
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"latency file {path} not found; write a CSV with columns model,latency_ms")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    fields = {f.strip().lower(): f for f in (rows[0].keys() if rows else [])}
    key = next((fields[c] for c in ("model", "name", "index") if c in fields), None)
    value = next((fields[c] for c in ("latency_ms", "latency", "ms") if c in fields), None)
    if key is None or value is None:
        raise TableError(f"latency file {path} needs a header with a model column (model) and a latency column "
                         f"(latency_ms); found {list(fields) or 'no rows'}")
    by_name: dict[str, float] = {}
    for row in rows:
        text = str(row[key]).strip()
        try:
            ms = float(row[value])
        except (TypeError, ValueError):
            raise TableError(f"latency file {path}: model {text}: {row[value]!r} is not a number") from None
        if not math.isfinite(ms) or ms <= 0:
            raise TableError(f"latency file {path}: model {text} has latency {ms}; latencies must be positive (ms)")
        by_name[text] = ms
        if text.isdigit():
            by_name.setdefault(f"model_{int(text):02d}", ms)
    missing = [n for n in names if n not in by_name]
    if missing:
        raise TableError(f"latency file {path} lacks model(s) {', '.join(missing[:10])}"
                         f"{' ...' if len(missing) > 10 else ''}; add a row model,latency_ms for each")
    return np.array([by_name[n] for n in names], dtype=float)


def write_latency(path: str | Path, names: Sequence[str], latency: Sequence[float]) -> Path:
    """Write member latencies in :func:`read_latency`'s format."""
    from .._io import atomic_write_csv

    return atomic_write_csv(path, [{"model": n, "latency_ms": float(v)} for n, v in zip(names, latency)])


#: how widely the models' wrong classes spread, for :func:`synthetic_tables`
SPREADS = ("shared", "wide", "uniform")


def synthetic_tables(*, models: int, images: int, classes: int = 1000, k: int = 5,
                     accuracy: tuple[float, float] = (0.70, 0.80), correlation: float = 0.9,
                     seed: int | None = 0, spread: str = "shared") -> TopKTables:
    """Random but realistic top-k tables: correlated models with top-1 accuracies spread over ``accuracy``.

    Each image has a difficulty shared by all models (``correlation``). ``spread`` sets which wrong classes
    the models list:

    * ``shared`` (the default): each image has 8 look-alike classes that wrong models mostly confuse it
      with, as networks from one supernet do; over 100 models an image's top-5 classes span about 7
      classes (at most 9).
    * ``wide``: each image has a look-alike list of its own length (heavy-tailed: 8 to 75 classes) that
      the models rank less alike, though most wrong models still agree on its first (errors stay
      correlated: the best ensembles score about 89 %, as with ``shared``); over 100 models an image's
      top-5 classes span about 20 classes on average (90th percentile about 38, at most about 68 in
      50,000 images), as in tables of real populations.
    * ``uniform``: the worst case: every model's wrong classes are drawn uniformly from all the classes,
      independently of the other models' (an image's top-5 over 100 models spans about 330 classes).

    Probabilities are a softmax over the label and the listed candidates with a random mass left for the
    other classes. The ``shared`` tables are the same for a seed as before ``spread`` existed.
    """
    from scipy.special import ndtri

    for arg, v, low in (("models", models, 1), ("images", images, 1), ("k", k, 1)):
        if v < low:
            raise ValueError(f"{arg}={v} must be at least {low}")
    if spread not in SPREADS:
        raise ValueError(f"spread={spread!r}; use one of {', '.join(SPREADS)}")
    pool = k + 4
    if classes < pool + 1:
        raise ValueError(f"classes={classes} must be at least k + 5 = {pool + 1}")
    if not 0 < accuracy[0] <= accuracy[1] < 1:
        raise ValueError(f"accuracy={accuracy} must be (low, high) with 0 < low <= high < 1")
    if not 0 <= correlation < 1:
        raise ValueError(f"correlation={correlation} must be in [0, 1)")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, images)
    if spread == "uniform":
        return _uniform_tables(rng, labels, models, classes, k, accuracy, correlation)
    if spread == "wide":
        pool = min(76, classes)
    step = (classes - 1) // (pool - 1)
    offsets = np.cumsum(rng.integers(1, step + 1, (images, pool - 1)), axis=1)
    pool_ids = np.column_stack([labels, (labels[:, None] + offsets) % classes]).astype(np.int32)  # label first
    acc = np.sort(rng.uniform(*accuracy, models))
    difficulty = rng.standard_normal(images)
    noise = 0.4
    if spread == "wide":  # look-alikes per image: 8 + lognormal, flatter and ranked less alike
        looks = np.minimum(pool - 1, k + 3 + np.floor(7.0 * np.exp(1.25 * rng.standard_normal(images))))
        j = np.arange(pool - 1)[None, :]
        shared = (2.0 - 2.0 * j / looks[:, None] + 0.5 * rng.standard_normal((images, pool - 1))).astype(np.float32)
        shared[j >= looks[:, None]] = -np.inf
        shared[:, 0] += 3.0  # one confuser most wrong models agree on: errors stay correlated
        noise = 1.2
    else:
        shared = (2.0 - 0.5 * np.arange(pool - 1) + rng.standard_normal((images, pool - 1))).astype(np.float32)
    other = np.log(rng.uniform(0.02, 1.0, images)).astype(np.float32)  # mass left for the other classes
    ids = np.empty((models, images, k), dtype=np.int32)
    probs = np.empty((models, images, k), dtype=np.float32)
    rows = np.arange(images)[:, None]
    for m in range(models):
        z = correlation * difficulty + math.sqrt(1 - correlation ** 2) * rng.standard_normal(images)
        logits = np.empty((images, pool), dtype=np.float32)
        logits[:, 1:] = shared + noise * rng.standard_normal((images, pool - 1), dtype=np.float32)
        best = logits[:, 1:].max(axis=1)
        gap = rng.exponential(1.5, images).astype(np.float32) + 1e-3
        logits[:, 0] = np.where(z < ndtri(acc[m]), best + gap, best - gap / 3)
        logits -= logits.max(axis=1, keepdims=True)
        if spread == "wide":  # the k best of many: partition first (no ties among them)
            top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
            order = np.take_along_axis(top, np.argsort(-np.take_along_axis(logits, top, axis=1), axis=1), axis=1)
        else:
            order = np.argsort(-logits, axis=1)[:, :k]
        e = np.exp(logits)
        denom = e.sum(axis=1) + np.exp(other + 0.3 * rng.standard_normal(images, dtype=np.float32))
        ids[m] = pool_ids[rows, order]
        probs[m] = e[rows, order] / denom[:, None]
    return TopKTables(ids, probs, labels, model_names(models))


def _uniform_tables(rng: np.random.Generator, labels: np.ndarray, models: int, classes: int, k: int,
                    accuracy: tuple[float, float], correlation: float) -> TopKTables:
    """``synthetic_tables(spread="uniform")``: each model lists the label and k wrong classes drawn uniformly."""
    from scipy.special import ndtri

    images = len(labels)
    acc = np.sort(rng.uniform(*accuracy, models))
    difficulty = rng.standard_normal(images)
    other = np.log(rng.uniform(0.02, 1.0, images)).astype(np.float32)
    ids = np.empty((models, images, k), dtype=np.int32)
    probs = np.empty((models, images, k), dtype=np.float32)
    rows = np.arange(images)[:, None]
    for m in range(models):
        wrong = rng.integers(0, classes - 1, (images, k))  # k distinct classes other than the label
        while True:
            s = np.sort(wrong, axis=1)
            again = (s[:, 1:] == s[:, :-1]).any(axis=1)
            if not again.any():
                break
            wrong[again] = rng.integers(0, classes - 1, (int(again.sum()), k))
        wrong += wrong >= labels[:, None]
        z = correlation * difficulty + math.sqrt(1 - correlation ** 2) * rng.standard_normal(images)
        logits = np.empty((images, k + 1), dtype=np.float32)
        logits[:, 1:] = 2.0 - 0.5 * np.arange(k) + 0.4 * rng.standard_normal((images, k), dtype=np.float32)
        best = logits[:, 1:].max(axis=1)
        gap = rng.exponential(1.5, images).astype(np.float32) + 1e-3
        logits[:, 0] = np.where(z < ndtri(acc[m]), best + gap, best - gap / 3)
        logits -= logits.max(axis=1, keepdims=True)
        order = np.argsort(-logits, axis=1)[:, :k]
        e = np.exp(logits)
        denom = e.sum(axis=1) + np.exp(other + 0.3 * rng.standard_normal(images, dtype=np.float32))
        candidates = np.column_stack([labels, wrong]).astype(np.int32)
        ids[m] = candidates[rows, order]
        probs[m] = e[rows, order] / denom[:, None]
    return TopKTables(ids, probs, labels, model_names(models))


def synthetic_latency(tables: TopKTables, *, low: float = 5.0, high: float = 60.0, seed: int | None = 0) -> np.ndarray:
    """Latencies (ms) that grow with each model's top-1 accuracy, with noise, as on an OFA² front."""
    if not 0 < low < high:
        raise ValueError(f"low={low}, high={high} must satisfy 0 < low < high")
    rng = np.random.default_rng(seed)
    acc = tables.top1_accuracy()
    span = acc.max() - acc.min()
    rank = (acc - acc.min()) / span if span > 0 else np.zeros_like(acc)
    return low * (high / low) ** rank * rng.uniform(0.9, 1.1, len(acc))
