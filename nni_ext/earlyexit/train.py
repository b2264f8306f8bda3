"""Training the exit heads of an :class:`~.network.EarlyExitNetwork`, and collecting every exit's logits.

EDANAS trains the heads on top of a backbone with inherited (or fine-tuned) weights:

* ``joint=False`` (default): the backbone is frozen (eval mode, no gradients: its BatchNorm statistics stay)
  and only the heads learn, with the sum of their cross-entropies;
* ``joint=True`` (EDANAS's ``joint_trainer``, ``joint_type=losses``): backbone and heads learn together,
  with the sum of the cross-entropies of every exit including the final classifier.

SGD with momentum 0.9 (Nesterov), cosine learning-rate decay per step, weight decay on conv/linear weights.
"""
from __future__ import annotations

import logging
from typing import Iterable

import torch
from torch import nn

from ..trainers.train_loop import cosine_decay, param_groups
from .network import EarlyExitNetwork

logger = logging.getLogger(__name__)


def train_exits(net: EarlyExitNetwork, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *, epochs: int,
                joint: bool = False, lr: float = 0.05, weight_decay: float = 5e-5, momentum: float = 0.9,
                device: torch.device | str = "cpu") -> list[dict[str, float]]:
    """Train the heads (and with ``joint`` the backbone) for ``epochs`` passes; rows of per-epoch loss/accuracy.

    Rows: ``{"epoch", "loss", "top1_exit<i>"...}`` (training accuracy of each exit, the final one last).
    The network ends in eval mode with every parameter trainable again.
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1 to train the exit heads")
    if lr <= 0:
        raise ValueError(f"lr={lr} must be positive")
    if not net.exits and not joint:
        return []  # no head to train
    net.to(device)
    backbone = list(net.backbone_parameters())
    for p in backbone:
        p.requires_grad_(joint)
    optimizer = torch.optim.SGD(param_groups(net, weight_decay), lr=lr, momentum=momentum, nesterov=momentum > 0)
    total = epochs * max(1, len(loader)) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    schedule = cosine_decay(optimizer, total) if total else None
    rows = []
    try:
        for epoch in range(epochs):
            net.train()
            if not joint:
                for module in net.backbone_modules():
                    module.eval()
            loss_sum, images = 0.0, 0
            hits: list[int] = [0] * (len(net.exits) + 1)
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                outs = net.forward_exits(x) if joint else _frozen_forward(net, x)
                losses = [nn.functional.cross_entropy(o, y) for o in outs]
                loss = torch.stack(losses).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if schedule is not None:
                    schedule.step()
                loss_sum, images = loss_sum + float(loss.detach()) * len(y), images + len(y)
                for i, o in enumerate(outs):
                    hits[i] += int(o.argmax(1).eq(y).sum())
            row = {"epoch": epoch + 1, "loss": loss_sum / max(images, 1)}
            row.update({f"top1_exit{i}": h / max(images, 1) for i, h in enumerate(hits)})
            rows.append(row)
            logger.info("exit heads epoch %d/%d: loss %.4f", epoch + 1, epochs, row["loss"])
    finally:
        for p in backbone:
            p.requires_grad_(True)
        net.eval()
    return rows


def _frozen_forward(net: EarlyExitNetwork, x: torch.Tensor) -> list[torch.Tensor]:
    """Head logits with the backbone run without gradients (the final classifier's logits detached)."""
    with torch.no_grad():
        features = list(net.features(x))
    outs = [net.heads[i](f) for i, f in features[:-1]]
    with torch.no_grad():
        final = net.final(features[-1][1])
    return [*outs, final]


@torch.no_grad()
def collect_exit_logits(net: EarlyExitNetwork, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                        device: torch.device | str = "cpu") -> tuple[list[torch.Tensor], torch.Tensor]:
    """``(logits of every exit over the whole loader, labels)``, on the CPU, the network in eval mode."""
    net.to(device).eval()
    chunks: list[list[torch.Tensor]] = [[] for _ in range(len(net.exits) + 1)]
    labels = []
    for x, y in loader:
        for i, o in enumerate(net.forward_exits(x.to(device))):
            chunks[i].append(o.float().cpu())
        labels.append(y.cpu())
    if not labels:
        raise ValueError("the evaluation loader gave no images")
    return [torch.cat(c) for c in chunks], torch.cat(labels)


__all__ = ["collect_exit_logits", "train_exits"]
