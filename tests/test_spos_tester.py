"""The SPOS tester trial: BN recalibration, metrics of one architecture, checkpoint and architecture errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nni_ext.cost import CostTable
from nni_ext.data import Preprocessing, build_loader
from nni_ext.spaces import create_space
from nni_ext.spaces.spos_supernet import ShuffleNetV2Supernet
from nni_ext.trainers.checkpoint import load_supernet, save_checkpoint
from nni_ext.trainers.evaluation import batchnorm_layers, recalibrate_batchnorm

from .conftest import run_cli


@pytest.fixture(scope="module")
def supernet_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    space = create_space("spos-digits")
    path = tmp_path_factory.mktemp("supernet") / "checkpoint.pth"
    save_checkpoint(path, model=ShuffleNetV2Supernet(space), space=space, kind="spos_supernet", step=0)
    return path


def _running_stats(modules) -> list[torch.Tensor]:
    return [t.clone() for bn in batchnorm_layers(modules) for t in (bn.running_mean, bn.running_var)]


def test_recalibration_changes_stats_and_is_deterministic(supernet_ckpt: Path, digits_root: Path) -> None:
    results = []
    for _ in range(2):
        model, _ = load_supernet(supernet_ckpt)
        model.eval()
        path = model.path_of(model.space.official_architecture())
        modules = model.path_modules(path)
        before = _running_stats(modules)
        loader = build_loader(digits_root, "train", batch_size=32, backend="torchvision", device="cpu",
                              preprocessing=Preprocessing.for_crop(32), num_workers=0, seed=5)
        used = recalibrate_batchnorm(lambda x, model=model, path=path: model(x, path), modules, loader, num_batches=50)
        assert used == 50 * 32  # more batches than one epoch: the loader is cycled
        after = _running_stats(modules)
        assert any(not torch.allclose(a, b) for a, b in zip(before, after))
        assert all(not bn.training and bn.momentum == 0.1 for bn in batchnorm_layers(modules))
        results.append(after)
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_tester_reports_metrics_of_the_architecture(supernet_ckpt: Path, digits_root: Path, tmp_path: Path) -> None:
    space = create_space("spos-digits")
    arch = space.official_architecture()
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    proc = run_cli("ss_gen", "-t", f"python -m nni_ext.trials.spos_tester --checkpoint {supernet_ckpt} --data x",
                   "-o", str(tmp_path / "space.json"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "space.json").read_text()) == space.to_nni()
    from nni_ext.trials.spos_tester import build_arg_parser, run

    args = build_arg_parser().parse_args(["--checkpoint", str(supernet_ckpt), "--data", str(digits_root), "--arch",
                                          str(tmp_path / "arch.json"), "--recal-batches", "5", "--backend",
                                          "torchvision", "--workers", "0", "--val-per-class", "10"])
    metrics = run(args)
    cost = CostTable.cached(space, 32).cost(arch)
    assert (metrics["flops"], metrics["params"]) == (cost.flops, cost.params)
    assert metrics["val_images"] == 100
    assert 0 <= metrics["default"] <= metrics["top5"] <= 1
    assert 0 <= metrics["top1_before_recalibration"] <= 1


def test_tester_bad_input_is_one_line(supernet_ckpt: Path, digits_root: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({**create_space("spos-digits").official_architecture(),
                                                   "layer_1": "conv"}))
    proc = run_cli_module("--checkpoint", str(supernet_ckpt), "--data", str(digits_root), "--arch",
                          str(tmp_path / "bad.json"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'nni-ext: error: label \'layer_1\' has value "conv", which is not a candidate; allowed values: '
        '["shufflenet_3x3", "shufflenet_5x5", "shufflenet_7x7", "xception_3x3"]']
    # a checkpoint whose weights do not fit the space it names (another width)
    (tmp_path / "arch.json").write_text(json.dumps(create_space("spos-digits").official_architecture()))
    wide, narrow = create_space("spos-digits", stem_channels=12), create_space("spos-digits")
    save_checkpoint(tmp_path / "mismatch.pth", model=ShuffleNetV2Supernet(wide), space=narrow, kind="spos_supernet")
    proc = run_cli_module("--checkpoint", str(tmp_path / "mismatch.pth"), "--data", str(digits_root), "--arch",
                          str(tmp_path / "arch.json"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert "does not fit this network" in lines[0] and "stem.0.weight (12, 3, 3, 3) vs (8, 3, 3, 3)" in lines[0]
    proc = run_cli_module("--checkpoint", str(tmp_path / "arch.json"), "--data", str(digits_root))
    assert proc.returncode == 2 and "cannot read checkpoint" in proc.stderr


def run_cli_module(*args: str):
    import subprocess
    import sys

    from .conftest import venv_env

    return subprocess.run([sys.executable, "-m", "nni_ext.trials.spos_tester", *args], capture_output=True, text=True,
                          env=venv_env(), timeout=300)
