"""Every tuner's results in one shape: ``Record``, the ``Archive`` (front, hypervolume history, ONE
reference-point rule) and ``ArchiveFiles`` (one schema of the files, written and read back).

**The reference-point rule.** The hypervolume of an experiment is measured against one point, fixed once:

* the ``reference_point`` the user gives (``{key: value}`` in the metrics' units), else
* the nadir of the *feasible* results known once ``reference_after`` results have finished (a tuner's
  first generation: ``population_size``), pushed out by 10 % of their range (of the magnitude where the
  range is 0). Before that the hypervolume is undefined (empty cells).

It is stored in ``archive.json`` and read back on resume and by ``nni-ext report``, so the tuner's
``hypervolume.csv`` and the report of the same experiment are the same numbers.

**The files** (``ArchiveFiles``, rewritten atomically after every result, so they are complete when an
experiment ends however it ends):

* ``archive.json``: objectives, constraints, reference point, ``reference_after``, counts;
* ``history.csv``: every finished trial in arrival order (``index, parameter_id, generation, status,
  reason, feasible, violation``, one column per metric, ``parameters`` as JSON);
* ``pareto.json`` / ``pareto.csv``: the current front (feasible first, constrained domination);
* ``hypervolume.csv``: one row per finished trial (``evaluated, generation, succeeded, failed,
  front_size, hypervolume`` and the reference point as ``ref_<key>``).

**Derived objectives** (:mod:`nni_ext.core.derived`): with ``top1_robust`` among the objectives, every
successful result is rescored with the current ``alpha_norm`` whenever a result arrives (stored in
``archive.json``), and the front is rebuilt from the rescored values.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .constraints import Constraint, parse_constraints
from .derived import DERIVED_KEYS, TOP1_ROBUST_INPUTS, top1_robust
from .metrics import ARCH_KEY, canonical, decode_report, decode_values, is_number
from .pareto import Objectives, default_reference_point, hypervolume, non_dominated

FILES = ("archive.json", "history.csv", "pareto.json", "pareto.csv", "hypervolume.csv")


class Status(str, Enum):
    """Where a record stands: handed out and not ended, ended with usable metrics, or failed."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def params_key(params: Mapping[str, Any]) -> str:
    """The one "already seen" key of a parameter dict (canonical JSON)."""
    return json.dumps(dict(params), sort_keys=True, default=str)


@dataclass(eq=False)
class Record:
    """One proposed or finished trial.

    ``metrics`` holds the numeric report (canonical keys), ``extra`` its other scalar entries (e.g. a
    genotype string), ``info`` what the tuner computed itself (e.g. a cost from a lookup table).
    """

    params: dict[str, Any]
    parameter_id: int | None = None
    generation: int | None = None
    status: Status = Status.PENDING
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    dispatched: bool = True  # False: imported on resume, or a result this tuner did not hand out
    restored: bool = False  # read back from the archive's own history.csv (on resume)
    F: np.ndarray | None = None  # minimisation objectives, set when succeeded
    G: np.ndarray | None = None  # constraint violations (0 = satisfied), set when succeeded
    _cv: float | None = field(default=None, repr=False)
    _key: str | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        """The record's "already seen" key (cached: the parameters of a record do not change)."""
        if self._key is None:
            self._key = params_key(self.params)
        return self._key

    @property
    def cv(self) -> float:
        """Total constraint violation (0 when feasible; ``inf`` unless succeeded)."""
        if self.status is not Status.SUCCEEDED:
            return math.inf
        if self._cv is None:
            self._cv = float(self.G.sum()) if self.G is not None and len(self.G) else 0.0
        return self._cv

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCEEDED

    @property
    def feasible(self) -> bool:
        return self.ok and self.cv <= 0

    def value(self, key: str) -> float:
        """A metric of the record (NaN when missing)."""
        return float(self.metrics.get(key, math.nan))


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class Archive:
    """The results of one search: records in arrival order, "already seen", front and hypervolume history.

    Args:
        objectives: what is optimised (``{"default": "maximize", "flops": "minimize"}`` or :class:`Objectives`).
        constraints: ``{metric: "<= bound"}`` or parsed constraints; constrained domination as pymoo's.
        reference_point: ``{key: value}`` in the metrics' units; else the rule of this module.
        reference_after: how many finished results fix the default reference point (at least 1).
    """

    def __init__(self, objectives: Objectives | Mapping[str, Any] | str,
                 constraints: Sequence[Constraint] | Mapping[str, Any] | None = None, *,
                 reference_point: Mapping[str, float] | None = None, reference_after: int = 1) -> None:
        self.objectives = objectives if isinstance(objectives, Objectives) else Objectives.parse(objectives)
        self.constraints: list[Constraint] = (list(constraints) if isinstance(constraints, (list, tuple))
                                              else parse_constraints(constraints))  # type: ignore[arg-type]
        if isinstance(reference_after, bool) or not isinstance(reference_after, int) or reference_after < 1:
            raise ValueError(f"reference_after={reference_after!r} must be an integer >= 1")
        self.reference_after = reference_after
        self.reference: np.ndarray | None = None
        self.reference_given = reference_point is not None
        #: how many results had finished when the reference point was fixed (0: given)
        self.reference_fixed_at: int | None = None
        self._stored: tuple[np.ndarray, int] | None = None  # a reference read back, and when it was fixed
        if reference_point is not None:
            self.reference = self.reference_from_mapping(reference_point)
            self.reference_fixed_at = 0
        self.records: list[Record] = []  # every record, in the order proposed or received
        self.finished: list[Record] = []  # ended records, in the order they ended
        self._pending: dict[int, Record] = {}
        self._by_id: dict[int, Record] = {}
        self._seen: set[str] = set()
        self._front: list[Record] = []
        self._front_new: list[Record] = []
        self._front_F = np.zeros((0, len(self.objectives)))  # the front's objectives and violations, as arrays
        self._front_cv = np.zeros(0)
        self._hv: float | None = None
        self._hv_stale = True
        self.history: list[dict[str, Any]] = []  # one hypervolume row per finished record
        self._n_ok = 0  # successful records so far (the history's running count)
        self.derived = [k for k in self.objectives.keys if k in DERIVED_KEYS]
        #: FlatNAS's normaliser of ``top1_robust`` over the results so far (``None``: not derived / no result)
        self.alpha_norm: float | None = None

    # ------------------------------------------------------------------ reference point
    def reference_from_mapping(self, reference_point: Mapping[str, float]) -> np.ndarray:
        """A ``{key: value}`` reference point (metrics' units) as a minimisation vector; names what is missing."""
        if not isinstance(reference_point, Mapping):
            raise ValueError(f"reference_point={reference_point!r} must be a mapping {{objective: value}}")
        given = {canonical(str(k)): v for k, v in reference_point.items()}
        missing = [k for k in self.objectives.keys if k not in given]
        if missing:
            raise ValueError(f"reference_point lacks objective(s) {missing}; give a value for every objective")
        bad = [k for k in self.objectives.keys if not is_number(given[k])]
        if bad:
            raise ValueError(f"reference_point[{bad[0]!r}]={given[bad[0]]!r} must be a number")
        return np.array([float(given[k]) for k in self.objectives.keys]) * self.objectives.sign

    def reference_mapping(self) -> dict[str, float] | None:
        """The reference point in the metrics' units (``None`` until fixed)."""
        if self.reference is None:
            return None
        return dict(zip(self.objectives.keys, self.objectives.values(self.reference).tolist()))

    def restore_reference(self, reference_point: Mapping[str, float], fixed_at: int | None) -> None:
        """Use a stored reference point (resume, report) from the moment it was fixed on (``fixed_at`` results)."""
        vector = self.reference_from_mapping(reference_point)
        if not fixed_at or len(self.finished) >= fixed_at:
            self.reference, self.reference_fixed_at, self._hv_stale = vector, int(fixed_at or 0), True
        else:
            self._stored = (vector, int(fixed_at))

    def _maybe_fix_reference(self) -> None:
        if self.reference is not None:
            return
        if self._stored is not None:
            if len(self.finished) >= self._stored[1]:
                self.reference, self.reference_fixed_at = self._stored[0], self._stored[1]
                self._stored, self._hv_stale = None, True
            return
        if len(self.finished) < self.reference_after:
            return
        feasible = [r.F for r in self.finished if r.feasible]
        if feasible:
            self.reference = default_reference_point(np.array(feasible))
            self.reference_fixed_at, self._hv_stale = len(self.finished), True

    # ------------------------------------------------------------------ adding
    def seen(self, params: Mapping[str, Any]) -> bool:
        """Whether these parameters were proposed, imported or received before."""
        return params_key(params) in self._seen

    def mark_seen(self, params: Mapping[str, Any]) -> None:
        """Count parameters as seen without a record (e.g. queued candidates)."""
        self._seen.add(params_key(params))

    def propose(self, params: Mapping[str, Any], parameter_id: int | None, *, generation: int | None = None,
                **info: Any) -> Record:
        """A pending record for parameters handed out under ``parameter_id``."""
        record = Record(dict(params), parameter_id, generation, info=dict(info))
        self.records.append(record)
        self._seen.add(record.key)
        if parameter_id is not None:
            self._pending[parameter_id] = record
            self._by_id[parameter_id] = record
        return record

    def by_id(self, parameter_id: int) -> Record | None:
        """The record handed out under ``parameter_id`` (pending or finished), if any."""
        return self._by_id.get(parameter_id)

    def withdraw(self, parameter_id: int) -> None:
        """Forget a pending record that never reached a trial (e.g. its dispatch failed)."""
        record = self._pending.pop(parameter_id, None)
        if record is not None:
            self._by_id.pop(parameter_id, None)
            self.records.remove(record)
            if not any(r.key == record.key for r in self.records):
                self._seen.discard(record.key)

    def pending(self, parameter_id: int) -> Record | None:
        """The pending record of ``parameter_id`` (``None`` if it has ended or was never handed out here)."""
        return self._pending.get(parameter_id)

    def running(self) -> list[Record]:
        """Records handed out whose trial has not ended."""
        return list(self._pending.values())

    def finish(self, record: Record, value: Any) -> Record:
        """Give a pending record its reported result (any form a trial reports); failed if unusable."""
        metrics = decode_report(value)
        values = decode_values(value) or {}
        record.metrics = metrics
        record.extra = {k: v for k, v in values.items() if k != ARCH_KEY and isinstance(v, str)}
        if self.derived:
            missing = [k for k in TOP1_ROBUST_INPUTS if not math.isfinite(metrics.get(k, math.nan))]
            if missing:
                return self.fail(record, f"top1_robust needs the trial to report {' and '.join(missing)}")
            metrics.pop("top1_robust", None)  # always the tuner's, never a trial's
            metrics["top1_robust"] = math.nan  # set by _rescore below
        F = self.objectives.vector(metrics)
        bad = [k for k, v in zip(self.objectives.keys, F) if not math.isfinite(v) and k not in self.derived]
        bad += [c.metric for c in self.constraints if not math.isfinite(metrics.get(c.metric, math.nan))
                and c.metric not in bad]
        if bad:
            return self.fail(record, f"metric(s) {', '.join(bad)} missing or not finite")
        record.F = F
        record.G = np.array([c.violation(metrics[c.metric]) for c in self.constraints], dtype=float)
        record._cv = None
        record.status = Status.SUCCEEDED
        self._front_new.append(record)
        self._hv_stale = True
        if self.derived:
            self._rescore()
        self._ended(record)
        return record

    def _rescore(self) -> None:
        """Recompute ``top1_robust`` of every successful result with the current ``alpha_norm``; rebuild the front."""
        ok = [r for r in self.records if r.ok]
        err = np.array([1.0 - r.metrics["default"] for r in ok])
        values, self.alpha_norm = top1_robust(err, np.array([r.metrics["robustness"] for r in ok]))
        i = self.objectives.keys.index("top1_robust")
        for r, v in zip(ok, values):
            r.metrics["top1_robust"] = float(v)
            r.F = np.array(r.F, dtype=float)
            r.F[i] = float(v)  # minimised: the vocabulary's sense
        self._front, self._front_new = [], ok
        self._front_F, self._front_cv = np.zeros((0, len(self.objectives))), np.zeros(0)
        self._hv_stale = True

    def fail(self, record: Record, reason: str) -> Record:
        """Record that a trial ended without a usable result."""
        record.status, record.reason = Status.FAILED, reason
        record.F = record.G = record._cv = None
        self._ended(record)
        return record

    def revive(self, record: Record, value: Any) -> Record:
        """Give a failed record the result that came after all; it moves to the end of :attr:`finished`.

        NNI can report a trial's end before its result, or (microsoft/nni#5726) the end of another trial under
        its parameter id. The failure's hypervolume row goes; the rows after it count one evaluation and one
        failure less, as if the failure had never been recorded.
        """
        if record.status is not Status.FAILED:
            raise ValueError(f"only a failed record can be revived; this one is {record.status.value}")
        index = next(i for i, r in enumerate(self.finished) if r is record)
        del self.finished[index]
        del self.history[index]
        for row in self.history[index:]:
            row["evaluated"] -= 1
            row["failed"] -= 1
        record.status, record.reason = Status.PENDING, ""
        return self.finish(record, value)

    def add(self, params: Mapping[str, Any], value: Any, *, parameter_id: int | None = None,
            generation: int | None = None, dispatched: bool = False, **info: Any) -> Record:
        """A finished result in one step (imported on resume, or one this tuner did not hand out)."""
        record = Record(dict(params), parameter_id, generation, info=dict(info), dispatched=dispatched)
        self.records.append(record)
        self._seen.add(record.key)
        return self.finish(record, value)

    def _ended(self, record: Record) -> None:
        if record.parameter_id is not None and self._pending.get(record.parameter_id) is record:
            del self._pending[record.parameter_id]
        self.finished.append(record)
        self._maybe_fix_reference()
        self.history.append(self._row(record))

    def _row(self, record: Record) -> dict[str, Any]:
        self.front()
        front = self._front
        self._n_ok += record.ok
        succeeded = self._n_ok
        return {"evaluated": len(self.finished), "generation": record.generation, "succeeded": succeeded,
                "failed": len(self.finished) - succeeded, "front_size": len(front), "hypervolume": self.hypervolume()}

    def set_generation(self, record: Record, generation: int | None) -> None:
        """Re-assign a finished record's generation (on resume), in its hypervolume row too."""
        record.generation = generation
        for i, r in enumerate(self.finished):
            if r is record:
                self.history[i]["generation"] = generation

    # ------------------------------------------------------------------ reading
    def succeeded(self) -> list[Record]:
        return [r for r in self.finished if r.ok]

    def failed(self) -> list[Record]:
        return [r for r in self.finished if r.status is Status.FAILED]

    def front(self) -> list[Record]:
        """The current first front of all successful results (constrained domination), kept incrementally.

        The first front of a set equals the first front of (the old front ∪ the new results), because
        constrained domination is transitive.
        """
        if self._front_new:
            m = len(self.objectives)
            new_F = np.array([r.F for r in self._front_new], dtype=float).reshape(-1, m)
            new_cv = np.array([r.cv for r in self._front_new], dtype=float)
            pool = self._front + self._front_new
            F, cv = np.vstack([self._front_F, new_F]), np.concatenate([self._front_cv, new_cv])
            keep = non_dominated(F, cv)
            self._front, self._front_new = [pool[i] for i in keep], []
            self._front_F, self._front_cv = F[keep], cv[keep]
        return list(self._front)

    def hypervolume(self) -> float | None:
        """Hypervolume of the feasible front (``None`` while the reference point is not fixed)."""
        if self.reference is None:
            return None
        if self._hv_stale or self._hv is None:
            self.front()
            self._hv, self._hv_stale = hypervolume(self._front_F[self._front_cv <= 0], self.reference), False
        return self._hv

    def best(self, key: str | None = None) -> Record | None:
        """The feasible record best in objective ``key`` (the first objective by default)."""
        key = canonical(key or self.objectives.keys[0])
        i = self.objectives.keys.index(key)
        pool = [r for r in self.finished if r.feasible]
        return min(pool, key=lambda r: float(r.F[i])) if pool else None  # type: ignore[index]

    def describe(self) -> dict[str, Any]:
        """What ``archive.json`` holds."""
        return {"objectives": self.objectives.describe(), "constraints": [str(c) for c in self.constraints],
                "reference_point": self.reference_mapping(), "reference_given": self.reference_given,
                "reference_after": self.reference_after, "reference_fixed_at": self.reference_fixed_at,
                "evaluated": len(self.finished),
                "succeeded": len(self.succeeded()), "failed": len(self.failed()), "running": len(self._pending),
                "front_size": len(self.front()), "hypervolume": self.hypervolume(),
                **({"alpha_norm": self.alpha_norm} if self.derived else {})}


# ---------------------------------------------------------------------------- files
def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


class ArchiveFiles:
    """The one schema of a tuner's archive files in ``directory``: write a snapshot, read it back."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def exists(self) -> bool:
        return (self.directory / "archive.json").is_file() and (self.directory / "history.csv").is_file()

    def _metric_columns(self, archive: Archive) -> list[str]:
        keys = list(archive.objectives.keys)
        keys += [c.metric for c in archive.constraints if c.metric not in keys]
        others = sorted({k for r in archive.finished for k in r.metrics} - set(keys))
        return keys + others

    def history_rows(self, archive: Archive) -> tuple[list[dict[str, Any]], list[str]]:
        metrics = self._metric_columns(archive)
        info = sorted({k for r in archive.finished for k in r.info})
        extra = sorted({k for r in archive.finished for k in r.extra} - set(metrics) - set(info))
        rows = []
        for i, r in enumerate(archive.finished):
            row: dict[str, Any] = {"index": i, "parameter_id": r.parameter_id, "generation": r.generation,
                                   "status": r.status.value, "reason": r.reason,
                                   "feasible": r.feasible, "violation": r.cv if r.ok else None}
            row.update({k: _finite(r.metrics.get(k, math.nan)) for k in metrics})
            row.update({f"info/{k}": r.info.get(k) for k in info})
            row.update({k: r.extra.get(k) for k in extra})
            row["parameters"] = json.dumps(r.params, sort_keys=True)
            rows.append(row)
        columns = ["index", "parameter_id", "generation", "status", "reason", "feasible", "violation", *metrics,
                   *(f"info/{k}" for k in info), *extra, "parameters"]
        return rows, columns

    def write(self, archive: Archive, **meta: Any) -> None:
        """Rewrite every file from ``archive`` (``meta`` goes into ``archive.json``, e.g. the algorithm)."""
        d = self.directory
        rows, columns = self.history_rows(archive)
        _write_atomic(d / "history.csv", _csv(rows, columns))
        front = sorted(archive.front(), key=lambda r: tuple(r.F))  # type: ignore[arg-type]
        index = {id(r): i for i, r in enumerate(archive.finished)}
        front_rows = [rows[index[id(r)]] for r in front]
        names = sorted({k for r in front for k in r.params})
        _write_atomic(d / "pareto.csv", _csv([{**row, **{f"param/{k}": r.params.get(k) for k in names}}
                                              for row, r in zip(front_rows, front)],
                                             [c for c in columns if c != "parameters"]
                                             + [f"param/{k}" for k in names]))
        _write_atomic(d / "pareto.json", json.dumps({
            **meta, "objectives": archive.objectives.describe(), "constraints": [str(c) for c in archive.constraints],
            "reference_point": archive.reference_mapping(), "hypervolume": archive.hypervolume(),
            "front": [{**{k: v for k, v in row.items() if k != "parameters"}, "parameters": r.params}
                      for row, r in zip(front_rows, front)]}, indent=2) + "\n")
        ref = archive.reference_mapping() or {}
        ref_cols = [f"ref_{k}" for k in archive.objectives.keys]
        hv_rows = [{**h, **{f"ref_{k}": ref.get(k) for k in archive.objectives.keys}} for h in archive.history]
        _write_atomic(d / "hypervolume.csv", _csv(hv_rows, ["evaluated", "generation", "succeeded", "failed",
                                                            "front_size", "hypervolume", *ref_cols]))
        _write_atomic(d / "archive.json", json.dumps({**meta, **archive.describe(), "files": list(FILES)},
                                                     indent=2) + "\n")

    # ------------------------------------------------------------------ reading back
    def read_meta(self) -> dict[str, Any]:
        try:
            data = json.loads((self.directory / "archive.json").read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {self.directory / 'archive.json'}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("objectives"), dict):
            raise ValueError(f"{self.directory / 'archive.json'} is not an nni-ext archive (no objectives)")
        return data

    def read_history(self) -> list[dict[str, Any]]:
        """``history.csv`` as rows: parameters, metrics (floats), status, reason, generation, parameter id."""
        path = self.directory / "history.csv"
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        fixed = {"index", "parameter_id", "generation", "status", "reason", "feasible", "violation", "parameters"}
        out = []
        for row in rows:
            metrics = {}
            for k, v in row.items():
                if k in fixed or k.startswith("info/") or v in (None, ""):
                    continue
                try:
                    metrics[k] = float(v)
                except ValueError:
                    continue
            out.append({"parameters": json.loads(row["parameters"]), "metrics": metrics,
                        "status": row["status"], "reason": row.get("reason") or "",
                        "generation": int(row["generation"]) if row.get("generation") else None,
                        "parameter_id": int(row["parameter_id"]) if row.get("parameter_id") else None})
        return out

    def read(self) -> Archive:
        """The archive the files describe, rebuilt result by result (same front, reference and curve)."""
        meta = self.read_meta()
        given = bool(meta.get("reference_given"))
        archive = Archive(meta["objectives"], parse_constraints(_constraint_map(meta.get("constraints") or [])),
                          reference_point=meta.get("reference_point") if given else None,
                          reference_after=int(meta.get("reference_after") or 1))
        if meta.get("reference_point") and not given:
            archive.restore_reference(meta["reference_point"], meta.get("reference_fixed_at"))
        replay(archive, self.read_history())
        return archive


def _constraint_map(texts: Iterable[str]) -> dict[str, str]:
    out = {}
    for text in texts:
        metric, op, bound = str(text).split(" ", 2)
        out[metric] = f"{op} {bound}"
    return out


def replay_row(archive: Archive, row: Mapping[str, Any]) -> Record:
    """Add one finished row (``ArchiveFiles.read_history``'s form) to ``archive``; a failed one stays failed."""
    record = Record(dict(row["parameters"]), row.get("parameter_id"), row.get("generation"), dispatched=False,
                    restored=True)
    archive.records.append(record)
    archive.mark_seen(record.params)
    if row.get("status") == Status.FAILED.value:
        record.metrics = dict(row.get("metrics") or {})
        archive.fail(record, str(row.get("reason") or "failed"))
    else:
        archive.finish(record, dict(row.get("metrics") or {}))
    return record


def replay(archive: Archive, rows: Iterable[Mapping[str, Any]]) -> Archive:
    """Add finished rows (``read_history``'s form) to ``archive`` in order."""
    for row in rows:
        replay_row(archive, row)
    return archive


def find_archive_dirs(experiment_dir: str | os.PathLike) -> list[Path]:
    """The folders of an experiment directory that hold tuner archive files (``<exp>/moo``, ``<exp>/spos``…)."""
    root = Path(experiment_dir)
    return sorted(p.parent for p in root.glob("*/archive.json") if (p.parent / "history.csv").is_file())
