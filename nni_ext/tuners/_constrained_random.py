"""Random search that never dispatches a point breaking a cost constraint.

Costs (``flops``, ``params``, ``activations``, ``peak_activation_bytes``, ``tiny_ml``, :data:`EXACT_KEYS`) come
from the cost tables of a registered nni_ext search space (:class:`nni_ext.cost.exact.ExactCosts`, built when
the search space arrives), so infeasible architectures are rejected before any trial runs. Each proposal draws up to
``max_draws`` random points and takes the first feasible, unseen one (SPOS's sampler does the
same under a FLOPs limit); when none is found the least-violating draw is used and a warning logged.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Mapping

from ..core.constraints import parse_constraints
from ..core.tuner import BaseTuner, check_int, register_tuner, tuner_output_dir
from ..cost.tiny_ml import EXACT_KEYS

logger = logging.getLogger(__name__)
#: the metrics whose constraints are checked before dispatch
COST_METRICS = EXACT_KEYS


@register_tuner("ConstrainedRandom")
class ConstrainedRandomTuner(BaseTuner):
    """Uniform random search under cost constraints.

    Args:
        space: registered nni_ext search space (e.g. ``"spos"``) whose cost tables evaluate the constraints
            (on any key of :data:`COST_METRICS`); needed only when constraints are given.
        space_args: keyword arguments of the space (e.g. ``{"num_classes": 10}``).
        input_size: input resolution for the cost model (default: the space's).
        constraints: ``{"flops": "<= 330e6", "params": "<= 3.5e6"}``.
        max_draws: random draws per proposal before giving up on feasibility.
        objectives: what the archive's front and hypervolume are over (default ``{default: maximize}``).
        output_dir: where the archive files go (default ``<experiment dir>/random``).
        seed: random seed (drawn and logged when ``None``).

    YAML::

        tuner:
          name: ConstrainedRandom        # after `nni-ext register`
          classArgs: {space: spos, constraints: {flops: "<= 330e6"}, seed: 1}
    """

    def __init__(self, *, space: str | None = None, space_args: Mapping[str, Any] | None = None,
                 input_size: int | None = None, constraints: Mapping[str, Any] | None = None, max_draws: int = 500,
                 objectives: Mapping[str, str] | None = None, output_dir: str | None = None,
                 seed: int | None = None) -> None:
        check_int("max_draws", max_draws, 1)
        check_int("input_size", input_size, 1, optional=True)
        if space is not None and not isinstance(space, str):
            raise ValueError(f"space={space!r} must be the name of a registered nni_ext space, e.g. 'spos'")
        # the constraints are checked before dispatch (with the cost model), not on the trials' reports
        super().__init__(seed=seed, objectives=objectives or {"default": "maximize"},
                         output_dir=tuner_output_dir(output_dir, "random"))
        self.constraints = parse_constraints(constraints)
        unknown = [c.metric for c in self.constraints if c.metric not in COST_METRICS]
        if unknown:
            raise ValueError(f"constraint on {unknown[0]!r} cannot be checked before dispatch; "
                             f"ConstrainedRandom supports {', '.join(COST_METRICS)}")
        if self.constraints and space is None:
            raise ValueError("cost constraints need classArgs 'space' (a registered nni_ext space, e.g. 'spos')")
        self.max_draws = max_draws
        self.space_name, self.space_args, self.input_size = space, dict(space_args or {}), input_size
        self.costs: Any = None  # ExactCosts, built with the search space (imports torch: not in the constructor)

    @classmethod
    def contract_case(cls, workdir: Any) -> dict[str, Any]:
        """What the tuner contract tests run: plain random search over every NNI ``_type``."""
        return {"class_args": {}, "report": lambda p, i: {"default": float(i % 5) / 5}}

    def _on_search_space(self) -> None:
        assert self.space is not None
        if self.space_name is not None and self.costs is None:
            from ..cost.exact import ExactCosts

            self.costs = ExactCosts.for_space(self.space_name, self.space_args, self.input_size)
        if self.costs is not None and set(self.space.names) != set(self.costs.space.labels):
            raise ValueError(f"the experiment's search space does not match space {self.costs.space.name!r}; "
                             f"export it with `nni-ext ss_gen {self.costs.space.name}`")

    def violation(self, params: Mapping[str, Any]) -> float:
        """Total constraint violation of a parameter dict (0 when feasible)."""
        if not self.constraints or self.costs is None:
            return 0.0
        cost = self.costs.metrics(params)
        return sum(c.violation(cost[c.metric]) for c in self.constraints)

    def _ask(self, parameter_id: int) -> dict[str, Any]:
        assert self.space is not None
        best, best_violation = None, math.inf
        for _ in range(self.max_draws):
            params = self.space.sample(self.rng)
            if self.archive.seen(params):
                continue
            v = self.violation(params)
            if v < best_violation:
                best, best_violation = params, v
            if v == 0:
                break
        if best is None:  # everything drawn was seen before: allow a repeat
            best = self.space.sample(self.rng)
        elif best_violation > 0:
            logger.warning("ConstrainedRandom: no feasible point in %d draws; dispatching the least violating "
                           "(violation %.3g)", self.max_draws, best_violation)
        return best
