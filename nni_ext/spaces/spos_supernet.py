"""The SPOS one-shot supernet: every candidate block of every layer, one path run per forward pass.

Weights are shared by all architectures of :class:`~nni_ext.spaces.spos.SposShuffleNetV2Space`;
``forward(x, path)`` runs the stem, the chosen block of each layer and the head. Following
NNI's SPOS supernet, BatchNorm in the supernet is not affine by default (its statistics are
recalibrated per architecture before evaluation); the stand-alone networks trained from scratch are.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from .spos import SPOS_CANDIDATES, ShuffleBlock, SposShuffleNetV2Space, _head, _stem


class ShuffleNetV2Supernet(nn.Module):
    """All 4 candidate blocks for each of the space's layers; ``forward(x, path)`` with ``path[i]`` in 0..3."""

    def __init__(self, space: SposShuffleNetV2Space, *, affine: bool = False) -> None:
        super().__init__()
        cfg = space.config
        self.space = space
        self.affine = affine
        self.stem = _stem(cfg["stem_channels"], affine, cfg.get("stem_stride", 2))
        self.choice_blocks = nn.ModuleList(
            nn.ModuleList(ShuffleBlock(kind, cin, cout, stride, affine=affine) for kind in SPOS_CANDIDATES)
            for cin, cout, stride in space.layer_specs)
        self.head = _head(space.layer_specs[-1][1], cfg["last_channels"], cfg["num_classes"], cfg["dropout"], affine)

    @property
    def num_layers(self) -> int:
        return len(self.choice_blocks)

    def path_of(self, arch: Mapping[str, Any]) -> list[int]:
        """Candidate indices of an architecture dict (validated against the space)."""
        arch = self.space.validate(arch)
        return [SPOS_CANDIDATES.index(arch[label]) for label in self.space.labels]

    def arch_of(self, path: Sequence[int]) -> dict[str, str]:
        """The architecture dict of a path of candidate indices."""
        return {label: SPOS_CANDIDATES[int(i)] for label, i in zip(self.space.labels, path)}

    def forward(self, x: torch.Tensor, path: Sequence[int]) -> torch.Tensor:
        if len(path) != self.num_layers:
            raise ValueError(f"path has {len(path)} entries; the supernet has {self.num_layers} layers")
        x = self.stem(x)
        for blocks, choice in zip(self.choice_blocks, path):
            x = blocks[int(choice)](x)
        return self.head(x)

    def unused_parameters(self, path: Sequence[int]) -> Iterator[nn.Parameter]:
        """Parameters of the blocks ``path`` does not run (they must get no optimizer update this step)."""
        for blocks, choice in zip(self.choice_blocks, path):
            for i, block in enumerate(blocks):
                if i != int(choice):
                    yield from block.parameters()

    def path_modules(self, path: Sequence[int]) -> list[nn.Module]:
        """The modules a path runs (stem, one block per layer, head)."""
        return [self.stem, *(blocks[int(c)] for blocks, c in zip(self.choice_blocks, path)), self.head]
