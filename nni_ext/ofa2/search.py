"""The OFA² search on pymoo: predicted top-1 error vs efficiency, NSGA-II / SMS-EMOA / SPEA2 / NSGA-III /
AGE-MOEA (the catalogue of :mod:`nni_ext.core.algorithms`), in-process.

Decision variables are the 46 candidate indices of :class:`~nni_ext.spaces.ofa_mbv3.OfaMbv3Space`
(integers). Operators follow pymoo's recipe for integer variables: integer random sampling,
SBX (prob 1, eta 3) and polynomial mutation (prob 1, eta 3) on floats, rounded; our repair also
canonicalises skipped blocks so duplicate elimination sees one row per distinct network. Both
objectives are computed for the whole population in one vectorised call per generation.

Hypervolume is recorded every generation (pymoo's HV) for the population's non-dominated set
(``hv``) and for every non-dominated point found so far (``hv_archive``, non-decreasing).
Reference points: (25 % error, 100 ms) for latency, (25 % error, 1000 MFLOPs) for FLOPs -- the
largest sub-network has 843 MFLOPs at 224 px and the smallest is predicted at about 25 % error.
"""
from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.optimize import minimize

from .._io import atomic_write_json, atomic_write_text
from ..core import algorithms as core_algorithms
from ..pareto import non_dominated_2d
from ..pymoo_tools import HypervolumeRecorder, RowDuplicateElimination
from ..spaces.ofa_mbv3 import OfaMbv3Space, to_ofa
from .efficiency import FlopsModel, LatencyModel
from .predictor import AccuracyPredictor, single_thread

log = logging.getLogger(__name__)

#: the catalogue's algorithms (:func:`nni_ext.core.algorithms.algorithm_names`)
ALGORITHMS = core_algorithms.algorithm_names()
#: hypervolume reference error (%): OFA's smallest sub-network is predicted at about 75 % top-1
REFERENCE_ERROR = 25.0


class OfaProblem(Problem):
    """Minimise (predicted top-1 error in %, efficiency) over index matrices of the OFA space."""

    def __init__(self, predictor: AccuracyPredictor, efficiency: FlopsModel | LatencyModel) -> None:
        self.space, self.predictor, self.efficiency = predictor.space, predictor, efficiency
        if efficiency.space.resolutions != self.space.resolutions:
            raise ValueError("predictor and efficiency model must use the same space (resolutions differ: "
                             f"{self.space.resolutions} vs {efficiency.space.resolutions})")
        upper = self.space.upper_bounds()
        super().__init__(n_var=len(upper), n_obj=2, xl=np.zeros(len(upper)), xu=upper.astype(float), vtype=int)

    def objectives(self, X: np.ndarray) -> np.ndarray:
        """``(n, 2)``: predicted top-1 error (%) and efficiency (ms or MFLOPs)."""
        X = np.asarray(X, dtype=np.int64)
        return np.column_stack([100.0 * (1.0 - self.predictor.predict(X)), self.efficiency(X)])

    def _evaluate(self, x: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        out["F"] = self.objectives(np.rint(x))


class CanonicalRepair(Repair):
    """Round and clip to valid indices, then canonicalise skipped blocks (one row per distinct network)."""

    def _do(self, problem: Problem, X: np.ndarray, **kwargs: Any) -> np.ndarray:
        X = np.clip(np.rint(X), problem.xl, problem.xu).astype(np.int64)
        return problem.space.canonicalize_matrix(X)


def make_algorithm(name: str, population: int) -> Any:
    """A catalogue algorithm (:mod:`nni_ext.core.algorithms`) with integer operators and our canonicalising repair.

    Raises ``ValueError`` for an unknown name (naming the catalogue) or a population under 2.
    """
    if isinstance(population, bool) or not isinstance(population, int) or population < 2:
        raise ValueError(f"population={population!r} must be an integer of at least 2")
    return core_algorithms.make_algorithm(
        name, pop_size=population, n_obj=2, sampling=IntegerRandomSampling(),
        crossover=SBX(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
        mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
        repair=CanonicalRepair(), eliminate_duplicates=RowDuplicateElimination())


@dataclass
class SearchResult:
    """The final non-dominated sub-networks (sorted by efficiency) and the hypervolume history."""

    algorithm: str
    seed: int
    space: OfaMbv3Space
    matrix: np.ndarray
    error: np.ndarray
    efficiency: np.ndarray
    efficiency_name: str
    efficiency_unit: str
    reference: tuple[float, float]
    history: list[tuple[int, int, float, float]]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hypervolume(self) -> float:
        """Final hypervolume of the returned set."""
        return self.history[-1][2] if self.history else float("nan")

    def architectures(self) -> list[dict[str, Any]]:
        """NNI parameter dicts of the returned sub-networks."""
        return self.space.from_matrix(self.matrix)

    def records(self) -> list[dict[str, Any]]:
        """One dict per sub-network: rank, objectives, OFA dict and NNI parameters."""
        out = []
        for i, arch in enumerate(self.architectures()):
            out.append({"rank": i, "top1_error_percent": float(self.error[i]),
                        "predicted_accuracy": float(1 - self.error[i] / 100), self.efficiency_name: float(
                            self.efficiency[i]), "ofa": to_ofa(arch), "nni": arch})
        return out

    def to_json(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "seed": self.seed, "seconds": self.seconds,
                "objectives": {"top1_error_percent": "minimise (predicted)",
                               self.efficiency_name: f"minimise ({self.efficiency_unit})"},
                "hypervolume": self.hypervolume,
                "reference_point": {"top1_error_percent": self.reference[0], self.efficiency_name: self.reference[1]},
                **self.extra, "networks": self.records()}

    def write(self, out_dir: str | Path) -> Path:
        """Write ``result.json``, ``result.csv`` and ``hypervolume.csv`` under ``out_dir`` (atomically)."""
        out = Path(out_dir)
        atomic_write_json(out / "result.json", self.to_json())
        labels = self.space.labels
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["rank", "top1_error_percent", "predicted_accuracy", self.efficiency_name, *labels])
        for rec in self.records():
            writer.writerow([rec["rank"], f"{rec['top1_error_percent']:.6f}", f"{rec['predicted_accuracy']:.6f}",
                             f"{rec[self.efficiency_name]:.6f}", *(rec["nni"][k] for k in labels)])
        atomic_write_text(out / "result.csv", buf.getvalue())
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["generation", "evaluations", "hv", "hv_archive", "ref_top1_error_percent",
                         f"ref_{self.efficiency_name}"])
        for gen, n_eval, hv, hv_archive in self.history:
            writer.writerow([gen, n_eval, f"{hv:.6f}", f"{hv_archive:.6f}", self.reference[0], self.reference[1]])
        atomic_write_text(out / "hypervolume.csv", buf.getvalue())
        return out


def run_search(*, predictor: AccuracyPredictor, efficiency: FlopsModel | LatencyModel, algorithm: str = "nsga2",
               seed: int = 1, population: int = 100, generations: int = 1000,
               reference: tuple[float, float] | None = None, log_every: int = 100,
               out_dir: str | Path | None = None) -> SearchResult:
    """Run one OFA² search and return (and optionally write) its final non-dominated set.

    Args:
        predictor: accuracy predictor (its space defines the decision variables).
        efficiency: a :class:`LatencyModel` (ms) or :class:`FlopsModel` (MFLOPs).
        algorithm: a catalogue name: ``nsga2``, ``smsemoa``, ``spea2``, ``nsga3`` or ``agemoea``.
        seed: seeds pymoo's random generator (same seed, same result).
        reference: hypervolume reference (error %, efficiency); default (25, 100 ms) or (25, 1000 MFLOPs).
        log_every: log a progress line every so many generations (0: never).
        out_dir: write ``result.json``, ``result.csv`` and ``hypervolume.csv`` there.
    """
    algorithm = core_algorithms.canonical_algorithm(algorithm)
    if generations < 1:
        raise ValueError(f"generations={generations} must be at least 1")
    problem = OfaProblem(predictor, efficiency)
    algo = make_algorithm(algorithm, population)
    ref = np.array(reference if reference is not None else (REFERENCE_ERROR, efficiency.reference), dtype=float)
    recorder = HypervolumeRecorder(ref, log_every, generations, log)
    start = time.perf_counter()
    with single_thread():
        res = minimize(problem, algo, ("n_gen", generations), seed=int(seed), callback=recorder, verbose=False)
    seconds = time.perf_counter() - start
    X = np.rint(res.pop.get("X")).astype(np.int64)
    F = res.pop.get("F")
    keep = non_dominated_2d(F)
    keep = keep[np.lexsort((F[keep, 0], F[keep, 1]))]
    result = SearchResult(algorithm=algorithm, seed=int(seed), space=problem.space, matrix=X[keep],
                          error=F[keep, 0], efficiency=F[keep, 1], efficiency_name=efficiency.name,
                          efficiency_unit=efficiency.unit, reference=(float(ref[0]), float(ref[1])),
                          history=recorder.rows, seconds=seconds,
                          extra={"population": population, "generations": generations,
                                 "efficiency": efficiency.describe(), "predictor": predictor.source})
    if out_dir is not None:
        result.write(out_dir)
    return result


def compare_algorithms(*, predictor: AccuracyPredictor, efficiency: FlopsModel | LatencyModel,
                       out_dir: str | Path, algorithms: Sequence[str] = ALGORITHMS, seeds: Sequence[int] = (1, 2, 3),
                       population: int = 100, generations: int = 1000, log_every: int = 0) -> list[SearchResult]:
    """Run algorithms x seeds, write each run under ``out_dir/<algorithm>-seed<S>/``, a comparison and a plot.

    Writes ``comparison.csv``, ``comparison.md`` (hypervolume and time per run, mean per algorithm) and
    ``fronts.png`` (every run's final front).
    """
    out = Path(out_dir)
    results = []
    for name in algorithms:
        for seed in seeds:
            log.info("running %s with seed %d", name, seed)
            results.append(run_search(predictor=predictor, efficiency=efficiency, algorithm=name, seed=seed,
                                      population=population, generations=generations, log_every=log_every,
                                      out_dir=out / f"{name}-seed{seed}"))
    write_comparison(results, out)
    return results


def write_comparison(results: Sequence[SearchResult], out_dir: str | Path) -> None:
    """``comparison.csv``, ``comparison.md`` and ``fronts.png`` for finished runs."""
    out = Path(out_dir)
    first = results[0]
    header = ["algorithm", "seed", "seconds", "hypervolume", "networks"]
    rows = [[r.algorithm, r.seed, f"{r.seconds:.2f}", f"{r.hypervolume:.4f}", len(r.matrix)] for r in results]
    atomic_write_text(out / "comparison.csv", "\n".join(",".join(map(str, row)) for row in [header, *rows]) + "\n")
    ref = f"reference point: {first.reference[0]} % error, {first.reference[1]} {first.efficiency_unit}"
    lines = [f"# OFA² search: hypervolume ({ref})", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    lines += ["", "| algorithm | mean hypervolume | mean seconds |", "|---|---|---|"]
    for name in dict.fromkeys(r.algorithm for r in results):
        runs = [r for r in results if r.algorithm == name]
        lines.append(f"| {name} | {np.mean([r.hypervolume for r in runs]):.4f} | "
                     f"{np.mean([r.seconds for r in runs]):.2f} |")
    atomic_write_text(out / "comparison.md", "\n".join(lines) + "\n")
    plot_fronts(results, out / "fronts.png")


def plot_fronts(results: Sequence[SearchResult], path: str | Path) -> Path:
    """Scatter every run's final front (efficiency vs predicted top-1 accuracy) into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._io import atomic_write

    fig, ax = plt.subplots(figsize=(7, 5))
    for r in results:
        ax.plot(r.efficiency, 100 - r.error, ".-", ms=3, lw=0.7, label=f"{r.algorithm} seed {r.seed}")
    first = results[0]
    ax.set_xlabel(f"{first.efficiency_name} ({first.efficiency_unit})")
    ax.set_ylabel("predicted top-1 accuracy (%)")
    ax.set_title("OFA² final fronts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path
