"""FlatNAS's ``robustness``: how much a network's accuracy moves under multiplicative Gaussian weight noise.

``robustness = mean over M draws of |acc(w) - acc(w + sigma * w * z)|`` with ``z ~ N(0, I)`` drawn
afresh for every parameter tensor at each draw (CNAS ``train.py`` with FlatNAS's
``sigma_min = sigma_max = 0.05``, ``M = 20``). A flat minimum keeps its accuracy when every weight
is scaled by ``1 + sigma * z``, so a small value means a flat (robust) network. Accuracies are
fractions in [0, 1], hence so is ``robustness``.

The noise covers every floating-point parameter (convolution and linear weights, biases, BatchNorm
scales and shifts), not the buffers (BatchNorm running statistics); the network runs in eval mode
and every parameter is restored bit for bit afterwards, also when a forward pass fails.

FlatNAS's first objective ``top1_robust`` combines it with the top-1 error over a search's archive: the
tuner derives it (:mod:`nni_ext.core.derived`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Union

import torch
from torch import nn

from ..trainers.evaluation import evaluate

Batches = Union[Iterable[tuple[torch.Tensor, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]

#: FlatNAS defaults (``search_flatnas.sh``): noise scale, number of draws
DEFAULT_SIGMA = 0.05
DEFAULT_DRAWS = 20


@dataclass(frozen=True)
class RobustnessResult:
    """Clean accuracy, the accuracy of each noisy draw and their mean absolute difference (all fractions)."""

    accuracy: float
    draw_accuracies: list[float] = field(repr=False)
    robustness: float
    sigma: float
    images: int

    def as_metrics(self) -> dict[str, float]:
        """``{"robustness": ..., "top1_noisy": mean noisy accuracy}``: vocabulary key plus a diagnostic."""
        return {"robustness": self.robustness, "top1_noisy": sum(self.draw_accuracies) / len(self.draw_accuracies)}


def _batches(data: Batches, batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        images, labels = data
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        return [(images[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, len(labels), batch_size)]
    return data  # type: ignore[return-value]


@torch.no_grad()
def accuracy(model: nn.Module, data: Batches, *, device: torch.device | str = "cpu", batch_size: int = 256
             ) -> tuple[float, int]:
    """Top-1 accuracy (fraction) of ``model`` in its current mode over ``data``, and the number of images."""
    result = evaluate(lambda images: model(images.to(device)), _batches(data, batch_size))
    if result["images"] == 0:
        raise ValueError("no images to evaluate: the data is empty")
    return result["top1"], int(result["images"])


@torch.no_grad()
def weight_noise_robustness(model: nn.Module, data: Batches, *, sigma: float = DEFAULT_SIGMA,
                            draws: int = DEFAULT_DRAWS, seed: int = 0, device: torch.device | str | None = None,
                            batch_size: int = 256) -> RobustnessResult:
    """FlatNAS's robustness of ``model`` on validation ``data`` (a loader of batches or an ``(images, labels)`` pair).

    Each draw multiplies every parameter ``w`` by ``1 + sigma * z`` with ``z`` from a
    ``torch.Generator`` seeded with ``seed`` (drawn on the CPU, so a seed gives the same noise on any
    device), measures the top-1 accuracy, and restores the weights. ``sigma=0`` gives 0 exactly.
    The data is read ``draws + 1`` times, so a loader must give the same batches on every pass
    (no shuffling, no random augmentation).

    Example:
        >>> r = weight_noise_robustness(model, (images, labels), sigma=0.05, draws=20, seed=0)  # doctest: +SKIP
        >>> r.accuracy, r.robustness  # doctest: +SKIP
        (0.93, 0.012)
    """
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma={sigma} must be a finite number >= 0 (FlatNAS uses 0.05)")
    if draws < 1:
        raise ValueError(f"draws={draws} must be at least 1 (FlatNAS uses 20)")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        data = (data[0].to(device), data[1].to(device))
    was_training = model.training
    model.eval()
    params = [p for p in model.parameters() if p.is_floating_point()]
    saved = [p.detach().clone() for p in params]
    generator = torch.Generator().manual_seed(seed)
    try:
        clean, images = accuracy(model, data, device=device, batch_size=batch_size)
        noisy: list[float] = []
        for _ in range(draws):
            for p, w in zip(params, saved):
                z = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
                p.copy_(w + sigma * w * z)
            noisy.append(accuracy(model, data, device=device, batch_size=batch_size)[0])
    finally:
        for p, w in zip(params, saved):
            p.copy_(w)
        model.train(was_training)
    robustness = sum(abs(clean - a) for a in noisy) / draws
    return RobustnessResult(accuracy=clean, draw_accuracies=noisy, robustness=robustness, sigma=sigma, images=images)
