"""A real MOOD-NAS sweep under nnictl on the digits (two PC-DARTS trials at a time), then `nni-ext pcdarts analyse`."""
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

MAX_TRIALS = 5
TRIAL_ARGS = ("--image-size 16 --subsample 0.25 --regularizer l1 --weight-decay 0 --epochs 2 --arch-warmup 1 "
              "--batch-size 64 --init-channels 4 --layers 3 --no-flip --eval-channels 8 --eval-layers 5 "
              "--threads 1 --device cpu")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, digits_root: Path) -> tuple[Path, list[experiment.Trial]]:
    tmp = tmp_path_factory.mktemp("pcdarts_sweep")
    config = yaml.safe_load((REPO / "configs" / "pcdarts_sweep_digits.yml").read_text())
    assert config["trialConcurrency"] == 2
    config.update(searchSpaceFile=str(REPO / "search_spaces" / "pcdarts-sweep.json"), trialCodeDirectory=str(REPO),
                  trialCommand=f"python -m nni_ext.trials.pcdarts_search_trial --data {digits_root} {TRIAL_ARGS}",
                  experimentWorkingDirectory=str(tmp / "experiments"),
                  tuner={**config["tuner"], "codeDirectory": str(REPO),
                         "classArgs": {**config["tuner"]["classArgs"], "max_trials": MAX_TRIALS}})
    (tmp / "config.yml").write_text(yaml.safe_dump(config))
    exp = experiment.create(tmp / "config.yml")
    try:
        directory = exp.directory
        status = exp.wait(timeout=420, poll=3.0, tuner_end=True)
        assert status == "TUNER_NO_MORE_TRIAL", exp.status()
        trials = exp.trials()
    finally:
        exp.stop()
    return directory, trials


@pytest.mark.timeout(600)
def test_sweep_runs_every_trial_and_fills_the_front(sweep) -> None:  # type: ignore[no-untyped-def]
    directory, trials = sweep
    summary = json.loads((directory / "sweep" / "front.json").read_text())
    # the sweep ends by itself (every gap under delta) or at max_trials
    assert summary["finished"] and len(trials) == summary["trials"] and 3 <= len(trials) <= MAX_TRIALS
    assert all(t.status == "SUCCEEDED" for t in trials), [t.status for t in trials]
    nus = sorted(t.metrics["nu"] for t in trials)
    assert nus[0] == 0.0 and 0.2 in nus and len(set(nus)) == len(trials)  # the two starting weights, then new ones
    for t in trials:
        assert t.parameters["nu"] == pytest.approx(t.metrics["nu"])
        assert {"criterion_loss", "reg_loss", "params", "flops", "genotype"} <= set(t.metrics)
    F = np.array([(t.metrics["reg_loss"], t.metrics["criterion_loss"]) for t in trials])
    front = {tuple(F[i]) for i in non_dominated(F)}
    assert {(p["reg_loss"], p["criterion_loss"]) for p in summary["front"]} == front


@pytest.mark.timeout(300)
def test_analyse_prints_the_front_and_writes_importable_genotypes(sweep, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    directory, trials = sweep
    out = tmp_path / "analysis"
    proc = run_cli("pcdarts", "analyse", str(directory), "--out", str(out), "--channels", "8", "--layers", "5",
                   "--image-size", "16")
    assert proc.returncode == 0, proc.stderr
    assert "on the (reg_loss, criterion_loss) front" in proc.stdout and "l1_loss_" in proc.stdout
    with open(out / "front.csv") as fh:
        rows = list(csv.DictReader(fh))
    F = np.array([(t.metrics["reg_loss"], t.metrics["criterion_loss"]) for t in trials])
    assert len(rows) == len(non_dominated(F)) >= 2
    assert all(float(r["latency_ms"]) > 0 for r in rows)
    assert [float(r["reg_loss"]) for r in rows] == sorted(float(r["reg_loss"]) for r in rows)
    for name in ("front.png", "correlation.png", "genotypes.json", "sweep.csv"):
        assert (out / name).stat().st_size > 0, name
    from nni_ext.pcdarts.genotypes import load_genotype, parse_genotype

    for r in rows:
        assert load_genotype(f"{out / 'genotypes.py'}:{r['name']}") == parse_genotype(r["genotype"])
    zero = [r for r in rows if float(r["nu"]) == 0.0]
    assert not zero or zero[0]["name"] == "l1_loss_0"
    bad = run_cli("pcdarts", "analyse", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
