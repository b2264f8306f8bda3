"""Real nnictl experiments on localhost: a registered tuner name and a className path both run and stop cleanly."""
from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from nni_ext.cost import CostTable
from nni_ext.spaces import create_space

from .conftest import REPO, run_cli, venv_env

TRIALS = 4
FLOPS_LIMIT = 310e6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni/{path}", timeout=10) as resp:
        return json.loads(resp.read())


def _run_experiment(tmp_path: Path, tuner: dict) -> list[dict]:
    config = yaml.safe_load((REPO / "configs" / "spos_cost_random.yml").read_text())
    config.update(searchSpaceFile=str(REPO / "search_spaces" / "spos.json"), trialCodeDirectory=str(tmp_path),
                  experimentWorkingDirectory=str(tmp_path / "experiments"), maxTrialNumber=TRIALS, tuner=tuner)
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    create = subprocess.run(["nnictl", "create", "--config", str(tmp_path / "config.yml"), "--port", str(port)],
                            env=venv_env(), capture_output=True, text=True, timeout=120)
    assert create.returncode == 0, create.stdout + create.stderr
    try:
        deadline = time.time() + 240
        status = None
        while time.time() < deadline:
            status = _get(port, "check-status")["status"]
            if status in ("DONE", "ERROR", "STOPPED"):
                break
            time.sleep(2)
        jobs = _get(port, "trial-jobs")
        assert status == "DONE", (status, _get(port, "check-status"), jobs)
        return jobs
    finally:
        stop = subprocess.run(["nnictl", "stop", "--port", str(port)], env=venv_env(), capture_output=True,
                              text=True, timeout=120)
        assert stop.returncode == 0, stop.stdout + stop.stderr


def _check_trials(jobs: list[dict]) -> None:
    assert len(jobs) == TRIALS
    table = CostTable.cached(create_space("spos"), 224)
    # NNI 3.0's local service may start a trial with another job's parameters (microsoft/nni#5726), so
    # results are matched to parameters by the parameter id each trial reports, as the dispatcher does
    issued = {str(p["parameter_id"]): p["parameters"] for p in (json.loads(j["hyperParameters"][0]) for j in jobs)}
    assert len(issued) == TRIALS
    for job in jobs:
        assert job["status"] == "SUCCEEDED", job
        final = job["finalMetricData"][0]
        metrics = json.loads(json.loads(final["data"]))
        assert metrics["flops"] == table.cost(issued[final["parameterId"]]).flops <= FLOPS_LIMIT, job
        assert metrics["default"] == pytest.approx(metrics["flops"] / 1e6)


@pytest.mark.timeout(600)
def test_registered_tuner_runs_in_nnictl(tmp_path: Path) -> None:
    proc = run_cli("register")
    assert proc.returncode == 0 and "registered tuner ConstrainedRandom" in proc.stdout, proc.stderr
    registered = yaml.safe_load((Path(venv_env()["NNI_CONFIG_DIR"]) / "registered_algorithms.yml").read_text())
    assert {"builtinName": "ConstrainedRandom", "className": "nni_ext.tuners.ConstrainedRandomTuner"}.items() <= \
        registered["tuners"][0].items()
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
