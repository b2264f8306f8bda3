"""The files a multi-objective tuner keeps in ``<experiment dir>/moo``, rewritten atomically each generation
and whenever no trial is running (so they are current when an experiment ends).

* ``pareto.json`` / ``pareto.csv``: parameters and objectives of the current Pareto front;
* ``history.csv``: every finished point (generation, status, failure reason, metrics, parameters);
* ``hypervolume.csv``: one row per generation, with the reference point in ``ref_<key>`` columns.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_write_csv, atomic_write_json
from ..constraints import Constraint
from ..pareto import Objectives

if TYPE_CHECKING:
    from ._moo import MultiObjectiveTuner, Record


def _number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MooFiles:
    """Writer of the tuner's output directory."""

    def __init__(self, directory: Path, objectives: Objectives, constraints: list[Constraint]) -> None:
        self.directory = Path(directory)
        self.objectives, self.constraints = objectives, constraints

    def _row(self, record: "Record") -> dict[str, Any]:
        row: dict[str, Any] = {"generation": record.generation, "parameter_id": record.parameter_id,
                               "status": record.status}
        for key in self.objectives.keys:
            row[key] = _number(record.metrics.get(key, math.nan))
        for c in self.constraints:
            if c.metric not in row:
                row[c.metric] = _number(record.metrics.get(c.metric, math.nan))
        row["feasible"] = record.status == "ok" and record.cv <= 0
        row["violation"] = record.cv if record.status == "ok" else None
        row["reason"] = record.reason
        row["parameters"] = json.dumps(record.params, sort_keys=True)
        return row

    def write(self, tuner: "MultiObjectiveTuner", front: list["Record"]) -> None:
        d = self.directory
        rows = [self._row(r) for r in front]
        atomic_write_json(d / "pareto.json", {
            "algorithm": tuner.algorithm_name, "generation": tuner.generation,
            "objectives": self.objectives.describe(), "constraints": [str(c) for c in self.constraints],
            "front": [{**{k: v for k, v in row.items() if k != "parameters"}, "parameters": r.params}
                      for row, r in zip(rows, front)]})
        params_cols = list(tuner.space.names) if tuner.space is not None else []
        atomic_write_csv(d / "pareto.csv", [{**row, **r.params} for row, r in zip(rows, front)],
                         [c for c in rows[0] if c != "parameters"] + params_cols if rows else None)
        atomic_write_csv(d / "history.csv", [self._row(r) for r in tuner.archive()])
        ref = tuner.reference
        ref_cols = {f"ref_{k}": (None if ref is None else v)
                    for k, v in zip(self.objectives.keys, self.objectives.values(ref).tolist()
                                    if ref is not None else [None] * len(self.objectives))}
        atomic_write_csv(d / "hypervolume.csv", [{**h, **ref_cols} for h in tuner.hv_history])
