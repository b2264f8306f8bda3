"""NNI's ``remote`` training service for real: an SSH server on this machine, trials over SSH, archives as on local.

The module starts ``/usr/sbin/sshd`` in the foreground on a free port of 127.0.0.1 (host key, authorized keys, pid
file and config in a temporary folder; key authentication only, ``PermitRootLogin prohibit-password``) and logs in
with a fresh ed25519 key as the user running the tests (root in CI). Not a ``useradd`` throw-away user: the venv's
interpreter is a symlink into ``/root/.pyenv`` under a mode-700 ``/root`` (the usual CI layout), which another user
cannot run, and a non-root sshd can only authenticate the user it runs as. The trial side is isolated instead:
sshd's ``SetEnv`` gives every session ``HOME=<scratch>/home``, so NNI's remote files (``~/nni-experiments``: the
uploaded code, the trial keeper, the trials) land there and are removed with the folder.

``pythonPath`` is this venv's ``bin``: nni and nni_ext (installed editable) come from there, as they would from
the trial machine's own environment. NNI 3.0's remote worker runs ``python -m pip install nni --upgrade`` on every
machine it starts; the server also sets ``PIP_NO_INDEX=1`` for its sessions so that this step is satisfied by the
installed nni and never touches a package index (offline CI; this venv is never changed).

Skipped, with the reason, where ``sshd`` is not installed (``.ci/run`` installs ``openssh-server``) or does not
start.
"""
from __future__ import annotations

import csv
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import yaml

from nni_ext import experiment
from nni_ext.core.archive import FILES as MOO_FILES
from nni_ext.pareto import non_dominated

from .conftest import REPO

pytestmark = pytest.mark.slow

SSHD = Path("/usr/sbin/sshd")
SSH_OPTS = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]


@dataclass
class SshServer:
    """A running sshd on 127.0.0.1 and the account the trials log in as."""

    port: int
    user: str
    key: Path
    base: Path  # world-readable scratch folder: the "shared storage" both sides see at the same path
    home: Path  # the remote user's home (its ~/nni-experiments holds the trial side)

    def machine(self, **extra: object) -> dict:
        """One ``machineList`` entry for NNI's remote training service."""
        return {"host": "127.0.0.1", "port": self.port, "user": self.user, "sshKeyFile": str(self.key),
                "pythonPath": str(Path(sys.executable).parent), **extra}

    def ssh(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", *SSH_OPTS, "-i", str(self.key), "-p", str(self.port),
                               f"{self.user}@127.0.0.1", command], capture_output=True, text=True, timeout=timeout)


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)


def _sshd_config(base: Path, port: int, user: str, home: Path) -> Path:
    lines = [
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {base / 'ssh_host_ed25519_key'}",
        f"PidFile {base / 'sshd.pid'}", f"AuthorizedKeysFile {base / 'authorized_keys'}", f"AllowUsers {user}",
        "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password", "UsePAM no", "StrictModes no", "PrintMotd no", "LogLevel VERBOSE",
        # NNI uploads the trial code and launcher files over SFTP
        "Subsystem sftp internal-sftp",
        # the trial side's home (its ~/nni-experiments) in the scratch folder; NNI's worker runs
        # `pip install nni --upgrade`: keep that on the installed nni, offline (one SetEnv line: the first counts)
        f"SetEnv HOME={home} PIP_NO_INDEX=1",
    ]
    path = base / "sshd_config"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def ssh_server() -> Iterator[SshServer]:
    if not SSHD.exists():
        pytest.skip(f"{SSHD} not found: install openssh-server (apt-get install -y openssh-server; .ci/run does)")
    if not shutil.which("ssh-keygen") or not shutil.which("ssh"):
        pytest.skip("ssh / ssh-keygen not found: install openssh-client")
    base = Path(tempfile.mkdtemp(prefix="nni-ext-remote-"))
    base.chmod(0o755)
    user = pwd.getpwuid(os.geteuid()).pw_name
    home = base / "home"
    home.mkdir()
    proc = None
    log = base / "sshd.log"
    try:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        key = base / "id_ed25519"
        for cmd in (["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "ssh_host_ed25519_key")]):
            made = _run(*cmd)
            assert made.returncode == 0, made.stderr
        shutil.copy(base / "id_ed25519.pub", base / "authorized_keys")
        port = experiment.free_port()
        config = _sshd_config(base, port, user, home)
        check = _run(str(SSHD), "-t", "-f", str(config))
        if check.returncode != 0:
            pytest.skip(f"sshd rejects the test configuration: {check.stderr.strip()}")
        with open(log, "w") as fh:
            proc = subprocess.Popen([str(SSHD), "-D", "-e", "-p", str(port), "-f", str(config)], stdout=fh,
                                    stderr=subprocess.STDOUT)
        server = SshServer(port, user, key, base, home)
        deadline = time.time() + 30
        while True:
            if proc.poll() is not None:
                pytest.skip(f"sshd exited with {proc.returncode}: {log.read_text().strip()[-500:]}")
            probe = server.ssh('echo "$HOME"')
            if probe.returncode == 0:
                assert probe.stdout.strip() == str(home), probe.stdout  # sshd's SetEnv gives the session its HOME
                break
            if time.time() > deadline:
                pytest.skip(f"cannot log in over SSH as {user}: {probe.stderr.strip()} / sshd: "
                            f"{log.read_text().strip()[-500:]}")
            time.sleep(0.5)
        yield server
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def _remote_logs(server: SshServer) -> str:
    """The tails of the trial side's stderr files, for assertion messages."""
    tails = []
    for path in sorted(server.home.glob("nni-experiments/*/environments/*/trials/*/trial.stderr"))[-3:]:
        tails.append(f"{path}: {path.read_text()[-800:]}")
    return "\n".join(tails)


@dataclass
class Run:
    status: str
    trials: list[experiment.Trial]
    directory: Path
    seconds: float  # nnictl create to the end
    startup: float  # experiment start to the first trial's start (remote: SSH, NNI's pip check, trial keeper, upload)
    per_trial: float  # mean trial wall time as NNI records it (start to end)


def _run_experiment(config: dict, path: Path, timeout: float = 600) -> Run:
    path.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    exp = experiment.create(path)
    try:
        status = exp.wait(timeout=timeout, poll=1)
        seconds = time.perf_counter() - start
        jobs = exp.rest("trial-jobs")
        started = exp.rest("experiment")["startTime"]
        first = min((j["startTime"] for j in jobs if j.get("startTime")), default=started)
        spans = [j["endTime"] - j["startTime"] for j in jobs if j.get("startTime") and j.get("endTime")]
        return Run(status, exp.trials(), exp.directory, seconds, (first - started) / 1e3,
                   sum(spans) / max(1, len(spans)) / 1e3)
    finally:
        exp.stop()


def _csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------------------------------------------
# NSGA2 on ZDT1: the same experiment on local and on remote, one trial at a time, gives the same archive.
# A bad trial reports NaN here rather than crashing: NNI's dispatcher handles a trial's end on another thread than
# its results and parameter requests, so whether the tuner learns of a crash before it proposes the next trial is
# a race in NNI itself (local and remote alike), and the runs could differ legitimately. Crashes on the remote
# side are in the SPOS test below.

ZDT_TRIALS = 10


def _zdt_config(code: Path, workdir: Path, training_service: dict) -> dict:
    config = yaml.safe_load((REPO / "configs" / "moo_zdt1.yml").read_text())
    config.update(
        searchSpaceFile=str(REPO / "examples" / "moo_benchmark" / "zdt_space.json"), trialCodeDirectory=str(code),
        trialCommand="python examples/moo_benchmark/trial.py --problem zdt1 --nan-above 0.85",
        experimentWorkingDirectory=str(workdir), maxTrialNumber=ZDT_TRIALS, trialConcurrency=1,
        tuner={"className": "nni_ext.tuners.NSGA2Tuner", "codeDirectory": str(REPO),
               "classArgs": {"objectives": {"default": "minimize", "f2": "minimize"}, "population_size": 4,
                             "seed": 5}},
        trainingService=training_service)
    return config


def _check_moo_archive(directory: Path, trials: list[experiment.Trial]) -> list[dict]:
    moo = directory / "moo"
    assert sorted(p.name for p in moo.iterdir() if p.name in MOO_FILES) == sorted(MOO_FILES), list(moo.iterdir())
    history, hv = _csv(moo / "history.csv"), _csv(moo / "hypervolume.csv")
    assert len(history) == len(trials) == ZDT_TRIALS  # one row per trial, a failed one too
    assert [int(r["evaluated"]) for r in hv] == list(range(1, ZDT_TRIALS + 1))
    ok = [r for r in history if r["status"] == "succeeded"]
    # a NaN result is a SUCCEEDED trial to NNI and a failed one to the archive
    assert len(ok) == sum(t.status == "SUCCEEDED" and np.isfinite(t.metrics["default"]) for t in trials)
    F = np.array([[float(r["default"]), float(r["f2"])] for r in ok])
    front = {ok[i]["parameters"] for i in non_dominated(F)}
    pareto = json.loads((moo / "pareto.json").read_text())
    assert {json.dumps(p["parameters"], sort_keys=True) for p in pareto["front"]} == front
    archive = json.loads((moo / "archive.json").read_text())
    assert float(hv[-1]["hypervolume"]) == pytest.approx(archive["hypervolume"], rel=1e-12)
    return history


@pytest.mark.timeout(1500)
def test_nsga2_zdt_on_remote_matches_local(ssh_server: SshServer, tmp_path: Path) -> None:
    # the trial code directory is uploaded whole (NNI: at most 2000 files / 300 MB, filtered only by .nniignore)
    code = tmp_path / "code"
    shutil.copytree(REPO / "examples" / "moo_benchmark", code / "examples" / "moo_benchmark",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (code / "scratch").mkdir()
    (code / "scratch" / "big.bin").write_bytes(b"\0" * 1024)
    (code / ".nniignore").write_text("scratch/\n")
    runs = {}
    for name, service in (("local", {"platform": "local"}),
                          ("remote", {"platform": "remote", "machineList": [ssh_server.machine()]})):
        config = _zdt_config(code, tmp_path / name, service)
        runs[name] = _run_experiment(config, tmp_path / f"{name}.yml")
        assert runs[name].status == "DONE", (name, runs[name].status, _remote_logs(ssh_server))
    local, remote = runs["local"], runs["remote"]
    for name, run in runs.items():
        print(f"ZDT1 {name}: {ZDT_TRIALS} trials one at a time in {run.seconds:.1f} s; first trial after "
              f"{run.startup:.1f} s; {run.per_trial:.2f} s per trial (NNI's start-to-end)")
    # the trials really ran on the remote side: in the SSH user's home, from the uploaded code directory
    remote_exp = ssh_server.home / "nni-experiments" / remote.directory.name
    uploaded = list(remote_exp.glob("environments/*/upload/*/examples/moo_benchmark/trial.py"))
    assert uploaded, sorted(str(p) for p in remote_exp.rglob("*"))[:40]
    assert not list(remote_exp.glob("environments/*/upload/*/scratch")), ".nniignore'd files were uploaded"
    assert len(list(remote_exp.glob("environments/*/trials/*"))) == ZDT_TRIALS
    local_history = _check_moo_archive(local.directory, local.trials)
    remote_history = _check_moo_archive(remote.directory, remote.trials)
    # seed 5 gives the 4th trial x2 > 0.85: its NaN result is recorded as on local
    assert any(r["status"] != "succeeded" for r in remote_history), remote_history
    # one trial at a time, the same seed: the same parameters, results and archive wherever the trials ran
    columns = [c for c in local_history[0] if not c.startswith("info/")]
    assert [[r[c] for c in columns] for r in remote_history] == [[r[c] for c in columns] for r in local_history]
    for name in ("archive.json", "pareto.json"):
        assert _strip_ids(json.loads((remote.directory / "moo" / name).read_text())) == _strip_ids(
            json.loads((local.directory / "moo" / name).read_text())), name
    assert _csv(remote.directory / "moo" / "hypervolume.csv") == _csv(local.directory / "moo" / "hypervolume.csv")


def _strip_ids(value: object) -> object:
    """A JSON value without the ``info/`` entries (trial ids, durations: they differ between two runs)."""
    if isinstance(value, dict):
        return {k: _strip_ids(v) for k, v in value.items() if not k.startswith("info/")}
    if isinstance(value, list):
        return [_strip_ids(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------------------
# SPOS: EvolutionWithFlops + BN-recalibrating tester trials on the digits, data and checkpoint on "shared storage"

POPULATION, GENERATIONS = 4, 2
LIMIT = 480_000


@pytest.mark.timeout(1200)
def test_spos_tester_trials_on_remote(ssh_server: SshServer, tmp_path: Path) -> None:
    import torch

    from nni_ext.cost import CostTable
    from nni_ext.data import write_digits
    from nni_ext.spaces import create_space
    from nni_ext.spaces.spos_supernet import ShuffleNetV2Supernet
    from nni_ext.trainers.checkpoint import save_checkpoint

    # data and checkpoint at one absolute path that the trial machine reads too (here: a world-readable folder)
    shared = ssh_server.base / "shared"
    write_digits(shared / "data" / "digits", size=32)
    space = create_space("spos-digits")
    torch.manual_seed(0)
    checkpoint = shared / "runs" / "supernet" / "checkpoint.pth"
    save_checkpoint(checkpoint, model=ShuffleNetV2Supernet(space), space=space, kind="spos_supernet", step=0)
    for path in [shared, *shared.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    code = tmp_path / "code"
    code.mkdir()
    (code / "README").write_text("nni_ext comes from the trial machine's environment (pythonPath)\n")
    # the tuner (in the manager) builds this table when it starts: warm its cache first, NNI gives the tuner
    # 10 s to connect, which a cold build on a loaded machine can miss (the trials build their own, remotely)
    table = CostTable.cached(space, 32)
    half = POPULATION // 2
    config = {
        "experimentName": "test-remote-spos",
        "searchSpaceFile": str(REPO / "search_spaces" / "spos-digits.json"),
        # the third trial (sequence id 2) crashes before it reports: a failed trial on the remote side
        "trialCommand": 'if [ "$NNI_TRIAL_SEQ_ID" = 2 ]; then echo "crashing on purpose" >&2; exit 3; fi; '
                        f"python -m nni_ext.trials.spos_tester --checkpoint {checkpoint} --data {shared}/data/digits "
                        "--recal-batches 3 --recal-batch-size 32 --val-per-class 5 --backend torchvision "
                        "--workers 0 --threads 1 --device cpu",
        "trialCodeDirectory": str(code),
        "trialConcurrency": 2,
        "maxTrialNumber": POPULATION * GENERATIONS,
        "experimentWorkingDirectory": str(tmp_path / "experiments"),
        "tuner": {"className": "nni_ext.tuners.EvolutionWithFlops", "codeDirectory": str(REPO),
                  "classArgs": {"space": "spos-digits", "flops_limit": LIMIT, "population_size": POPULATION,
                                "topk": 2, "num_crossover": half, "num_mutation": half,
                                "num_generations": GENERATIONS, "seed": 1}},
        "trainingService": {"platform": "remote", "machineList": [ssh_server.machine()]},
    }
    run = _run_experiment(config, tmp_path / "config.yml", timeout=900)
    assert run.status == "DONE", (run.status, _remote_logs(ssh_server))
    trials, directory = run.trials, run.directory
    print(f"SPOS tester on remote: {len(trials)} trials, 2 at a time, in {run.seconds:.1f} s; first trial after "
          f"{run.startup:.1f} s; {run.per_trial:.2f} s per trial")
    assert len(trials) == POPULATION * GENERATIONS
    failed = [t for t in trials if t.status == "FAILED"]
    assert len(failed) == 1 and failed[0].metrics is None, [(t.trial_id, t.status) for t in trials]
    trials = [t for t in trials if t is not failed[0]]
    assert all(t.status == "SUCCEEDED" and t.metrics for t in trials), [(t.trial_id, t.status) for t in trials]
    for t in trials:
        cost = table.cost(t.parameters)
        assert (t.metrics["flops"], t.metrics["params"]) == (cost.flops, cost.params) and cost.flops <= LIMIT
        assert t.metrics["val_images"] == 50 and 0 <= t.metrics["default"] <= t.metrics["top5"] <= 1
    # the tuner's files are written in the manager's experiment folder, as on local
    assert len(sorted((directory / "spos").glob("generation_*.json"))) >= GENERATIONS - 1
    best = json.loads((directory / "spos" / "best_architecture.json").read_text())
    assert space.validate(best) == best
    remote_trials = ssh_server.home / "nni-experiments" / directory.name / "environments"
    assert len(list(remote_trials.glob("*/trials/*"))) == POPULATION * GENERATIONS
    assert "crashing on purpose" in next(remote_trials.glob(f"*/trials/{failed[0].trial_id}/trial.stderr")).read_text()
