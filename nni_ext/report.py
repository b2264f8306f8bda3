"""Pareto report and post-search selection for any experiment whose trials report metric dicts.

One experiment has one front and one hypervolume, whichever command you ask: when the experiment's tuner
kept an nni-ext archive (``<experiment dir>/<tuner>/archive.json`` + ``history.csv``, see
:mod:`nni_ext.core.archive`) the report rebuilds that archive, with its stored reference point, so its
``hypervolume.csv`` is the tuner's; otherwise (a built-in NNI tuner, other objectives) it builds an archive
from NNI's database with the same rule.

:func:`write_report` writes ``trials.csv``, ``pareto.csv``/``pareto.json``, ``hypervolume.csv`` and two
plots (``pareto_front.png``, ``hypervolume.png``); :func:`select_points` picks architectures from the
front as the post-search of NSGANetV2 and CNAS does: by trade-off (knees; the best point of the first
objective always included), closest to a preference (achievement scalarization), or the best values of
one objective; ``n_exits`` restricts the choice to early-exit architectures with that many exits.
:func:`write_selection` writes ``pick_NN.json``, ``selection.csv`` and, per pick, CNAS's folder
``pick_NN/`` with ``net.subnet`` and ``net.stats`` (plus ``net.config``/``net.inherited`` from a supernet).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._io import atomic_write_csv, atomic_write_json
from .core.archive import Archive, ArchiveFiles, Record, find_archive_dirs, params_key
from .core.constraints import Constraint, parse_constraints
from .core.metrics import COST_KEYS, canonical, decode_values
from .errors import NniExtError
from .pareto import Objectives, non_dominated, parse_preference, pick
from .results import ExperimentResults, TrialResult

#: NNI trial states whose final metric counts
OK_STATES = ("SUCCEEDED", "USER_CANCELED", "RUNNING", "EARLY_STOPPED")


@dataclass
class Analysis:
    """Finished trials of an experiment as objective matrices, with their front and hypervolume curve."""

    results: ExperimentResults
    objectives: Objectives
    constraints: list[Constraint]
    archive: Archive  # every finished trial, in arrival order
    source: str  # where the archive came from: the tuner's files or NNI's database
    trials: list[TrialResult]  # successful, all objectives finite, in arrival order
    F: np.ndarray  # minimisation objectives, one row per trial
    cv: np.ndarray  # total constraint violation (0 = feasible)
    reference: np.ndarray | None  # hypervolume reference point (minimisation units)
    front: np.ndarray  # indices into ``trials``
    hv_curve: list[tuple[int, float]]  # (trials finished, hypervolume), where defined


def _tuner_archives(results: ExperimentResults) -> list[ArchiveFiles]:
    return [ArchiveFiles(d) for d in find_archive_dirs(results.directory)]


def choose_objectives(results: ExperimentResults, spec: str | None = None) -> Objectives:
    """The objectives: ``spec`` (``"default:max,flops:min"``), else the tuner's (classArgs or its archive),
    else ``default`` + the cost keys every finished trial reports."""
    if spec:
        return Objectives.parse(spec)
    args = results.tuner_args
    if isinstance(args.get("objectives"), Mapping):
        return Objectives.parse(args["objectives"])
    archives = _tuner_archives(results)
    if len(archives) == 1:
        try:
            return Objectives.parse(archives[0].read_meta()["objectives"])
        except ValueError:
            pass
    finished = [t.metrics for t in results.finished() if t.metrics]
    mode = str(args.get("optimize_mode", "maximize"))
    keys = {"default": mode}
    for key in COST_KEYS:
        if finished and all(isinstance(m.get(key), (int, float)) for m in finished):
            keys[key] = "minimize"
    for limit, key in (("flops_limit", "flops"), ("latency_limit_ms", "latency_ms")):  # SPOS evolution's classArgs
        if limit in args:
            keys.setdefault(key, "minimize")
    if len(keys) < 2:
        raise NniExtError("cannot tell the objectives of this experiment; name them, e.g. "
                          "--objectives default:max,flops:min")
    return Objectives.parse(keys)


def _archive_from_files(results: ExperimentResults, objectives: Objectives,
                        constraints: list[Constraint] | None) -> tuple[Archive, str] | None:
    """The tuner's own archive when it has these objectives (and constraints, when given)."""
    for files in _tuner_archives(results):
        try:
            meta = files.read_meta()
            if list(meta["objectives"].items()) != list(objectives.describe().items()):
                continue
            if constraints is not None and meta.get("constraints", []) != [str(c) for c in constraints]:
                continue
            return files.read(), f"tuner archive {files.directory}"
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _archive_from_database(results: ExperimentResults, objectives: Objectives, constraints: list[Constraint],
                           reference: Mapping[str, float] | None) -> Archive:
    args = results.tuner_args
    if reference is None and isinstance(args.get("reference_point"), Mapping):
        reference = args["reference_point"]
    finished = results.finished()
    population = args.get("population_size")
    after = population if isinstance(population, int) and not isinstance(population, bool) and population >= 1 \
        else max(1, len(finished))
    archive = Archive(objectives, constraints, reference_point=reference, reference_after=after)
    for t in finished:
        pid = int(t.parameter_id) if t.parameter_id and str(t.parameter_id).isdigit() else None
        value = t.metrics if t.status in OK_STATES else {}
        archive.add(t.parameters or {}, value, parameter_id=pid, trial_id=t.trial_id)
    return archive


def analyse(results: ExperimentResults, objectives: Objectives, *, constraints: list[Constraint] | None = None,
            reference: Mapping[str, float] | None = None) -> Analysis:
    """Front, violations and hypervolume curve of ``results`` under ``objectives``.

    The tuner's archive files are used when they hold these objectives and no other ``reference`` is asked
    for; otherwise NNI's database, with the archive's reference-point rule (``reference_point`` of the
    classArgs, else the nadir of the first ``population_size`` results, else of all results).
    """
    found = _archive_from_files(results, objectives, constraints) if reference is None else None
    if found is not None:
        archive, source = found
    else:
        if constraints is None:
            constraints = parse_constraints(results.tuner_args.get("constraints"))
        archive, source = _archive_from_database(results, objectives, constraints, reference), "NNI database"
    ok = archive.succeeded()
    if not ok:
        raise NniExtError(f"experiment {results.id} has no finished trial reporting all of "
                          f"{', '.join(objectives.keys)}; check the keys with --objectives")
    trials = _trial_results(results, ok)
    F = np.array([r.F for r in ok], dtype=float)
    cv = np.array([r.cv for r in ok], dtype=float)
    index = {id(r): i for i, r in enumerate(ok)}
    front = np.array(sorted(index[id(r)] for r in archive.front()), dtype=int)
    curve = [(int(h["evaluated"]), float(h["hypervolume"])) for h in archive.history if h["hypervolume"] is not None]
    return Analysis(results, archive.objectives, archive.constraints, archive, source, trials, F, cv,
                    archive.reference, front, curve)


def _trial_results(results: ExperimentResults, records: list[Record]) -> list[TrialResult]:
    """The NNI trial of each record (by trial id, parameter id, else parameters), or one made from the record."""
    by_trial = {t.trial_id: t for t in results.trials}
    by_pid = {str(t.parameter_id): t for t in results.trials if t.parameter_id is not None}
    by_params: dict[str, list[TrialResult]] = {}
    for t in results.finished():
        by_params.setdefault(params_key(t.parameters or {}), []).append(t)
    out = []
    for r in records:
        t = by_trial.get(r.info.get("trial_id", "")) or (by_pid.get(str(r.parameter_id))
                                                         if r.parameter_id is not None else None)
        if t is None or (t.parameters is not None and params_key(t.parameters) != r.key):
            same = by_params.get(r.key)
            t = same.pop(0) if same else None
        metrics = {**(decode_values(t.metrics) or {})} if t is not None and t.metrics else {}
        metrics.update(r.metrics)
        out.append(TrialResult(t.trial_id if t is not None else "", t.status if t is not None else "SUCCEEDED",
                               str(r.parameter_id) if r.parameter_id is not None else None, r.params, metrics,
                               t.finished_at if t is not None else None))
    return out


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
            "source": a.source, "reference_point": a.archive.reference_mapping(),
            "hypervolume": a.archive.hypervolume(),
            "front": [{**{k: v for k, v in row.items() if not k.startswith("param/")},
                       "parameters": a.trials[i].parameters} for row, i in zip(_rows(a, front), front)]}),
    }
    ref = a.archive.reference_mapping() or {}
    paths["hypervolume_csv"] = atomic_write_csv(out / "hypervolume.csv", [  # the schema of the tuner's file
        {**row, **{f"ref_{k}": ref.get(k) for k in a.objectives.keys}} for row in a.archive.history],
        ["evaluated", "generation", "succeeded", "failed", "front_size", "hypervolume",
         *(f"ref_{k}" for k in a.objectives.keys)])
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
    ax.set_xlabel("trials finished")
    ax.set_ylabel("hypervolume")
    ax.set_title("hypervolume of the feasible front" if a.hv_curve else "no feasible result yet")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    hv_png = out / "hypervolume.png"
    fig.savefig(hv_png, dpi=110)
    plt.close(fig)
    return {"pareto_png": front_png, "hypervolume_png": hv_png}


#: ``--prefer`` words for the knee (highest trade-off) picks, what no ``--prefer`` gives
TRADE_OFF = ("trade-off", "tradeoff")
#: exit genes of the ``ofa-mbv3-ee`` space (:mod:`nni_ext.spaces.ofa_mbv3_ee`): ``t_<stage>`` thresholds
#: (EDANAS; 1 = no exit) and ``exit_<stage>`` on/off bits (NACHOS)
EXIT_GENE = re.compile(r"^(t|exit)_([1-9])$")
#: labels that make an architecture an OFA MobileNetV3 one (``ofa-mbv3``, ``ofa-mbv3-ee``)
OFA_MARKERS = ("ks_0", "e_0", "d_0", "r")


def plain_parameters(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """An architecture as a plain ``label -> value`` dict (NNI's ``{"_value": v, "_idx": i}`` unwrapped)."""
    return {k: v["_value"] if isinstance(v, Mapping) and "_value" in v else v for k, v in (params or {}).items()}


def exit_genes(arch: Mapping[str, Any] | None) -> dict[str, Any]:
    """The early-exit genes of an architecture (``t_1`` … ``t_4`` or ``exit_1`` … ``exit_4``), in stage order."""
    plain = plain_parameters(arch)
    genes = [(int(m.group(2)), k) for k in plain if (m := EXIT_GENE.match(k))]
    return {k: plain[k] for _, k in sorted(genes)}


def active_exits(arch: Mapping[str, Any] | None) -> int | None:
    """How many early exits ``arch`` builds besides the final classifier; ``None`` when it has no exit genes.

    A threshold gene ``t_<stage>`` builds an exit when it is below 1 (1 = no exit, EDANAS); an on/off gene
    ``exit_<stage>`` when it is 1 (NACHOS), as :meth:`OfaMbv3EeSpace.exit_thresholds` reads them.
    """
    from .earlyexit.rule import exit_is_active

    genes = exit_genes(arch)
    return sum(exit_is_active(label, value) for label, value in genes.items()) if genes else None


def split_exit_genes(arch: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(backbone, exit genes)`` of a plain architecture: the supernet holds the backbone's weights only."""
    plain = plain_parameters(arch)
    genes = exit_genes(plain)
    return {k: v for k, v in plain.items() if k not in genes}, genes


def is_ofa_arch(arch: Mapping[str, Any] | None) -> bool:
    """Whether ``arch`` has the labels of an OFA MobileNetV3 architecture (``ks_0``, ``e_0``, ``d_0``, ``r``)."""
    return all(k in (arch or {}) for k in OFA_MARKERS)


def _eligible_front(a: Analysis, n_exits: int | None) -> np.ndarray:
    """The front (feasible part, if any) of the trials eligible under ``n_exits``; indices into ``a.trials``."""
    if n_exits is None:
        front = a.front
    else:
        if isinstance(n_exits, bool) or not isinstance(n_exits, int) or n_exits < 0:
            raise NniExtError(f"--n-exits {n_exits!r}: give the number of early exits, 0 or more")
        counts = [active_exits(t.parameters) for t in a.trials]
        if all(c is None for c in counts):
            raise NniExtError(f"--n-exits {n_exits}: the architectures of experiment {a.results.id} have no "
                              "early-exit genes (t_1..t_4 or exit_1..exit_4 of the ofa-mbv3-ee space); drop --n-exits")
        eligible = np.array([i for i, c in enumerate(counts) if c == n_exits], dtype=int)
        if not len(eligible):
            found = ", ".join(str(c) for c in sorted({c for c in counts if c is not None}))
            raise NniExtError(f"--n-exits {n_exits}: no finished architecture has {n_exits} active exits; "
                              f"the experiment has architectures with {found}")
        front = eligible[non_dominated(a.F[eligible], a.cv[eligible])]
    feasible = front[a.cv[front] <= 0]
    return feasible if len(feasible) else front


def prefer_mode(prefer: str | None, objectives: Objectives) -> tuple[str, Any]:
    """What ``--prefer`` asks for: ``("trade-off", None)``, ``("reference", vector)`` or ``("objective", index)``."""
    text = (prefer or "").strip()
    if not text or text.lower() in TRADE_OFF:
        return "trade-off", None
    if "#" in text:
        return "reference", parse_preference(text, objectives)
    key = canonical(text)
    if key in objectives.keys:
        return "objective", objectives.keys.index(key)
    raise NniExtError(f"--prefer {text!r} is not an objective of this experiment; give one of "
                      f"{', '.join(objectives.keys)} (its best values), trade-off (the knees) or KEY#VALUE+... "
                      f"(closest to those values, e.g. {objectives.keys[0]}#0.9)")


def select_points(a: Analysis, n: int, prefer: str | None = None, *, n_exits: int | None = None) -> list[int]:
    """Indices into ``a.trials`` of ``n`` picks from the front.

    ``prefer``: ``None`` or ``"trade-off"`` (the knees; the best of the first objective comes first),
    ``"KEY#VALUE+..."`` (closest by ASF; the best of the first objective comes first) or an objective key
    (the ``n`` front points best in it, in its own sense: lowest ``flops``, highest maximised ``default``;
    ties go to the better other objectives). ``n_exits``: only architectures with that many early exits
    (:func:`active_exits`) take part, and the front is theirs.
    """
    front = _eligible_front(a, n_exits)
    F = a.F[front]
    mode, value = prefer_mode(prefer, a.objectives)
    if mode == "objective":
        order = np.lexsort(tuple(F[:, j] for j in reversed(range(F.shape[1]))) + (F[:, value],))
        return [int(front[i]) for i in order[:n]]
    best = int(np.argmin(F[:, 0]))
    return [int(front[i]) for i in pick(F, min(n, len(front)), preference=value, always=best)]


def net_subnet(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``net.subnet`` of an architecture: the OFA dict as ``nni-ext ofa export`` writes it (plus the exit genes
    of an early-exit one) for OFA MobileNetV3 labels, else the plain ``label -> value`` dict."""
    plain = plain_parameters(params)
    if not is_ofa_arch(plain):
        return plain
    from .ofa2.export import to_subnet

    try:
        return {**to_subnet(plain), **exit_genes(plain)}
    except (KeyError, TypeError, ValueError):  # OFA-like names but not the space's labels: keep them as they are
        return plain


def _net_stats(a: Analysis, i: int, rank: int) -> dict[str, Any]:
    """CNAS's ``net.stats``: the trial's metrics at the top level, plus who it is and its objective values."""
    t = a.trials[i]
    metrics = {k: v for k, v in (t.metrics or {}).items() if k != "architecture"}
    values = a.objectives.values(a.F[i])
    stats: dict[str, Any] = {**metrics, "rank": rank, "trial_id": t.trial_id, "parameter_id": t.parameter_id,
                             "objectives": {k: float(v) for k, v in zip(a.objectives.keys, values)},
                             "senses": a.objectives.describe(), "feasible": bool(a.cv[i] <= 0)}
    exits = active_exits(t.parameters)
    if exits is not None:
        stats["n_exits"] = exits
    return stats


def _check_exportable(a: Analysis, picks: list[int]) -> None:
    from .ofa2.export import validate_arch

    for i in picks:
        t = a.trials[i]
        plain = plain_parameters(t.parameters)
        if not is_ofa_arch(plain):
            raise NniExtError(f"--supernet exports OFA MobileNetV3 architectures, but trial {t.trial_id}'s parameters "
                              f"({', '.join(list(plain)[:4])}, ...) are not one (labels ks_0..ks_19, e_0..e_19, "
                              "d_0..d_4, r); drop --supernet")
        validate_arch(split_exit_genes(plain)[0], f"trial {t.trial_id}")


def write_selection(a: Analysis, picks: list[int], out: str | Path, *,
                    supernet: str | os.PathLike | None = None) -> list[Path]:
    """Write the picks; returns the paths of their ``pick_NN.json``.

    * ``pick_NN.json`` (rank, trial id, parameter id, parameters as NNI handed them, metrics) and
      ``selection.csv`` (one row per pick: objectives, feasibility, parameters);
    * ``pick_NN/net.subnet`` (:func:`net_subnet`) and ``pick_NN/net.stats`` (the trial's metrics, trial and
      parameter ids, ``objectives`` values and ``senses``, ``feasible``, ``n_exits`` of an early-exit one);
    * with ``supernet`` (OFA MobileNetV3 architectures only): ``pick_NN/net.config`` and ``net.inherited``,
      the weights inherited from it (:func:`nni_ext.ofa2.export.export_subnet`; of an early-exit
      architecture, its backbone's: the supernet has no exit heads).
    """
    out = Path(out)
    loaded = None
    if supernet is not None:
        from .ofa2.supernet import load_supernet

        _check_exportable(a, picks)  # before anything is loaded or written
        loaded = load_supernet(supernet)
    paths = []
    for rank, i in enumerate(picks, 1):
        t = a.trials[i]
        metrics = {k: v for k, v in (t.metrics or {}).items() if k != "architecture"}
        paths.append(atomic_write_json(out / f"pick_{rank:02d}.json", {
            "rank": rank, "trial_id": t.trial_id, "parameter_id": t.parameter_id,
            "parameters": t.parameters, "metrics": metrics}))
        folder = out / f"pick_{rank:02d}"
        if loaded is not None:
            from .ofa2.export import export_subnet

            backbone, genes = split_exit_genes(t.parameters)
            export_subnet(loaded, backbone, folder, subnet_extra=genes)
        else:
            atomic_write_json(folder / "net.subnet", net_subnet(t.parameters), indent=None)
        atomic_write_json(folder / "net.stats", _net_stats(a, i, rank))
    atomic_write_csv(out / "selection.csv", [{"rank": r, **row} for r, row in enumerate(_rows(a, picks), 1)])
    return paths
