"""Read an nnictl experiment's trials, parameters and metric dicts from its database (running or finished).

NNI 3.0 keeps everything in ``<experiment dir>/db/nni.sqlite``: the experiment's config
(``ExperimentProfile``), trial events with the parameters handed out (``TrialJobEvent``) and reported
metrics (``MetricData``). SQLite allows reading while the NNI manager writes, so this works on live
experiments too. Where a trial reported the parameters it ran (``nni_ext.trial.report_final``), those
win over NNI's record, which can be mismatched (microsoft/nni#5726).
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.metrics import decode_metric, decode_values, reported_parameters
from .errors import NniExtError
from .experiment import Trial as TrialResult


@dataclass
class ExperimentResults:
    """An experiment's directory, config and trials (ordered by when their final metric arrived)."""

    id: str
    directory: Path
    config: dict[str, Any]
    trials: list[TrialResult] = field(default_factory=list)

    @property
    def tuner_args(self) -> dict[str, Any]:
        tuner = self.config.get("tuner") or {}
        return dict(tuner.get("classArgs") or {})

    def finished(self) -> list[TrialResult]:
        """Trials with a final metric dict, in the order the metrics arrived."""
        done = [t for t in self.trials if t.metrics is not None and t.parameters is not None]
        return sorted(done, key=lambda t: (t.finished_at or 0, t.trial_id))


def find_experiment_dir(ref: str) -> Path:
    """The directory of experiment ``ref``: an experiment id known to nnictl, or a directory path."""
    path = Path(ref).expanduser()
    if (path / "db" / "nni.sqlite").is_file():
        return path
    candidates = []
    try:
        from nni.tools.nnictl.config_utils import Experiments

        info = Experiments().get_all_experiments().get(ref)
        if info and info.get("logDir"):
            candidates.append(Path(info["logDir"]).expanduser() / ref)
    except Exception:  # a broken or missing nnictl manifest: fall back to the default location
        pass
    candidates.append(Path.home() / "nni-experiments" / ref)
    for candidate in candidates:
        if (candidate / "db" / "nni.sqlite").is_file():
            return candidate
    raise NniExtError(f"experiment {ref!r} not found: give an id from `nnictl experiment list --all` "
                      "or the experiment's directory (the one holding db/nni.sqlite)")


def load_experiment(ref: str) -> ExperimentResults:
    """Read experiment ``ref`` (id or directory) from its database."""
    directory = find_experiment_dir(ref)
    db_path = directory / "db" / "nni.sqlite"
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
        try:
            row = db.execute("SELECT params FROM ExperimentProfile ORDER BY revision DESC LIMIT 1").fetchone()
            events = db.execute("SELECT trialJobId, event, data, timestamp FROM TrialJobEvent "
                                "ORDER BY timestamp").fetchall()
            metrics = db.execute("SELECT trialJobId, parameterId, data, timestamp FROM MetricData "
                                 "WHERE type = 'FINAL' ORDER BY timestamp").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise NniExtError(f"cannot read {db_path}: {exc}; is it an NNI 3.0 experiment directory?") from None
    config = decode_metric(row[0]) if row else {}
    status: dict[str, str] = {}
    issued: dict[str, dict[str, Any]] = {}
    trial_pid: dict[str, str] = {}
    for trial_id, event, data, _ in events:
        status[trial_id] = event
        record = decode_metric(data) if data else None
        if isinstance(record, dict) and "parameter_id" in record:
            pid = str(record["parameter_id"])
            issued[pid] = record.get("parameters") or {}
            trial_pid.setdefault(trial_id, pid)
    final: dict[str, tuple[str | None, Any, int | None]] = {}
    for trial_id, pid, data, stamp in metrics:
        final.setdefault(trial_id, (str(pid) if pid not in (None, "") else None, decode_metric(data), stamp))
    trials = []
    for trial_id, event in status.items():
        pid, value, stamp = final.get(trial_id, (trial_pid.get(trial_id), None, None))
        metric = decode_values(value)
        params = reported_parameters(metric) if metric else None
        if params is None and pid is not None:
            params = issued.get(pid)
        trials.append(TrialResult(trial_id, event, pid, params, metric, stamp))
    exp_id = directory.name
    return ExperimentResults(exp_id, directory, config if isinstance(config, dict) else {}, trials)
