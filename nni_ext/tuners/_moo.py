"""Multi-objective NNI tuners on pymoo: one asynchronous generational loop, NSGA-II / SMS-EMOA / SPEA2 as hooks.

The tuner keeps pymoo's algorithm object for its mating (selection, SBX crossover, polynomial mutation) and
survival operators, and replaces pymoo's synchronous ask/tell loop by one that fits NNI's dispatcher, which
asks for one parameter set at a time while earlier trials still run (see :class:`MultiObjectiveTuner`).
"""
from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
from nni import NoMoreTrialError

from ..core.archive import Record, params_key
from ..core.tuner import BaseTuner, check_int, register_tuner, tuner_output_dir
from ..cost.tiny_ml import check_exact_cost_args

logger = logging.getLogger(__name__)


class MultiObjectiveTuner(BaseTuner):
    """Asynchronous generational multi-objective search with pymoo's operators.

    **Dispatch scheme** (as Optuna's NSGAIISampler, generation membership is fixed when a trial is handed
    out): generation 0 is ``population_size`` random points. Generation *g* > 0 is bred by the algorithm's
    mating from the population *P_g*. A generation *closes* when ``offspring_size`` of its trials have
    ended (successful or not); then survival over *P_g* ∪ every result that arrived since the last
    survival gives *P_{g+1}* (pymoo's public ``Algorithm.tell``). If NNI asks while the current
    generation's quota is handed out but not finished, one more child of *P_g* is bred for it, so no
    worker idles. With ``trialConcurrency: 1`` this is exactly pymoo's generational algorithm.

    Results, front and hypervolume live in the one archive (:mod:`nni_ext.core.archive`); its files
    (``history.csv``, ``pareto.json``/``pareto.csv``, ``hypervolume.csv``, ``archive.json``) are
    rewritten after every result in ``output_dir``.

    Args:
        objectives: ``{metric key: maximize|minimize}``; keys of the trial's final metric dict.
        constraints: ``{metric key: "<= 5e6"}``; constrained domination (feasible first, then smaller
            total violation), pymoo's semantics.
        population_size: *N* (default 50); ``offspring_size`` children per generation (default *N*).
        num_generations: stop (``NoMoreTrialError``) once this many generations are handed out; by
            default run until NNI's ``maxTrialNumber``.
        reference_point: ``{key: value}`` in the metrics' units for the hypervolume; by default the nadir of
            the feasible results among the first ``population_size`` (generation 0) plus 10 % of their
            range, fixed from then on and stored in ``archive.json`` (kept on resume, used by ``nni-ext report``).
        space, space_args, input_size: an nni_ext space (e.g. ``spos``) whose cost tables give ``flops``,
            ``params``, ``activations``, ``peak_activation_bytes`` and ``tiny_ml`` exactly
            (:data:`nni_ext.cost.EXACT_KEYS`): constraints on them are checked *before* dispatch, so infeasible
            architectures are never trained, and these objectives/constraints are filled in from the tables
            (they win over the trial's report). The input size is the architecture's own where the space has
            one (OFA's ``r``), else ``input_size`` (default: the space's).
        tiny_ml: CNAS's figure-of-merit parameters, e.g. ``{pmax: 2.2, mmax: 7, amax: 0.3, wp: 1, wm: 1, wa: 1}``
            (limits in millions; :class:`nni_ext.cost.TinyML`, CNAS's defaults when omitted); needs ``space``.
        latency_table: per-layer latency tables of ``space`` (a folder of ``<resolution>_lookup_table.yaml`` such
            as OFA's ``note10/``, or one table file): ``latency_ms`` is then exact like the costs above (filled in,
            and a constraint on it checked before dispatch). ``space: nas-bench-201`` with
            ``space_args: {dataset: cifar10}`` gives ``latency_ms`` from the benchmark's table without one.
        max_draws: attempts to find an unseen (and pre-check feasible) point before giving up.
        output_dir: where the archive files go (default ``<experiment dir>/moo``).
        seed: random seed (drawn and logged when omitted).
    """

    algorithm_name: ClassVar[str] = ""
    #: the name of the pymoo algorithm in :mod:`nni_ext.core.algorithms` whose mating and survival are used
    catalogue_name: ClassVar[str] = ""
    #: the fewest objectives the algorithm works with
    min_objectives: ClassVar[int] = 1

    def __init__(self, *, objectives: Mapping[str, str], constraints: Mapping[str, Any] | None = None,
                 population_size: int = 50, offspring_size: int | None = None, num_generations: int | None = None,
                 reference_point: Mapping[str, float] | None = None, space: str | None = None,
                 space_args: Mapping[str, Any] | None = None, input_size: int | None = None,
                 tiny_ml: Mapping[str, Any] | None = None, latency_table: str | None = None,
                 max_draws: int = 1000, output_dir: str | None = None, seed: int | None = None) -> None:
        check_int("population_size", population_size, 2)
        offspring_size = population_size if offspring_size is None else offspring_size
        check_int("offspring_size", offspring_size, 1)
        check_int("max_draws", max_draws, 1)
        check_int("num_generations", num_generations, 1, optional=True)
        if input_size is not None:
            check_int("input_size", input_size, 1)
        if space is not None and not isinstance(space, str):
            raise ValueError(f"space={space!r} must be the name of a registered nni_ext space, e.g. 'spos'")
        self.tiny_ml = check_exact_cost_args(space, tiny_ml, latency_table)
        self.latency_table = latency_table
        super().__init__(seed=seed, objectives=objectives, constraints=constraints, reference_point=reference_point,
                         reference_after=population_size, output_dir=tuner_output_dir(output_dir, "moo"))
        self.objectives, self.constraints = self.archive.objectives, self.archive.constraints
        if len(self.objectives) < self.min_objectives:
            raise ValueError(f"{self.algorithm_name} needs at least {self.min_objectives} objectives; "
                             f"objectives names {len(self.objectives)}")
        self.population_size, self.offspring_size = population_size, offspring_size
        self.num_generations, self.max_draws = num_generations, max_draws
        # loaded with the search space (torch, the cost table): NNI's dispatcher must connect within 10 s
        self.space_name, self.space_args, self.input_size = space, dict(space_args or {}), input_size
        self.cost_model: Any = None
        self.queue: deque[dict[str, Any]] = deque()
        self.pending: list[Record] = []  # successful results since the last survival
        self.generation, self.issued_in_gen, self.ended_in_gen = 0, 0, 0
        self.rejected_before_dispatch = 0
        self.algorithm: Any = None
        self.problem: Any = None

    @classmethod
    def contract_case(cls, workdir: Path) -> dict[str, Any]:
        """What the tuner contract tests run: two objectives on every NNI ``_type``."""
        return {"class_args": {"objectives": {"default": "maximize", "cost": "minimize"}, "population_size": 6},
                "report": lambda p, i: {"default": float(i % 7) / 7, "cost": float((i * 3) % 5)}}

    # ------------------------------------------------------------------ hooks
    def _make_algorithm(self) -> Any:
        """Hook: the pymoo algorithm whose ``mating`` and ``survival`` this tuner uses (from the catalogue)."""
        from ..core.algorithms import make_algorithm

        return make_algorithm(self.catalogue_name, pop_size=self.population_size, n_obj=len(self.objectives),
                              n_offsprings=self.offspring_size, seed=self.seed)

    def _meta(self) -> dict[str, Any]:
        return {**super()._meta(), "algorithm": self.algorithm_name, "generation": self.generation,
                "population_size": self.population_size, "offspring_size": self.offspring_size,
                "rejected_before_dispatch": self.rejected_before_dispatch}

    # ------------------------------------------------------------- pickling
    _ALGORITHM_STATE = ("pop", "off", "opt", "random_state", "n_iter", "is_initialized")

    def __getstate__(self) -> dict[str, Any]:
        """Some pymoo algorithms hold local functions that do not pickle: keep their state, rebuild the object."""
        state = dict(self.__dict__)
        alg = state.pop("algorithm", None)
        state.pop("problem", None)
        state["_algorithm_state"] = None if alg is None else {k: getattr(alg, k, None) for k in self._ALGORITHM_STATE}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        saved = state.pop("_algorithm_state", None)
        self.__dict__.update(state)
        self.algorithm = self.problem = None
        if self.space is not None:
            self._on_search_space()
            for k, v in (saved or {}).items():
                setattr(self.algorithm, k, v)

    # --------------------------------------------------------------- set-up
    def _cost_model(self, space: str, space_args: Mapping[str, Any] | None, input_size: int | None) -> Any:
        from ..cost.exact import ExactCosts

        model = ExactCosts.for_space(space, space_args, input_size, self.tiny_ml, latency=self.latency_table)
        cheap = ({c.metric for c in self.constraints} | set(self.objectives.keys)) & set(model.keys)
        if not cheap:
            logger.warning("%s: space %r given but no objective or constraint on %s to compute from it",
                           self.algorithm_name, space, "/".join(model.keys))
        return model

    def _on_search_space(self) -> None:
        from pymoo.core.problem import Problem
        from pymoo.core.termination import NoTermination

        assert self.space is not None
        if self.space_name is not None and self.cost_model is None:
            self.cost_model = self._cost_model(self.space_name, self.space_args, self.input_size)
        bounds = self.space.bounds
        self.problem = Problem(n_var=len(self.space), n_obj=len(self.objectives), n_ieq_constr=len(self.constraints),
                               xl=bounds[:, 0], xu=np.maximum(bounds[:, 1], bounds[:, 0] + 1e-12))
        self.algorithm = self._make_algorithm()
        self.algorithm.setup(self.problem, seed=self.seed, verbose=False, termination=NoTermination())

    # ----------------------------------------------------------------- asking
    def _ask(self, parameter_id: int) -> dict[str, Any]:
        if self.num_generations is not None and self.generation >= self.num_generations:
            raise NoMoreTrialError(f"all {self.num_generations} generations have been handed out")
        if not self.queue:
            want = max(self.offspring_size - self.issued_in_gen, 1)
            self.queue.extend(self._propose(want))
        if not self.queue:
            raise NoMoreTrialError("no unseen point of the search space is left to propose")
        self.issued_in_gen += 1
        return self.queue.popleft()

    def _propose(self, n: int) -> list[dict[str, Any]]:
        """Up to ``n`` new points: children of the population, or random ones in generation 0 / without one."""
        out: list[dict[str, Any]] = []
        keys = {params_key(p) for p in self.queue}
        for _ in range(self.max_draws):
            if len(out) >= n:
                break
            for x in self._breed(n - len(out)):
                params = self.space.decode(x)  # type: ignore[union-attr]
                k = params_key(params)
                if self.archive.seen(params) or k in keys or not self._precheck(params):
                    continue
                keys.add(k)
                out.append(params)
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

    def _exact(self, params: Mapping[str, Any]) -> dict[str, float]:
        """Every exact cost of ``params`` from the space's tables (empty without a space or when it does not fit)."""
        if self.cost_model is None:
            return {}
        try:
            return self.cost_model.metrics(params)
        except Exception as exc:  # a space that does not fit: let the trial report it
            logger.debug("exact cost of %s skipped: %s", params, exc)
            return {}

    def _precheck(self, params: dict[str, Any]) -> bool:
        values = self._exact(params)
        ok = all(c.satisfied(values[c.metric]) for c in self.constraints if c.metric in values)
        self.rejected_before_dispatch += not ok
        return ok

    def _known_metrics(self, params: Mapping[str, Any]) -> dict[str, float]:
        """The exact costs the objectives and constraints use (they win over the trial's report)."""
        wanted = set(self.objectives.keys) | {c.metric for c in self.constraints}
        return {k: v for k, v in self._exact(params).items() if k in wanted}

    # ---------------------------------------------------------------- telling
    def _tell(self, record: Record) -> None:
        if record.ok:
            self.pending.append(record)
        if record.dispatched and record.generation == self.generation:
            self.ended_in_gen += 1
            if self.ended_in_gen >= self.offspring_size:
                self._close_generation()

    # --------------------------------------------------------------- survival
    def _population(self, records: list[Record]) -> Any:
        from pymoo.core.population import Population

        assert self.space is not None
        X = np.array([self.space.encode(r.params) for r in records], dtype=float)
        F = np.array([r.F for r in records], dtype=float)
        G = np.array([r.G for r in records], dtype=float).reshape(len(records), len(self.constraints))
        pop = Population.new(X=X, F=F, G=G)  # pymoo derives CV = sum(max(0, G)): our G is the violation
        pop.set("record", np.array(records, dtype=object))
        return pop

    def _survive(self) -> None:
        if self.pending:
            self.algorithm.tell(infills=self._population(self.pending))
            if len(self.algorithm.pop) > self.population_size:  # more than N results before the first survival
                alg = self.algorithm
                alg.pop = alg.survival.do(self.problem, alg.pop, n_survive=self.population_size, algorithm=alg,
                                          random_state=alg.random_state)
        self.pending = []

    def _close_generation(self) -> None:
        self._survive()
        hv = self.archive.hypervolume()
        logger.info("%s: generation %d closed: %d evaluated (%d failed), front %d, hypervolume %s",
                    self.algorithm_name, self.generation, len(self.archive.finished), len(self.archive.failed()),
                    len(self.archive.front()), "n/a" if hv is None else f"{hv:.6g}")
        self.generation += 1
        self.issued_in_gen = self.ended_in_gen = 0
        self.queue.clear()  # children bred for the closed generation but never handed out

    # ---------------------------------------------------------------- outputs
    def front(self) -> list[Record]:
        """The current Pareto front of all successful results (constrained domination)."""
        return self.archive.front()

    def current_hypervolume(self) -> float | None:
        """Hypervolume of the feasible front (``None`` until the reference point is fixed)."""
        return self.archive.hypervolume()

    # ----------------------------------------------------------------- resume
    def _after_import(self, records: list[Record], fresh: bool) -> None:
        """Rebuild the generation counter and population from finished trials (``nnictl resume``).

        Imported results count ``offspring_size`` per generation (generation 0: ``population_size``);
        the population is the algorithm's survival over all of them.
        """
        if not fresh:
            return
        done = len(records)
        restored = [r for r in records if r.restored]
        if restored:  # the history file says which generation each result belongs to; new ones join the last
            last = max(r.generation or 0 for r in restored)
            for record in records:
                if not record.restored:
                    self.archive.set_generation(record, last)
        else:
            for i, record in enumerate(records):
                generation = 0 if i < self.population_size else 1 + (i - self.population_size) // self.offspring_size
                self.archive.set_generation(record, generation)
        self.generation = max(r.generation or 0 for r in records)
        if self.generation > 0:
            self._survive()
        self.ended_in_gen = sum(r.generation == self.generation for r in records)
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
    catalogue_name = "nsga2"


@register_tuner("SMSEMOA")
class SMSEMOATuner(MultiObjectiveTuner):
    """SMS-EMOA (Beume et al. 2007): survival removes the point of least hypervolume contribution.

    Same classArgs as :class:`NSGA2Tuner`.
    """

    algorithm_name = "SMSEMOA"
    catalogue_name = "smsemoa"


@register_tuner("SPEA2")
class SPEA2Tuner(MultiObjectiveTuner):
    """SPEA2 (Zitzler et al. 2001): strength-Pareto fitness with k-th nearest neighbour density.

    Same classArgs as :class:`NSGA2Tuner`.
    """

    algorithm_name = "SPEA2"
    catalogue_name = "spea2"


@register_tuner("NSGA3")
class NSGA3Tuner(MultiObjectiveTuner):
    """NSGA-III (Deb & Jain 2014): survival by niching around reference directions, for 3+ objectives.

    The reference directions are ``population_size`` points spread on the unit simplex of the objectives
    (Riesz s-energy, :mod:`nni_ext.core.algorithms`). Same classArgs as :class:`NSGA2Tuner`.
    """

    algorithm_name = "NSGA3"
    catalogue_name = "nsga3"
    min_objectives = 2


@register_tuner("AGEMOEA")
class AGEMOEATuner(MultiObjectiveTuner):
    """AGE-MOEA (Panichella 2019): survival by an adaptive geometry estimate of the front.

    Same classArgs as :class:`NSGA2Tuner`.
    """

    algorithm_name = "AGEMOEA"
    catalogue_name = "agemoea"
    min_objectives = 2
