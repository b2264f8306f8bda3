"""Analysis of a MOOD-NAS sweep: the (regularisation, error) Pareto genotypes, their costs, plots, a genotypes file.

Reads the trials of an nnictl sweep (:func:`nni_ext.results.load_experiment`), keeps the trials
whose ``(reg_loss, criterion_loss)`` are non-dominated (both minimised), and for each Pareto
genotype gathers nu, search accuracy, both losses, the evaluation network's parameters and FLOPs
(as reported by the trial) and its latency measured here (CPU, or the GPU when present). Writes:

* ``sweep.csv`` (every finished trial) and ``front.csv`` / ``front.json`` (the Pareto genotypes);
* ``front.png`` (criterion loss vs regularisation loss, nu beside each point) and
  ``correlation.png`` (search accuracy, params and latency against each other);
* ``genotypes.py`` and ``genotypes.json``: the Pareto genotypes under MOOD-NAS-style names
  (``l1_loss_2e01`` for nu = 0.2), importable by name (``nni-ext pcdarts train --genotype
  genotypes.py:l1_loss_2e01``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_csv, atomic_write_json
from ..errors import NniExtError
from ..pareto import non_dominated

COLUMNS = ["name", "trial", "nu", "search_acc", "criterion_loss", "reg_loss", "params", "flops", "latency_ms",
           "pareto", "genotype"]


@dataclass
class SweepAnalysis:
    """Rows of every finished trial (``rows``) and the indices of the Pareto ones (``front``, by reg_loss)."""

    rows: list[dict[str, Any]]
    front: list[int]
    regularizer: str


def collect(results: Any, *, regularizer: str | None = None) -> SweepAnalysis:
    """Rows of the finished trials of an experiment (``ExperimentResults``) and its Pareto genotypes."""
    from .genotypes import genotype_name, parse_genotype

    rows = []
    kinds = set()
    for t in results.finished():
        m = t.metrics if isinstance(t.metrics, dict) else {}
        try:
            reg, ce = float(m["reg_loss"]), float(m["criterion_loss"])
            nu = float(m.get("nu", (t.parameters or {}).get("nu")))
            genotype = parse_genotype(str(m["genotype"]))
        except (KeyError, TypeError, ValueError):
            continue
        if not (math.isfinite(reg) and math.isfinite(ce)):
            continue
        kinds.add(str(m.get("regularizer", regularizer or "reg")))
        rows.append({"trial": t.trial_id, "nu": nu, "search_acc": float(m.get("default", math.nan)),
                     "criterion_loss": ce, "reg_loss": reg, "params": m.get("params"), "flops": m.get("flops"),
                     "latency_ms": None, "pareto": False, "genotype": str(genotype)})
    if not rows:
        raise NniExtError(f"experiment {results.id} has no finished trial reporting reg_loss, criterion_loss and "
                          f"genotype; is it a PC-DARTS sweep (python -m nni_ext.trials.pcdarts_search_trial)?")
    kind = regularizer or (kinds.pop() if len(kinds) == 1 else "reg")
    F = np.array([[r["reg_loss"], r["criterion_loss"]] for r in rows])
    front = sorted(non_dominated(F).tolist(), key=lambda i: (F[i, 0], F[i, 1]))
    used: set[str] = set()
    for i, r in enumerate(rows):
        name = genotype_name(kind, r["nu"])
        while name in used:
            name += "_b"
        used.add(name)
        r["name"] = name
        r["pareto"] = i in front
    return SweepAnalysis(rows, front, kind)


def measure_front_latency(a: SweepAnalysis, *, num_classes: int, image_size: int, channels: int = 36,
                          layers: int = 20, device: str = "auto", repeats: int = 20) -> None:
    """Fill ``latency_ms`` (median, batch 1) of each Pareto genotype's evaluation network on ``device``."""
    from ..cost.latency import measure_latency
    from .eval_model import EvalNetwork
    from .genotypes import parse_genotype

    for i in a.front:
        net = EvalNetwork(parse_genotype(a.rows[i]["genotype"]), C=channels, num_classes=num_classes, layers=layers,
                          auxiliary=False)
        a.rows[i]["latency_ms"] = measure_latency(net, (1, 3, image_size, image_size), device=device, warmup=3,
                                                  repeats=repeats).median_ms


def write_analysis(a: SweepAnalysis, out: str | Path) -> dict[str, Path]:
    """Write the CSV/JSON tables, the genotypes files and the plots into ``out``; returns their paths."""
    from .genotypes import genotype_to_dict, parse_genotype, write_genotypes_py

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    front_rows = [a.rows[i] for i in a.front]
    paths = {"sweep": atomic_write_csv(out / "sweep.csv", a.rows, COLUMNS),
             "front": atomic_write_csv(out / "front.csv", front_rows, COLUMNS),
             "front_json": atomic_write_json(out / "front.json", front_rows)}
    named = {r["name"]: parse_genotype(r["genotype"]) for r in front_rows}
    paths["genotypes_py"] = write_genotypes_py(out / "genotypes.py", named)
    paths["genotypes_json"] = atomic_write_json(out / "genotypes.json",
                                                {k: genotype_to_dict(g) for k, g in named.items()})
    paths.update(_plots(a, out))
    return paths


def _plots(a: SweepAnalysis, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    R = np.array([r["reg_loss"] for r in a.rows])
    C = np.array([r["criterion_loss"] for r in a.rows])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(R, C, c="lightgray", edgecolors="gray", label="all trials")
    f = np.array(a.front)
    ax.plot(R[f], C[f], "o-", color="tab:red", label="Pareto front")
    for i in a.front:
        ax.annotate(f"ν={a.rows[i]['nu']:.2g}", (R[i], C[i]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"regularisation loss R ({a.regularizer})")
    ax.set_ylabel("criterion loss (cross-entropy)")
    ax.set_title("MOOD-NAS sweep: error vs complexity")
    ax.legend()
    fig.tight_layout()
    front_png = out / "front.png"
    fig.savefig(front_png, dpi=120)
    plt.close(fig)

    rows = [a.rows[i] for i in a.front]
    pairs = [("params", "search_acc"), ("flops", "search_acc"), ("latency_ms", "search_acc"), ("params", "latency_ms")]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 3.6))
    for ax, (x, y) in zip(axes, pairs):
        pts = [(r[x], r[y]) for r in rows if r.get(x) is not None and r.get(y) is not None]
        if pts:
            xs, ys = np.array(pts, dtype=float).T
            ax.scatter(xs, ys, color="tab:blue")
            if len(pts) > 2 and np.std(xs) > 0 and np.std(ys) > 0:
                ax.set_title(f"Pearson r = {np.corrcoef(xs, ys)[0, 1]:.2f}", fontsize=9)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    fig.tight_layout()
    corr_png = out / "correlation.png"
    fig.savefig(corr_png, dpi=110)
    plt.close(fig)
    return {"front_png": front_png, "correlation_png": corr_png}


def front_table(a: SweepAnalysis) -> str:
    """The Pareto genotypes as an aligned text table (what ``nni-ext pcdarts analyse`` prints)."""
    head = f"{'name':<16} {'nu':>9} {'acc':>7} {'CE':>8} {'R':>10} {'params(M)':>9} {'MFLOPs':>8} {'lat(ms)':>8}"
    lines = [head]
    for i in a.front:
        r = a.rows[i]
        params = f"{r['params'] / 1e6:.2f}" if r.get("params") is not None else "-"
        flops = f"{r['flops'] / 1e6:.0f}" if r.get("flops") is not None else "-"
        lat = f"{r['latency_ms']:.2f}" if r.get("latency_ms") is not None else "-"
        lines.append(f"{r['name']:<16} {r['nu']:>9.3g} {r['search_acc']:>7.4f} {r['criterion_loss']:>8.4f} "
                     f"{r['reg_loss']:>10.4g} {params:>9} {flops:>8} {lat:>8}")
    return "\n".join(lines)
