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
from the fastest to the most accurate. Dispatch order: most accurate first for ``accuracy``, fastest first for ``spread``.

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
      classArgs: {tables: runs/ofa3/search, latency: runs/ofa3/latency.csv, criterion: max,
                  population: 20, generations: 50, min_members: 2, seed: 1}
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from nni import NoMoreTrialError

from .._io import atomic_write_json
from .base import BaseTuner, register_tuner

logger = logging.getLogger(__name__)
ORDERS = ("accuracy", "spread")
PARAM = "members"


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


def member_index(name: str, position: int) -> int:
    """The population index of a table model: the number of ``model_07``, else its position in the tables."""
    m = re.fullmatch(r"model_(\d+)", name)
    return int(m.group(1)) if m else position


def parse_members(value: Any) -> list[int]:
    """Population indices from ``"[0, 3, 7]"``, ``"0,3,7"`` or a list; sorted, distinct, non-negative."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"members {text!r}: give population indices as '[0, 3, 7]' or '0,3,7'") from None
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"members {value!r}: give a non-empty list of population indices")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"members {list(value)!r}: {v!r} is not a population index (an integer >= 0)")
        out.append(int(v))
    if len(set(out)) != len(out):
        raise ValueError(f"members {out}: an index is repeated")
    return sorted(out)


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
        max_ensembles: how many of the efficient ensembles to dispatch (default all).
        order: ``accuracy`` (most accurate first) or ``spread`` (evenly along the front); used with ``max_ensembles``.
        algorithm: ``nsga2``, ``smsemoa`` or ``spea2``.
        output_dir: where ``dispatched.json`` goes (default ``<experiment dir>/ofa3``; none outside nnictl).
    """

    def __init__(self, *, tables: str, latency: str, criterion: str = "max", population: int = 100,
                 generations: int = 200, min_members: int = 1, seed: int | None = 1,
                 max_ensembles: int | None = None, order: str = "accuracy", algorithm: str = "nsga2",
                 output_dir: str | None = None) -> None:
        super().__init__(seed=seed)
        if criterion not in ("max", "sum"):
            raise ValueError(f"criterion={criterion!r}; use 'max' (parallel members) or 'sum' (sequential)")
        if order not in ORDERS:
            raise ValueError(f"order={order!r}; use one of {', '.join(ORDERS)}")
        if max_ensembles is not None and (isinstance(max_ensembles, bool) or not isinstance(max_ensembles, int)
                                          or max_ensembles < 1):
            raise ValueError(f"max_ensembles={max_ensembles!r} must be a positive integer or left out")
        for name, value in (("population", population), ("generations", generations), ("min_members", min_members)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        self.tables_dir, self.latency_path = resolve_path(tables), resolve_path(latency)
        self.criterion, self.population, self.generations = criterion, population, generations
        self.min_members, self.max_ensembles, self.order, self.algorithm = min_members, max_ensembles, order, algorithm
        log_dir = os.environ.get("NNI_LOG_DIRECTORY")  # <experiment dir>/log under NNI 3.0's dispatcher
        self.out = Path(output_dir) if output_dir else Path(log_dir).parent / "ofa3" if log_dir else None
        self.ensembles: list[dict[str, Any]] | None = None
        self.selection: Any = None
        self._next = 0

    # ------------------------------------------------------------ selection
    def select(self) -> list[dict[str, Any]]:
        """Run the selection once; the chosen ensembles in dispatch order."""
        if self.ensembles is not None:
            return self.ensembles
        from ..ensemble import read_latency, read_tables, select_ensembles

        tables = read_tables(self.tables_dir)
        latency = read_latency(self.latency_path, tables.names)
        if self.min_members > tables.n_models:
            raise ValueError(f"min_members={self.min_members} exceeds the {tables.n_models} models of {self.tables_dir}")
        res = select_ensembles(tables=tables, latency=latency, criterion=self.criterion, population=self.population,
                               generations=self.generations, seed=self.seed, min_members=self.min_members,
                               algorithm=self.algorithm, log_every=0,
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
        self.ensembles = []
        for rank, i in enumerate(picks):
            cols = np.flatnonzero(res.members[i])
            members = sorted(member_index(res.names[c], int(c)) for c in cols)
            self.ensembles.append({"rank": rank, "front_index": int(i), "members": members,
                                   "names": [res.names[c] for c in cols], "size": len(members),
                                   "latency_ms": float(res.latency[i]),
                                   "search_accuracy": float(res.search_accuracy[i]),
                                   "parameter_id": None, "measured": None})
        logger.info("OFA3Ensemble: tables %s, latency %s", self.tables_dir.resolve(), self.latency_path.resolve())
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
            "tables": str(self.tables_dir), "latency": str(self.latency_path), "criterion": self.criterion,
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

    def _tell(self, parameters: dict[str, Any], metrics: dict[str, float]) -> None:
        super()._tell(parameters, metrics)
        ens = self._find(parameters.get(PARAM))
        if ens is None:
            logger.warning("OFA3Ensemble: a result for members %r, not a chosen ensemble", parameters.get(PARAM))
            return
        ens["measured"] = {k: (v if np.isfinite(v) else None) for k, v in metrics.items()}
        self._write()


__all__ = ["OFA3EnsembleTuner", "member_index", "parse_members"]
