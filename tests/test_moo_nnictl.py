"""A real nnictl experiment with NSGA2 (three trials at a time, some crashing, some NaN), then report/select.

No ``reference_point`` is given: the tuner fixes it from its first generation, and ``nni-ext report`` must
give the same hypervolume numbers as the tuner's ``moo/hypervolume.csv`` (one truth per experiment).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from nni_ext import experiment
from nni_ext.pareto import non_dominated

from .conftest import REPO, run_cli

TRIALS = 30


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[experiment.Trial]]:
    tmp = tmp_path_factory.mktemp("moo_exp")
    config = yaml.safe_load((REPO / "configs" / "moo_zdt1.yml").read_text())
    config.update(
        searchSpaceFile=str(REPO / "examples" / "moo_benchmark" / "zdt_space.json"), trialCodeDirectory=str(REPO),
        trialCommand="python examples/moo_benchmark/trial.py --problem zdt1 --fail-above 0.85 --nan-above 0.85",
        experimentWorkingDirectory=str(tmp / "experiments"), maxTrialNumber=TRIALS, trialConcurrency=3,
        tuner={"className": "nni_ext.tuners.NSGA2Tuner", "codeDirectory": str(REPO),
               "classArgs": {"objectives": {"default": "minimize", "f2": "minimize"}, "constraints": {"f2": "<= 5"},
                             "population_size": 8, "seed": 3}})
    (tmp / "config.yml").write_text(yaml.safe_dump(config))
    exp = experiment.create(tmp / "config.yml")
    try:
        status = exp.wait(timeout=400)
        assert status == "DONE", exp.status()
        trials, directory = exp.trials(), exp.directory
    finally:
        exp.stop()
    return directory, trials


def _csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.timeout(600)
def test_nsga2_experiment_finishes_with_consistent_files(finished) -> None:  # type: ignore[no-untyped-def]
    directory, trials = finished
    assert len(trials) == TRIALS
    failed = [t for t in trials if t.status == "FAILED"]
    assert failed, "the run should include crashing trials (x1 > 0.85)"
    moo = directory / "moo"
    history = _csv(moo / "history.csv")
    hv = _csv(moo / "hypervolume.csv")
    # one row per finished trial (a failed one too), generations 0, 1, 2, ... in order of their first result
    assert [int(r["evaluated"]) for r in hv] == list(range(1, TRIALS + 1)) and len(history) == TRIALS
    generations = [int(r["generation"]) for r in hv]
    assert sorted(set(generations)) == list(range(max(generations) + 1)) and max(generations) >= 2
    # the reference point is fixed once the first generation (population_size=8) has finished, then stays
    refs = {(r["ref_default"], r["ref_f2"]) for r in hv}
    assert len(refs) == 1 and "" not in next(iter(refs))
    assert all(r["hypervolume"] == "" for r in hv[:7]) and all(r["hypervolume"] != "" for r in hv[7:])
    assert all(r["status"] in ("succeeded", "failed") for r in history)
    assert any(r["status"] == "failed" and "without a final result" in r["reason"] for r in history)
    ok = [r for r in history if r["status"] == "succeeded"]
    F = np.array([[float(r["default"]), float(r["f2"])] for r in ok])
    front = {ok[i]["parameters"] for i in non_dominated(F, np.array([float(r["violation"]) for r in ok]))}
    pareto = json.loads((moo / "pareto.json").read_text())
    assert pareto["front"] and {json.dumps(p["parameters"], sort_keys=True) for p in pareto["front"]} == front
    # every successful trial's metric matches the problem evaluated on the parameters it ran
    from examples.moo_benchmark.trial import evaluate

    for t in trials:
        if t.status == "SUCCEEDED" and np.isfinite(t.metrics["default"]):
            assert t.metrics["f2"] == pytest.approx(evaluate("zdt1", t.parameters)["f2"])


@pytest.mark.timeout(300)
def test_report_and_select_read_the_experiment(finished, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    directory, trials = finished
    proc = run_cli("report", str(directory), "-o", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "report"
    for name in ("trials.csv", "pareto.csv", "pareto.json", "hypervolume.csv", "pareto_front.png", "hypervolume.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "pareto.json").read_text())
    tuner_front = json.loads((directory / "moo" / "pareto.json").read_text())["front"]
    assert report["objectives"] == {"default": "minimize", "f2": "minimize"}
    # one experiment, one truth: the report rebuilt the tuner's archive with its stored reference point
    archive = json.loads((directory / "moo" / "archive.json").read_text())
    assert report["source"].startswith("tuner archive") and report["reference_point"] == archive["reference_point"]
    assert report["hypervolume"] == pytest.approx(archive["hypervolume"], rel=1e-12) and report["hypervolume"] > 0
    assert _csv(out / "hypervolume.csv") == _csv(directory / "moo" / "hypervolume.csv")
    assert {json.dumps(p["parameters"], sort_keys=True) for p in report["front"]} == {
        json.dumps(p["parameters"], sort_keys=True) for p in tuner_front}
    curve = [float(r["hypervolume"]) for r in _csv(out / "hypervolume.csv") if r["hypervolume"]]
    assert curve == sorted(curve) and curve[-1] == pytest.approx(report["hypervolume"])
    # every trial row names its NNI trial
    assert all(r["trial_id"] for r in _csv(out / "trials.csv"))

    proc = run_cli("select", str(directory), "-n", "3", "-o", str(tmp_path / "knees"))
    assert proc.returncode == 0, proc.stderr
    picks = [json.loads((tmp_path / "knees" / f"pick_{i:02d}.json").read_text()) for i in (1, 2, 3)]
    best = min(p["default"] for p in report["front"])
    assert picks[0]["metrics"]["default"] == pytest.approx(best)  # the best first objective always comes first
    assert len({json.dumps(p["parameters"], sort_keys=True) for p in picks}) == 3
    proc = run_cli("select", str(directory), "-n", "1", "--prefer", "top1#0.8", "-o", str(tmp_path / "bad"))
    assert proc.returncode == 2 and "not an objective" in proc.stderr and "Traceback" not in proc.stderr
