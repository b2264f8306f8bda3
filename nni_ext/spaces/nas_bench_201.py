"""NAS-Bench-201's cell space (Dong & Yang, ICLR 2020): 6 edges x 5 operations, 15,625 networks.

The network is NAS-Bench-201's ``TinyNetwork`` for one cell (module names as in its code, so its
checkpoints' keys match): a stem (3x3 conv to ``C`` = 16 channels + BN), three stages of ``N`` = 5
copies of the cell at ``C``, ``2C``, ``4C`` channels with a ResNet basic block (stride 2, with an
average-pool + 1x1 conv shortcut) between stages, then BN + ReLU, global average pooling and a linear
classifier. A cell is a 4-node DAG: node 0 is the cell's input, node ``i`` the sum of one operation per
earlier node, node 3 the output. Operations: ``none`` (zeros), ``skip_connect`` (identity),
``nor_conv_1x1`` / ``nor_conv_3x3`` (ReLU-Conv-BN), ``avg_pool_3x3`` (stride 1, padding not counted).

Labels ``edge_<to>_<from>`` in NAS-Bench-201's edge order; :mod:`nni_ext.nb201` looks the trained
accuracy, latency and training time of any architecture up in the benchmark's tables, and the
parameter count of a built network equals the table's ``params``. With a ``dataset`` argument the space
also gives each cell's measured latency (``exact_metrics``), so a tuner given the space computes
``latency_ms`` exactly, as it does FLOPs, instead of predicting it.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch
from torch import nn

from ..nb201 import EDGES, INPUT_SIZE, LABELS, NUM_CLASSES, OPS, cell_index, dataset_name
from .base import SearchSpace
from .registry import register_space


class ReLUConvBN(nn.Module):
    """ReLU (not in place: a node feeds several edges), conv without bias, BN."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(inplace=False),
                                nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False),
                                nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Zero(nn.Module):
    """The ``none`` operation: zeros of the input's shape (``x * 0``, as NAS-Bench-201 computes it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class Pooling(nn.Module):
    """``avg_pool_3x3``: 3x3 average, stride 1, padding 1 excluded from the average."""

    def __init__(self) -> None:
        super().__init__()
        self.op = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def make_op(name: str, channels: int) -> nn.Module:
    """One candidate operation at ``channels`` (stride 1, shape preserving)."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1)
    if name == "avg_pool_3x3":
        return Pooling()
    raise ValueError(f"unknown NAS-Bench-201 operation {name!r}; choose one of {list(OPS)}")


class InferCell(nn.Module):
    """One cell: ``layers[k]`` is the operation of edge ``EDGES[k]``; node ``i`` sums its incoming edges."""

    def __init__(self, ops: list[str], channels: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([make_op(op, channels) for op in ops])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        k = 0
        for node in (1, 2, 3):
            total = None
            for _ in range(node):
                out = self.layers[k](nodes[EDGES[k][1]])
                total = out if total is None else total + out
                k += 1
            nodes.append(total)
        return nodes[-1]


class ResNetBasicblock(nn.Module):
    """The reduction between stages: two ReLU-Conv-BN 3x3 (the first strided) plus an avg-pool + 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
                                        nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def _stem(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))


class _Head(nn.Module):
    """BN + ReLU, global average pooling, linear classifier (the cost unit ``head``)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.lastact = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))


class TinyNetwork(nn.Module):
    """The NAS-Bench-201 network of one cell (``forward`` returns the logits only)."""

    def __init__(self, ops: list[str], channels: int = 16, num_cells: int = 5, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _stem(channels)
        cells: list[nn.Module] = []
        for stage in range(3):
            width = channels * 2 ** stage
            if stage:
                cells.append(ResNetBasicblock(width // 2, width, 2))
            cells.extend(InferCell(ops, width) for _ in range(num_cells))
        self.cells = nn.ModuleList(cells)
        head = _Head(channels * 4, num_classes)
        self.lastact, self.global_pooling, self.classifier = head.lastact, head.global_pooling, head.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.stem(x)
        for cell in self.cells:
            feature = cell(feature)
        return self.classifier(self.global_pooling(self.lastact(feature)).flatten(1))


_UNIT = re.compile(r"stage(\d)=(\w+)")


@register_space("nas-bench-201")
class NasBench201Space(SearchSpace):
    """NAS-Bench-201: labels ``edge_1_0, edge_2_0, edge_2_1, edge_3_0, edge_3_1, edge_3_2``, 5 operations each.

    ``num_classes`` 10 / 100 / 120 for the CIFAR-10 / CIFAR-100 / ImageNet16-120 tables (input 32 / 32 / 16
    pixels). ``dataset`` (``cifar10``, ``cifar100``, ``imagenet``; needs the tables, ``nni-ext[bench]``) sets
    both from the dataset and makes ``latency_ms`` exact: :meth:`exact_metrics` looks the cell's latency up in
    that dataset's table (what ``nni_ext.trials.nb201_trial --dataset`` reports). Cost units: ``stem``,
    ``reduction1``, ``reduction2``, ``head`` and, per stage and operation, the operation applied ``num_cells``
    times at that stage's shape (``stage2=nor_conv_3x3``), listed once per edge that uses it (every edge of a
    stage has the same shape): 19 units to count, not 94.

    Example:
        >>> space = NasBench201Space()
        >>> arch = {label: "nor_conv_3x3" for label in space.labels}
        >>> sum(p.numel() for p in space.build(arch).parameters())  # the table's 1.531546 "MB"
        1531546
    """

    name = "nas-bench-201"
    default_input_size = 32

    def __init__(self, *, num_classes: int | None = None, channels: int = 16, num_cells: int = 5,
                 input_size: int | None = None, dataset: str | None = None) -> None:
        extra: dict[str, Any] = {}
        if dataset is not None:
            dataset = dataset_name(dataset)
            for arg, value, want in (("num_classes", num_classes, NUM_CLASSES[dataset]),
                                     ("input_size", input_size, INPUT_SIZE[dataset])):
                if value is not None and value != want:
                    raise ValueError(f"{arg}={value} does not match dataset {dataset!r} ({arg} {want}); "
                                     f"leave {arg} out, the dataset sets it")
            if (channels, num_cells) != (16, 5):
                raise ValueError(f"dataset {dataset!r} tables are for channels 16 and num_cells 5, not {channels} "
                                 f"and {num_cells}; leave them out or drop dataset")
            num_classes, input_size = NUM_CLASSES[dataset], INPUT_SIZE[dataset]
            extra["dataset"] = dataset
        num_classes = 10 if num_classes is None else num_classes
        input_size = 32 if input_size is None else input_size
        if input_size % 4:
            raise ValueError(f"input_size={input_size} must be a multiple of 4 (two stride-2 reductions)")
        super().__init__(num_classes=num_classes, channels=channels, num_cells=num_cells, input_size=input_size,
                         **extra)
        self.default_input_size = input_size  # type: ignore[misc]
        self.dataset = dataset
        #: the metrics :meth:`exact_metrics` gives (``latency_ms`` with a dataset)
        self.exact_metric_keys: tuple[str, ...] = ("latency_ms",) if dataset is not None else ()

    def exact_metrics(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """``{"latency_ms": the table's latency of arch}`` with a ``dataset``; ``{}`` without one."""
        if self.dataset is None:
            return {}
        from ..nb201 import table

        return {"latency_ms": float(table(self.dataset).latency_ms[cell_index(arch)])}

    def choices(self) -> dict[str, list[Any]]:
        return {label: list(OPS) for label in LABELS}

    def build(self, arch: Mapping[str, Any]) -> TinyNetwork:
        arch = self.validate(arch)
        cfg = self.config
        return TinyNetwork([arch[label] for label in LABELS], cfg["channels"], cfg["num_cells"], cfg["num_classes"])

    # ------------------------------------------------------------ cost units
    def _stage_shape(self, stage: int, input_size: int) -> tuple[int, int]:
        """(channels, pixels) inside stage 1, 2 or 3."""
        size = input_size
        for _ in range(stage - 1):
            size = (size - 1) // 2 + 1  # the strided 3x3 conv of the reduction
        return self.config["channels"] * 2 ** (stage - 1), size

    def cost_units(self, arch: Mapping[str, Any], input_size: int) -> list[str]:
        arch = self.validate(arch)
        edges = [f"stage{s}={arch[label]}" for s in (1, 2, 3) for label in LABELS]
        return ["stem", "reduction1", "reduction2", *edges, "head"]

    def all_cost_units(self, input_size: int) -> list[str]:
        edges = [f"stage{s}={op}" for s in (1, 2, 3) for op in OPS]
        return ["stem", "reduction1", "reduction2", *edges, "head"]

    def build_cost_unit(self, unit: str, input_size: int) -> tuple[nn.Module, tuple[int, ...]]:
        cfg = self.config
        if unit == "stem":
            return _stem(cfg["channels"]), (1, 3, input_size, input_size)
        if unit == "head":
            channels, size = self._stage_shape(3, input_size)
            return _Head(channels, cfg["num_classes"]), (1, channels, size, size)
        if unit in ("reduction1", "reduction2"):
            channels, size = self._stage_shape(int(unit[-1]), input_size)
            return ResNetBasicblock(channels, channels * 2, 2), (1, channels, size, size)
        match = _UNIT.fullmatch(unit)
        if not match or match.group(1) not in "123" or match.group(2) not in OPS:
            raise KeyError(f"unknown cost unit {unit!r} of space {self.name!r}")
        channels, size = self._stage_shape(int(match.group(1)), input_size)
        module = nn.Sequential(*[make_op(match.group(2), channels) for _ in range(cfg["num_cells"])])
        return module, (1, channels, size, size)
