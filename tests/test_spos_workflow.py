"""SPOS end to end in real nnictl experiments: evolution under a FLOPs limit, stop + resume, and the quickstart."""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import pytest
import yaml

from nni_ext import experiment
from nni_ext.cli.quickstart_cmd import DEFAULT_STEPS
from nni_ext.cost import CostTable
from nni_ext.spaces import create_space
from nni_ext.trainers.checkpoint import read_checkpoint

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


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quickstart_finds_a_good_digits_network_and_runs_twice(tmp_path: Path) -> None:
    """The README's first command: its supernet (full default recipe) must learn, and its best network be good.

    A smaller search than the default (8 trials, not 32) keeps it to CI time; a second run in the same folder
    reuses data and supernet; a run with other supernet settings stops with one line naming them.
    """
    work = tmp_path / "qs"
    common = ["quickstart", "--workdir", str(work), "--recal-batches", "10"]
    proc = run_cli(*common, "--port", str(experiment.free_port()), "--population", "4", "--topk", "2",
                   "--generations", "2", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[4/4 result] best of" in proc.stdout and "training from scratch" in proc.stdout
    best = json.loads((work / "best_architecture.json").read_text())
    space = create_space("spos-digits")
    assert space.validate(best) == best
    assert CostTable.cached(space).cost(best).flops <= LIMIT
    top1 = float(re.search(r"\n  top-1 (\d\.\d+) ", proc.stdout).group(1))  # on the whole val split (359 images)
    assert top1 >= 0.90, proc.stdout[-3000:]
    assert re.search(r"random architectures under the same limit \(generation 0, 4\): top-1 mean 0\.\d+",
                     proc.stdout), proc.stdout[-2000:]
    # the supernet itself learned: its fixed evaluation path, far above chance (0.1) after its steps
    ckpt = read_checkpoint(work / "supernet" / "checkpoint.pth", kind="spos_supernet")
    assert ckpt["step"] == DEFAULT_STEPS and ckpt["history"][-1]["top1"] > 0.8, ckpt["history"][-1]
    picture = work / "search.png"
    assert f"picture: {picture}" in proc.stdout and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mtime = (work / "supernet" / "checkpoint.pth").stat().st_mtime_ns

    again = run_cli(*common, "--port", str(experiment.free_port()), "--population", "2", "--topk", "1",
                    "--generations", "1", timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"[1/4 data] using {work / 'data' / 'digits'}" in again.stdout
    assert "[2/4 supernet] reusing" in again.stdout and "[4/4 result] best of 2" in again.stdout
    assert (work / "supernet" / "checkpoint.pth").stat().st_mtime_ns == mtime

    other = run_cli(*common, "--steps", "400", timeout=120)
    assert other.returncode == 2
    assert other.stderr.strip().splitlines() == [
        f"nni-ext: error: {work / 'supernet' / 'checkpoint.pth'} was trained with other settings (steps "
        f"{DEFAULT_STEPS} -> 400): pass --overwrite to retrain it with these, --resume to continue it with these, "
        "or use another --workdir"]


def _args(**kw) -> argparse.Namespace:  # noqa: ANN003
    from nni_ext.cli.quickstart_cmd import DEFAULT_LR, DEFAULT_MIN_AREA, DEFAULT_STEPS

    return argparse.Namespace(**{**dict(steps=DEFAULT_STEPS, batch_size=64, lr=DEFAULT_LR, min_area=DEFAULT_MIN_AREA,
                                        seed=1, resume=False, overwrite=False), **kw})


def test_quickstart_supernet_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Second runs: reuse a finished supernet of the same settings, resume an interrupted one, else say what differs."""
    from nni_ext.cli import quickstart_cmd as qs
    from nni_ext.errors import NniExtError

    ckpt_path = tmp_path / "checkpoint.pth"
    assert qs.supernet_plan(_args(), ckpt_path)[0] == "train"
    assert qs.supernet_plan(_args(resume=True), ckpt_path)[0] == "train"  # nothing to resume
    ckpt_path.write_bytes(b"")
    stored = {"space_config": create_space("spos-digits").config, "step": DEFAULT_STEPS, "total_steps": DEFAULT_STEPS,
              "sampling": {"kind": "flops-uniform"},
              "args": {"recipe": {"steps": DEFAULT_STEPS, "batch_size": 64, "lr": 0.05, "seed": 1},
                       "run": {"min_area": 0.8}, "crop_size": 32}}
    monkeypatch.setattr("nni_ext.trainers.checkpoint.read_checkpoint", lambda path, kind=None: stored)
    action, why = qs.supernet_plan(_args(), ckpt_path)
    assert action == "reuse" and "same settings" in why
    assert qs.supernet_plan(_args(overwrite=True), ckpt_path)[0] == "train"
    assert qs.supernet_plan(_args(resume=True), ckpt_path)[0] == "reuse"
    stored["step"] = 120
    action, why = qs.supernet_plan(_args(), ckpt_path)
    assert action == "resume" and f"interrupted at step 120/{DEFAULT_STEPS}" in why
    stored["step"] = DEFAULT_STEPS
    with pytest.raises(NniExtError, match=r"other settings \(lr 0.05 -> 0.1; min-area 0.8 -> 0.5\): pass --overwrite"):
        qs.supernet_plan(_args(lr=0.1, min_area=0.5), ckpt_path)
    stored["space_config"] = {k: v for k, v in stored["space_config"].items() if k != "supernet_init"}  # older nni-ext
    with pytest.raises(NniExtError, match=r"other settings \(space \(supernet_init None -> identity\)\)"):
        qs.supernet_plan(_args(), ckpt_path)
    action, why = qs.supernet_plan(_args(resume=True), ckpt_path)
    assert action == "resume" and "under the new settings" in why
    assert qs.supernet_plan(_args(overwrite=True), ckpt_path)[0] == "train"
