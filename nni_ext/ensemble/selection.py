"""OFA³ ensemble selection: NSGA-II / SMS-EMOA / SPEA2 / NSGA-III / AGE-MOEA (the catalogue of
:mod:`nni_ext.core.algorithms`) over binary membership, (latency, error %) minimised.

Decision variables: one bit per model of the tables (1 = member). Objectives, both minimised: the
ensemble latency (``max`` of the members' for parallel members, ``sum`` for sequential ones, in ms)
and the ensemble top-1 error in % of the *search* tables (soft voting, see :mod:`.scoring`).
Operators follow pymoo's binary recipe: random bits, two-point crossover, bit-flip mutation,
duplicate elimination. The minimum ensemble size ``min_members`` (K) is enforced by a **repair**
that adds random models (from pymoo's seeded generator) to any row with fewer than K members, so
every evaluated ensemble is feasible and no constraint handling is needed.

The selection is guided by the search tables (the seed's held-out 50k training subset); given
``val_tables`` the chosen ensembles are re-scored there (the untouched validation set) and the
output keeps the two apart: ``search_accuracy`` vs ``val_accuracy``.

Hypervolume of the (latency, error %) front is recorded per generation for the population and for
the archive of every non-dominated ensemble found so far (non-decreasing). Reference point:
1.1 x the latency of the ensemble of all models, and 100 % error.

Example:
    >>> from nni_ext.ensemble.tables import synthetic_tables, synthetic_latency
    >>> t = synthetic_tables(models=6, images=300, classes=50, seed=0)
    >>> r = select_ensembles(tables=t, latency=synthetic_latency(t), criterion="max", population=10,
    ...                      generations=5, min_members=2, seed=1, log_every=0)
    >>> bool(r.members.sum(axis=1).min() >= 2)
    True
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair

from .._io import atomic_write_csv, atomic_write_json
from ..core import algorithms as core_algorithms
from ..errors import DataError
from ..pareto import non_dominated
from ..pymoo_tools import HypervolumeRecorder, RowDuplicateElimination, fast_binary_tournament
from .scoring import CRITERIA, SoftVotingScorer, ensemble_latency
from .tables import TopKTables

log = logging.getLogger(__name__)

#: the catalogue's algorithms (:func:`nni_ext.core.algorithms.algorithm_names`)
ALGORITHMS = core_algorithms.algorithm_names()


class EnsembleProblem(Problem):
    """Minimise (ensemble latency in ms, ensemble top-1 error in %) over membership bits."""

    def __init__(self, scorer: SoftVotingScorer, latency: np.ndarray, *, criterion: str) -> None:
        if criterion not in CRITERIA:
            raise ValueError(f"criterion={criterion!r}; use 'max' (parallel members) or 'sum' (sequential)")
        self.scorer, self.latency, self.criterion = scorer, np.asarray(latency, dtype=float), criterion
        if len(self.latency) != scorer.n_models:
            raise ValueError(f"latency has {len(self.latency)} entries for {scorer.n_models} models")
        super().__init__(n_var=scorer.n_models, n_obj=2, xl=0, xu=1, vtype=bool)

    def objectives(self, X: np.ndarray) -> np.ndarray:
        """``(P, 2)``: ensemble latency (ms) and error (%) of membership rows."""
        B = np.asarray(X, dtype=bool)
        return np.column_stack([ensemble_latency(B, self.latency, criterion=self.criterion),
                                100.0 * (1.0 - self.scorer.accuracy(B))])

    def _evaluate(self, x: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        out["F"] = self.objectives(x)


class MinMembersRepair(Repair):
    """Add random non-members to every row with fewer than ``min_members`` members."""

    def __init__(self, min_members: int) -> None:
        super().__init__()
        self.min_members = min_members

    def _do(self, problem: Problem, X: np.ndarray, random_state: np.random.Generator | None = None,
            **kwargs: Any) -> np.ndarray:
        X = np.asarray(X, dtype=bool).copy()
        rng = random_state if random_state is not None else np.random.default_rng(0)
        for i in np.flatnonzero(X.sum(axis=1) < self.min_members):
            free = np.flatnonzero(~X[i])
            X[i, rng.choice(free, self.min_members - int(X[i].sum()), replace=False)] = True
        return X


def _front(F: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of ``F``, one per distinct objective vector, sorted by latency."""
    idx = non_dominated(F)
    _, first = np.unique(F[idx], axis=0, return_index=True)
    idx = idx[np.sort(first)]
    return idx[np.lexsort((F[idx, 1], F[idx, 0]))]


def make_algorithm(name: str, population: int, min_members: int) -> Any:
    """A catalogue algorithm (:mod:`nni_ext.core.algorithms`) with binary operators and the minimum-size repair.

    Where the algorithm's parent selection is NSGA-II's binary tournament (NSGA-II, AGE-MOEA), it runs
    vectorised (:func:`~nni_ext.pymoo_tools.fast_binary_tournament`: same decisions, same random draws);
    the others keep pymoo's own selection. Raises ``ValueError`` for an unknown name (naming the catalogue)
    or a population under 2.
    """
    from pymoo.operators.crossover.pntx import TwoPointCrossover
    from pymoo.operators.mutation.bitflip import BitflipMutation
    from pymoo.operators.sampling.rnd import BinaryRandomSampling
    from pymoo.operators.selection.tournament import TournamentSelection

    spec = core_algorithms.algorithm_spec(name)
    if isinstance(population, bool) or not isinstance(population, int) or population < 2:
        raise ValueError(f"population={population!r} must be an integer of at least 2")
    extra = ({"selection": TournamentSelection(func_comp=fast_binary_tournament)}
             if spec.selection == "binary_tournament" else {})
    return core_algorithms.make_algorithm(
        spec.name, pop_size=population, n_obj=2, sampling=BinaryRandomSampling(), crossover=TwoPointCrossover(),
        mutation=BitflipMutation(), repair=MinMembersRepair(min_members),
        eliminate_duplicates=RowDuplicateElimination(), **extra)


@dataclass
class SelectionResult:
    """The efficient ensembles of a run (sorted by latency), their scores and the hypervolume history."""

    names: tuple[str, ...]
    members: np.ndarray
    latency: np.ndarray
    search_accuracy: np.ndarray
    model_latency: np.ndarray
    model_search_accuracy: np.ndarray
    criterion: str
    algorithm: str
    seed: int
    min_members: int
    reference: tuple[float, float]
    history: list[tuple[int, int, float, float]]
    seconds: float
    val_accuracy: np.ndarray | None = None
    model_val_accuracy: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hypervolume(self) -> float:
        """Final hypervolume of the archive (latency ms x error %)."""
        return self.history[-1][3] if self.history else float("nan")

    def member_names(self, i: int) -> list[str]:
        return [self.names[m] for m in np.flatnonzero(self.members[i])]

    def records(self) -> list[dict[str, Any]]:
        """One dict per ensemble: rank, size, members, latency and accuracies (fractions)."""
        out = []
        for i in range(len(self.members)):
            rec: dict[str, Any] = {"rank": i, "size": int(self.members[i].sum()),
                                   "latency_ms": float(self.latency[i]),
                                   "search_accuracy": float(self.search_accuracy[i])}
            if self.val_accuracy is not None:
                rec["val_accuracy"] = float(self.val_accuracy[i])
            rec["members"] = self.member_names(i)
            out.append(rec)
        return out

    def model_records(self) -> list[dict[str, Any]]:
        """One dict per single model: name, latency and accuracies (its own top-1)."""
        out = []
        for m, name in enumerate(self.names):
            rec: dict[str, Any] = {"model": name, "latency_ms": float(self.model_latency[m]),
                                   "search_accuracy": float(self.model_search_accuracy[m])}
            if self.model_val_accuracy is not None:
                rec["val_accuracy"] = float(self.model_val_accuracy[m])
            out.append(rec)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"criterion": self.criterion, "algorithm": self.algorithm, "seed": self.seed,
                "min_members": self.min_members, "seconds": self.seconds,
                "objectives": {"latency_ms": f"minimise ({self.criterion} of member latencies)",
                               "search_error_percent": "minimise (soft voting on the search tables)"},
                "hypervolume": self.hypervolume,
                "reference_point": {"latency_ms": self.reference[0], "search_error_percent": self.reference[1]},
                **self.extra, "ensembles": self.records(), "models": self.model_records()}

    def write(self, out_dir: str | Path) -> Path:
        """Write ``ensembles.json``, ``ensembles.csv``, ``models.csv`` and ``hypervolume.csv`` (atomically)."""
        out = Path(out_dir)
        atomic_write_json(out / "ensembles.json", self.to_json())
        rows = [{**r, "members": " ".join(r["members"])} for r in self.records()]
        atomic_write_csv(out / "ensembles.csv", rows)
        atomic_write_csv(out / "models.csv", self.model_records())
        ref = {"ref_latency_ms": self.reference[0], "ref_search_error_percent": self.reference[1]}
        atomic_write_csv(out / "hypervolume.csv", [
            {"generation": g, "evaluations": n, "hv": f"{hv:.6f}", "hv_archive": f"{hva:.6f}", **ref}
            for g, n, hv, hva in self.history])
        return out


def check_same_models(search: TopKTables, val: TopKTables) -> TopKTables:
    """``val`` reordered to the search tables' models; a model missing from either side is an error."""
    missing = [n for n in search.names if n not in val.names]
    extra = [n for n in val.names if n not in search.names]
    if missing or extra:
        raise DataError("search and validation tables must hold the same models; "
                        + (f"validation lacks {', '.join(missing)}" if missing else "")
                        + ("; " if missing and extra else "")
                        + (f"search lacks {', '.join(extra)}" if extra else ""))
    if search.k != val.k:
        raise DataError(f"search tables list top-{search.k} but validation tables top-{val.k}")
    index = {n: i for i, n in enumerate(val.names)}
    return val.select([index[n] for n in search.names])


def select_ensembles(*, tables: TopKTables, latency: np.ndarray, criterion: str = "max", population: int = 100,
                     generations: int = 2000, seed: int | None = 1, min_members: int = 1,
                     algorithm: str = "nsga2", val_tables: TopKTables | None = None, log_every: int = 100,
                     scorer: SoftVotingScorer | None = None, out_dir: str | Path | None = None) -> SelectionResult:
    """Run one OFA³ selection and return (and optionally write) the efficient ensembles.

    Args:
        tables: the search tables (held-out training subset) that guide the selection.
        latency: ``(models,)`` member latencies in ms, in the order of ``tables.names``.
        criterion: ``max`` (members run in parallel) or ``sum`` (one after another).
        population: population size (the most ensembles returned).
        generations: generations to run.
        seed: seeds pymoo's generator and the repair (``None``: drawn and logged).
        min_members: the minimum ensemble size K (1 allows single models).
        algorithm: a catalogue name: ``nsga2``, ``smsemoa``, ``spea2``, ``nsga3`` or ``agemoea``.
        val_tables: validation tables; the chosen ensembles are re-scored there.
        log_every: log a progress line every so many generations (0: never).
        scorer: a compiled scorer of ``tables`` to reuse (built when ``None``).
        out_dir: write ``ensembles.json``, ``ensembles.csv``, ``models.csv`` and ``hypervolume.csv`` there.
    """
    from pymoo.optimize import minimize

    algorithm = core_algorithms.canonical_algorithm(algorithm)
    M = tables.n_models
    latency = np.asarray(latency, dtype=float)
    if latency.shape != (M,):
        raise ValueError(f"latency has shape {latency.shape}; give one latency (ms) per model, ({M},)")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion={criterion!r}; use 'max' (parallel members) or 'sum' (sequential)")
    if generations < 1:
        raise ValueError(f"generations={generations} must be at least 1")
    if not 1 <= min_members <= M:
        raise ValueError(f"min_members={min_members} must be between 1 and the number of models ({M})")
    if seed is None:
        seed = int(np.random.default_rng().integers(2 ** 31))
        log.info("no seed given; drew seed %d", seed)
    if val_tables is not None:
        val_tables = check_same_models(tables, val_tables)
    algo = make_algorithm(algorithm, population, min_members)
    scorer = scorer if scorer is not None else SoftVotingScorer(tables)
    problem = EnsembleProblem(scorer, latency, criterion=criterion)
    full = np.ones((1, M), dtype=bool)
    reference = np.array([1.1 * float(ensemble_latency(full, latency, criterion=criterion)[0]), 100.0])
    recorder = HypervolumeRecorder(reference, log_every, generations, log)
    start = time.perf_counter()
    res = minimize(problem, algo, ("n_gen", generations), seed=int(seed), callback=recorder, verbose=False)
    seconds = time.perf_counter() - start
    X, F = res.pop.get("X").astype(bool), res.pop.get("F")
    keep = _front(F)
    members = X[keep]
    eye = np.eye(M, dtype=bool)
    result = SelectionResult(
        names=tables.names, members=members, latency=F[keep, 0], search_accuracy=1.0 - F[keep, 1] / 100.0,
        model_latency=latency, model_search_accuracy=scorer.accuracy(eye), criterion=criterion,
        algorithm=algorithm, seed=int(seed), min_members=min_members,
        reference=(float(reference[0]), float(reference[1])), history=recorder.rows, seconds=seconds,
        extra={"population": population, "generations": generations, "search_images": tables.n_images,
               "archive_size": len(recorder.archive)})
    if val_tables is not None:
        val = SoftVotingScorer(val_tables, cache_size=0)
        result.val_accuracy = val.accuracy(members)
        result.model_val_accuracy = val.accuracy(eye)
        result.extra["val_images"] = val_tables.n_images
    if out_dir is not None:
        result.write(out_dir)
    return result
