"""Exact FLOPs (multiply-accumulates) and parameter counts of any ``nn.Module``.

Built on :class:`torch.utils.flop_counter.FlopCounterMode`, which counts 2 FLOPs per
multiply-accumulate of convolutions and matrix products; we report MACs, the convention of
the SPOS, OFA and NSGANetV2 papers ("330M FLOPs") and of torchvision's ``_ops`` metadata.
Element-wise work (BN, activations, pooling, additions) is not counted, as in those papers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Cost:
    """Cost of a network at one input size.

    Attributes:
        flops: multiply-accumulates of one forward pass (MACs, "FLOPs" in NAS papers).
        params: number of parameters.
    """

    flops: int
    params: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.params + other.params)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def input_shape(input_size: int | Sequence[int]) -> tuple[int, ...]:
    """Normalise ``224`` / ``(224, 224)`` / ``(1, 3, 224, 224)`` to an NCHW shape."""
    if isinstance(input_size, int):
        return (1, 3, input_size, input_size)
    size = tuple(int(s) for s in input_size)
    if len(size) == 2:
        return (1, 3, *size)
    if len(size) == 3:
        return (1, *size)
    return size


def count_params(model: nn.Module) -> int:
    """Number of parameters of ``model`` (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def count(model: nn.Module, input_size: int | Sequence[int] = (1, 3, 224, 224), *,
          inputs: Any = None, device: str | torch.device | None = None) -> Cost:
    """Count the MACs of one forward pass of ``model`` and its parameters.

    Args:
        model: any module; it is run once in eval mode without gradients (BN statistics and
            the train/eval flag are left as they were).
        input_size: an int (square image, batch 1), ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
        inputs: a tensor or tuple of tensors to feed instead of zeros of ``input_size``.
        device: where to run; defaults to the device of the model's first parameter.

    Example:
        >>> import torchvision
        >>> cost = count(torchvision.models.resnet18(), input_size=224)
        >>> round(cost.flops / 1e9, 2), round(cost.params / 1e6, 2)
        (1.81, 11.69)
    """
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    if inputs is None:
        inputs = (torch.zeros(input_shape(input_size), device=device),)
    elif isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return Cost(flops=int(counter.get_total_flops()) // 2, params=count_params(model))
