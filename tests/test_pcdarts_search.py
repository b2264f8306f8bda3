"""PC-DARTS search and evaluation training on the embedded digits: losses, reports, resume, ensembles, bad input."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nni_ext.data.in_memory import Augment, TensorBatches, load_split, split_in_two
from nni_ext.pcdarts import SearchNetwork
from nni_ext.pcdarts.genotypes import parse_genotype
from nni_ext.trainers.pcdarts_search import SearchConfig, regularization, run_search

from .conftest import run_cli

TINY = dict(image_size=16, subsample=0.25, batch_size=64, init_channels=4, layers=3, flip=False, eval_channels=8,
            eval_layers=5, device="cpu", weight_decay=0.0)


@pytest.fixture(autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_in_memory_batches_and_split(digits_root: Path) -> None:
    data = load_split(digits_root, "train", image_size=16)
    assert data.images.shape[1:] == (3, 16, 16) and data.num_classes == 10
    a, b = split_in_two(data, 0.5, seed=3)
    assert len(a) + len(b) == len(data) and abs(len(a) - len(b)) <= 1
    batches = TensorBatches(a, batch_size=50, augment=Augment(flip=False, cutout=4), seed=0)
    seen = sum(len(y) for _, y in batches)
    assert seen == len(a) and len(batches) == -(-len(a) // 50)
    x, _ = next(iter(TensorBatches(a, batch_size=len(a), shuffle=False)))
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=0.05)  # normalised by the training statistics


def test_regularizers_are_the_weight_norms() -> None:
    model = SearchNetwork(C=4, num_classes=10, layers=3)
    weights = model.weight_parameters()
    flat = torch.cat([p.detach().flatten() for p in weights])
    assert regularization(model, "l1", weights).item() == pytest.approx(flat.abs().sum().item(), rel=1e-5)
    assert regularization(model, "l2", weights).item() == pytest.approx(flat.pow(2).sum().item(), rel=1e-5)
    arch_ids = {id(p) for p in model.arch_parameters()}
    assert not any(id(p) in arch_ids for p in weights)  # R never includes alphas / betas
    expected = regularization(model, "params", weights)
    expected.backward()
    assert model.alphas_normal.grad is not None and model.alphas_normal.grad.abs().sum() > 0


def test_search_reports_epoch_means_and_resumes_identically(digits_root: Path, tmp_path: Path) -> None:
    cfg = SearchConfig(data=str(digits_root), out_dir=str(tmp_path / "full"), nu=0.001, regularizer="l1",
                       epochs=2, arch_warmup=1, seed=5, **TINY)
    reports: list[dict] = []
    full = run_search(cfg, on_epoch=reports.append)
    m = full.metrics
    assert set(m) >= {"default", "criterion_loss", "reg_loss", "params", "flops", "genotype", "nu"}
    assert len(reports) == 2 and m["criterion_loss"] == reports[-1]["criterion_loss"]
    assert 0 < m["criterion_loss"] < 5 and m["reg_loss"] > 0 and 0 <= m["default"] <= 1
    genotype = parse_genotype(m["genotype"])
    assert all(op != "none" for op, _ in genotype.normal + genotype.reduce)
    assert m["params"] > 0 and m["flops"] > 0
    saved = json.loads((tmp_path / "full" / "result.json").read_text())
    assert saved["genotype"] == m["genotype"] and len(saved["history"]) == 2
    # the architecture is frozen in epoch 1 and trained in epoch 2
    assert reports[0]["genotype"] != reports[1]["genotype"] or reports[0]["valid_acc"] >= 0

    # interrupted after epoch 1, then rerun: resumes from the state file and ends where the full run ended
    class Stop(Exception):
        pass

    def stop_after_first(record: dict) -> None:
        raise Stop

    part = replace(cfg, out_dir=str(tmp_path / "part"))
    with pytest.raises(Stop):
        run_search(part, on_epoch=stop_after_first)
    resumed = run_search(part)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.metrics["genotype"] == m["genotype"]
    assert resumed.metrics["criterion_loss"] == pytest.approx(m["criterion_loss"], rel=1e-4)
    assert resumed.metrics["reg_loss"] == pytest.approx(m["reg_loss"], rel=1e-4)

    other = replace(part, lr=0.05)
    with pytest.raises(Exception, match="other options"):
        run_search(other)


def test_strong_regularisation_shrinks_the_weights(digits_root: Path, tmp_path: Path) -> None:
    base = SearchConfig(data=str(digits_root), out_dir="", regularizer="l2", epochs=1, arch_warmup=1, seed=1, **TINY)
    weak = run_search(replace(base, nu=0.0, out_dir=str(tmp_path / "weak"))).metrics
    strong = run_search(replace(base, nu=0.5, out_dir=str(tmp_path / "strong"))).metrics
    # gradients are clipped to norm 5, so three steps shrink R by a few per cent only, but always
    assert strong["reg_loss"] < 0.97 * weak["reg_loss"]


def test_search_cli_bad_input_is_one_line(digits_root: Path, tmp_path: Path) -> None:
    for args, needle in ((["--nu", "1.5"], "nu=1.5"), (["--nu", "0.1", "--partial-k", "3"], "divisible"),
                         (["--nu", "0.1", "--data", str(tmp_path / "missing")], "missing")):
        cmd = ["pcdarts", "search", "--data", str(digits_root), "--out", str(tmp_path / "o"), *args]
        proc = run_cli(*cmd)
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr


def test_trial_standalone_prints_the_metric_dict(digits_root: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from .conftest import venv_env

    cmd = [sys.executable, "-m", "nni_ext.trials.pcdarts_search_trial", "--data", str(digits_root), "--nu", "0.01",
           "--out", str(tmp_path / "t"), "--image-size", "16", "--subsample", "0.2", "--epochs", "1",
           "--arch-warmup", "0", "--init-channels", "4", "--layers", "3", "--batch-size", "64", "--no-flip",
           "--eval-channels", "8", "--eval-layers", "5", "--threads", "1", "--device", "cpu"]
    proc = subprocess.run(cmd, env=venv_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert metrics["nu"] == 0.01 and metrics["regularizer"] == "l1" and "genotype" in metrics


def test_train_two_genotypes_then_ensemble(digits_root: Path, tmp_path: Path) -> None:
    # one genotype from a genotypes.py (as `pcdarts analyse` writes it), one built in; trained one after another
    from nni_ext.pcdarts.genotypes import GENOTYPES, write_genotypes_py

    write_genotypes_py(tmp_path / "genotypes.py", {"l1_loss_2e01": GENOTYPES["DARTS_V2"]})
    root = tmp_path / "train"
    proc = run_cli("pcdarts", "train", "--genotype", f"{tmp_path / 'genotypes.py'}:l1_loss_2e01", "PC_DARTS_cifar",
                   "--data", str(digits_root), "--out", str(root), "--image-size", "16", "--train-portion", "0.8",
                   "--batch-size", "64", "--epochs", "1", "--init-channels", "8", "--layers", "3", "--cutout", "4",
                   "--no-flip", "--device", "cpu", "--lr", "0.05", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    reported = json.loads(proc.stdout.strip().splitlines()[-1])
    outs = [root / "l1_loss_2e01", root / "PC_DARTS_cifar"]
    for out, metrics in zip(outs, reported):
        assert 0 <= metrics["default"] <= 1 and metrics["params"] > 0
        preds = torch.load(out / "predictions.pt", weights_only=True)
        assert preds["test"]["logits"].shape[1] == 10 and "held_out" in preds
    assert reported[0]["genotype"] == str(GENOTYPES["DARTS_V2"])
    bad = run_cli("pcdarts", "train", "--genotype", "NOPE", "--data", str(digits_root), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "PC_DARTS_cifar" in bad.stderr
    proc = run_cli("pcdarts", "ensemble", *map(str, outs), "--weights", "calculate", "--out", str(tmp_path / "ens"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    from nni_ext.pcdarts.ensemble import combine, ensemble_accuracy, model_weights

    loaded = [torch.load(o / "predictions.pt", weights_only=True) for o in outs]
    held = loaded[0]["held_out"]["labels"].numpy()
    correct = np.stack([p["held_out"]["logits"].numpy().argmax(1) == held for p in loaded])
    w = model_weights(correct, held)
    scores = combine([p["test"]["logits"].numpy() for p in loaded], w)
    assert summary["accuracy"] == pytest.approx(ensemble_accuracy(scores, loaded[0]["test"]["labels"].numpy()))
    assert summary["params"] == sum(json.loads((o / "result.json").read_text())["params"] for o in outs)
    proc = run_cli("pcdarts", "ensemble", str(outs[0]), str(tmp_path))
    assert proc.returncode == 2 and "pcdarts train" in proc.stderr
