"""The SPOS one-shot supernet: every candidate block of every layer, one path run per forward pass.

Weights are shared by all architectures of :class:`~nni_ext.spaces.spos.SposShuffleNetV2Space`;
``forward(x, path)`` runs the stem, the chosen block of each layer and the head. Following
NNI's SPOS supernet, BatchNorm in the supernet is not affine by default (its statistics are
recalibrated per architecture before evaluation); the stand-alone networks trained from scratch are.

Initialisation (the space's ``supernet_init``): ``"default"`` keeps PyTorch's independent random
weights in every candidate, as the official recipe. Then the four candidates of a layer start as four
unrelated functions, each sampled path is a different random network, and the shared weights must
first agree on what every channel means. The official recipe gives that 120k iterations; in a short
run it does not happen: 300 steps at batch 64 leave ``spos-digits`` at chance (train top-1 9-12 %,
loss ln 10) while a fixed path of the same supernet learns, and the ImageNet ``spos`` space on the
digits at 64 px at 11-14 % (benchmarks/RESULTS.md). ``"identity"`` (:func:`identity_init`) starts
every candidate of a layer as the same near-identity map (pointwise convolutions as identity matrices,
depthwise ones as a Dirac delta, strided ones as a 3x3 box filter), so all paths compute the same
network at step 0 and training only has to make them differ: random paths of ``spos-digits`` then
reach about 90 % top-1 in 450 steps, those of ``spos`` 67-92 % in 300. The stem and head keep
PyTorch's initialisation.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from .spos import SPOS_CANDIDATES, SUPERNET_INITS, ShuffleBlock, SposShuffleNetV2Space, _head, _stem


@torch.no_grad()
def identity_init(module: nn.Module) -> None:
    """Initialise every convolution in ``module`` as a near-identity map (same for every candidate block).

    Pointwise (1x1) convolutions: an identity matrix, rows beyond the input width repeating it
    (``W[i, i % in] = 1``, so no output channel starts constant). Depthwise convolutions: a Dirac
    delta (stride 1) or a centred 3x3 box filter (stride 2: an anti-aliased subsampling that keeps
    what the whole window saw), zero-padded to 5x5 and 7x7, so all kernel sizes compute the same.
    With BatchNorm and ReLU after them, every SPOS candidate then maps each channel through the
    same monotone function: ``shufflenet_3x3/5x5/7x7`` exactly alike, ``xception_3x3`` closely.
    """
    for m in module.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        m.weight.zero_()
        out_channels, in_per_group, kh, kw = m.weight.shape
        if m.groups > 1 and in_per_group == 1:  # depthwise
            ch, cw = kh // 2, kw // 2
            if m.stride[0] == 1:
                m.weight[:, 0, ch, cw] = 1.0
            else:
                m.weight[:, 0, max(ch - 1, 0):ch + 2, max(cw - 1, 0):cw + 2] = 1.0 / 9
        elif m.groups == 1 and kh == kw == 1:  # pointwise
            rows = torch.arange(out_channels)
            m.weight[rows, rows % in_per_group, 0, 0] = 1.0
        else:  # not a SPOS block's convolution: keep PyTorch's initialisation
            m.reset_parameters()
            continue
        if m.bias is not None:
            m.bias.zero_()


class ShuffleNetV2Supernet(nn.Module):
    """All 4 candidate blocks for each of the space's layers; ``forward(x, path)`` with ``path[i]`` in 0..3."""

    def __init__(self, space: SposShuffleNetV2Space, *, affine: bool = False, init: str | None = None) -> None:
        super().__init__()
        cfg = space.config
        self.space = space
        self.affine = affine
        #: ``"default"`` or ``"identity"``; ``None`` takes the space's ``supernet_init``
        self.init = init or cfg.get("supernet_init", "default")
        if self.init not in SUPERNET_INITS:
            raise ValueError(f"init={self.init!r}; choose one of {', '.join(SUPERNET_INITS)}")
        self.stem = _stem(cfg["stem_channels"], affine, cfg.get("stem_stride", 2))
        self.choice_blocks = nn.ModuleList(
            nn.ModuleList(ShuffleBlock(kind, cin, cout, stride, affine=affine) for kind in SPOS_CANDIDATES)
            for cin, cout, stride in space.layer_specs)
        self.head = _head(space.layer_specs[-1][1], cfg["last_channels"], cfg["num_classes"], cfg["dropout"], affine)
        if self.init == "identity":
            identity_init(self.choice_blocks)

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
