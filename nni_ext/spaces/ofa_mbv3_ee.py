"""``ofa-mbv3-ee``: the OFA MobileNetV3 space plus one gene per possible early exit (EDANAS / NACHOS).

Exits can follow elastic stages 1–4 (the fifth stage feeds the final classifier, which always exists).
Two gene kinds (space argument ``exits``):

* ``"threshold"`` (EDANAS's ``eemobilenetv3``): labels ``t_1`` … ``t_4`` with values ``thresholds``
  (default 0.1, 0.2, 1.0); ``1.0`` means *no exit*, any other value builds an exit whose rule threshold it is;
* ``"binary"`` (NACHOS's ``cbnmobilenetv3``): labels ``exit_1`` … ``exit_4`` with values 0/1; an exit that is
  on uses the rule threshold ``exit_threshold`` (default 0.5; NACHOS tunes it after training).

``stages`` restricts which stages may carry an exit (default 1, 2, 3, 4).

**The built module** (:meth:`OfaMbv3EeSpace.build`) is an :class:`~nni_ext.earlyexit.EarlyExitNetwork`:
the sub-network with inherited weights and one EDANAS head per exit, its heads sized for ``input_size``
pixels (default :attr:`default_input_size`; a trial passes the architecture's resolution ``r``). Its
forward pass evaluates every head and returns, per image, the logits of the exit the image leaves at.
Its **cost units** are those of ``ofa-mbv3`` plus one per exit head (``exit<stage>.p<pool>``), so the cost
table gives what counting that module gives: the backbone, the final classifier *and every head*, the
cost of an image that leaves at the final classifier (a trial reports it as ``max_macs``). The trial's
``flops`` is the backbone with the final classifier alone, its ``avg_macs`` the expected cost.

Each head's max-pooling follows EDANAS (:func:`nni_ext.earlyexit.heads.plan_pools`): it depends on the
backbone MACs, which :meth:`OfaMbv3EeSpace.exit_plan` reads from ``ofa-mbv3``'s cost table at that size.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from torch import nn

from ..earlyexit.heads import ExitHead, ExitSpec, head_cost, plan_pools, pool_kernels
from ..earlyexit.network import EarlyExitNetwork
from ..earlyexit.rule import exit_is_active
from .base import Architecture, SearchSpace
from .ofa_mbv3 import (
    D_LABELS,
    FIXED_UNITS,
    LABELS,
    MAX_DEPTH,
    N_UNITS,
    RESOLUTIONS,
    UNIT_WIDTHS,
    OfaMbv3Space,
    backbone_values,
    subnet,
    to_ofa,
)
from .registry import register_space

EXIT_KINDS = ("threshold", "binary")
#: EDANAS's threshold genes (1 = no exit)
THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 1.0)
EXIT_STAGES: tuple[int, ...] = (1, 2, 3, 4)
HEAD_UNITS = FIXED_UNITS[2:]  # the final classifier's layers


def head_unit(stage: int, pool: int) -> str:
    """Cost-unit name of the exit head after ``stage`` with max-pooling ``pool``."""
    return f"exit{stage}.p{pool}"


@register_space("ofa-mbv3-ee")
class OfaMbv3EeSpace(OfaMbv3Space):
    """OFA MobileNetV3 w1.2 with early exits: the ``ofa-mbv3`` labels plus ``t_<stage>`` (or ``exit_<stage>``).

    Example:
        >>> space = OfaMbv3EeSpace(num_classes=10, resolutions=[32])
        >>> space.labels[-4:], space.choices()["t_1"]
        (['t_1', 't_2', 't_3', 't_4'], [0.1, 0.2, 1.0])
    """

    name = "ofa-mbv3-ee"

    def __init__(self, *, num_classes: int = 1000, resolutions: Sequence[int] = RESOLUTIONS, dropout: float = 0.1,
                 exits: str = "threshold", thresholds: Sequence[float] = THRESHOLDS,
                 stages: Sequence[int] = EXIT_STAGES, exit_threshold: float = 0.5) -> None:
        super().__init__(num_classes=num_classes, resolutions=resolutions, dropout=dropout)
        if exits not in EXIT_KINDS:
            raise ValueError(f"exits={exits!r}: choose 'threshold' (EDANAS threshold genes) or 'binary' "
                             "(NACHOS on/off genes)")
        values = list(thresholds) if isinstance(thresholds, (list, tuple)) else None
        if not values or any(not isinstance(t, (int, float)) or isinstance(t, bool) for t in values):
            raise ValueError(f"thresholds={thresholds!r} must be a list of numbers in (0, 1], e.g. [0.1, 0.2, 1.0]")
        for t in [*values, exit_threshold]:
            if not 0 < t <= 1 or math.isnan(t):
                raise ValueError(f"threshold {t} is outside (0, 1]: an image leaves an exit when its softmax margin "
                                 "(top-1 minus top-2 probability) is at least the threshold (1.0 = no exit)")
        if len(set(values)) != len(values):
            raise ValueError(f"thresholds={thresholds!r} repeats a value")
        chosen = list(stages) if isinstance(stages, (list, tuple)) else None
        if not chosen or len(set(chosen)) != len(chosen):
            raise ValueError(f"stages={stages!r} must be a list of distinct stages among 1, 2, 3, 4")
        for s in chosen:
            if not isinstance(s, int) or isinstance(s, bool) or s not in EXIT_STAGES:
                raise ValueError(f"an exit after stage {s!r} does not exist: exits follow stages 1-4 of the "
                                 f"{N_UNITS} (the last stage feeds the final classifier, which always exists)")
        self.config.update(exits=exits, thresholds=[float(t) for t in values], stages=sorted(chosen),
                           exit_threshold=float(exit_threshold))
        prefix = "t_" if exits == "threshold" else "exit_"
        self.exit_labels: list[str] = [f"{prefix}{s}" for s in self.config["stages"]]
        self._base_costs: dict[int, dict[str, int]] = {}

    # ----------------------------------------------------------------- choices
    def choices(self) -> dict[str, list[Any]]:
        out = super().choices()
        values = list(self.config["thresholds"]) if self.config["exits"] == "threshold" else [0, 1]
        out.update({label: list(values) for label in self.exit_labels})
        return out

    def validate(self, arch: Mapping[str, Any]) -> Architecture:
        checked = SearchSpace.validate(self, arch)  # every label, exit genes included
        return {**backbone_values(arch), **{label: checked[label] for label in self.exit_labels}}

    def _uniform(self, i: int, resolution: int) -> Architecture:
        base = self.base_space()._uniform(i, resolution)
        values = self.choices()[self.exit_labels[0]]
        if self.config["exits"] == "binary":
            gene = values[-1] if i == -1 else values[0]
        else:  # the largest: every exit, at the lowest threshold; the smallest: none (1.0) if the space has it
            exits = [t for t in values if t < 1.0] or values
            gene = min(exits) if i == -1 else (1.0 if 1.0 in values else max(values))
        return self.validate({**base, **{label: gene for label in self.exit_labels}})

    def exit_thresholds(self, arch: Mapping[str, Any]) -> dict[int, float]:
        """``stage -> rule threshold`` of the exits ``arch`` has (stages without an exit are absent)."""
        arch = self.validate(arch)
        out = {}
        threshold = self.config["exits"] == "threshold"
        for stage, label in zip(self.config["stages"], self.exit_labels):
            if exit_is_active(label, arch[label]):
                out[stage] = float(arch[label]) if threshold else self.config["exit_threshold"]
        return out

    # ------------------------------------------------------ integer matrices
    def from_matrix(self, matrix: np.ndarray) -> list[Architecture]:
        choices = self.choices()
        X = np.asarray(matrix)
        if X.ndim != 2 or X.shape[1] != len(choices):
            raise ValueError(f"an {self.name} population matrix has shape (n, {len(choices)}); got {X.shape}")
        return [self.validate({label: values[int(i)] for (label, values), i in zip(choices.items(), row)})
                for row in X]

    def matrix_values(self, matrix: np.ndarray) -> np.ndarray:
        """Candidate indices replaced by values (float64: thresholds are fractions)."""
        X = np.asarray(matrix)
        base = super().matrix_values(X[:, : len(LABELS)])
        exits = np.array([[self.choices()[label][int(i)] for label, i in zip(self.exit_labels, row)]
                          for row in X[:, len(LABELS):]], dtype=float).reshape(len(X), -1)
        return np.hstack([base.astype(float), exits])

    def canonicalize_matrix(self, matrix: np.ndarray) -> np.ndarray:
        X = np.array(matrix, dtype=np.int64, copy=True)
        X[:, : len(LABELS)] = super().canonicalize_matrix(X[:, : len(LABELS)])
        return X

    # ------------------------------------------------------------ exit plan
    def base_space(self) -> OfaMbv3Space:
        """The ``ofa-mbv3`` space of the backbone (same classes, resolutions and dropout)."""
        return OfaMbv3Space(num_classes=self.config["num_classes"], resolutions=self.resolutions,
                            dropout=self.config["dropout"])

    def _backbone_unit_macs(self, input_size: int) -> dict[str, int]:
        """MACs of every ``ofa-mbv3`` cost unit at ``input_size`` (its cached cost table)."""
        if input_size not in self._base_costs:
            from ..cost import CostTable

            table = CostTable.cached(self.base_space(), input_size)
            self._base_costs[input_size] = {unit: flops for unit, (flops, _) in table.entries.items()}
        return self._base_costs[input_size]

    def exit_side(self, stage: int, input_size: int) -> int:
        """Side of the feature map after ``stage`` (1-4) at ``input_size``."""
        return self.feature_sizes(input_size)[stage * MAX_DEPTH]

    def exit_plan(self, arch: Mapping[str, Any], input_size: int | None = None) -> list[ExitSpec]:
        """The exits of ``arch`` at ``input_size`` (default: the largest resolution), pooling chosen as EDANAS."""
        size = int(input_size or self.default_input_size)
        arch = self.validate(arch)
        thresholds = self.exit_thresholds(arch)
        if not thresholds:
            return []
        macs = self._backbone_unit_macs(size)
        units = OfaMbv3Space.cost_units(self, arch, size)
        blocks = units[2:-len(HEAD_UNITS)]
        depths = [arch[label] for label in D_LABELS]
        stem = macs[FIXED_UNITS[0]] + macs[FIXED_UNITS[1]]
        stages = sorted(thresholds)
        backbone = [stem + sum(macs[u] for u in blocks[: sum(depths[:s])]) for s in stages]
        final = stem + sum(macs[u] for u in blocks) + sum(macs[u] for u in HEAD_UNITS)
        channels = [UNIT_WIDTHS[s - 1] for s in stages]
        sides = [self.exit_side(s, size) for s in stages]
        pools = plan_pools(backbone, channels, sides, self.config["num_classes"], final)
        return [ExitSpec(stage=s, block=sum(depths[:s]), channels=c, side=side, pool=p, threshold=thresholds[s])
                for s, c, side, p in zip(stages, channels, sides, pools)]

    # ------------------------------------------------------------ the network
    def network(self, backbone: nn.Module, arch: Mapping[str, Any], input_size: int | None = None) -> EarlyExitNetwork:
        """The early-exit network of ``arch`` on an already built OFA sub-network ``backbone``."""
        return EarlyExitNetwork(backbone, self.exit_plan(arch, input_size), self.config["num_classes"])

    def build(self, arch: Mapping[str, Any], *, supernet: nn.Module | None = None,
              input_size: int | None = None) -> EarlyExitNetwork:
        """The early-exit network of ``arch``: weights inherited from ``supernet``, heads sized for ``input_size``."""
        arch = self.validate(arch)
        backbone = subnet(supernet if supernet is not None else self.supernet(), to_ofa(arch))
        return self.network(backbone, arch, input_size)

    # ------------------------------------------------------------ cost units
    def cost_units(self, arch: Mapping[str, Any], input_size: int) -> list[str]:
        """``ofa-mbv3``'s units of the backbone and final classifier, then one unit per exit head."""
        heads = [head_unit(e.stage, e.pool) for e in self.exit_plan(arch, input_size)]
        return [*super().cost_units(arch, input_size), *heads]

    def all_cost_units(self, input_size: int) -> list[str]:
        """``ofa-mbv3``'s units plus every head (stage, pooling) some architecture can have at ``input_size``.

        A pooling kernel is listed when the MACs bounds of the backbone (smallest to largest blocks)
        allow the pooling rule to pick it; the rest (e.g. an unpooled head on a large early map, whose
        linear layer alone would outweigh the whole network) are never built.
        """
        return [*super().all_cost_units(input_size), *self._possible_heads(input_size)]

    def _possible_heads(self, input_size: int) -> list[str]:
        macs = self._backbone_unit_macs(input_size)
        n = self.config["num_classes"]
        stem = macs[FIXED_UNITS[0]] + macs[FIXED_UNITS[1]]
        lo, hi = [stem], [stem]  # backbone MACs bounds after each unit
        for u in range(N_UNITS):
            first = [f for k, f in macs.items() if k.startswith(f"unit{u}.first.")]
            rest = [f for k, f in macs.items() if k.startswith(f"unit{u}.rest.")]
            lo.append(lo[-1] + min(first) + min(rest))
            hi.append(hi[-1] + max(first) + (MAX_DEPTH - 1) * max(rest))
        head = sum(macs[u] for u in HEAD_UNITS)
        stages = self.config["stages"]

        def head_macs(s: int, k: int) -> int:
            return head_cost(UNIT_WIDTHS[s - 1], self.exit_side(s, input_size), n, k)[0]

        out = []
        for s in stages:
            later = [t for t in stages if t > s]
            kernels = pool_kernels(self.exit_side(s, input_size))
            next_lo = min([lo[N_UNITS] + head] + [lo[t] + head_macs(t, pool_kernels(self.exit_side(t, input_size))[-1])
                                                  for t in later])
            # the next exit costs at most the final classifier's bound or, when pooling could not make it cheaper
            # than its own next one, its backbone bound plus its most pooled head
            next_hi = max([hi[N_UNITS] + head] + [hi[t] + head_macs(t, pool_kernels(self.exit_side(t, input_size))[-1])
                                                  for t in later])
            for j, k in enumerate(kernels):
                can_stop = j == len(kernels) - 1 or head_macs(s, k) < next_hi - lo[s]
                can_reach = j == 0 or head_macs(s, kernels[j - 1]) >= next_lo - hi[s]
                if can_stop and can_reach:
                    out.append(head_unit(s, k))
        return out

    def build_cost_unit(self, unit: str, input_size: int) -> tuple[nn.Module, tuple[int, ...]]:
        if unit.startswith("exit"):
            stage, pool = (int(v) for v in unit[4:].split(".p"))
            side = self.exit_side(stage, input_size)
            head = ExitHead(UNIT_WIDTHS[stage - 1], side, self.config["num_classes"], pool)
            return head, (1, UNIT_WIDTHS[stage - 1], side, side)
        return super().build_cost_unit(unit, input_size)

    # ------------------------------------------------------- latency keys
    def latency_keys(self, arch: Mapping[str, Any], input_size: int) -> list[str]:
        """OFA's table keys of the backbone's layers, then ``<head unit>@<size>px`` per exit head."""
        heads = [f"{head_unit(e.stage, e.pool)}@{input_size}px" for e in self.exit_plan(arch, input_size)]
        return [*super().latency_keys(arch, input_size), *heads]

    def all_latency_keys(self, input_size: int) -> dict[str, str]:
        out = super().all_latency_keys(input_size)
        out.update({f"{unit}@{input_size}px": unit for unit in self._possible_heads(input_size)})
        return out
