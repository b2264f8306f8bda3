"""SPOS ShuffleNetV2 one-shot space (Guo et al., "Single Path One-Shot NAS with Uniform Sampling").

20 searchable layers (stages of 4, 4, 8 and 4 blocks; the first block of each stage has
stride 2), each choosing one of four blocks: ShuffleNetV2 blocks with a 3x3, 5x5 or 7x7
depthwise kernel, or the ShuffleXception block. Channels follow the official supernet:
stem 16, stages 64/160/320/640, last conv 1024. The official searched architecture
``(2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3)`` is published at 323M FLOPs
(multiply-accumulates) and 3.5M parameters.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .base import Architecture, SearchSpace
from .registry import register_space

#: block names, in the candidate order of every ``layer_k`` label
SPOS_CANDIDATES: list[str] = ["shufflenet_3x3", "shufflenet_5x5", "shufflenet_7x7", "xception_3x3"]
#: how a supernet of the space initialises its candidate blocks (see :mod:`nni_ext.spaces.spos_supernet`)
SUPERNET_INITS: tuple[str, ...] = ("default", "identity")
#: the architecture released by the SPOS authors (indices into :data:`SPOS_CANDIDATES`)
SPOS_OFFICIAL_INDICES: tuple[int, ...] = (2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3)


def _bn(channels: int, affine: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, affine=affine)


def _dw(channels: int, kernel_size: int, stride: int, affine: bool) -> list[nn.Module]:
    """Depthwise conv + BN (no activation, as in ShuffleNetV2)."""
    return [nn.Conv2d(channels, channels, kernel_size, stride, kernel_size // 2, groups=channels, bias=False),
            _bn(channels, affine)]


def _pw(in_channels: int, out_channels: int, affine: bool) -> list[nn.Module]:
    """Pointwise conv + BN + ReLU."""
    return [nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False), _bn(out_channels, affine), nn.ReLU(inplace=True)]


def channel_split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ShuffleNetV2's shuffle-then-split: even channels bypass, odd channels go through the block."""
    return x[:, 0::2], x[:, 1::2]


class ShuffleBlock(nn.Module):
    """One searchable SPOS block: ``shufflenet_{3,5,7}x{k}`` or ``xception_3x3``.

    ``in_channels``/``out_channels`` are the block's full input/output widths. With stride 1
    half of the input bypasses the block (channel split); with stride 2 a projection branch
    (depthwise + pointwise) downsamples the whole input.
    """

    def __init__(self, kind: str, in_channels: int, out_channels: int, stride: int, *, affine: bool = True) -> None:
        super().__init__()
        if kind not in SPOS_CANDIDATES:
            raise ValueError(f"kind={kind!r} is not a SPOS block; choose one of {SPOS_CANDIDATES}")
        if stride not in (1, 2):
            raise ValueError(f"stride={stride} must be 1 or 2")
        self.kind, self.stride = kind, stride
        kernel = int(kind[-1])
        branch_in = in_channels if stride == 2 else in_channels // 2
        mid = out_channels // 2
        main_out = out_channels - branch_in
        if kind.startswith("shufflenet"):
            layers = [*_pw(branch_in, mid, affine), *_dw(mid, kernel, stride, affine), *_pw(mid, main_out, affine)]
        else:  # xception: (dw, pw) x 3, the first dw strided
            layers = [*_dw(branch_in, 3, stride, affine), *_pw(branch_in, mid, affine),
                      *_dw(mid, 3, 1, affine), *_pw(mid, mid, affine),
                      *_dw(mid, 3, 1, affine), *_pw(mid, main_out, affine)]
        self.branch_main = nn.Sequential(*layers)
        self.branch_proj = (nn.Sequential(*_dw(in_channels, kernel, 2, affine), *_pw(in_channels, in_channels, affine))
                            if stride == 2 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch_proj is None:
            bypass, x = channel_split(x)
            return torch.cat((bypass, self.branch_main(x)), 1)
        return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)


def _stem(stem_channels: int, affine: bool, stride: int = 2) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, stem_channels, 3, stride, 1, bias=False), _bn(stem_channels, affine),
                         nn.ReLU(inplace=True))


def _head(in_channels: int, last_channels: int, num_classes: int, dropout: float, affine: bool) -> nn.Sequential:
    return nn.Sequential(*_pw(in_channels, last_channels, affine), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         nn.Dropout(dropout), nn.Linear(last_channels, num_classes, bias=False))


class ShuffleNetV2OneShot(nn.Module):
    """A standalone SPOS network for one architecture (list of block names, one per layer)."""

    def __init__(self, blocks: Sequence[str], layer_specs: Sequence[tuple[int, int, int]], *, stem_channels: int,
                 last_channels: int, num_classes: int, dropout: float, affine: bool, stem_stride: int = 2) -> None:
        super().__init__()
        self.stem = _stem(stem_channels, affine, stem_stride)
        self.features = nn.Sequential(*[ShuffleBlock(kind, cin, cout, stride, affine=affine)
                                        for kind, (cin, cout, stride) in zip(blocks, layer_specs)])
        self.head = _head(layer_specs[-1][1], last_channels, num_classes, dropout, affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.stem(x)))


@register_space("spos")
class SposShuffleNetV2Space(SearchSpace):
    """The SPOS ShuffleNetV2 block-search space: labels ``layer_1`` … ``layer_20``, 4 candidates each.

    ``supernet_init`` only concerns the one-shot supernet (:class:`~nni_ext.spaces.spos_supernet.ShuffleNetV2Supernet`):
    ``"default"`` (PyTorch's initialisation, the official recipe) or ``"identity"`` (every candidate of a
    layer starts as the same near-identity function, so a short supernet training learns; see there).

    Example:
        >>> space = SposShuffleNetV2Space(num_classes=10)
        >>> arch = space.official_architecture()
        >>> arch["layer_1"]
        'shufflenet_7x7'
    """

    name = "spos"
    default_input_size = 224

    def __init__(self, *, num_classes: int = 1000, stage_repeats: Sequence[int] = (4, 4, 8, 4),
                 stage_channels: Sequence[int] = (64, 160, 320, 640), stem_channels: int = 16,
                 last_channels: int = 1024, dropout: float = 0.1, affine: bool = True,
                 input_size: int = 224, stem_stride: int = 2, supernet_init: str = "default") -> None:
        if len(stage_repeats) != len(stage_channels):
            raise ValueError(f"stage_repeats {list(stage_repeats)} and stage_channels {list(stage_channels)} "
                             "must have the same length")
        if any(c % 4 for c in (stem_channels, *stage_channels)):
            raise ValueError("stem_channels and stage_channels must be multiples of 4 (channel split)")
        if supernet_init not in SUPERNET_INITS:
            raise ValueError(f"supernet_init={supernet_init!r}; choose one of {', '.join(SUPERNET_INITS)}")
        super().__init__(num_classes=num_classes, stage_repeats=list(stage_repeats),
                         stage_channels=list(stage_channels), stem_channels=stem_channels,
                         last_channels=last_channels, dropout=dropout, affine=affine, input_size=input_size,
                         **({"stem_stride": stem_stride} if stem_stride != 2 else {}),
                         **({"supernet_init": supernet_init} if supernet_init != "default" else {}))
        self.default_input_size = input_size  # type: ignore[misc]
        widths = [stem_channels, *stage_channels]
        if any(b <= a for a, b in zip(widths, widths[1:])):
            raise ValueError(f"channels must grow from stage to stage (stem {stem_channels}, stages "
                             f"{list(stage_channels)}): a strided block outputs its input plus new channels")
        specs: list[tuple[int, int, int]] = []
        cin = stem_channels
        for repeats, cout in zip(stage_repeats, stage_channels):
            for i in range(repeats):
                specs.append((cin, cout, 2 if i == 0 else 1))
                cin = cout
        #: (in_channels, out_channels, stride) of every layer
        self.layer_specs = specs

    def choices(self) -> dict[str, list[Any]]:
        return {f"layer_{i + 1}": list(SPOS_CANDIDATES) for i in range(len(self.layer_specs))}

    def official_architecture(self) -> Architecture:
        """The architecture released by the SPOS authors (needs the default 20 layers)."""
        if len(self.layer_specs) != len(SPOS_OFFICIAL_INDICES):
            raise ValueError("the official architecture needs the default 20-layer space")
        return {f"layer_{i + 1}": SPOS_CANDIDATES[c] for i, c in enumerate(SPOS_OFFICIAL_INDICES)}

    def build(self, arch: Mapping[str, Any]) -> ShuffleNetV2OneShot:
        arch = self.validate(arch)
        cfg = self.config
        return ShuffleNetV2OneShot([arch[label] for label in self.labels], self.layer_specs,
                                   stem_channels=cfg["stem_channels"], last_channels=cfg["last_channels"],
                                   num_classes=cfg["num_classes"], dropout=cfg["dropout"], affine=cfg["affine"],
                                   stem_stride=cfg.get("stem_stride", 2))

    # ------------------------------------------------------------ cost units
    def _layer_input_sizes(self, input_size: int) -> list[int]:
        size = math.ceil(input_size / self.config.get("stem_stride", 2))  # after the stem
        sizes = []
        for _, _, stride in self.layer_specs:
            sizes.append(size)
            size = math.ceil(size / stride)
        sizes.append(size)  # the head's input
        return sizes

    def cost_units(self, arch: Mapping[str, Any], input_size: int) -> list[str]:
        arch = self.validate(arch)
        return ["stem", *(f"{label}={arch[label]}" for label in self.labels), "head"]

    def all_cost_units(self, input_size: int) -> list[str]:
        return ["stem", *(f"{label}={kind}" for label, kinds in self.choices().items() for kind in kinds), "head"]

    def build_cost_unit(self, unit: str, input_size: int) -> tuple[nn.Module, tuple[int, ...]]:
        cfg = self.config
        sizes = self._layer_input_sizes(input_size)
        if unit == "stem":
            return _stem(cfg["stem_channels"], cfg["affine"], cfg.get("stem_stride", 2)), (1, 3, input_size, input_size)
        if unit == "head":
            cin = self.layer_specs[-1][1]
            module = _head(cin, cfg["last_channels"], cfg["num_classes"], cfg["dropout"], cfg["affine"])
            return module, (1, cin, sizes[-1], sizes[-1])
        match = re.fullmatch(r"layer_(\d+)=(\w+)", unit)
        if not match or not 1 <= int(match.group(1)) <= len(self.layer_specs) or match.group(2) not in SPOS_CANDIDATES:
            raise KeyError(f"unknown cost unit {unit!r} of space {self.name!r}")
        index = int(match.group(1)) - 1
        cin, cout, stride = self.layer_specs[index]
        block = ShuffleBlock(match.group(2), cin, cout, stride, affine=cfg["affine"])
        return block, (1, cin, sizes[index], sizes[index])


@register_space("spos-digits")
def spos_digits_space(**overrides: Any) -> SposShuffleNetV2Space:
    """A narrow SPOS space for 32-pixel, 10-class data (the embedded digits): same 20 labels and blocks.

    Its supernet starts from the ``identity`` initialisation: with PyTorch's default one, a supernet of
    this space stays at chance for hundreds of steps (see :mod:`nni_ext.spaces.spos_supernet`).
    """
    config: dict[str, Any] = dict(num_classes=10, stem_channels=8, stage_channels=(16, 32, 64, 128),
                                  last_channels=256, input_size=32, supernet_init="identity")
    config.update(overrides)
    return SposShuffleNetV2Space(**config)
