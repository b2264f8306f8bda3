"""The exit rule and what it implies, as pure functions of the logits of every exit.

EDANAS's rule (``EarlyExits/evaluators.py sm_eval``): an image leaves at the first intermediate exit whose
*softmax margin* (top-1 minus top-2 probability) is at least that exit's threshold ``t`` (in (0, 1]);
an image no intermediate exit takes leaves at the final classifier, which always exists.

``avg_macs`` (EDANAS) = Σ_b r_b · (B_b + C_b): ``r_b`` the share of images leaving at exit ``b``, ``B_b``
the backbone MACs up to it, ``C_b`` its head's MACs. (An image leaving at a later exit has also run the
heads before it; :func:`average_macs` with ``cumulative_heads=True`` counts them too.)

Example:
    >>> import torch
    >>> sure, unsure = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.1, 0.0]])
    >>> assign_exits([torch.cat([sure, unsure]), torch.zeros(2, 2)], [0.5]).tolist()
    [0, 1]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch


def exit_is_active(label: str, value: object) -> bool:
    """Whether an exit gene builds its exit: a threshold ``t_<stage>`` below 1 (EDANAS; 1 = no exit) or an
    on/off bit ``exit_<stage>`` of 1 (NACHOS)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value < 1.0 if label.startswith("t_") else value == 1


def score_margin(logits: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 softmax probability of each row of ``(n, classes)`` logits (classes >= 2)."""
    top2 = torch.softmax(logits.float(), dim=1).topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


def check_thresholds(thresholds: Sequence[float], n_intermediate: int) -> list[float]:
    """The thresholds as floats; one per intermediate exit, each in (0, 1] (one-line ``ValueError`` otherwise)."""
    values = [float(t) for t in thresholds]
    if len(values) != n_intermediate:
        raise ValueError(f"{len(values)} thresholds for {n_intermediate} intermediate exits; give one per exit")
    for t in values:
        if not 0 < t <= 1 or math.isnan(t):
            raise ValueError(f"threshold {t:g} is outside (0, 1]: an image leaves an exit when its softmax margin "
                             "(top-1 minus top-2 probability) is at least the threshold (1: only certain images leave)")
    return values


def assign_exits(logits_per_exit: Sequence[torch.Tensor], thresholds: Sequence[float]) -> torch.Tensor:
    """Index of the exit each image leaves at (``len(logits_per_exit) - 1`` is the final classifier).

    ``logits_per_exit``: ``(n, classes)`` logits of every exit in network order, the final one last;
    ``thresholds``: one per intermediate exit.
    """
    if not logits_per_exit:
        raise ValueError("no exits: give the logits of at least the final classifier")
    t = check_thresholds(thresholds, len(logits_per_exit) - 1)
    n = logits_per_exit[-1].shape[0]
    final = len(logits_per_exit) - 1
    chosen = torch.full((n,), final, dtype=torch.long, device=logits_per_exit[-1].device)
    open_ = torch.ones(n, dtype=torch.bool, device=chosen.device)
    for b, (logits, threshold) in enumerate(zip(logits_per_exit[:-1], t)):
        leave = open_ & (score_margin(logits) >= threshold)
        chosen[leave] = b
        open_ &= ~leave
    return chosen


def select_exit_logits(logits_per_exit: Sequence[torch.Tensor], thresholds: Sequence[float]) -> torch.Tensor:
    """``(n, classes)``: for each image, the logits of the exit it leaves at."""
    chosen = assign_exits(logits_per_exit, thresholds)
    stacked = torch.stack(list(logits_per_exit))  # (exits, n, classes)
    return stacked[chosen, torch.arange(stacked.shape[1], device=stacked.device)]


@dataclass(frozen=True)
class ExitStats:
    """What the exit rule does on a labelled set.

    Attributes:
        counts: images leaving at each exit (the final classifier last).
        correct: of those, how many are classified right.
        top1: accuracy of the early-exit network (fraction).
        ratios: ``counts / images`` per exit.
        accuracies: per exit, the accuracy on the images leaving there (``None`` where none leaves).
    """

    counts: tuple[int, ...]
    correct: tuple[int, ...]

    @property
    def images(self) -> int:
        return sum(self.counts)

    @property
    def top1(self) -> float:
        return sum(self.correct) / self.images if self.images else math.nan

    @property
    def ratios(self) -> tuple[float, ...]:
        return tuple(c / self.images for c in self.counts) if self.images else tuple(0.0 for _ in self.counts)

    @property
    def accuracies(self) -> tuple[float | None, ...]:
        return tuple(k / c if c else None for k, c in zip(self.correct, self.counts))


def exit_statistics(logits_per_exit: Sequence[torch.Tensor], labels: torch.Tensor,
                    thresholds: Sequence[float]) -> ExitStats:
    """Counts and correct predictions per exit of the rule with ``thresholds`` (see :func:`assign_exits`)."""
    chosen = assign_exits(logits_per_exit, thresholds)
    stacked = torch.stack(list(logits_per_exit))
    predicted = stacked.argmax(dim=2)[chosen, torch.arange(stacked.shape[1], device=stacked.device)]
    hits = predicted.eq(labels.to(predicted.device))
    exits = len(logits_per_exit)
    counts = torch.bincount(chosen, minlength=exits).tolist()
    correct = torch.bincount(chosen[hits], minlength=exits).tolist()
    return ExitStats(tuple(int(c) for c in counts), tuple(int(c) for c in correct))


def average_macs(ratios: Sequence[float], backbone_macs: Sequence[float], head_macs: Sequence[float], *,
                 cumulative_heads: bool = False) -> float:
    """EDANAS's ``avg_macs`` = Σ_b r_b · (B_b + C_b) over the exits (the final classifier last).

    With ``cumulative_heads`` an image leaving at exit ``b`` also pays the heads of the exits before it
    (what it costs when every head on the way runs): Σ_b r_b · (B_b + Σ_{j<=b} C_j).
    """
    if not len(ratios) == len(backbone_macs) == len(head_macs):
        raise ValueError(f"{len(ratios)} ratios, {len(backbone_macs)} backbone and {len(head_macs)} head costs: "
                         "give one of each per exit")
    total, heads = 0.0, 0.0
    for r, b, c in zip(ratios, backbone_macs, head_macs):
        heads = heads + c if cumulative_heads else c
        total += r * (b + heads)
    return float(total)


__all__ = ["ExitStats", "assign_exits", "average_macs", "check_thresholds", "exit_statistics", "score_margin",
           "select_exit_logits"]
