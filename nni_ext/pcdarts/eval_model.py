"""DARTS evaluation network (NetworkCIFAR): a stack of cells built from a genotype, with an auxiliary head."""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from .genotypes import Genotype, load_genotype
from .operations import FactorizedReduce, Identity, ReLUConvBN, build_op, drop_path

__all__ = ["AuxiliaryHeadCIFAR", "EvalCell", "EvalNetwork"]


class EvalCell(nn.Module):
    """A discrete cell: every intermediate node sums two operations applied to earlier states.

    Args:
        genotype: the cell pair; ``genotype.reduce`` is used when ``reduction``, else ``genotype.normal``.
        C_prev_prev: channels of the first input.
        C_prev: channels of the second input.
        C: channels of every state inside the cell.
        reduction: whether this cell halves the resolution.
        reduction_prev: whether the previous cell did (the first input is then reduced to match).
    """

    def __init__(self, genotype: Genotype, *, C_prev_prev: int, C_prev: int, C: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(C_prev_prev, C) if reduction_prev
                            else ReLUConvBN(C_prev_prev, C, 1, 1, 0))
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = list(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.multiplier = len(self.concat)
        self.steps = len(edges) // 2
        self.indices = [index for _, index in edges]
        self._ops = nn.ModuleList(build_op(name, C, 2 if reduction and index < 2 else 1, affine=True)
                                  for name, index in edges)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        """Run the cell; in training mode non-identity operations are dropped with ``drop_prob`` (drop path)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        use_drop = self.training and drop_prob > 0.0
        for node in range(self.steps):
            total = None
            for e in (2 * node, 2 * node + 1):
                op = self._ops[e]
                h = op(states[self.indices[e]])
                if use_drop and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS auxiliary classifier, designed for 8x8 feature maps (the output of cell ``2 * layers // 3`` at 32px).

    On 8x8 inputs it is exactly DARTS' head (5x5 average pooling with stride 3 to 2x2). To accept other
    sizes, the pooled map is then adaptively average-pooled to 2x2 (a no-op at 8x8), and maps smaller than
    5x5 skip the 5x5 pooling.
    """

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        if min(x.shape[-2:]) >= 5:
            x = self.pool(x)
        x = F.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.features(x).flatten(1))


class EvalNetwork(nn.Module):
    """The DARTS CIFAR evaluation network built from a genotype (NetworkCIFAR).

    Args:
        genotype: a :class:`Genotype`, or anything :func:`load_genotype` accepts (registry name, file).
        C: initial channels (36 in DARTS / PC-DARTS for CIFAR-10); doubled at each reduction cell.
        num_classes: classifier outputs.
        layers: number of cells (20 for CIFAR-10); reductions at ``layers // 3`` and ``2 * layers // 3``.
        auxiliary: add the auxiliary head after cell ``2 * layers // 3``.
        drop_path_prob: drop-path probability in training; a plain attribute, set it every epoch as DARTS does.
        in_channels: image channels.

    ``forward`` returns ``(logits, logits_aux)``; ``logits_aux`` is None unless training with ``auxiliary``.
    DARTS reports parameter counts without the auxiliary head (see :meth:`num_params`).

    Raises:
        ValueError: for an invalid genotype or non-positive sizes.
    """

    def __init__(self, genotype: Genotype | str | os.PathLike, *, C: int = 36, num_classes: int = 10,
                 layers: int = 20, auxiliary: bool = True, drop_path_prob: float = 0.0,
                 in_channels: int = 3) -> None:
        super().__init__()
        for name, value in (("C", C), ("num_classes", num_classes), ("layers", layers),
                            ("in_channels", in_channels)):
            if value < 1:
                raise ValueError(f"EvalNetwork: {name}={value} must be >= 1")
        if not 0.0 <= drop_path_prob < 1.0:
            raise ValueError(f"EvalNetwork: drop_path_prob={drop_path_prob} must be in [0, 1)")
        self.genotype = load_genotype(genotype)
        self.layers, self.auxiliary = layers, auxiliary
        self.drop_path_prob = drop_path_prob
        self.aux_position = 2 * layers // 3

        stem_multiplier = 3
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        C_aux = C_prev
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = EvalCell(self.genotype, C_prev_prev=C_prev_prev, C_prev=C_prev, C=C_curr, reduction=reduction,
                            reduction_prev=reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == self.aux_position:
                C_aux = C_prev
        self.auxiliary_head = AuxiliaryHeadCIFAR(C_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def num_params(self, *, include_auxiliary: bool = False) -> int:
        """Parameter count; without the auxiliary head by default, as DARTS and PC-DARTS report it."""
        return sum(p.numel() for name, p in self.named_parameters()
                   if include_auxiliary or not name.startswith("auxiliary_head."))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, logits_aux)`` for images ``(N, in_channels, H, W)``."""
        logits_aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_position and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits, logits_aux


def eval_network_cost(genotype: Genotype | str | os.PathLike, *, num_classes: int, channels: int, layers: int,
                      image_size: int, in_channels: int = 3) -> dict[str, int]:
    """Parameters and FLOPs (MACs, via :func:`nni_ext.cost.counting.count`) of the evaluation network of
    ``genotype`` without its auxiliary head, as DARTS reports them, for one ``image_size`` input."""
    from ..cost.counting import count

    net = EvalNetwork(genotype, C=channels, num_classes=num_classes, layers=layers, auxiliary=False,
                      in_channels=in_channels)
    cost = count(net, (1, in_channels, image_size, image_size), device="cpu")
    return {"params": int(cost.params), "flops": int(cost.flops)}
