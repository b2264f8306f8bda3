"""The surrogate-assisted tuner (MSuNAS / NSGANetV2): surrogates, held-out quality, files, nnictl and resume."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from pymoo.problems import get_problem

from nni_ext.core.metrics import encode_report
from nni_ext.core.pareto import hypervolume
from nni_ext.nb201 import LABELS, NasBench201Table
from nni_ext.surrogates import AdaptiveSwitching, make_surrogate, quality
from nni_ext.testing import simulate
from nni_ext.tuners import MSuNASTuner, NSGA2Tuner

from .conftest import REPO, run_until_done

ZDT = get_problem("zdt1", n_var=8)
ZDT_SPACE = {f"x{i}": {"_type": "uniform", "_value": [0.0, 1.0]} for i in range(8)}
MINMIN = {"default": "minimize", "f2": "minimize"}


def zdt(params: dict) -> dict:
    f = ZDT.evaluate(np.array([params[f"x{i}"] for i in range(8)]))
    return {"default": float(f[0]), "f2": float(f[1])}


def test_adaptive_switching_picks_the_model_that_fits() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((120, 6))
    smooth = X @ np.array([3.0, -2.0, 1.0, 0.5, 0.0, 1.5])  # linear: the RBF's linear tail is exact
    model = AdaptiveSwitching(pool=("rbf", "carts"), seed=0).fit(X, smooth)
    assert model.winner == "rbf", model.scores
    steps = np.floor(4 * X[:, 0]) + 0.0 * X[:, 1:].sum(axis=1)  # axis-aligned steps, five irrelevant features
    model = AdaptiveSwitching(pool=("rbf", "carts"), seed=0).fit(X, steps)
    assert model.winner == "carts", model.scores
    assert set(model.scores) == {"rbf", "carts"} and all(math.isfinite(s["tau_mean"]) for s in model.scores.values())
    with pytest.raises(ValueError, match="surrogate='krig'"):
        make_surrogate("krig")


def test_every_surrogate_ranks_a_smooth_function() -> None:
    rng = np.random.default_rng(1)
    X, Xt = rng.random((80, 5)), rng.random((40, 5))
    f = lambda Z: np.sin(3 * Z[:, 0]) + Z[:, 1] ** 2 - Z[:, 2]  # noqa: E731
    for name in ("rbf", "gp", "mlp", "carts", "as"):
        q = quality(make_surrogate(name, seed=0).fit(X, f(X)).predict(Xt), f(Xt))
        assert q["n"] == 40 and q["tau"] > 0.5, (name, q)


def test_msunas_beats_nsga2_at_equal_budget_and_scores_held_out_predictions(tmp_path: Path) -> None:
    tuner = MSuNASTuner(objectives=MINMIN, surrogate="rbf", initial_samples=16, batch_size=6, seed=2,
                        output_dir=str(tmp_path))
    done = simulate(tuner, ZDT_SPACE, zdt, n_trials=76, concurrency=3)
    assert len(done) == 76 and tuner.iteration >= 9
    baseline = NSGA2Tuner(objectives=MINMIN, population_size=16, seed=2)
    simulate(baseline, ZDT_SPACE, zdt, n_trials=76, concurrency=3)
    ref = np.array([1.1, 1.1])
    ours = hypervolume(np.array([r.F for r in tuner.archive.front()]), ref)
    theirs = hypervolume(np.array([r.F for r in baseline.archive.front()]), ref)
    assert ours > theirs + 0.1, (ours, theirs)
    # held-out: a candidate's prediction was written to its iteration file before the trial ran
    iters = sorted(tmp_path.glob("iter_*.json"))
    assert [int(p.stem[5:]) for p in iters] == list(range(1, tuner.iteration + 1))
    first = json.loads(iters[0].read_text())
    assert first["archive_size"] >= 13 and len(first["candidates"]) == 6  # planned while the design still ran
    predicted = {json.dumps(c["parameters"], sort_keys=True): c["predicted"] for p in iters
                 for c in json.loads(p.read_text())["candidates"]}
    scored = [r for r in tuner.archive.finished if "predicted_f2" in r.info]
    assert len(scored) == len(done) - 16  # every point after the design, none of the design
    for r in scored:
        assert predicted[r.key]["f2"] == r.info["predicted_f2"]
    q = tuner.held_out_quality()
    assert q["f2"]["n"] == len(scored) and q["f2"]["tau"] > 0.3
    last = json.loads(iters[-1].read_text())
    assert last["held_out_quality"]["f2"]["n"] > 0 and last["surrogates"][0]["model"] == "rbf"
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert len(history) == 1 + len(done) and "info/predicted_f2" in history[0]


def test_exact_costs_are_never_predicted_and_constraints_hold_before_dispatch() -> None:
    from nni_ext.cost import CostTable
    from nni_ext.spaces import create_space

    space = create_space("nas-bench-201")
    table = CostTable.cached(space)
    limit = 600_000
    tuner = MSuNASTuner(objectives={"default": "maximize", "params": "minimize"}, constraints={"params": f"<= {limit}"},
                        space="nas-bench-201", surrogate="rbf", initial_samples=10, batch_size=4, seed=0)
    lookup = NasBench201Table("cifar10")
    done = simulate(tuner, space.to_nni(), lambda p: {"default": lookup.lookup(p)["default"]}, n_trials=30,
                    concurrency=2)
    assert len(done) == 30 and tuner.exact == ["params"] and tuner.predicted == ["default"]
    assert all(table.cost(p).params <= limit for p, _ in done)  # infeasible cells are never dispatched
    # the trial reported no params: the archive has the exact count for every record
    assert all(r.metrics["params"] == table.cost(r.params).params for r in tuner.archive.finished)
    # the design includes the cheapest cell of the space (all "none")
    assert done and any(set(p.values()) == {"none"} for p, _ in done)


def test_latency_from_the_space_is_exact_in_history_and_constraints_hold_before_dispatch(tmp_path: Path) -> None:
    """NAS-Bench-201 with a dataset: latency_ms is the table's (never predicted) and a limit on it is pre-checked."""
    import csv

    from nni_ext.nb201 import OPS, table

    lookup = NasBench201Table("cifar10")
    limit = 12.0  # ms: about a third of the cells are slower
    tuner = MSuNASTuner(objectives={"default": "maximize", "latency_ms": "minimize"},
                        constraints={"latency_ms": f"<= {limit}"}, space="nas-bench-201",
                        space_args={"dataset": "cifar10"}, surrogate="rbf", selection="hvi", initial_samples=8,
                        batch_size=4, seed=1, output_dir=str(tmp_path))
    # the trial reports a latency that is wrong on purpose: the table's value must win
    done = simulate(tuner, {label: {"_type": "choice", "_value": list(OPS)} for label in LABELS},
                    lambda p: {"default": lookup.lookup(p, seed=0)["default"], "latency_ms": 1e6}, n_trials=24,
                    concurrency=2)
    assert len(done) == 24 and tuner.exact == ["latency_ms"] and tuner.predicted == ["default"]
    truth = {json.dumps(p, sort_keys=True): lookup.lookup(p)["latency_ms"] for p, _ in done}
    assert all(v <= limit for v in truth.values())  # no dispatched cell breaks the limit
    assert (table("cifar10").latency_ms > limit).mean() > 0.2  # and the limit does cut the space
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    for row in rows:
        params = json.loads(row["parameters"])
        assert float(row["latency_ms"]) == pytest.approx(truth[json.dumps(params, sort_keys=True)], rel=1e-9)
    iteration = json.loads(sorted(tmp_path.glob("iter_*.json"))[-1].read_text())
    assert [s["objective"] for s in iteration["surrogates"]] == ["default"]  # one surrogate: accuracy only


def test_latency_table_class_arg_makes_latency_exact_for_msunas_and_nsga2(tmp_path: Path) -> None:
    """A per-layer table (file or folder of <r>_lookup_table.yaml): latency_ms is the sum of the layers' means."""
    from nni_ext.cost import ExactCosts, LatencyTable
    from nni_ext.spaces import create_space

    space = create_space("nas-bench-201")
    keys = sorted(space.all_latency_keys(32))
    table = LatencyTable({k: {"mean": 0.5 + i, "std": 0.0, "count": 1} for i, k in enumerate(keys)})
    (tmp_path / "tables").mkdir()
    table.save(tmp_path / "tables" / "32_lookup_table.yaml")
    table.save(tmp_path / "one.yaml")
    exact = lambda p: table.predict(space.latency_keys(p, 32))  # noqa: E731
    lookup = NasBench201Table("cifar10")
    limit = float(np.median([exact(space.sample(np.random.default_rng(i))) for i in range(50)]))
    common = dict(objectives={"default": "maximize", "latency_ms": "minimize"},
                  constraints={"latency_ms": f"<= {limit}"}, space="nas-bench-201", seed=0)
    for tuner in (MSuNASTuner(**common, latency_table=str(tmp_path / "tables"), surrogate="rbf", initial_samples=6,
                              batch_size=3),
                  NSGA2Tuner(**common, latency_table=str(tmp_path / "one.yaml"), population_size=6)):
        done = simulate(tuner, space.to_nni(), lambda p: {"default": lookup.lookup(p)["default"]}, n_trials=15)
        assert len(done) == 15 and all(exact(p) <= limit for p, _ in done), type(tuner).__name__
        assert all(r.metrics["latency_ms"] == pytest.approx(exact(r.params)) for r in tuner.archive.finished)
    assert ExactCosts(space, latency=tmp_path / "tables").latency_ms(done[0][0]) == pytest.approx(exact(done[0][0]))
    with pytest.raises(ValueError, match="latency_table sums per-layer latencies of a space's layers"):
        MSuNASTuner(objectives=MINMIN, latency_table=str(tmp_path / "one.yaml"))
    with pytest.raises(ValueError, match="latency_table=3"):
        NSGA2Tuner(objectives=MINMIN, space="nas-bench-201", latency_table=3)


def test_bad_class_args_are_one_clear_value_error() -> None:
    for args, match in (({"surrogate": "krig"}, "surrogate='krig'"), ({"batch_size": "8"}, "batch_size='8'"),
                        ({"selection": "best"}, "selection='best'"), ({"initial_sample": 3}, "initial_sample")):
        with pytest.raises(ValueError, match=match):
            MSuNASTuner(objectives=MINMIN, **args)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_nnictl_msunas_on_nas_bench_201_then_resume_through_import_data(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "configs" / "nb201_msunas.yml").read_text())
    classargs = {**config["tuner"]["classArgs"], "initial_samples": 9, "batch_size": 3}
    config.update(searchSpaceFile=str(REPO / "search_spaces" / "nas-bench-201.json"), trialCodeDirectory=str(REPO),
                  trialCommand=f"{sys.executable} -m nni_ext.trials.nb201_trial --dataset cifar10 --seed-from-trial",
                  experimentWorkingDirectory=str(tmp_path / "experiments"), maxTrialNumber=18, trialConcurrency=3,
                  tuner={"className": "nni_ext.tuners.MSuNASTuner", "codeDirectory": str(REPO),
                         "classArgs": classargs})
    started = time.time()
    trials, directory = run_until_done(config, tmp_path, timeout=400)
    print(f"18 trials in {time.time() - started:.0f} s")
    assert len(trials) == 18
    out = directory / "msunas"
    iters = sorted(out.glob("iter_*.json"))
    assert len(iters) >= 3 and (out / "archive.json").is_file()
    assert json.loads((out / "archive.json").read_text())["evaluated"] == 18
    evaluated = {json.dumps({k: t.parameters[k] for k in LABELS}, sort_keys=True) for t in trials}
    assert len(evaluated) == 18  # nothing proposed twice

    # what `nnictl resume` does: a fresh tuner on the same files gets the finished trials through import_data
    resumed = MSuNASTuner(**classargs, output_dir=str(out))
    resumed.update_search_space(json.loads((REPO / "search_spaces" / "nas-bench-201.json").read_text()))
    resumed.import_data([{"parameter": t.parameters, "value": json.dumps(encode_report(t.metrics, t.parameters))}
                         for t in trials])
    assert len(resumed.archive.finished) == 18 and resumed.iteration == len(iters)
    for pid in range(6):
        params = resumed.generate_parameters(100 + pid)
        assert json.dumps(params, sort_keys=True) not in evaluated
        evaluated.add(json.dumps(params, sort_keys=True))
    assert (out / f"iter_{len(iters) + 1:03d}.json").is_file()  # numbering continues, nothing overwritten
