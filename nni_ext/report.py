"""Pareto report and post-search selection for any experiment whose trials report metric dicts.

:func:`write_report` writes ``trials.csv``, ``pareto.csv``/``pareto.json``, ``hypervolume.csv`` and two
plots (``pareto_front.png``, ``hypervolume.png``); :func:`select_points` picks architectures from the
front by preference (achievement scalarization, as NSGANetV2's ``post_search``) or by trade-off (knees),
always including the best point of the first objective.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._io import atomic_write_csv, atomic_write_json
from .constraints import Constraint, parse_constraints
from .errors import NniExtError
from .pareto import Objectives, default_reference_point, hypervolume, non_dominated, parse_preference, pick
from .results import ExperimentResults, TrialResult

#: metric keys that, when every finished trial reports them, are minimised by default
COST_KEYS = ("flops", "params", "latency", "latency_ms", "latency_max", "latency_sum")


@dataclass
class Analysis:
    """Finished trials of an experiment as objective matrices, with their front and hypervolume curve."""

    results: ExperimentResults
    objectives: Objectives
    constraints: list[Constraint]
    trials: list[TrialResult]  # successful, all objectives finite, in arrival order
    F: np.ndarray  # minimisation objectives, one row per trial
    cv: np.ndarray  # total constraint violation (0 = feasible)
    reference: np.ndarray | None  # hypervolume reference point (minimisation units)
    front: np.ndarray  # indices into ``trials``
    hv_curve: list[tuple[int, float]]  # (number of results, hypervolume)


def choose_objectives(results: ExperimentResults, spec: str | None = None) -> Objectives:
    """The objectives: ``spec`` (``"default:max,flops:min"``), else the tuner's, else ``default`` + cost keys."""
    if spec:
        return Objectives.parse(spec)
    args = results.tuner_args
    if isinstance(args.get("objectives"), Mapping):
        return Objectives.parse(args["objectives"])
    finished = [t.metrics for t in results.finished() if t.metrics]
    mode = str(args.get("optimize_mode", "maximize"))
    keys = {"default": mode}
    for key in COST_KEYS:
        if finished and all(isinstance(m.get(key), (int, float)) for m in finished):
            keys[key] = "minimize"
    for limit, key in (("flops_limit", "flops"), ("latency_limit_ms", "latency")):  # SPOS evolution's classArgs
        if limit in args:
            keys.setdefault(key, "minimize")
    if len(keys) < 2:
        raise NniExtError("cannot tell the objectives of this experiment; name them, e.g. "
                          "--objectives default:max,flops:min")
    return Objectives.parse(keys)


def analyse(results: ExperimentResults, objectives: Objectives, *, constraints: list[Constraint] | None = None,
            reference: Mapping[str, float] | None = None) -> Analysis:
    """Front, violations and hypervolume-versus-trials of ``results`` under ``objectives``."""
    if constraints is None:
        constraints = parse_constraints(results.tuner_args.get("constraints"))
    trials, rows = [], []
    for t in results.finished():
        f = objectives.vector(t.metrics or {})
        if t.status in ("SUCCEEDED", "USER_CANCELED", "RUNNING", "EARLY_STOPPED") and np.isfinite(f).all():
            trials.append(t)
            rows.append(f)
    if not trials:
        raise NniExtError(f"experiment {results.id} has no finished trial reporting all of "
                          f"{', '.join(objectives.keys)}; check the keys with --objectives")
    F = np.array(rows, dtype=float)
    cv = np.array([sum(c.violation(float((t.metrics or {}).get(c.metric, math.nan))) for c in constraints)
                   for t in trials], dtype=float)
    if reference is None and isinstance(results.tuner_args.get("reference_point"), Mapping):
        reference = results.tuner_args["reference_point"]
    ref: np.ndarray | None
    if reference is not None:
        ref = np.array([float(reference[k]) for k in objectives.keys]) * objectives.sign
    else:
        feasible = F[np.isfinite(cv) & (cv <= 0)]
        ref = default_reference_point(feasible) if len(feasible) else None
    return Analysis(results, objectives, constraints, trials, F, cv, ref, non_dominated(F, cv),
                    _hv_curve(F, cv, ref))


def _hv_curve(F: np.ndarray, cv: np.ndarray, ref: np.ndarray | None) -> list[tuple[int, float]]:
    """Hypervolume of the feasible front after each result (recomputed only when the front changes)."""
    if ref is None:
        return []
    curve, front, hv = [], np.zeros((0, F.shape[1])), 0.0
    for i, f in enumerate(F):
        if cv[i] <= 0 and not (np.all(front <= f, axis=1)).any():
            front = np.vstack([front[~np.all(f <= front, axis=1)], f])
            hv = hypervolume(front, ref)
        curve.append((i + 1, hv))
    return curve


def _rows(a: Analysis, indices: np.ndarray | list[int]) -> list[dict[str, Any]]:
    out = []
    for i in indices:
        t = a.trials[i]
        row: dict[str, Any] = {"trial_id": t.trial_id, "parameter_id": t.parameter_id}
        row.update({k: float(v) for k, v in zip(a.objectives.keys, a.objectives.values(a.F[i]))})
        row["feasible"] = bool(a.cv[i] <= 0)
        row.update({f"param/{k}": v for k, v in (t.parameters or {}).items()})
        out.append(row)
    return out


def write_report(a: Analysis, out: str | Path) -> dict[str, Path]:
    """Write CSV/JSON tables and PNG plots of ``a`` to ``out``; returns ``name -> path``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    front = sorted(a.front.tolist(), key=lambda i: tuple(a.F[i]))
    paths = {
        "trials": atomic_write_csv(out / "trials.csv", _rows(a, range(len(a.trials)))),
        "pareto_csv": atomic_write_csv(out / "pareto.csv", _rows(a, front)),
        "pareto_json": atomic_write_json(out / "pareto.json", {
            "experiment": a.results.id, "objectives": a.objectives.describe(),
            "constraints": [str(c) for c in a.constraints], "evaluated": len(a.trials),
            "reference_point": None if a.reference is None else dict(
                zip(a.objectives.keys, a.objectives.values(a.reference).tolist())),
            "hypervolume": a.hv_curve[-1][1] if a.hv_curve else None,
            "front": [{**{k: v for k, v in row.items() if not k.startswith("param/")},
                       "parameters": a.trials[i].parameters} for row, i in zip(_rows(a, front), front)]}),
    }
    ref_cols = {} if a.reference is None else {
        f"ref_{k}": v for k, v in zip(a.objectives.keys, a.objectives.values(a.reference).tolist())}
    paths["hypervolume_csv"] = atomic_write_csv(out / "hypervolume.csv", [
        {"evaluated": n, "hypervolume": hv, **ref_cols} for n, hv in a.hv_curve])
    paths.update(_plots(a, front, out))
    return paths


def _plots(a: Analysis, front: list[int], out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = a.objectives.values(a.F)
    keys, m = a.objectives.keys, len(a.objectives)
    pairs = [(0, j) for j in range(1, m)] or [(0, 0)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.5 * len(pairs), 4.5), squeeze=False)
    feasible = a.cv <= 0
    for ax, (i, j) in zip(axes[0], pairs):
        ax.scatter(values[feasible, j], values[feasible, i], s=10, c="0.7", label="evaluated")
        if (~feasible).any():
            ax.scatter(values[~feasible, j], values[~feasible, i], s=10, marker="x", c="tab:red", label="infeasible")
        order = sorted(front, key=lambda k: values[k, j])  # a staircase only makes sense with two objectives
        ax.plot(values[order, j], values[order, i], "o-" if m == 2 else "o", c="tab:blue", ms=4,
                label=f"Pareto front ({len(front)})")
        ax.set_xlabel(f"{keys[j]} ({a.objectives.describe()[keys[j]]})")
        ax.set_ylabel(f"{keys[i]} ({a.objectives.describe()[keys[i]]})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"experiment {a.results.id}: {len(a.trials)} evaluated")
    fig.tight_layout()
    front_png = out / "pareto_front.png"
    fig.savefig(front_png, dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if a.hv_curve:
        n, hv = zip(*a.hv_curve)
        ax.plot(n, hv, c="tab:blue")
    ax.set_xlabel("trials evaluated")
    ax.set_ylabel("hypervolume")
    ax.set_title("hypervolume of the feasible front" if a.hv_curve else "no feasible result yet")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    hv_png = out / "hypervolume.png"
    fig.savefig(hv_png, dpi=110)
    plt.close(fig)
    return {"pareto_png": front_png, "hypervolume_png": hv_png}


def select_points(a: Analysis, n: int, prefer: str | None = None) -> list[int]:
    """Indices into ``a.trials`` of ``n`` picks from the front; the best of the first objective comes first."""
    front = a.front
    feasible = front[a.cv[front] <= 0]
    front = feasible if len(feasible) else front
    F = a.F[front]
    preference = parse_preference(prefer, a.objectives) if prefer else None
    best = int(np.argmin(F[:, 0]))
    return [int(front[i]) for i in pick(F, min(n, len(front)), preference=preference, always=best)]


def write_selection(a: Analysis, picks: list[int], out: str | Path) -> list[Path]:
    """One JSON per pick (``pick_01.json``…: parameters, metrics, trial id) plus ``selection.csv``."""
    out = Path(out)
    paths = []
    for rank, i in enumerate(picks, 1):
        t = a.trials[i]
        metrics = {k: v for k, v in (t.metrics or {}).items() if k != "architecture"}
        paths.append(atomic_write_json(out / f"pick_{rank:02d}.json", {
            "rank": rank, "trial_id": t.trial_id, "parameter_id": t.parameter_id,
            "parameters": t.parameters, "metrics": metrics}))
    atomic_write_csv(out / "selection.csv", [{"rank": r, **row} for r, row in enumerate(_rows(a, picks), 1)])
    return paths
