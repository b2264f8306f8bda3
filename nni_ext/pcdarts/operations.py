"""Candidate operations of the DARTS / PC-DARTS cell space and the drop-path regulariser."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PRIMITIVES", "DilConv", "FactorizedReduce", "Identity", "ReLUConvBN", "SepConv", "Zero", "build_op",
           "drop_path"]

#: Candidate operations on every edge, in the order of DARTS (index = column of the alpha matrices).
PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class ReLUConvBN(nn.Module):
    """ReLU, then a convolution without bias, then batch normalisation."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, *,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """ReLU, dilated depthwise convolution, pointwise convolution, batch normalisation."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int, *,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=C_in,
                      bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """Two stacked separable convolutions (DARTS ``sep_conv``); only the first one has the stride."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, *,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine=affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Identity(nn.Module):
    """The identity (``skip_connect`` with stride 1); drop path is never applied to it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The ``none`` operation: zeros of the output shape (spatially subsampled when ``stride`` > 1)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two stride-2 1x1 convolutions on pixel grids offset by one, concatenated.

    Odd input sizes are supported (the output is ``ceil(H / 2)``, as for the stride-2 convolutions);
    for even sizes the result is exactly that of DARTS.
    """

    def __init__(self, C_in: int, C_out: int, *, affine: bool = True) -> None:
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce: C_out={C_out} must be even (it is split between two convolutions)")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))  # the padded row/column is never sampled for even sizes
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def build_op(name: str, C: int, stride: int, affine: bool) -> nn.Module:
    """Build the candidate operation ``name`` mapping ``C`` channels to ``C`` channels.

    Args:
        name: one of :data:`PRIMITIVES`.
        C: number of input and output channels.
        stride: 1, or 2 in reduction cells (edges leaving the cell inputs).
        affine: whether batch normalisation has learnable scale and shift (False in the search network).

    Returns:
        The operation. Pools are returned bare; the search network appends a non-affine BN to them.

    Raises:
        ValueError: for an unknown ``name``, a ``stride`` other than 1 or 2, or ``C`` < 1.
    """
    if stride not in (1, 2):
        raise ValueError(f"build_op: stride={stride!r} is not supported; use 1 or 2")
    if C < 1:
        raise ValueError(f"build_op: C={C!r} must be a positive number of channels")
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine)
    if name == "sep_conv_3x3":
        return SepConv(C, C, 3, stride, 1, affine=affine)
    if name == "sep_conv_5x5":
        return SepConv(C, C, 5, stride, 2, affine=affine)
    if name == "dil_conv_3x3":
        return DilConv(C, C, 3, stride, 2, 2, affine=affine)
    if name == "dil_conv_5x5":
        return DilConv(C, C, 5, stride, 4, 2, affine=affine)
    raise ValueError(f"build_op: unknown operation name={name!r}; use one of {', '.join(PRIMITIVES)}")


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of ``x`` with probability ``drop_prob`` and rescale the rest by ``1 / (1 - drop_prob)``.

    Args:
        x: a batch ``(N, ...)``; it is not modified in place.
        drop_prob: probability in ``[0, 1)`` of dropping a sample's path; 0 returns ``x`` unchanged.

    Raises:
        ValueError: if ``drop_prob`` is outside ``[0, 1)``.
    """
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"drop_path: drop_prob={drop_prob!r} must be in [0, 1)")
    if drop_prob == 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep
