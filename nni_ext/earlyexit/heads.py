"""Exit heads of an early-exit network (EDANAS) and the max-pooling rule that keeps each exit cheaper than the next.

A head reads the feature map after a backbone stage: optional ``MaxPool2d(k, stride k)``, then
ReLU → conv3×3 (32) → ReLU → conv3×3 (64) → ReLU → conv3×3 (128) → ReLU (stride 1, padding 1), flatten and
a linear layer to the classes. Its multiply-accumulates and parameters have a closed form
(:func:`head_cost`, equal to counting the built module with :func:`nni_ext.cost.count`).

The pooling rule (EDANAS ``get_intermediate_classifiers_adaptive``): exits are placed from the last
intermediate one backwards; an exit keeps no pooling when *backbone MACs up to it + its head's MACs* are
below the same sum of the next exit (the final classifier for the last one); otherwise pooling kernels
1, 2, 4 are tried in turn (a kernel no larger than the feature map) and the first that makes it cheaper
wins, else the largest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch import nn

#: output channels of the three 3x3 convolutions of a head (EDANAS)
HEAD_FILTERS: tuple[int, int, int] = (32, 64, 128)
#: max-pooling kernels tried, in order (kernel 1 is no pooling)
POOL_KERNELS: tuple[int, ...] = (1, 2, 4)


@dataclass(frozen=True)
class ExitSpec:
    """Where an exit sits and what its head is.

    Attributes:
        stage: backbone stage (1-based elastic unit) the exit follows.
        block: index in the sub-network's ``blocks`` (the first fixed block is 0) after which it reads.
        channels, side: the feature map it reads (channels, square side in pixels).
        pool: max-pooling kernel (1: none).
        threshold: the softmax-margin threshold of the exit rule, in (0, 1].
    """

    stage: int
    block: int
    channels: int
    side: int
    pool: int
    threshold: float


def pool_kernels(side: int) -> tuple[int, ...]:
    """The pooling kernels a ``side``-pixel feature map allows (no larger than the map)."""
    return tuple(k for k in POOL_KERNELS if k <= max(side, 1))


def head_cost(channels: int, side: int, num_classes: int, pool: int = 1) -> tuple[int, int]:
    """``(MACs, params)`` of an exit head on a ``channels`` x ``side`` x ``side`` input with pooling ``pool``.

    Convolutions count ``Cout·Cin·9·H·W`` and the linear layer ``in·out``, as torch's flop counter does
    (bias additions, ReLU and pooling are not multiply-accumulates).
    """
    s = side // pool
    c1, c2, c3 = HEAD_FILTERS
    area = s * s
    macs = 9 * area * (channels * c1 + c1 * c2 + c2 * c3) + c3 * area * num_classes
    params = 9 * (channels * c1 + c1 * c2 + c2 * c3) + c1 + c2 + c3 + c3 * area * num_classes + num_classes
    return macs, params


def choose_pool(backbone_macs: int, channels: int, side: int, num_classes: int, next_macs: int) -> int:
    """EDANAS's pooling kernel of an exit: the first of 1, 2, 4 with ``backbone_macs + head MACs < next_macs``.

    ``next_macs`` is backbone + head MACs of the next exit (the final classifier for the last
    intermediate exit). When no kernel makes the exit cheaper, the largest the map allows.
    """
    kernels = pool_kernels(side)
    for k in kernels:
        if backbone_macs + head_cost(channels, side, num_classes, k)[0] < next_macs:
            return k
    return kernels[-1]


class ExitHead(nn.Module):
    """One exit classifier (EDANAS): [max-pool] → 3 × (ReLU, conv3×3 32/64/128) → ReLU → flatten → linear."""

    def __init__(self, channels: int, side: int, num_classes: int, pool: int = 1) -> None:
        super().__init__()
        if pool not in pool_kernels(side):
            raise ValueError(f"pool={pool} does not fit a {side}-pixel feature map; choose one of {pool_kernels(side)}")
        c1, c2, c3 = HEAD_FILTERS
        layers: list[nn.Module] = [nn.MaxPool2d(pool, stride=pool)] if pool > 1 else []
        layers += [nn.ReLU(), nn.Conv2d(channels, c1, 3, padding=1), nn.ReLU(), nn.Conv2d(c1, c2, 3, padding=1),
                   nn.ReLU(), nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), nn.Flatten(1)]
        self.features = nn.Sequential(*layers)
        s = side // pool
        self.classifier = nn.Linear(c3 * s * s, num_classes)
        self.channels, self.side, self.pool = channels, side, pool

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.classifier(self.features(x))


def plan_pools(backbone_macs: Sequence[int], channels: Sequence[int], sides: Sequence[int], num_classes: int,
               final_macs: int) -> list[int]:
    """Pooling kernels of the intermediate exits (in network order), chosen from the last one backwards.

    ``backbone_macs[i]``: MACs of the backbone up to exit ``i``; ``final_macs``: backbone plus final classifier.
    """
    pools = [1] * len(backbone_macs)
    next_macs = final_macs
    for i in reversed(range(len(backbone_macs))):
        pools[i] = choose_pool(backbone_macs[i], channels[i], sides[i], num_classes, next_macs)
        next_macs = backbone_macs[i] + head_cost(channels[i], sides[i], num_classes, pools[i])[0]
    return pools


__all__ = ["HEAD_FILTERS", "POOL_KERNELS", "ExitHead", "ExitSpec", "choose_pool", "head_cost", "plan_pools",
           "pool_kernels"]
