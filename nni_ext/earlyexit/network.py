"""An OFA MobileNetV3 sub-network with exit heads after some of its stages (EDANAS), and its exact costs.

:class:`EarlyExitNetwork` keeps the sub-network's layers (stem, blocks, final expand / pooling / feature mix /
classifier, weights shared with the sub-network it was made from) and one :class:`~.heads.ExitHead` per
exit. :meth:`EarlyExitNetwork.forward_exits` gives the logits of every exit; :meth:`~EarlyExitNetwork.forward`
the logits of the exit each image leaves at under the exit rule. Run on a batch, ``forward`` computes every
head (the cost an image leaving at the final classifier pays); ``avg_macs`` is the expected cost when
images really stop early.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .heads import ExitHead, ExitSpec
from .rule import select_exit_logits


class FinalClassifier(nn.Module):
    """The sub-network's last layers: final expand, global average pooling, feature mix, flatten, classifier."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.final_expand_layer = backbone.final_expand_layer
        self.global_avg_pool = backbone.global_avg_pool
        self.feature_mix_layer = backbone.feature_mix_layer
        self.classifier = backbone.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature_mix_layer(self.global_avg_pool(self.final_expand_layer(x)))
        return self.classifier(x.flatten(1))


class EarlyExitNetwork(nn.Module):
    """An OFA MobileNetV3 sub-network (``ofa``'s ``MobileNetV3``) with exit heads.

    Args:
        backbone: the sub-network (``supernet.get_active_subnet()``); its layers are reused, not copied.
        exits: the intermediate exits in network order (:class:`~.heads.ExitSpec`: block, feature map, pooling,
            threshold).
        num_classes: classes of the heads (the final classifier keeps its own).
    """

    def __init__(self, backbone: nn.Module, exits: Sequence[ExitSpec], num_classes: int) -> None:
        super().__init__()
        blocks = list(exits)
        if [e.block for e in blocks] != sorted({e.block for e in blocks}):
            raise ValueError("exits must be in network order, one per block")
        if blocks and not 0 <= blocks[-1].block < len(backbone.blocks) - 1:
            raise ValueError(f"an exit after block {blocks[-1].block} does not exist: the sub-network has "
                             f"{len(backbone.blocks)} blocks and the last one feeds the final classifier")
        self.first_conv = backbone.first_conv
        self.blocks = backbone.blocks
        self.final = FinalClassifier(backbone)
        self.heads = nn.ModuleList(ExitHead(e.channels, e.side, num_classes, e.pool) for e in blocks)
        self.exits: list[ExitSpec] = blocks
        self.thresholds: list[float] = [e.threshold for e in blocks]

    # ------------------------------------------------------------------ forward
    def features(self, x: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """``(exit index, feature map)`` at every intermediate exit, then ``(len(exits), last feature map)``."""
        x = self.first_conv(x)
        positions = {e.block: i for i, e in enumerate(self.exits)}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in positions:
                yield positions[i], x
        yield len(self.exits), x

    def forward_exits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit (intermediate ones in order, the final classifier last)."""
        out = []
        for i, feature in self.features(x):
            out.append(self.heads[i](feature) if i < len(self.exits) else self.final(feature))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per image, the logits of the exit it leaves at (the rule with :attr:`thresholds`)."""
        return select_exit_logits(self.forward_exits(x), self.thresholds)

    # -------------------------------------------------------------- parameters
    def backbone_modules(self) -> list[nn.Module]:
        return [self.first_conv, self.blocks, self.final]

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        for module in self.backbone_modules():
            yield from module.parameters()

    # ------------------------------------------------------------------- costs
    def exit_costs(self, input_size: int) -> dict[str, list[int]]:
        """Exact MACs/params per exit (the final classifier last), counted at ``input_size`` and batch 1.

        ``backbone_macs``/``backbone_params``: the backbone up to the exit (the stem and blocks; for the final
        exit all blocks); ``head_macs``/``head_params``: the exit's head (for the final exit: final expand,
        pooling, feature mix and classifier).
        """
        from ..cost import count

        out: dict[str, list[int]] = {k: [] for k in ("backbone_macs", "backbone_params", "head_macs", "head_params")}
        ends = [e.block for e in self.exits] + [len(self.blocks) - 1]
        device = next(self.parameters()).device
        shapes: dict[int, tuple[int, ...]] = {}
        with torch.no_grad():
            was = self.training
            self.eval()
            try:
                for i, feature in self.features(torch.zeros(1, 3, input_size, input_size, device=device)):
                    shapes[i] = tuple(feature.shape)
            finally:
                self.train(was)
        for i, end in enumerate(ends):
            prefix = nn.Sequential(self.first_conv, *list(self.blocks)[: end + 1])
            b = count(prefix, input_size)
            head: Any = self.heads[i] if i < len(self.exits) else self.final
            c = count(head, shapes[i])
            out["backbone_macs"].append(b.flops)
            out["backbone_params"].append(b.params)
            out["head_macs"].append(c.flops)
            out["head_params"].append(c.params)
        return out


__all__ = ["EarlyExitNetwork", "FinalClassifier"]
