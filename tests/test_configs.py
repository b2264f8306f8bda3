"""Every config under configs/ passes NNI's own schema, loaded the way ``nnictl create`` loads it.

``nnictl create --config X`` calls ``ExperimentConfig.load(X)`` (relative paths resolved against X's folder) and
the experiment sends the canonical, validated form (``config.json()``) to the NNI manager. The same happens here,
from another working directory, so a config that nnictl would refuse fails this test. On top of the schema: the
tuner names resolve (nni-ext's registered tuners or NNI's built-ins), the memory sizes use units NNI's manager
parses, and the configs whose trials run elsewhere (remote, Kubernetes) give absolute data/checkpoint paths, an
``nniManagerIp``, key authentication and one GPU per trial.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yml"))
#: trial-command options that name data, checkpoints or tables, which must exist on the trial machine
PATH_OPTIONS = ("--data", "--checkpoint", "--supernet", "--latency-tables", "--latency-table", "--predictor")


def _raw(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


@pytest.fixture
def home_with_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME in which every ``~/...`` SSH key file named by a config exists (the schema checks that it does)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for path in CONFIGS:
        service = _raw(path).get("trainingService")
        for machine in (service or {}).get("machineList", []) if isinstance(service, dict) else []:
            key = str(machine.get("sshKeyFile", "~/.ssh/id_rsa"))
            if key.startswith("~/"):
                (tmp_path / key[2:]).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / key[2:]).write_text("not a key: the schema only checks that the file exists\n")
    return tmp_path


def test_configs_are_found() -> None:
    names = {p.name for p in CONFIGS}
    assert {"spos_search_remote.yml", "ofa2_eval_remote.yml", "spos_search_kubernetes.yml",
            "ofa2_eval_kubernetes.yml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_passes_nni_schema(path: Path, home_with_keys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nni.experiment.config import ExperimentConfig

    monkeypatch.chdir(home_with_keys)  # relative paths must resolve against the config's folder, not the cwd
    config = ExperimentConfig.load(path)
    assert type(config) is ExperimentConfig  # what nnictl create requires (not a NAS config)
    assert not config.use_annotation
    canonical = config.json()  # canonicalise + validate: what the experiment sends to the NNI manager
    assert canonical["searchSpace"], "the search space file loads and is not empty"
    assert Path(canonical["trialCodeDirectory"]).is_dir()
    _check_tuner(canonical["tuner"])
    services = canonical["trainingService"]
    for service in services if isinstance(services, list) else [services]:
        for role in service.get("taskRoles", []):
            # NNI's manager (toMegaBytes) reads only these units; "32g" or "32Gi" fail when the experiment starts
            size = role["memorySize"]
            assert isinstance(size, int) or re.fullmatch(r"\d+(\.\d+)?(tb|gb|mb|kb|b)", size.lower()), size
        if service["platform"] != "local":
            _check_distributed(path, canonical, service)


def _check_tuner(tuner: dict) -> None:
    if tuner.get("className"):
        module, _, attr = tuner["className"].rpartition(".")
        import importlib

        assert hasattr(importlib.import_module(module), attr), tuner["className"]
        return
    from nni.tools.package_utils import config_manager

    from nni_ext.tuners.base import registered_tuners

    meta = config_manager.get_algo_meta(tuner["name"])
    assert tuner["name"] in registered_tuners() or (meta is not None and meta.is_builtin), (
        f"tuner {tuner['name']!r} is neither an nni-ext tuner (nni-ext register) nor an NNI built-in")


def _check_distributed(path: Path, config: dict, service: dict) -> None:
    """Trials on other machines: paths that exist there, a manager address they reach, one GPU per trial."""
    where = f"{path.name} ({service['platform']})"
    assert service.get("nniManagerIp"), f"{where}: set nniManagerIp, the address the trial machines reach"
    words = service["trialCommand"].split()
    for option, value in zip(words, words[1:]):
        if option in PATH_OPTIONS:
            assert value.startswith("/"), f"{where}: {option} {value} must be an absolute path on the trial machines"
    if service["platform"] == "frameworkcontroller":
        # NNI mounts its one share at /tmp/mount in every pod: the data must come from there
        assert all(v.startswith("/tmp/mount/") for o, v in zip(words, words[1:]) if o in PATH_OPTIONS), where
        assert service["storage"]["storageType"] in ("nfs", "azureStorage")
        assert all(role["gpuNumber"] >= (service.get("trialGpuNumber") or 0) for role in service["taskRoles"])
    if service["platform"] == "remote":
        capacity = 0
        for machine in service["machineList"]:
            assert machine.get("password") is None and machine.get("sshKeyFile"), f"{where}: key authentication"
            assert machine.get("pythonPath"), f"{where}: pythonPath (the bin/ of the env with nni + nni-ext)"
            if service.get("trialGpuNumber"):
                assert machine.get("gpuIndices"), f"{where}: gpuIndices of {machine['host']}"
                assert machine["maxTrialNumberPerGpu"] == 1 and machine["useActiveGpu"] is not None, where
                capacity += len(machine["gpuIndices"]) * machine["maxTrialNumberPerGpu"]
        if service.get("trialGpuNumber"):
            assert service["trialGpuNumber"] == 1, f"{where}: one GPU per trial"
            assert config["trialConcurrency"] <= capacity, f"{where}: more concurrent trials than GPUs"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_the_web_ui_ranks_trials_the_way_the_tuner_optimises(path: Path) -> None:
    """NNI's web UI reads ``optimize_mode`` from the tuner's classArgs (maximize when absent) to rank trials by
    ``default``; a config that minimises ``default`` must say so, and the tuner accepts it."""
    tuner = _raw(path).get("tuner") or {}
    args = tuner.get("classArgs") or {}
    objectives = args.get("objectives") or {}
    sense = objectives.get("default") if isinstance(objectives, dict) else None
    if sense == "minimize":
        assert args.get("optimize_mode") == "minimize", f"{path.name}: add optimize_mode: minimize to classArgs"
    if "optimize_mode" in args and sense is not None:
        assert args["optimize_mode"] == sense, path.name


def test_optimize_mode_is_accepted_by_every_tuner_and_checked_against_the_objectives() -> None:
    from nni_ext.tuners import NSGA2Tuner, RegularizationSweep

    assert NSGA2Tuner(objectives={"default": "minimize", "f2": "minimize"}, seed=0,
                      optimize_mode="minimize").optimize_mode == "minimize"
    assert NSGA2Tuner(objectives={"default": "maximize", "flops": "minimize"}, seed=0).optimize_mode == "maximize"
    with pytest.raises(ValueError, match="optimize_mode='maximize' contradicts objectives \\(default: minimize\\)"):
        NSGA2Tuner(objectives={"default": "minimize", "f2": "minimize"}, seed=0, optimize_mode="maximize")
    with pytest.raises(ValueError, match="optimize_mode='max'; use one of 'maximize', 'minimize'"):
        NSGA2Tuner(objectives={"default": "maximize", "flops": "minimize"}, seed=0, optimize_mode="max")
    assert RegularizationSweep(optimize_mode="minimize").optimize_mode == "minimize"  # default is no objective there
