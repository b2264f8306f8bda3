"""Evaluation and BatchNorm recalibration shared by the SPOS tester, supernet training and retraining."""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

Forward = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def evaluate(forward: Forward, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
             max_batches: int | None = None) -> dict[str, float]:
    """Top-1/top-5 accuracy (fractions) and mean cross-entropy of ``forward`` over ``loader``.

    The caller puts the model in eval mode; labels follow the logits to their device.
    Returns ``{"top1", "top5", "loss", "images"}``.
    """
    correct1 = correct5 = total = 0
    loss_sum = 0.0
    for i, (images, labels) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        logits = forward(images).float()
        labels = labels.to(logits.device)
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top.eq(labels.view(-1, 1))
        correct1 += int(hits[:, 0].sum())
        correct5 += int(hits.any(dim=1).sum())
        total += len(labels)
    if total == 0:
        return {"top1": float("nan"), "top5": float("nan"), "loss": float("nan"), "images": 0}
    return {"top1": correct1 / total, "top5": correct5 / total, "loss": loss_sum / total, "images": total}


def batchnorm_layers(modules: Iterable[nn.Module]) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer inside ``modules``."""
    return [m for module in modules for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(forward: Forward, modules: Iterable[nn.Module],
                          batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_batches: int) -> int:
    """Reset the running statistics of the BN layers in ``modules`` and re-estimate them.

    Forwards up to ``num_batches`` batches in train mode without gradients, with a cumulative
    average (``momentum=None``) so every batch counts equally, as SPOS's tester does. The BN
    layers are returned to eval mode with their original momentum. Returns the number of images used.
    """
    layers = batchnorm_layers(modules)
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    images_seen = 0
    try:
        done = 0
        while done < num_batches:
            before = done
            for images, _ in batches:
                forward(images)
                images_seen += len(images)
                done += 1
                if done >= num_batches:
                    break
            if done == before:  # empty loader
                break
    finally:
        for bn, momentum in zip(layers, momenta):
            bn.momentum = momentum
            bn.eval()
    return images_seen
