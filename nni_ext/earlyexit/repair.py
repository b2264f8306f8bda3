"""NACHOS's repair of an early-exit network that breaks its MACs bound (``ee_train.py --tune_epsilon``, step 2).

While ``avg_macs > mmax``, lower the threshold of the last intermediate exit (the second-to-last exit
counting the final classifier) in steps of ``step``; a step that would take it below ``floor`` or the
accuracy below ``top1_min`` is not taken and the repair moves on to the exit before. Lower thresholds let
more images leave early, so ``avg_macs`` falls. Nothing is repaired when the network starts below
``top1_min`` (as NACHOS). The repair runs on the exits' logits of a validation set: no network is run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .rule import ExitStats, average_macs, check_thresholds, exit_statistics


@dataclass(frozen=True)
class RepairResult:
    """Outcome of :func:`nachos_repair`.

    Attributes:
        thresholds: the repaired thresholds (one per intermediate exit).
        avg_macs: ``avg_macs`` with them.
        stats: the exit statistics with them (``stats.top1`` is the accuracy).
        satisfied: ``avg_macs <= mmax``.
        steps: how many threshold steps were taken.
    """

    thresholds: tuple[float, ...]
    avg_macs: float
    stats: ExitStats
    satisfied: bool
    steps: int

    @property
    def top1(self) -> float:
        return self.stats.top1


def nachos_repair(logits_per_exit: Sequence[torch.Tensor], labels: torch.Tensor, thresholds: Sequence[float],
                  backbone_macs: Sequence[float], head_macs: Sequence[float], *, mmax: float,
                  top1_min: float = 0.0, step: float = 0.1, floor: float = 0.1) -> RepairResult:
    """Lower thresholds from the last intermediate exit backwards until ``avg_macs <= mmax`` (NACHOS).

    Args:
        logits_per_exit: ``(n, classes)`` validation logits of every exit, the final classifier last.
        labels: the ``n`` labels.
        thresholds: the starting thresholds, one per intermediate exit, each in (0, 1].
        backbone_macs, head_macs: ``B_b`` and ``C_b`` per exit (the final one last), for ``avg_macs``.
        mmax: the MACs bound; top1_min: the accuracy (fraction) a step may not go below.
        step, floor: the threshold decrement (NACHOS 0.1) and the lowest threshold (NACHOS ~0.1).
    """
    if not 0 < step <= 1 or not 0 < floor <= 1:
        raise ValueError(f"step={step} and floor={floor} must be in (0, 1]")
    t = check_thresholds(thresholds, len(logits_per_exit) - 1)

    def evaluate(values: list[float]) -> tuple[ExitStats, float]:
        stats = exit_statistics(logits_per_exit, labels, values)
        return stats, average_macs(stats.ratios, backbone_macs, head_macs)

    stats, avg = evaluate(t)
    steps, i = 0, len(t) - 1
    if stats.top1 >= top1_min:
        while i >= 0 and avg > mmax:
            lowered = round(t[i] - step, 10)
            if lowered < floor - 1e-9:
                i -= 1
                continue
            candidate = [*t[:i], lowered, *t[i + 1:]]
            cand_stats, cand_avg = evaluate(candidate)
            if cand_stats.top1 < top1_min:
                i -= 1
                continue
            t, stats, avg, steps = candidate, cand_stats, cand_avg, steps + 1
    return RepairResult(tuple(t), avg, stats, avg <= mmax, steps)


__all__ = ["RepairResult", "nachos_repair"]
