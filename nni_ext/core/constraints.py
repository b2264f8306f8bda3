"""Constraints on metrics, written as in YAML: ``{"flops": "<= 330e6", "params": "< 5e6"}``.

Violation is 0 when satisfied and the distance to the bound otherwise, so constrained
domination (feasible first, then smaller total violation) can rank points as pymoo does.
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq}
_PATTERN = re.compile(r"^\s*(<=|>=|==|<|>)\s*([-+0-9.eE_]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric op bound``, e.g. ``flops <= 330e6``."""

    metric: str
    op: str
    bound: float

    def satisfied(self, value: float) -> bool:
        return not math.isnan(value) and _OPS[self.op](value, self.bound)

    def violation(self, value: float) -> float:
        """0 when satisfied, else ``|value - bound|`` (``inf`` for NaN)."""
        if math.isnan(value):
            return math.inf
        return 0.0 if self.satisfied(value) else abs(value - self.bound) or 1e-12

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def parse_constraint(metric: str, text: Any) -> Constraint:
    """Parse ``"<= 5e6"`` (a bare number means ``<=``); raise ``ValueError`` naming the metric and the fix."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return Constraint(metric, "<=", float(text))
    match = _PATTERN.match(str(text))
    if not match:
        raise ValueError(f"constraint for {metric!r} is {text!r}; write it like '<= 5e6' "
                         f"(operators: {', '.join(_OPS)})")
    try:
        bound = float(match.group(2).replace("_", ""))
    except ValueError:
        raise ValueError(f"constraint for {metric!r}: bound {match.group(2)!r} is not a number") from None
    return Constraint(metric, match.group(1), bound)


def parse_constraints(spec: Mapping[str, Any] | None) -> list[Constraint]:
    """Parse a ``{metric: "op bound"}`` mapping (``None`` gives no constraints)."""
    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise ValueError(f"constraints must be a mapping like {{params: '<= 5e6'}}, got {spec!r}")
    return [parse_constraint(str(k), v) for k, v in spec.items()]
