"""Real nnictl experiments on localhost: a registered tuner name and a className path both run and stop cleanly."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nni_ext import experiment
from nni_ext.cost import CostTable
from nni_ext.spaces import create_space

from .conftest import REPO, run_cli, venv_env

TRIALS = 4
FLOPS_LIMIT = 310e6


def _run_experiment(tmp_path: Path, tuner: dict) -> list[experiment.Trial]:
    config = yaml.safe_load((REPO / "configs" / "spos_cost_random.yml").read_text())
    config.update(searchSpaceFile=str(REPO / "search_spaces" / "spos.json"), trialCodeDirectory=str(tmp_path),
                  experimentWorkingDirectory=str(tmp_path / "experiments"), maxTrialNumber=TRIALS, tuner=tuner)
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    exp = experiment.create(tmp_path / "config.yml")
    try:
        assert exp.wait(timeout=240) == "DONE", exp.status()
        assert exp.directory == tmp_path / "experiments" / exp.id
        return exp.trials()
    finally:
        exp.stop()


def _check_trials(trials: list[experiment.Trial]) -> None:
    assert len(trials) == TRIALS
    table = CostTable.cached(create_space("spos"), 224)
    assert len({t.parameter_id for t in trials}) == TRIALS
    for trial in trials:
        assert trial.status == "SUCCEEDED", trial
        assert trial.metrics["flops"] == table.cost(trial.parameters).flops <= FLOPS_LIMIT, trial
        assert trial.metrics["default"] == pytest.approx(trial.metrics["flops"] / 1e6)


@pytest.mark.timeout(600)
def test_registered_tuner_runs_in_nnictl(tmp_path: Path) -> None:
    proc = run_cli("register")
    assert proc.returncode == 0 and "registered tuner ConstrainedRandom" in proc.stdout, proc.stderr
    registered = yaml.safe_load((Path(venv_env()["NNI_CONFIG_DIR"]) / "registered_algorithms.yml").read_text())
    entries = {t["builtinName"]: t["className"] for t in registered["tuners"]}
    assert entries["ConstrainedRandom"] == "nni_ext.tuners.ConstrainedRandomTuner"
    assert entries["EvolutionWithFlops"] == "nni_ext.tuners.EvolutionWithFlops"
    tuner = {"name": "ConstrainedRandom",
             "classArgs": {"space": "spos", "constraints": {"flops": f"<= {FLOPS_LIMIT:g}"}, "seed": 1}}
    _check_trials(_run_experiment(tmp_path, tuner))
    proc = run_cli("unregister")
    assert proc.returncode == 0 and "ConstrainedRandom" in proc.stdout
    registered = yaml.safe_load((Path(venv_env()["NNI_CONFIG_DIR"]) / "registered_algorithms.yml").read_text())
    assert not (registered or {}).get("tuners")


@pytest.mark.timeout(600)
def test_class_name_works_without_registering(tmp_path: Path) -> None:
    run_cli("unregister")
    tuner = {"className": "nni_ext.tuners.ConstrainedRandomTuner", "codeDirectory": str(REPO),
             "classArgs": {"space": "spos", "constraints": {"flops": f"<= {FLOPS_LIMIT:g}"}, "seed": 2}}
    _check_trials(_run_experiment(tmp_path, tuner))
