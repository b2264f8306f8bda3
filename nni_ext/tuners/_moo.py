"""Multi-objective NNI tuners on pymoo: one asynchronous generational loop, NSGA-II / SMS-EMOA / SPEA2 as hooks.

The tuner keeps pymoo's algorithm object for its mating (selection, SBX crossover, polynomial mutation) and
survival operators, and replaces pymoo's synchronous ask/tell loop by one that fits NNI's dispatcher, which
asks for one parameter set at a time while earlier trials still run (see :class:`MultiObjectiveTuner`).
"""
from __future__ import annotations

import json
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np
from nni import NoMoreTrialError

from ..constraints import Constraint, parse_constraints
from ..pareto import Objectives
from .base import BaseTuner, normalize_metrics, register_tuner, reported_parameters, tuner_output_dir
from .moo_files import MooFiles

logger = logging.getLogger(__name__)


@dataclass
class Record:
    """One proposed, running or finished point."""

    params: dict[str, Any]
    x: np.ndarray
    generation: int
    status: str = "running"  # running | ok | failed
    metrics: dict[str, float] = field(default_factory=dict)
    F: np.ndarray | None = None  # minimisation objectives
    G: np.ndarray | None = None  # constraint violations (0 = satisfied)
    reason: str = ""
    parameter_id: int | None = None

    @property
    def cv(self) -> float:
        return float(self.G.sum()) if self.G is not None and len(self.G) else 0.0


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


class MultiObjectiveTuner(BaseTuner):
    """Asynchronous generational multi-objective search with pymoo's operators.

    **Dispatch scheme** (as Optuna's NSGAIISampler, generation membership is fixed when a trial is handed
    out): generation 0 is ``population_size`` random points. Generation *g* > 0 is bred by the algorithm's
    mating from the population *P_g*. A generation *closes* when ``offspring_size`` of its trials have
    ended (successful or not); then survival over *P_g* ∪ every result that arrived since the last
    survival gives *P_{g+1}*. If NNI asks while the current generation's quota is handed out but not
    finished, one more child of *P_g* is bred for it, so no worker idles. With ``trialConcurrency: 1``
    this is exactly pymoo's generational algorithm.

    Args:
        objectives: ``{metric key: maximize|minimize}``; keys of the trial's final metric dict.
        constraints: ``{metric key: "<= 5e6"}``; constrained domination (feasible first, then smaller
            total violation), pymoo's semantics.
        population_size: *N* (default 50); ``offspring_size`` children per generation (default *N*).
        num_generations: stop (``NoMoreTrialError``) once this many generations are handed out; by
            default run until NNI's ``maxTrialNumber``.
        reference_point: ``{key: value}`` in the metrics' units for the hypervolume; by default the nadir of
            generation 0's feasible results plus 10 % of their range, fixed from then on.
        space, space_args, input_size: an nni_ext space (e.g. ``spos``) whose cost model checks
            ``flops``/``params`` constraints *before* dispatch, so infeasible architectures are never trained.
        max_draws: attempts to find an unseen (and pre-check feasible) point before giving up.
        output_dir: where ``pareto.json``/``pareto.csv``/``history.csv``/``hypervolume.csv`` go
            (default ``<experiment dir>/moo``).
        seed: random seed (drawn and logged when omitted).
    """

    algorithm_name: ClassVar[str] = ""
    #: ``module:class`` of the pymoo algorithm whose mating and survival operators the tuner uses
    pymoo_algorithm: ClassVar[str] = ""

    def __init__(self, *, objectives: Mapping[str, str], constraints: Mapping[str, Any] | None = None,
                 population_size: int = 50, offspring_size: int | None = None, num_generations: int | None = None,
                 reference_point: Mapping[str, float] | None = None, space: str | None = None,
                 space_args: Mapping[str, Any] | None = None, input_size: int | None = None,
                 max_draws: int = 1000, output_dir: str | None = None, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.objectives = Objectives.parse(objectives)
        self.constraints: list[Constraint] = parse_constraints(constraints)
        offspring_size = population_size if offspring_size is None else offspring_size
        for name, value, low in (("population_size", population_size, 2), ("offspring_size", offspring_size, 1),
                                 ("max_draws", max_draws, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name}={value!r} must be an integer >= {low}")
        if num_generations is not None and (not isinstance(num_generations, int) or num_generations < 1):
            raise ValueError(f"num_generations={num_generations!r} must be a positive integer or left out")
        self.population_size, self.offspring_size = population_size, offspring_size
        self.num_generations, self.max_draws = num_generations, max_draws
        self.reference: np.ndarray | None = None
        if reference_point is not None:
            missing = [k for k in self.objectives.keys if k not in reference_point]
            if missing:
                raise ValueError(f"reference_point lacks objective(s) {missing}; give a value for every objective")
            self.reference = np.array([float(reference_point[k]) for k in self.objectives.keys]) * self.objectives.sign
        self.cost_model = self._cost_model(space, space_args, input_size) if space else None
        out = tuner_output_dir(output_dir, "moo")
        self.files = MooFiles(out, self.objectives, self.constraints) if out else None
        self.records: list[Record] = []
        self.seen: set[str] = set()
        self.running: dict[int, Record] = {}
        self.queue: deque[Record] = deque()
        self.pending: list[Record] = []  # results since the last survival
        self.generation, self.issued_in_gen, self.ended_in_gen = 0, 0, 0
        self.rejected_before_dispatch = 0
        self.hv_history: list[dict[str, Any]] = []
        self._front: list[Record] = []  # see front()
        self._front_pending: list[Record] = []
        self.algorithm: Any = None
        self.problem: Any = None

    # ------------------------------------------------------------------ hooks
    def _make_algorithm(self) -> Any:
        """Hook: the pymoo algorithm whose ``mating`` and ``survival`` this tuner uses."""
        import importlib

        module, _, name = self.pymoo_algorithm.partition(":")
        cls = getattr(importlib.import_module(module), name)
        return cls(pop_size=self.population_size, n_offsprings=self.offspring_size)

    # --------------------------------------------------------------- set-up
    def _cost_model(self, space: str, space_args: Mapping[str, Any] | None, input_size: int | None) -> Any:
        from ..cost import CostTable
        from ..spaces import create_space

        nas_space = create_space(space, **dict(space_args or {}))
        cheap = {c.metric for c in self.constraints} & {"flops", "params"}
        if not cheap:
            logger.warning("%s: space %r given but no flops/params constraint to check before dispatch",
                           self.algorithm_name, space)
        table = CostTable.cached(nas_space, int(input_size or nas_space.default_input_size))
        return nas_space, table

    def _on_search_space(self) -> None:
        from pymoo.core.problem import Problem

        assert self.space is not None
        bounds = self.space.bounds
        self.problem = Problem(n_var=len(self.space), n_obj=len(self.objectives), n_ieq_constr=len(self.constraints),
                               xl=bounds[:, 0], xu=np.maximum(bounds[:, 1], bounds[:, 0] + 1e-12))
        self.algorithm = self._make_algorithm()
        self.algorithm.setup(self.problem, seed=self.seed, verbose=False)
        self.algorithm.pop = None

    # ----------------------------------------------------------------- asking
    def _ask(self, parameter_id: int) -> dict[str, Any]:
        if self.num_generations is not None and self.generation >= self.num_generations:
            raise NoMoreTrialError(f"all {self.num_generations} generations have been handed out")
        if not self.queue:
            want = max(self.offspring_size - self.issued_in_gen, 1)
            self.queue.extend(self._propose(want))
        if not self.queue:
            raise NoMoreTrialError("no unseen point of the search space is left to propose")
        record = self.queue.popleft()
        record.generation, record.parameter_id = self.generation, parameter_id
        self.seen.add(_key(record.params))
        self.records.append(record)
        self.running[parameter_id] = record
        self.issued_in_gen += 1
        return record.params

    def _propose(self, n: int) -> list[Record]:
        """Up to ``n`` new points: children of the population, or random ones in generation 0 / without one."""
        out: list[Record] = []
        keys = {_key(r.params) for r in self.queue}
        for _ in range(self.max_draws):
            if len(out) >= n:
                break
            xs = self._breed(n - len(out))
            for x in xs:
                params = self.space.decode(x)  # type: ignore[union-attr]
                k = _key(params)
                if k in self.seen or k in keys or not self._precheck(params):
                    continue
                keys.add(k)
                out.append(Record(params, self.space.encode(params), self.generation))  # type: ignore[union-attr]
        return out[:n]

    def _breed(self, n: int) -> np.ndarray:
        assert self.space is not None
        pop = self.algorithm.pop
        if self.generation == 0 or pop is None or len(pop) < 2:
            return np.array([self.space.encode(self.space.sample(self.rng)) for _ in range(n)])
        off = self.algorithm.mating.do(self.problem, pop, n, algorithm=self.algorithm,
                                       random_state=self.algorithm.random_state)
        if len(off) == 0:  # mating found only duplicates: explore at random
            return np.array([self.space.encode(self.space.sample(self.rng)) for _ in range(n)])
        return off.get("X")

    def _precheck(self, params: dict[str, Any]) -> bool:
        if self.cost_model is None:
            return True
        nas_space, table = self.cost_model
        try:
            cost = table.cost(nas_space.validate(params))
        except Exception as exc:  # a space that does not fit: let the trial report it
            logger.debug("pre-dispatch cost check skipped: %s", exc)
            return True
        values = {"flops": float(cost.flops), "params": float(cost.params)}
        ok = all(c.satisfied(values[c.metric]) for c in self.constraints if c.metric in values)
        self.rejected_before_dispatch += not ok
        return ok

    # ---------------------------------------------------------------- telling
    def receive_trial_result(self, parameter_id: int, parameters: Mapping[str, Any], value: Any,
                             **kwargs: Any) -> None:
        record = self.running.pop(parameter_id, None)
        if record is None:  # late, customized or from an earlier experiment
            self._tell(reported_parameters(value) or dict(parameters), normalize_metrics(value))
            return
        self._evaluate(record, normalize_metrics(value))
        self._ended(record)

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        super().trial_end(parameter_id, success)
        record = self.running.pop(parameter_id, None)
        if record is not None:
            record.status, record.reason = "failed", "trial ended without a final result" + (
                "" if success else " (failed or early-stopped)")
            logger.warning("%s: trial %d %s", self.algorithm_name, parameter_id, record.reason)
            self._ended(record)

    def _evaluate(self, record: Record, metrics: dict[str, float]) -> None:
        record.metrics = metrics
        F = self.objectives.vector(metrics)
        bad = [k for k, v in zip(self.objectives.keys, F) if not math.isfinite(v)]
        missing = [c.metric for c in self.constraints if not math.isfinite(metrics.get(c.metric, math.nan))]
        if bad or missing:
            record.status = "failed"
            record.reason = f"metric(s) {', '.join(bad + missing)} missing or not finite"
            logger.warning("%s: a trial of generation %d failed: %s", self.algorithm_name, record.generation,
                           record.reason)
            return
        record.F = F
        record.G = np.array([c.violation(metrics[c.metric]) for c in self.constraints], dtype=float)
        record.status = "ok"
        self._front_pending.append(record)

    def _ended(self, record: Record) -> None:
        if record.status == "ok":
            self.pending.append(record)
        if record.generation == self.generation:
            self.ended_in_gen += 1
            if self.ended_in_gen >= self.offspring_size:
                self._close_generation()
                return
        if not self.running and self.files is not None:  # idle (e.g. the experiment's last trial): files current
            self.files.write(self, self.front())

    def _tell(self, parameters: dict[str, Any], metrics: dict[str, float]) -> None:
        """A result this tuner did not dispatch (imported or late): archive it and use it at the next survival."""
        assert self.space is not None
        if not self.space.contains(parameters):
            logger.warning("%s: ignoring a result whose parameters do not fit the search space", self.algorithm_name)
            return
        record = Record(dict(parameters), self.space.encode(parameters), self.generation)
        self.seen.add(_key(parameters))
        self.records.append(record)
        self._evaluate(record, metrics)
        if record.status == "ok":
            self.pending.append(record)

    # --------------------------------------------------------------- survival
    def _population(self, records: list[Record]) -> Any:
        from pymoo.core.population import Population

        X = np.array([r.x for r in records], dtype=float)
        F = np.array([r.F for r in records], dtype=float)
        G = np.array([r.G for r in records], dtype=float).reshape(len(records), len(self.constraints))
        pop = Population.new(X=X, F=F, G=G)  # pymoo derives CV = sum(max(0, G)): our G is the violation
        pop.set("record", np.array(records, dtype=object))
        return pop

    def _survive(self) -> None:
        from pymoo.core.population import Population

        if self.pending:
            infills = self._population(self.pending)
            alg = self.algorithm
            alg.n_gen = self.generation + 1
            if alg.pop is None or len(alg.pop) == 0:
                alg.pop = infills
                alg._initialize_advance(infills=infills)
                if len(alg.pop) > self.population_size:
                    alg.pop = alg.survival.do(self.problem, alg.pop, n_survive=self.population_size,
                                              algorithm=alg, random_state=alg.random_state)
            else:
                alg._advance(infills=infills)
            assert isinstance(alg.pop, Population)
        self.pending = []

    def _close_generation(self) -> None:
        self._survive()
        self._report_generation()
        self.generation += 1
        self.issued_in_gen = self.ended_in_gen = 0
        self.queue.clear()  # children bred for the closed generation but never handed out

    # ---------------------------------------------------------------- outputs
    def archive(self) -> list[Record]:
        """Every finished record (successful or failed), in the order they were proposed or imported."""
        return [r for r in self.records if r.status != "running"]

    def front(self) -> list[Record]:
        """The current Pareto front of all successful results (constrained domination).

        Kept incrementally: the first front of a set equals the first front of (the old front ∪ the new
        results), because constrained domination is transitive.
        """
        from ..pareto import non_dominated

        if self._front_pending:
            pool = self._front + self._front_pending
            F = np.array([r.F for r in pool])
            cv = np.array([r.cv for r in pool])
            self._front, self._front_pending = [pool[i] for i in non_dominated(F, cv)], []
        return list(self._front)

    def current_hypervolume(self, front: list[Record] | None = None) -> float | None:
        """Hypervolume of the feasible front (``None`` until a reference point exists)."""
        from ..pareto import default_reference_point, hypervolume

        feasible = [r for r in (self.front() if front is None else front) if r.cv <= 0]
        if self.reference is None and feasible:
            self.reference = default_reference_point(np.array([r.F for r in feasible]))
            logger.info("%s: hypervolume reference point fixed at %s", self.algorithm_name,
                        dict(zip(self.objectives.keys, self.objectives.values(self.reference).tolist())))
        if self.reference is None:
            return None
        return hypervolume(np.array([r.F for r in feasible]).reshape(-1, len(self.objectives)), self.reference)

    def _report_generation(self) -> None:
        front = self.front()
        hv = self.current_hypervolume(front)
        evaluated = len(self.archive())
        failed = sum(r.status == "failed" for r in self.records)
        self.hv_history.append({"generation": self.generation, "evaluated": evaluated, "failed": failed,
                                "front_size": len(front), "hypervolume": hv})
        logger.info("%s: generation %d closed: %d evaluated (%d failed), front %d, hypervolume %s",
                    self.algorithm_name, self.generation, evaluated, failed, len(front),
                    "n/a" if hv is None else f"{hv:.6g}")
        if self.files is not None:
            self.files.write(self, front)

    # ----------------------------------------------------------------- resume
    def import_data(self, data: list[dict[str, Any]]) -> None:
        """Rebuild archive, population and generation counter from finished trials (``nnictl resume``).

        Imported results count ``offspring_size`` per generation (generation 0: ``population_size``);
        the population is the algorithm's survival over all of them.
        """
        fresh = not self.records
        super().import_data(data)
        if not fresh or not self.records:
            return
        done = len(self.records)
        self.generation = 0 if done < self.population_size else 1 + (done - self.population_size) // self.offspring_size
        for i, record in enumerate(self.records):
            record.generation = 0 if i < self.population_size else 1 + (i - self.population_size) // self.offspring_size
        if self.generation > 0:
            self._survive()
        self.ended_in_gen = sum(r.generation == self.generation for r in self.records)
        self.issued_in_gen = self.ended_in_gen
        logger.info("%s: resumed from %d trials at generation %d (population %d)", self.algorithm_name, done,
                    self.generation, 0 if self.algorithm.pop is None else len(self.algorithm.pop))


@register_tuner("NSGA2")
class NSGA2Tuner(MultiObjectiveTuner):
    """NSGA-II (Deb et al. 2002): binary tournament, SBX + polynomial mutation, rank-and-crowding survival.

    YAML::

        tuner:
          name: NSGA2          # after `nni-ext register`; or className: nni_ext.tuners.NSGA2Tuner
          classArgs:
            objectives: {default: maximize, flops: minimize}
            constraints: {params: "<= 5e6"}
            population_size: 50
            seed: 1
    """

    algorithm_name = "NSGA2"
    pymoo_algorithm = "pymoo.algorithms.moo.nsga2:NSGA2"


@register_tuner("SMSEMOA")
class SMSEMOATuner(MultiObjectiveTuner):
    """SMS-EMOA (Beume et al. 2007): survival removes the point of least hypervolume contribution.

    Same classArgs as :class:`NSGA2Tuner`.
    """

    algorithm_name = "SMSEMOA"
    pymoo_algorithm = "pymoo.algorithms.moo.sms:SMSEMOA"


@register_tuner("SPEA2")
class SPEA2Tuner(MultiObjectiveTuner):
    """SPEA2 (Zitzler et al. 2001): strength-Pareto fitness with k-th nearest neighbour density.

    Same classArgs as :class:`NSGA2Tuner`.
    """

    algorithm_name = "SPEA2"
    pymoo_algorithm = "pymoo.algorithms.moo.spea2:SPEA2"
