"""Nothing lost across a crash: the NNI manager is killed (``kill -9``) mid-search, then ``nnictl resume``.

The NSGA2 tuner's archive files before the crash must be a prefix of the files after it (the failed
trials NNI does not export included), the hypervolume reference point must stay the same, and when the
experiment is DONE the files must hold every trial that reported.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from nni_ext import experiment

from .conftest import REPO

TRIALS = 36


def _csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _manager_pids(experiment_id: str) -> list[int]:
    """The NNI manager's processes (node, started with the experiment id on its command line)."""
    out = subprocess.run(["pgrep", "-f", f"main.js.*{experiment_id}"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_archive_files_survive_a_killed_manager_and_resume(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "configs" / "moo_zdt1.yml").read_text())
    config.update(
        searchSpaceFile=str(REPO / "examples" / "moo_benchmark" / "zdt_space.json"), trialCodeDirectory=str(REPO),
        trialCommand="python examples/moo_benchmark/trial.py --problem zdt1 --fail-above 0.9",
        experimentWorkingDirectory=str(tmp_path / "experiments"), maxTrialNumber=TRIALS, trialConcurrency=2,
        tuner={"className": "nni_ext.tuners.NSGA2Tuner", "codeDirectory": str(REPO),
               "classArgs": {"objectives": {"default": "minimize", "f2": "minimize"}, "population_size": 6,
                             "seed": 5}})
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    exp = experiment.create(tmp_path / "config.yml")
    moo = exp.directory / "moo"
    killed = False
    try:
        deadline = time.time() + 300
        while len([t for t in exp.trials() if t.metrics]) < 14:
            assert time.time() < deadline and exp.status()["status"] not in experiment.TERMINAL, exp.status()
            time.sleep(0.5)
        pids = _manager_pids(exp.id)
        assert pids, "the NNI manager's process was not found"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        killed = True
        time.sleep(3)  # the dispatcher loses its manager; nothing writes the files any more
        before = {name: (moo / name).read_text() for name in ("history.csv", "hypervolume.csv", "archive.json")}
    finally:
        if not killed:
            exp.stop()
    exp = experiment.resume(exp.id)
    try:
        assert exp.wait(timeout=500) == "DONE", exp.status()
        trials = exp.trials()
    finally:
        exp.stop()

    history_before = list(csv.DictReader(before["history.csv"].splitlines()))
    history_after = _csv(moo / "history.csv")
    assert len(history_before) >= 14
    assert history_after[:len(history_before)] == history_before, "rows before the crash changed or were lost"
    hv_before = list(csv.DictReader(before["hypervolume.csv"].splitlines()))
    hv_after = _csv(moo / "hypervolume.csv")
    assert hv_after[:len(hv_before)] == hv_before, "the hypervolume curve before the crash changed"
    ref_before = json.loads(before["archive.json"])["reference_point"]
    archive = json.loads((moo / "archive.json").read_text())
    assert ref_before is not None and archive["reference_point"] == ref_before
    assert all(r["ref_default"] == hv_after[-1]["ref_default"] for r in hv_after[len(hv_before):])
    # complete at DONE: every trial that reported is in the history, and the files agree with each other
    reported = {json.dumps(t.parameters, sort_keys=True) for t in trials if t.metrics and t.parameters}
    assert reported <= {r["parameters"] for r in history_after}
    assert len(hv_after) == len(history_after) == archive["evaluated"]
    assert any(r["status"] == "failed" for r in history_after)
    assert float(hv_after[-1]["hypervolume"]) == pytest.approx(archive["hypervolume"])
