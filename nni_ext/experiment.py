"""Drive nnictl experiments from Python: create, wait with progress, read trials, stop, resume.

Used by ``nni-ext quickstart`` and the end-to-end tests. Trials are joined to the parameters
they really ran through the parameter id each trial reports, because NNI 3.0's local training
service can start a trial with another trial's parameters (microsoft/nni#5726).
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .core.metrics import decode_values
from .errors import NniExtError

TERMINAL = ("DONE", "ERROR", "STOPPED")
#: trial states that may still report
ACTIVE = ("WAITING", "RUNNING", "UNKNOWN")


def free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nnictl(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run this environment's ``nnictl`` (next to the running interpreter) and capture its output."""
    exe = Path(sys.executable).with_name("nnictl")
    env = dict(os.environ, PATH=f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([str(exe) if exe.exists() else "nnictl", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@dataclass
class Trial:
    """One finished or running trial, with the parameters it really ran."""

    trial_id: str
    status: str
    parameter_id: str | None
    parameters: dict[str, Any] | None
    metrics: dict[str, Any] | None
    finished_at: int | None = None  # ms timestamp of the final metric, where known


@dataclass
class Experiment:
    """A running (or stopped) nnictl experiment on localhost."""

    id: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rest(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}/api/v1/nni/{path}", timeout=10) as resp:
            return json.loads(resp.read())

    def status(self) -> dict[str, Any]:
        return self.rest("check-status")

    @property
    def directory(self) -> Path:
        params = self.rest("experiment")["params"]
        root = params.get("experimentWorkingDirectory") or Path.home() / "nni-experiments"
        return Path(root).expanduser() / self.id

    def trials(self) -> list[Trial]:
        jobs = self.rest("trial-jobs")
        issued: dict[str, dict[str, Any]] = {}
        for job in jobs:
            for text in job.get("hyperParameters", []):
                record = json.loads(text)
                issued[str(record["parameter_id"])] = record["parameters"]
        out = []
        for job in jobs:
            finals = job.get("finalMetricData") or []
            pid = str(finals[0]["parameterId"]) if finals else None
            metrics = decode_values(finals[0]["data"]) if finals else None
            out.append(Trial(job["trialJobId"], job["status"], pid, issued.get(pid) if pid else None, metrics))
        return out

    def wait(self, *, timeout: float = 3600, poll: float = 2.0,
             progress: Callable[[Experiment, dict[str, Any]], None] | None = None,
             tuner_end: bool = False) -> str:
        """Poll until the experiment is DONE/ERROR/STOPPED; returns that status.

        With ``tuner_end``, also return ``"TUNER_NO_MORE_TRIAL"`` once the tuner has said it has no
        more trials and no trial is waiting or running on two polls in a row (NNI 3.0 never turns
        that status into DONE; a tuner that finishes before ``maxTrialNumber`` ends this way).
        """
        deadline = time.time() + timeout
        quiet_polls = 0
        while True:
            status = self.status()
            if progress:
                progress(self, status)
            if status["status"] in TERMINAL:
                return status["status"]
            if tuner_end and status["status"] == "TUNER_NO_MORE_TRIAL":
                busy = [t for t in self.trials() if t.status in ACTIVE]
                quiet_polls = 0 if busy else quiet_polls + 1
                if quiet_polls >= 2:
                    return status["status"]
            else:
                quiet_polls = 0
            if time.time() > deadline:
                raise NniExtError(f"experiment {self.id} still {status['status']} after {timeout:g}s; "
                                  f"see {self.url} or `nnictl stop {self.id}`")
            time.sleep(poll)

    def stop(self) -> None:
        proc = nnictl("stop", self.id)
        if proc.returncode != 0:
            raise NniExtError(f"nnictl stop {self.id} failed: {proc.stderr.strip() or proc.stdout.strip()}")


def _wait_for_rest(exp: Experiment, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            exp.status()
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.time() > deadline:
                raise NniExtError(f"NNI manager of experiment {exp.id} did not answer on port {exp.port}") from None
            time.sleep(0.5)


def create(config: str | os.PathLike, *, port: int | None = None) -> Experiment:
    """``nnictl create --config CONFIG --port PORT``; returns the experiment once its REST API answers."""
    chosen = port
    for attempt in range(3):
        port = chosen or free_port()
        proc = nnictl("create", "--config", str(config), "--port", str(port))
        text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
        match = re.search(r"Experiment ID: (\w+)", text)
        if proc.returncode == 0 and match:
            break
        # nnictl gives NNI's web server about 3 s to answer (nni.experiment.launcher._check_rest_server); on a
        # loaded machine it can take longer (ConnectionError), and another process can take the free port
        # between our check and nnictl's start (nnictl then cannot decode that server's answer): try again
        # on another port, once the half-started experiment is stopped
        transient = "JSONDecodeError" in text or "ConnectionError" in text
        if chosen or not transient or attempt == 2:
            break
        if match:
            nnictl("stop", match.group(1))
    if proc.returncode != 0 or not match:
        lines = [ln for ln in text.splitlines() if "pkg_resources" not in ln and ln.strip()]
        raise NniExtError(f"nnictl create --config {config} failed: {' / '.join(lines[-2:]) or 'no output'}")
    exp = Experiment(match.group(1), port)
    _wait_for_rest(exp)
    return exp


def resume(experiment_id: str, *, port: int | None = None) -> Experiment:
    """``nnictl resume ID --port PORT``."""
    port = port or free_port()
    proc = nnictl("resume", experiment_id, "--port", str(port))
    if proc.returncode != 0:
        raise NniExtError(f"nnictl resume {experiment_id} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    exp = Experiment(experiment_id, port)
    _wait_for_rest(exp)
    return exp
