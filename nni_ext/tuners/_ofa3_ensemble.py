"""OFA³ as an nnictl tuner: select efficient ensembles from the tables, then measure each one in a real trial.

On the first search space (or the first request) the tuner runs :func:`nni_ext.ensemble.select_ensembles`
once on the search tables and the member latencies (the table-driven estimate). Each
``generate_parameters`` then hands out one chosen ensemble as ``{"members": "[0, 3, 7]"}`` (a JSON
string of population indices: ``model_07`` is member 7 of the population the tables were written
from) and ``nni.NoMoreTrialError`` follows once every chosen ensemble is dispatched. The trial
(:mod:`nni_ext.trials.ofa3_ensemble_trial`) builds those members, runs real soft-voting inference
on the validation split and measures the ensemble's latency on its device, so the web UI shows
measured ensembles.

Search space: the parameters come from the tuner, not from the space, but NNI needs a search-space
file and this tuner checks that it declares ``members``. Give a one-entry choice::

    {"members": {"_type": "choice", "_value": ["chosen by the OFA3Ensemble tuner"]}}

Which ensembles are dispatched: with ``max_ensembles`` unset, every efficient ensemble of the front.
Otherwise ``order`` picks them: ``accuracy`` (default) takes the ``max_ensembles`` most accurate on
the search tables (ties: the faster first); ``spread`` takes ensembles evenly spaced along the front
from the fastest to the most accurate. Dispatch order: most accurate first for ``accuracy``, fastest first
for ``spread``.
When the front holds fewer than ``max_ensembles`` ensembles, it is topped up with the best of the
others (next non-dominated layers of the front's one-member-changed neighbours and random ensembles,
or of every ensemble when there are at most 4096), marked ``"efficient": false``, so exactly
``max_ensembles`` trials run (an error if fewer distinct ensembles of ``min_members`` exist).

Ending the experiment: NNI 3.0 reports DONE only once ``maxTrialNumber`` trials were submitted and
have ended; a tuner that runs out of parameters first leaves it in TUNER_NO_MORE_TRIAL (the web UI
shows it as still running; ``nnictl stop`` ends it). So set ``max_ensembles`` and give the config
``maxTrialNumber`` the same value: the tuner hands out exactly that many ensembles and the experiment
ends DONE. (With ``max_ensembles`` unset the front's size is unknown before the run: after the last
ensemble ``nni.NoMoreTrialError`` follows and the experiment waits in TUNER_NO_MORE_TRIAL.)

Validation tables (``val_tables``, the untouched validation split written by ``nni-ext ofa3 tables``
for the same population): the selection still runs on the search tables only, and ``order:
accuracy`` ranks by ``search_accuracy``, never by the validation accuracy (that would select on the
data the ensembles are judged on); each chosen ensemble carries its soft-voting ``val_accuracy`` from
those tables next to ``search_accuracy`` in ``dispatched.json``, to compare with the trial's measured
``default`` (equal when the tables keep every class and were written with the trial's calibration).

Progress is written atomically to ``<experiment dir>/ofa3/dispatched.json`` (or ``output_dir``): every
chosen ensemble with its estimate (``latency_ms``, ``search_accuracy``), its parameter id once
dispatched and the measured metrics once its trial reported; ``selection/`` there holds the
selection's own files (``ensembles.json``, ``hypervolume.csv``, ...). Results replayed by
``nnictl resume`` (``import_data``) mark their ensembles as measured, and those are not dispatched again.

Paths in classArgs: absolute, or relative to the tuner's ``codeDirectory`` (NNI 3.0 runs the tuner in
``<experiment dir>/log``, not where nnictl was started; see :func:`resolve_path`).

YAML (``configs/ofa3_ensemble_digits.yml``)::

    tuner:
      className: nni_ext.tuners.OFA3EnsembleTuner
      codeDirectory: .
      classArgs: {tables: runs/ofa3/search, val_tables: runs/ofa3/val, latency: runs/ofa3/latency.csv,
                  criterion: max, population: 20, generations: 50, min_members: 2, seed: 1, max_ensembles: 5}
    maxTrialNumber: 5                            # = max_ensembles: the experiment ends DONE
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from nni import NoMoreTrialError

from .._io import atomic_write_json
from ..core.archive import Record
from ..core.tuner import BaseTuner, check_choice, check_int, register_tuner, tuner_output_dir
from ..ensemble.members import PARAM, member_index, parse_members

logger = logging.getLogger(__name__)
ORDERS = ("accuracy", "spread")


def resolve_path(path: str | os.PathLike) -> Path:
    """A classArgs path: absolute or existing as given, else relative to the tuner's ``codeDirectory``.

    NNI 3.0 starts the dispatcher in ``<experiment dir>/log``, so relative paths would not resolve from the
    directory nnictl was started in; ``create_customized_class_instance`` appends ``codeDirectory`` to
    ``sys.path`` just before building the tuner, which is where relative paths are looked up next.
    """
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    code_dir = sys.path[-1] if sys.path and isinstance(sys.path[-1], str) else ""
    if os.environ.get("NNI_LOG_DIRECTORY") and code_dir and (Path(code_dir) / p).exists():
        return Path(code_dir) / p
    return p


ENUMERATE_UP_TO = 4096


def near_efficient(tables: Any, latency: np.ndarray, front: np.ndarray, count: int, *, criterion: str,
                   min_members: int, seed: int | None) -> np.ndarray:
    """``count`` membership rows not in ``front``, the best of the rest by (non-dominated layer, accuracy, latency).

    Candidates: every ensemble of at least ``min_members`` models when there are at most
    :data:`ENUMERATE_UP_TO`, else the front's neighbours (one model added or dropped) and random ensembles.
    Scored on the search tables only.
    """
    from ..ensemble import SoftVotingScorer, ensemble_latency
    from ..pareto import constrained_ranks

    M = tables.n_models
    rng = np.random.default_rng(seed)
    if sum(math.comb(M, k) for k in range(min_members, M + 1)) <= ENUMERATE_UP_TO:
        codes = np.arange(2 ** M, dtype=np.int64)
        cand = ((codes[:, None] >> np.arange(M)) & 1).astype(bool)
    else:
        flips = (front[:, None, :] ^ np.eye(M, dtype=bool)[None]).reshape(-1, M)
        rand = rng.random((max(64, 8 * count), M)) < rng.uniform(0.1, 0.9, (max(64, 8 * count), 1))
        cand = np.concatenate([flips, rand])
    cand = cand[cand.sum(axis=1) >= min_members]
    taken = {r.tobytes() for r in np.asarray(front, dtype=bool)}
    _, first = np.unique(cand, axis=0, return_index=True)
    cand = cand[np.sort(first)]
    cand = cand[[r.tobytes() not in taken for r in cand]]
    if len(cand) < count:
        raise ValueError(f"only {len(cand)} further ensembles of at least {min_members} models were found to top up "
                         f"the front with {count}; lower max_ensembles (and maxTrialNumber)")
    acc = SoftVotingScorer(tables, cache_size=0).accuracy(cand)
    lat = ensemble_latency(cand, latency, criterion=criterion)
    ranks = constrained_ranks(np.column_stack([lat, 1.0 - acc]))
    order = np.lexsort((lat, -acc, ranks))
    return cand[order[:count]]


@register_tuner("OFA3Ensemble")
class OFA3EnsembleTuner(BaseTuner):
    """Dispatch the efficient ensembles of a table-driven OFA³ selection as trials.

    Args:
        tables: folder of the search tables (``model_XX_class.csv`` / ``model_XX_prob.csv``).
        latency: CSV ``model,latency_ms`` of every model of the tables.
        criterion: ``max`` (members run in parallel) or ``sum`` (one after another).
        population: the selection's population size (the most ensembles on the front).
        generations: the selection's generations.
        min_members: the minimum ensemble size K.
        seed: seed of the selection (drawn and logged when ``None``).
        max_ensembles: how many ensembles to dispatch (default all of the front); set the config's
            ``maxTrialNumber`` to it so that NNI ends the experiment DONE.
        order: ``accuracy`` (most accurate first) or ``spread`` (evenly along the front); used with ``max_ensembles``.
        algorithm: ``nsga2``, ``smsemoa`` or ``spea2``.
        val_tables: folder of the validation tables of the same models: each chosen ensemble gets its
            ``val_accuracy`` there (reported, never used to choose).
        output_dir: where ``dispatched.json`` goes (default ``<experiment dir>/ofa3``; none outside nnictl).
    """

    def __init__(self, *, tables: str, latency: str, criterion: str = "max", population: int = 100,
                 generations: int = 200, min_members: int = 1, seed: int | None = 1,
                 max_ensembles: int | None = None, order: str = "accuracy", algorithm: str = "nsga2",
                 val_tables: str | None = None, output_dir: str | None = None) -> None:
        if criterion not in ("max", "sum"):
            raise ValueError(f"criterion={criterion!r}; use 'max' (parallel members) or 'sum' (sequential)")
        check_choice("order", order, ORDERS)
        check_int("max_ensembles", max_ensembles, 1, optional=True)
        for name, value in (("population", population), ("generations", generations), ("min_members", min_members)):
            check_int(name, value, 1)
        for name, value in (("tables", tables), ("latency", latency)):
            if not isinstance(value, (str, os.PathLike)):
                raise ValueError(f"{name}={value!r} must be a path (a folder of tables / a latency CSV)")
        from ..core.algorithms import canonical_algorithm

        algorithm = canonical_algorithm(algorithm)
        super().__init__(seed=seed, objectives={"default": "maximize", f"latency_{criterion}": "minimize"},
                         output_dir=tuner_output_dir(output_dir, "ofa3"))
        self.tables_dir, self.latency_path = resolve_path(tables), resolve_path(latency)
        self.val_dir = resolve_path(val_tables) if val_tables else None
        self.criterion, self.population, self.generations = criterion, population, generations
        self.min_members, self.max_ensembles, self.order, self.algorithm = min_members, max_ensembles, order, algorithm
        self.out = self.output_dir
        self.ensembles: list[dict[str, Any]] | None = None
        self.selection: Any = None
        self._next = 0

    #: the parameter is a JSON list of members, not one of the declared choice's values
    check_foreign_in_space = False
    supported_types = ("choice",)

    @classmethod
    def contract_case(cls, workdir: Any) -> dict[str, Any]:
        """What the tuner contract tests run: tables of 6 synthetic models written to ``workdir``."""
        from ..ensemble.tables import synthetic_latency, synthetic_tables, write_latency, write_tables

        tables = synthetic_tables(models=6, images=200, classes=10, seed=0)
        write_tables(tables, Path(workdir) / "tables")
        write_latency(Path(workdir) / "latency.csv", tables.names, synthetic_latency(tables, seed=0))
        return {"class_args": {"tables": str(Path(workdir) / "tables"), "latency": str(Path(workdir) / "latency.csv"),
                               "population": 8, "generations": 5, "min_members": 1},
                "search_space": {PARAM: {"_type": "choice", "_value": ["chosen by the OFA3Ensemble tuner"]}},
                "contains": lambda p: set(p) == {PARAM} and all(0 <= m < 6 for m in parse_members(p[PARAM])),
                "report": lambda p, i: {"default": 0.5 + 0.01 * (i % 7), "latency_max": 1.0 + i % 3}}

    # ------------------------------------------------------------ selection
    def select(self) -> list[dict[str, Any]]:
        """Run the selection once; the chosen ensembles in dispatch order."""
        if self.ensembles is not None:
            return self.ensembles
        from ..ensemble import read_latency, read_tables, select_ensembles
        from ..ensemble.selection import check_same_models

        tables = read_tables(self.tables_dir)
        latency = read_latency(self.latency_path, tables.names)
        if self.min_members > tables.n_models:
            raise ValueError(f"min_members={self.min_members} exceeds the {tables.n_models} models of "
                             f"{self.tables_dir}")
        feasible = sum(math.comb(tables.n_models, k) for k in range(self.min_members, tables.n_models + 1))
        if self.max_ensembles is not None and self.max_ensembles > feasible:
            raise ValueError(f"max_ensembles={self.max_ensembles}, but only {feasible} distinct ensembles of at least "
                             f"{self.min_members} of the {tables.n_models} models exist; lower max_ensembles (and "
                             "maxTrialNumber)")
        val = check_same_models(tables, read_tables(self.val_dir)) if self.val_dir is not None else None
        res = select_ensembles(tables=tables, latency=latency, criterion=self.criterion, population=self.population,
                               generations=self.generations, seed=self.seed, min_members=self.min_members,
                               algorithm=self.algorithm, val_tables=val, log_every=0,
                               out_dir=self.out / "selection" if self.out else None)
        self.selection = res
        n = len(res.members)
        by_accuracy = sorted(range(n), key=lambda i: (-res.search_accuracy[i], res.latency[i]))
        if self.max_ensembles is None or self.max_ensembles >= n:
            picks = list(range(n)) if self.order == "spread" else by_accuracy
        elif self.order == "spread":  # front is sorted by latency: evenly spaced from fastest to most accurate
            picks = sorted({int(round(x)) for x in np.linspace(0, n - 1, self.max_ensembles)})
        else:
            picks = by_accuracy[:self.max_ensembles]
        rows = [res.members[i] for i in picks]
        lat, acc = [float(res.latency[i]) for i in picks], [float(res.search_accuracy[i]) for i in picks]
        vacc = [float(res.val_accuracy[i]) for i in picks] if res.val_accuracy is not None else None
        efficient = len(rows)
        if self.max_ensembles is not None and self.max_ensembles > n:
            extra = near_efficient(tables, latency, res.members, self.max_ensembles - n, criterion=self.criterion,
                                   min_members=self.min_members, seed=self.seed)
            from ..ensemble import SoftVotingScorer, ensemble_latency

            rows += list(extra)
            lat += [float(v) for v in ensemble_latency(extra, latency, criterion=self.criterion)]
            acc += [float(v) for v in SoftVotingScorer(tables, cache_size=0).accuracy(extra)]
            if vacc is not None:
                vacc += [float(v) for v in SoftVotingScorer(val, cache_size=0).accuracy(extra)]
            logger.info("OFA3Ensemble: the front holds %d ensembles, topped up with %d near-efficient ones to "
                        "max_ensembles=%d", n, len(extra), self.max_ensembles)
        self.ensembles = []
        for rank, row in enumerate(rows):
            cols = np.flatnonzero(row)
            members = sorted(member_index(res.names[c], int(c)) for c in cols)
            entry = {"rank": rank, "front_index": int(picks[rank]) if rank < efficient else None,
                     "efficient": rank < efficient, "members": members, "names": [res.names[c] for c in cols],
                     "size": len(members), "latency_ms": lat[rank], "search_accuracy": acc[rank]}
            if vacc is not None:
                entry["val_accuracy"] = vacc[rank]
            self.ensembles.append({**entry, "parameter_id": None, "measured": None})
        logger.info("OFA3Ensemble: tables %s, latency %s%s", self.tables_dir.resolve(), self.latency_path.resolve(),
                    f", validation tables {self.val_dir.resolve()}" if self.val_dir is not None else "")
        logger.info("OFA3Ensemble: %d efficient ensembles, dispatching %d (order: %s)", n, len(self.ensembles),
                    self.order)
        self._write()
        return self.ensembles

    def _find(self, members: Any) -> dict[str, Any] | None:
        try:
            key = parse_members(members)
        except ValueError:
            return None
        return next((e for e in self.select() if e["members"] == key), None)

    def _write(self) -> None:
        if self.out is None or self.ensembles is None:
            return
        atomic_write_json(self.out / "dispatched.json", {
            "tables": str(self.tables_dir), "latency": str(self.latency_path),
            "val_tables": str(self.val_dir) if self.val_dir is not None else None, "criterion": self.criterion,
            "min_members": self.min_members, "seed": self.seed, "order": self.order,
            "max_ensembles": self.max_ensembles,
            "front_size": int(len(self.selection.members)) if self.selection is not None else None,
            "dispatched": sum(e["parameter_id"] is not None for e in self.ensembles),
            "measured": sum(e["measured"] is not None for e in self.ensembles),
            "ensembles": self.ensembles})

    # ------------------------------------------------------------ hooks
    def _on_search_space(self) -> None:
        assert self.space is not None
        if PARAM not in self.space.names:
            raise ValueError(f"the search space must declare {PARAM!r}, e.g. "
                             '{"members": {"_type": "choice", "_value": ["chosen by the OFA3Ensemble tuner"]}}')
        self.select()

    def _ask(self, parameter_id: int) -> dict[str, Any]:
        ensembles = self.select()
        while self._next < len(ensembles) and (ensembles[self._next]["parameter_id"] is not None
                                               or ensembles[self._next]["measured"] is not None):
            self._next += 1
        if self._next >= len(ensembles):
            raise NoMoreTrialError(f"all {len(ensembles)} chosen ensembles have been dispatched")
        ens = ensembles[self._next]
        ens["parameter_id"] = int(parameter_id)
        self._next += 1
        self._write()
        return {PARAM: json.dumps(ens["members"])}

    def _tell(self, record: Record) -> None:
        if not record.metrics:  # ended without a result: it may be dispatched again after a resume
            return
        ens = self._find(record.params.get(PARAM))
        if ens is None:
            logger.warning("OFA3Ensemble: a result for members %r, not a chosen ensemble", record.params.get(PARAM))
            return
        ens["measured"] = {k: (v if np.isfinite(v) else None) for k, v in record.metrics.items()}

    def _write_files(self) -> None:
        self._write()


__all__ = ["OFA3EnsembleTuner", "member_index", "near_efficient", "parse_members"]
