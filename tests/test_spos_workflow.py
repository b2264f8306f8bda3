"""SPOS end to end in real nnictl experiments: evolution under a FLOPs limit, stop + resume, and the quickstart."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

from nni_ext import experiment
from nni_ext.cost import CostTable
from nni_ext.spaces import create_space

from .conftest import REPO, run_cli

LIMIT = 480_000
POPULATION, HALF, GENERATIONS = 6, 3, 3
TOTAL = POPULATION + (GENERATIONS - 1) * 2 * HALF


def _config(tmp_path: Path) -> Path:
    config = {
        "experimentName": "test-spos-evolution",
        "searchSpaceFile": str(REPO / "search_spaces" / "spos-digits.json"),
        "trialCommand": f"{sys.executable} -m nni_ext.trials.cost_trial --space spos-digits",
        "trialCodeDirectory": str(tmp_path),
        "trialConcurrency": 2,
        "maxTrialNumber": TOTAL,
        "experimentWorkingDirectory": str(tmp_path / "experiments"),
        "tuner": {"className": "nni_ext.tuners.EvolutionWithFlops", "codeDirectory": str(tmp_path),
                  "classArgs": {"space": "spos-digits", "flops_limit": LIMIT, "population_size": POPULATION,
                                "topk": 2, "num_crossover": HALF, "num_mutation": HALF,
                                "num_generations": GENERATIONS, "seed": 3}},
        "trainingService": {"platform": "local"},
    }
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    return tmp_path / "config.yml"


@pytest.mark.timeout(900)
def test_evolution_with_flops_survives_stop_and_resume(tmp_path: Path) -> None:
    exp = experiment.create(_config(tmp_path))
    try:
        deadline = time.time() + 300
        before: list[experiment.Trial] = []
        while len(before) < POPULATION + 1:
            assert time.time() < deadline and exp.status()["status"] not in experiment.TERMINAL, exp.status()
            time.sleep(1)
            before = [t for t in exp.trials() if t.metrics]
    finally:
        exp.stop()
    exp = experiment.resume(exp.id)
    try:
        assert exp.wait(timeout=400) == "DONE", exp.status()
        # every trial with a final metric, including one that reported just before the stop cancelled it
        # (NNI exports those for import_data too); trials cancelled before reporting are lost on resume
        trials = [t for t in exp.trials() if t.metrics]
        directory = exp.directory
    finally:
        exp.stop()
    table = CostTable.cached(create_space("spos-digits"))
    archs = [json.dumps(t.parameters, sort_keys=True) for t in trials]
    assert len(archs) == len(set(archs)), "an architecture was evaluated twice"
    assert all(t.metrics["flops"] == table.cost(t.parameters).flops <= LIMIT for t in trials)
    assert len(trials) >= TOTAL - 2  # trials cancelled by the stop may be lost, never repeated
    assert {t.parameter_id for t in before} <= {t.parameter_id for t in trials}  # imported, not redone
    generations = sorted((directory / "spos").glob("generation_*.json"))
    assert len(generations) >= GENERATIONS - 1
    best = json.loads((directory / "spos" / "best_architecture.json").read_text())
    assert create_space("spos-digits").validate(best) == best
    assert table.cost(best).flops == max(t.metrics["flops"] for t in trials)  # default = MFLOPs, maximised


@pytest.mark.timeout(900)
def test_quickstart_runs_the_whole_chain(tmp_path: Path) -> None:
    proc = run_cli("quickstart", "--workdir", str(tmp_path / "qs"), "--port", str(experiment.free_port()),
                   "--steps", "40", "--population", "4", "--topk", "2", "--generations", "2",
                   "--recal-batches", "5", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[4/4 result] best of" in proc.stdout
    best = json.loads((tmp_path / "qs" / "best_architecture.json").read_text())
    space = create_space("spos-digits")
    assert space.validate(best) == best
    assert CostTable.cached(space).cost(best).flops <= LIMIT
    assert (tmp_path / "qs" / "supernet" / "checkpoint.pth").exists()
    assert "FLOPs" in proc.stdout and "top-1" in proc.stdout
