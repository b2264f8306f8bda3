"""Surrogate-assisted multi-objective search (NSGANetV2's MSuNAS, CNAS) as an asynchronous NNI tuner.

The loop of the seeds, one *iteration* per planned batch:

1. **Design of experiments**: ``initial_samples`` points, random and distinct; with an nni_ext ``space`` whose
   cost model is known, the cheapest and the most expensive architecture are among them (NSGANetV2's
   lower/upper corners).
2. **Fit** one surrogate per objective that has no exact model (``surrogate``: rbf | gp | mlp | carts | as,
   :mod:`nni_ext.surrogates`) on the archive's successful results. ``flops``, ``params``, ``activations``,
   ``peak_activation_bytes`` and ``tiny_ml`` objectives and constraints are computed exactly from the space's
   cost tables, never predicted (``tiny_ml`` classArg: CNAS's limits and weights); so is ``latency_ms`` where a
   table gives it (``latency_table``: per-layer tables such as OFA's Note10 ones; or the space's own, e.g.
   ``space: nas-bench-201`` with ``space_args: {dataset: cifar10}``), as NSGANetV2 does.
3. **Inner NSGA-II** (``inner_population`` 40, ``inner_generations`` 20) on predicted and exact objectives,
   seeded with the archive's front, integer and categorical genes rounded (per-gene bounds). With a single
   objective, a genetic algorithm keeps the predicted best (CNAS's single-objective path). A finite space of
   at most ``enumerate_up_to`` points (e.g. NAS-Bench-201's 15,625 cells) is predicted whole instead: the
   candidates are then the predicted non-dominated layers, not an approximation of them.
4. **Subset selection** of ``batch_size`` unseen candidates: ``selection: spread`` is NSGANetV2's rule
   (even spread along the second objective together with the archive's front), ``selection: hvi`` takes
   candidates greedily by the hypervolume improvement of their predicted objectives.
5. **Dispatch**; the results join the one archive (:mod:`nni_ext.core.archive`).

**Asynchronous**: NNI asks for one parameter set at a time. When the planned batch is used up, the next
iteration is planned at once from the archive so far, with every pending point excluded, so no worker waits
for a whole batch. Failed trials are recorded with their reason and never stall the search.

**Honest surrogate quality**: every candidate keeps the prediction made when it was planned; once its result
is in, the iteration files report Kendall τ, Spearman ρ and RMSE of those held-out predictions (the
originals scored mostly training points).

**Files** (``<experiment dir>/msunas``): the archive's files (``history.csv``, ``pareto.*``,
``hypervolume.csv``, ``archive.json``), so ``nni-ext report``/``select`` work unchanged, and one
``iter_NNN.json`` per iteration (archive size, candidates with their predictions, hypervolume, surrogate
and, for ``as``, the winner and the cross-validated scores, the held-out quality of the previous batches).

**Resume**: ``import_data`` rebuilds the archive (its own files first) and the iteration count from the
``iter_*.json`` files, so ``nnictl resume`` continues numbering where it stopped.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from typing import Any, Mapping

import numpy as np
from nni import NoMoreTrialError

from .._io import atomic_write_json
from ..core.archive import Record, params_key
from ..core.pareto import hypervolume, non_dominated
from ..core.tuner import BaseTuner, check_choice, check_int, check_number, register_tuner, tuner_output_dir
from ..cost.tiny_ml import EXACT_KEYS, check_exact_cost_args
from ..surrogates import SURROGATES, make_surrogate, quality

logger = logging.getLogger(__name__)
SELECTIONS = ("spread", "hvi")


class Features:
    """Parameter dicts as surrogate features: a choice one-hot, any other parameter scaled to [0, 1]."""

    def __init__(self, space: Any) -> None:
        self.space = space
        self.bounds = space.bounds

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Features of encoded rows (``ParameterSpace.encode``'s vectors, rounded where integer)."""
        X = np.atleast_2d(np.asarray(X, float))
        cols = []
        for j, p in enumerate(self.space.parameters):
            if p.is_categorical:
                idx = np.clip(np.rint(X[:, j]), 0, len(p.args) - 1).astype(int)
                cols.append(np.eye(len(p.args))[idx])
            else:
                low, high = self.bounds[j]
                cols.append(((X[:, j] - low) / (high - low if high > low else 1.0))[:, None])
        return np.hstack(cols)


@register_tuner("MSuNAS")
class MSuNASTuner(BaseTuner):
    """Surrogate-assisted multi-objective search (NSGANetV2 / MSuNAS; also registered as ``NSGANetV2``).

    YAML::

        tuner:
          className: nni_ext.tuners.MSuNASTuner   # or name: MSuNAS after `nni-ext register`
          classArgs:
            objectives: {default: maximize, flops: minimize}
            constraints: {params: "<= 5e6"}       # optional; constrained domination
            space: nas-bench-201                  # optional: costs computed exactly, never predicted
            space_args: {dataset: cifar10}        # NAS-Bench-201: latency_ms exact too (from its table)
            surrogate: as                         # rbf | gp | mlp | carts | as
            initial_samples: 100
            batch_size: 8
            seed: 1

    Args:
        objectives: ``{metric key: maximize|minimize}`` (one or more).
        constraints: ``{metric key: "<= bound"}``; on the keys of :data:`nni_ext.cost.EXACT_KEYS` (``flops``,
            ``params``, ``activations``, ``peak_activation_bytes``, ``tiny_ml``; ``latency_ms`` where a table gives
            it) with a ``space`` they are checked before dispatch (infeasible architectures are never trained).
        space, space_args, input_size: an nni_ext space whose cost tables give those keys exactly (never
            predicted); the input size is the architecture's own where the space has one (OFA's ``r``).
            ``nas-bench-201`` with ``space_args: {dataset: ...}`` also gives ``latency_ms`` exactly.
        latency_table: per-layer latency tables of the space (a folder of ``<resolution>_lookup_table.yaml``
            such as OFA's ``note10/``, or one table file): ``latency_ms`` is then exact (the sum of the layers'
            means, :class:`nni_ext.cost.ExactCosts`), never predicted, and a constraint on it is checked before
            dispatch. Needs ``space``.
        tiny_ml: CNAS's figure-of-merit parameters, e.g. ``{pmax: 2.2, mmax: 7, amax: 0.3, wp: 1, wm: 1, wa: 1}``
            (limits in millions; :class:`nni_ext.cost.TinyML`, CNAS's defaults when omitted); needs ``space``.
        surrogate: the surrogate of every predicted objective (default ``as``, adaptive switching).
        initial_samples: size of the design of experiments (default 100, as NSGANetV2).
        batch_size: candidates per iteration (default 8).
        inner_population, inner_generations: the inner NSGA-II (40 and 20, as the seeds).
        selection: ``spread`` (NSGANetV2's subset selection) or ``hvi`` (greedy predicted hypervolume gain).
        exploration: with a surrogate that knows its uncertainty (``gp``, or ``as`` when gp wins), candidates are
            ranked by ``mean - exploration * std`` of each predicted objective (0: by the mean only).
        enumerate_up_to: predict every point of a finite space (only ``choice``/``randint`` parameters) of at
            most this many points instead of running the inner NSGA-II (default 20,000; 0 never).
        patience: stop after this many iterations without hypervolume improvement (CNAS); default never.
        max_iterations: stop after this many iterations; default run until NNI's ``maxTrialNumber``.
        reference_point: ``{key: value}`` for the hypervolume; else fixed after the design of experiments.
        output_dir: where the files go (default ``<experiment dir>/msunas``).
        seed: random seed (drawn and logged when omitted).
    """

    def __init__(self, *, objectives: Mapping[str, str], constraints: Mapping[str, Any] | None = None,
                 space: str | None = None, space_args: Mapping[str, Any] | None = None, input_size: int | None = None,
                 tiny_ml: Mapping[str, Any] | None = None, latency_table: str | None = None,
                 surrogate: str = "as", initial_samples: int = 100, batch_size: int = 8, inner_population: int = 40,
                 inner_generations: int = 20, selection: str = "spread", exploration: float = 0.0,
                 enumerate_up_to: int = 20000,
                 patience: int | None = None,
                 max_iterations: int | None = None, reference_point: Mapping[str, float] | None = None,
                 output_dir: str | None = None, seed: int | None = None) -> None:
        check_choice("surrogate", surrogate, SURROGATES)
        check_choice("selection", selection, SELECTIONS)
        check_int("initial_samples", initial_samples, 2)
        check_int("batch_size", batch_size, 1)
        check_int("inner_population", inner_population, 4)
        check_int("inner_generations", inner_generations, 1)
        check_int("enumerate_up_to", enumerate_up_to, 0)
        self.exploration = float(check_number("exploration", exploration, 0.0))  # type: ignore[arg-type]
        check_int("patience", patience, 1, optional=True)
        check_int("max_iterations", max_iterations, 1, optional=True)
        check_int("input_size", input_size, 1, optional=True)
        if space is not None and not isinstance(space, str):
            raise ValueError(f"space={space!r} must be the name of a registered nni_ext space, e.g. 'nas-bench-201'")
        self.tiny_ml = check_exact_cost_args(space, tiny_ml, latency_table)
        super().__init__(seed=seed, objectives=objectives, constraints=constraints, reference_point=reference_point,
                         reference_after=initial_samples, output_dir=tuner_output_dir(output_dir, "msunas"))
        self.objectives, self.constraints = self.archive.objectives, self.archive.constraints
        self.surrogate_name, self.selection = surrogate, selection
        self.initial_samples, self.batch_size = initial_samples, batch_size
        self.inner_population, self.inner_generations = inner_population, inner_generations
        self.enumerate_up_to = enumerate_up_to
        self.patience, self.max_iterations = patience, max_iterations
        # the space (torch, the cost table) is loaded with the search space, not here: NNI's dispatcher must
        # connect to the manager within 10 s of starting, and building the tuner counts towards them
        self.space_name, self.space_args, self.input_size = space, dict(space_args or {}), input_size
        self.latency_table = latency_table
        self.cost_model: Any = None
        self._set_exact_keys(() if space is None else EXACT_KEYS + (("latency_ms",) if latency_table else ()))
        self._enumerated: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.queue: deque[dict[str, Any]] = deque()
        self.iteration = 0  # 0: the design of experiments
        self.best_hv: float | None = None
        self.stale = 0
        self.features: Features | None = None
        self.plan_seconds: list[float] = []
        #: the predicted objectives of every planned candidate, by parameters (held-out quality)
        self._predictions: dict[str, dict[str, float]] = {}

    @classmethod
    def contract_case(cls, workdir: Any) -> dict[str, Any]:
        """What the tuner contract tests run: two objectives on every NNI ``_type``, a short loop."""
        return {"class_args": {"objectives": {"default": "maximize", "cost": "minimize"}, "initial_samples": 6,
                               "batch_size": 3, "inner_population": 8, "inner_generations": 3, "surrogate": "rbf"},
                "report": lambda p, i: {"default": float(i % 7) / 7, "cost": float((i * 3) % 5)}}

    def _meta(self) -> dict[str, Any]:
        return {**super()._meta(), "iteration": self.iteration, "surrogate": self.surrogate_name,
                "batch_size": self.batch_size, "initial_samples": self.initial_samples}

    # ------------------------------------------------------------------ set-up
    def _set_exact_keys(self, keys: tuple[str, ...] | list[str]) -> None:
        """Which objectives are computed exactly (the rest are predicted) and which exact keys are recorded."""
        self.exact = [k for k in self.objectives.keys if k in keys]
        #: exact keys recorded with every result: the exact objectives and the constraints on exact keys
        self.recorded = self.exact + [c.metric for c in self.constraints
                                      if c.metric in keys and c.metric not in self.exact]
        self.predicted = [k for k in self.objectives.keys if k not in self.exact]

    def _cost_model(self, space: str, space_args: Mapping[str, Any] | None, input_size: int | None) -> Any:
        from ..cost.exact import ExactCosts

        return ExactCosts.for_space(space, space_args, input_size, self.tiny_ml, latency=self.latency_table)

    def _on_search_space(self) -> None:
        assert self.space is not None
        if self.space_name is not None and self.cost_model is None:
            self.cost_model = self._cost_model(self.space_name, self.space_args, self.input_size)
            self._set_exact_keys(self.cost_model.keys)
            logger.info("MSuNAS: exact %s; predicted %s", self.exact or "none", self.predicted or "none")
        self._enumerated = None
        if self.cost_model is not None and set(self.space.names) != set(self.cost_model.space.labels):
            name = self.cost_model.space.name
            raise ValueError(f"the experiment's search space does not match space {name!r}; "
                             f"export it with `nni-ext ss_gen {name}`")
        self.features = Features(self.space)

    def _cheap(self, params: Mapping[str, Any]) -> dict[str, float]:
        """Exact costs of an architecture (every key of ``EXACT_KEYS``; empty without a space)."""
        if self.cost_model is None:
            return {}
        return self.cost_model.metrics(params)

    def _feasible_before_dispatch(self, params: Mapping[str, Any]) -> bool:
        cheap = self._cheap(params)
        return all(c.satisfied(cheap[c.metric]) for c in self.constraints if c.metric in cheap)

    def _known_metrics(self, params: Mapping[str, Any]) -> dict[str, float]:
        cheap = self._cheap(params)
        return {k: v for k, v in cheap.items() if k in self.recorded}

    # ------------------------------------------------------------------ asking
    def _unseen(self, params: Mapping[str, Any], taken: set[str]) -> bool:
        key = params_key(params)
        return key not in taken and not self.archive.seen(params)

    def _ask(self, parameter_id: int) -> dict[str, Any]:
        if not self.queue:
            self._plan()
        if not self.queue:
            raise NoMoreTrialError("no unseen point of the search space is left to propose")
        return self.queue.popleft()

    def _plan(self) -> None:
        """Fill the queue: the rest of the design of experiments, or one iteration's batch."""
        assert self.space is not None
        proposed = len(self.archive.records)
        if proposed < self.initial_samples:
            self.queue.extend(self._design(self.initial_samples - proposed))
            return
        if self.max_iterations is not None and self.iteration >= self.max_iterations:
            raise NoMoreTrialError(f"all {self.max_iterations} iterations have been planned")
        if self.patience is not None and self.stale >= self.patience:
            raise NoMoreTrialError(f"no hypervolume improvement in {self.patience} iterations (patience)")
        ok = self.archive.succeeded()
        if len(ok) < 2:  # too little to fit a surrogate (e.g. the design's trials still run or failed): explore
            self.queue.extend(self._random(self.batch_size, set()))
            return
        started = time.perf_counter()
        self.iteration += 1
        self._track_hypervolume()
        batch, info = self._iterate(ok)
        self.plan_seconds.append(time.perf_counter() - started)
        self.generation = self.iteration
        self.queue.extend(batch)
        self._write_iteration(batch, info, self.plan_seconds[-1])

    def _design(self, n: int) -> list[dict[str, Any]]:
        taken = {params_key(p) for p in self.queue}
        out: list[dict[str, Any]] = []
        if self.cost_model is not None and not self.archive.records:
            for params in self._corners():
                if len(out) < n and self._unseen(params, taken) and self._feasible_before_dispatch(params):
                    taken.add(params_key(params))
                    out.append(params)
        return out + self._random(n - len(out), taken)

    def _corners(self) -> list[dict[str, Any]]:
        """The cheapest and the most expensive architecture of the space (by FLOPs, per label)."""
        nas_space = self.cost_model.space
        choices = nas_space.choices()
        corners = []
        for pick in (min, max):
            arch = {}
            for label, values in choices.items():
                costs = []
                for v in values:
                    probe = {**{k: vs[0] for k, vs in choices.items()}, label: v}
                    costs.append(self.cost_model.cost(probe).flops)
                arch[label] = values[costs.index(pick(costs))]
            corners.append(nas_space.validate(arch))
        return corners

    def _random(self, n: int, taken: set[str]) -> list[dict[str, Any]]:
        assert self.space is not None
        out: list[dict[str, Any]] = []
        for _ in range(200 * max(n, 1)):
            if len(out) >= n:
                break
            params = self.space.sample(self.rng)
            if self._unseen(params, taken) and self._feasible_before_dispatch(params):
                taken.add(params_key(params))
                out.append(params)
        return out

    # ------------------------------------------------------------------ one iteration
    def _targets(self, records: list[Record]) -> np.ndarray:
        """Minimisation values of the predicted objectives, one column each."""
        idx = [self.objectives.keys.index(k) for k in self.predicted]
        return np.array([[r.F[i] for i in idx] for r in records], dtype=float).reshape(len(records), len(idx))

    def _fit(self, records: list[Record]) -> tuple[list[Any], list[dict[str, Any]]]:
        assert self.space is not None and self.features is not None
        X = self.features(np.array([self.space.encode(r.params) for r in records]))
        Y = self._targets(records)
        models, infos = [], []
        for j, key in enumerate(self.predicted):
            model = make_surrogate(self.surrogate_name, seed=self.seed + self.iteration).fit(X, Y[:, j])
            models.append(model)
            info: dict[str, Any] = {"objective": key, "model": model.name, "train_size": len(Y)}
            if getattr(model, "winner", None):
                info.update(winner=model.winner, scores=model.scores)
            infos.append(info)
        return models, infos

    def _predict(self, models: list[Any], X: np.ndarray, optimistic: bool = False,
                 exact: np.ndarray | None = None) -> np.ndarray:
        """Minimisation objectives of encoded rows: predicted ones from the models, exact ones counted.

        ``exact``: the exact objectives' minimisation values of the rows, when already known (one column per
        key of ``self.exact``).

        ``optimistic``: a model with its own uncertainty (a Gaussian process) gives ``mean - exploration * std``
        (a lower confidence bound), so the search also tries where the surrogate is unsure.
        """
        assert self.space is not None and self.features is not None
        feats = self.features(X)
        F = np.empty((len(X), len(self.objectives)))
        pred = {}
        for k, m in zip(self.predicted, models):
            pred[k] = m.predict(feats)
            if optimistic and self.exploration > 0 and getattr(m, "has_std", hasattr(m, "predict_std")):
                pred[k] = pred[k] - self.exploration * m.predict_std(feats)
        if exact is None and self.exact:
            exact = self._exact_matrix(X)
        for i, key in enumerate(self.objectives.keys):
            F[:, i] = pred[key] if key in pred else exact[:, self.exact.index(key)]  # type: ignore[index]
        return F

    def _exact_matrix(self, X: np.ndarray) -> np.ndarray:
        """Minimisation values of the exact objectives of encoded rows, one column per key of ``self.exact``."""
        assert self.space is not None
        signs = np.array([self.objectives.sign[self.objectives.keys.index(k)] for k in self.exact], dtype=float)
        cheap = [self._cheap(self.space.decode(x)) for x in X]
        return np.array([[c[k] for k in self.exact] for c in cheap], dtype=float).reshape(len(X), -1) * signs

    def _iterate(self, ok: list[Record]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        models, infos = self._fit(ok)
        pool, F = self._inner_search(models, ok)
        chosen = self._select(pool, F, self.batch_size)
        batch = []
        means = self._predict(models, np.array([self.space.encode(pool[i]) for i in chosen])) if chosen else F
        for i, mean in zip(chosen, means):
            params = pool[i]
            batch.append(params)
            self._predictions[params_key(params)] = {k: float(v) for k, v in
                                                     zip(self.objectives.keys, self.objectives.values(mean))}
        if len(batch) < self.batch_size:  # the inner search found too few unseen points: explore
            extra = self._random(self.batch_size - len(batch), {params_key(p) for p in batch})
            batch += extra
        return batch, {"surrogates": infos, "inner_pool": len(pool)}

    def _space_size(self) -> int | None:
        """How many points a finite space has (``None`` when a parameter is continuous)."""
        assert self.space is not None
        size = 1
        for p in self.space.parameters:
            if p.is_categorical:
                size *= len(p.args)
            elif p.type == "randint":
                size *= int(p.args[1]) - int(p.args[0])
            else:
                return None
        return size

    def _enumerate(self, models: list[Any]) -> tuple[list[dict[str, Any]], np.ndarray]:
        """Every unseen feasible point of a small finite space; the pool is its best predicted layers."""
        import itertools

        assert self.space is not None
        axes = [np.arange(len(p.args)) if p.is_categorical else np.arange(int(p.args[0]), int(p.args[1]))
                for p in self.space.parameters]
        if self._enumerated is None:  # the points, their exact objectives and pre-check feasibility, once
            X = np.array(list(itertools.product(*axes)), dtype=float)
            exact = self._exact_matrix(X) if self.exact else np.zeros((len(X), 0))
            feasible = np.array([self._feasible_before_dispatch(self.space.decode(x)) for x in X]) \
                if self.cost_model is not None and self.constraints else np.ones(len(X), dtype=bool)
            self._enumerated = (X, exact, feasible)
        X, exact, feasible = self._enumerated
        F = self._predict(models, X, optimistic=True, exact=exact)
        from ..core.pareto import constrained_ranks

        order = np.lexsort((F[:, 0], constrained_ranks(F)))
        order = order[feasible[order]]
        pool, rows, taken = [], [], {params_key(p) for p in self.queue}
        for i in order:
            params = self.space.decode(X[i])
            if self._unseen(params, taken):
                taken.add(params_key(params))
                pool.append(params)
                rows.append(i)
                if len(pool) >= max(self.inner_population, 4 * self.batch_size):
                    break
        return pool, F[rows] if rows else np.zeros((0, len(self.objectives)))

    def _inner_search(self, models: list[Any], ok: list[Record]) -> tuple[list[dict[str, Any]], np.ndarray]:
        """Unseen, distinct, feasible parameter dicts of the inner search's final population, with predictions."""
        size = self._space_size()
        if size is not None and size <= self.enumerate_up_to:
            return self._enumerate(models)
        from pymoo.core.problem import Problem
        from pymoo.core.repair import Repair
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.optimize import minimize

        from ..core.algorithms import make_algorithm

        assert self.space is not None
        space, bounds = self.space, self.space.bounds
        integer = np.array([p.is_categorical or p.type == "randint" for p in space.parameters])
        tuner = self

        class Rounding(Repair):
            def _do(self, problem: Any, X: np.ndarray, **kwargs: Any) -> np.ndarray:
                X = np.clip(X, bounds[:, 0], bounds[:, 1])
                X[:, integer] = np.rint(X[:, integer])
                return X

        class Predicted(Problem):
            def __init__(self) -> None:
                super().__init__(n_var=len(space), n_obj=len(tuner.objectives), xl=bounds[:, 0],
                                 xu=np.maximum(bounds[:, 1], bounds[:, 0] + 1e-12))

            def _evaluate(self, X: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
                out["F"] = tuner._predict(models, X, optimistic=True)

        front = self.archive.front()
        start = np.array([space.encode(r.params) for r in front[: self.inner_population]], dtype=float)
        fill = self.inner_population - len(start)
        if fill > 0:
            start = np.vstack([start.reshape(-1, len(space)),
                               [space.encode(space.sample(self.rng)) for _ in range(fill)]])
        name = "nsga2" if len(self.objectives) > 1 else None
        operators = dict(sampling=start, crossover=SBX(prob=0.9, eta=15), mutation=PM(eta=20), repair=Rounding(),
                         eliminate_duplicates=True)
        if name is None:
            from pymoo.algorithms.soo.nonconvex.ga import GA

            algorithm = GA(pop_size=self.inner_population, **operators)
        else:
            algorithm = make_algorithm(name, pop_size=self.inner_population, n_obj=len(self.objectives), **operators)
        res = minimize(Predicted(), algorithm, ("n_gen", self.inner_generations), seed=self.seed + self.iteration,
                       verbose=False)
        X = np.atleast_2d(res.pop.get("X"))
        pool: list[dict[str, Any]] = []
        rows = []
        taken = {params_key(p) for p in self.queue}
        for x in X:
            params = space.decode(x)
            if self._unseen(params, taken) and self._feasible_before_dispatch(params):
                taken.add(params_key(params))
                pool.append(params)
                rows.append(space.encode(params))
        F = self._predict(models, np.array(rows), optimistic=True) if rows else np.zeros((0, len(self.objectives)))
        return pool, F

    def _select(self, pool: list[dict[str, Any]], F: np.ndarray, k: int) -> list[int]:
        """``k`` indices of ``pool``: NSGANetV2's spread rule, greedy hypervolume gain, or the best predicted."""
        n = len(pool)
        if n <= k:
            return list(range(n))
        if len(self.objectives) == 1:
            return [int(i) for i in np.argsort(F[:, 0], kind="stable")[:k]]
        front_F = np.array([r.F for r in self.archive.front() if r.feasible], dtype=float).reshape(-1, F.shape[1])
        if self.selection == "hvi":
            return self._select_hvi(F, front_F, k)
        return self._select_spread(F, front_F, k)

    @staticmethod
    def _select_spread(F: np.ndarray, front_F: np.ndarray, k: int) -> list[int]:
        """Greedy: each pick makes the gaps of the sorted second objective (front ∪ picks) the most even.

        Among candidates, the non-dominated ones (by prediction) come first, as the inner search's final
        population is mostly its front.
        """
        ranks = np.zeros(len(F), dtype=int)
        ranks[non_dominated(F)] = -1
        chosen: list[int] = []
        base = list(front_F[:, 1])
        for _ in range(k):
            best, best_score = None, math.inf
            for i in range(len(F)):
                if i in chosen:
                    continue
                values = np.sort(np.array(base + [F[j, 1] for j in chosen] + [F[i, 1]]))
                score = float(np.std(np.diff(values))) if len(values) > 2 else 0.0
                key = (ranks[i], score)
                if best is None or key < (ranks[best], best_score):
                    best, best_score = i, score
            chosen.append(best)  # type: ignore[arg-type]
        return chosen

    def _select_hvi(self, F: np.ndarray, front_F: np.ndarray, k: int) -> list[int]:
        """Greedy: the candidate whose predicted point adds the most hypervolume to front ∪ picks (Kriging believer)."""
        if self.archive.reference is not None:
            ref = self.archive.reference
        else:
            both = np.vstack([front_F, F])
            ref = both.max(axis=0) + 0.1 * np.maximum(both.max(axis=0) - both.min(axis=0), 1e-12)
        current = front_F.copy()
        chosen: list[int] = []
        for _ in range(k):
            base = hypervolume(current, ref) if len(current) else 0.0
            gains = np.array([-1.0 if i in chosen else hypervolume(np.vstack([current, F[i]]), ref) - base
                              for i in range(len(F))])
            if gains.max() <= 0:  # nothing adds: the closest to the front by the sum of normalised objectives
                rest = [i for i in range(len(F)) if i not in chosen]
                span = np.maximum(F.max(axis=0) - F.min(axis=0), 1e-12)
                i = min(rest, key=lambda j: float(((F[j] - F.min(axis=0)) / span).sum()))
            else:
                i = int(np.argmax(gains))
            chosen.append(i)
            current = np.vstack([current, F[i]])
        return chosen

    # ------------------------------------------------------------------ bookkeeping
    def _tell(self, record: Record) -> None:
        prediction = self._predictions.get(record.key)
        if prediction is not None:
            record.info.update({f"predicted_{k}": v for k, v in prediction.items()})

    def _track_hypervolume(self) -> None:
        hv = self.archive.hypervolume()
        if hv is None:
            return
        if self.best_hv is None or hv > self.best_hv + 1e-12:
            self.best_hv, self.stale = hv, 0
        else:
            self.stale += 1

    def held_out_quality(self) -> dict[str, dict[str, float]]:
        """τ, ρ and RMSE of every prediction made before its point was evaluated, per predicted objective."""
        out = {}
        for key in self.predicted:
            pairs = [(r.info[f"predicted_{key}"], r.value(key)) for r in self.archive.finished
                     if r.ok and f"predicted_{key}" in r.info]
            out[key] = quality([p for p, _ in pairs], [a for _, a in pairs])
        return out

    def _write_iteration(self, batch: list[dict[str, Any]], info: dict[str, Any], seconds: float) -> None:
        quality_now = self.held_out_quality()
        hv = self.archive.hypervolume()
        for key, q in quality_now.items():
            logger.info("MSuNAS: iteration %d: held-out %s predictions n=%d tau=%.3f rho=%.3f rmse=%.4g",
                        self.iteration, key, q["n"], q["tau"], q["rho"], q["rmse"])
        logger.info("MSuNAS: iteration %d planned %d candidates in %.2f s (archive %d, hypervolume %s)",
                    self.iteration, len(batch), seconds, len(self.archive.finished),
                    "n/a" if hv is None else f"{hv:.6g}")
        if self.output_dir is None:
            return
        atomic_write_json(self.output_dir / f"iter_{self.iteration:03d}.json", {
            "iteration": self.iteration, "archive_size": len(self.archive.finished),
            "succeeded": len(self.archive.succeeded()), "pending": len(self.archive.running()),
            "hypervolume": hv, "stale_iterations": self.stale, "seconds": seconds, **info,
            "held_out_quality": quality_now,
            "candidates": [{"parameters": p, "predicted": self._predictions.get(params_key(p))} for p in batch]})

    # ------------------------------------------------------------------ resume
    def _after_import(self, records: list[Record], fresh: bool) -> None:
        if not fresh:
            return
        done = [int(p.stem.split("_")[1]) for p in (self.output_dir.glob("iter_*.json") if self.output_dir else [])
                if p.stem.split("_")[1].isdigit()]
        beyond = max(0, len(records) - self.initial_samples)
        self.iteration = max(done) if done else math.ceil(beyond / self.batch_size)
        for path in sorted(self.output_dir.glob("iter_*.json")) if self.output_dir else []:
            try:  # the predictions made before those points were evaluated stay held-out scores
                for c in json.loads(path.read_text()).get("candidates", []):
                    if c.get("predicted"):
                        self._predictions[params_key(c["parameters"])] = c["predicted"]
            except (OSError, ValueError, TypeError, AttributeError) as exc:
                logger.warning("MSuNAS: cannot read %s (%s)", path, exc)
        for record in records:
            self._tell(record)
        logger.info("MSuNAS: resumed from %d trials at iteration %d", len(records), self.iteration)


@register_tuner("NSGANetV2")
class NSGANetV2Tuner(MSuNASTuner):
    """The same tuner under NSGANetV2's name (see :class:`MSuNASTuner`)."""


__all__ = ["MSuNASTuner", "NSGANetV2Tuner"]
