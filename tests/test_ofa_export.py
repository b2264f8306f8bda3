"""After an OFA search: `nni-ext ofa export` round trip, fine-tuning in the evaluation trial and `nni-ext ofa finetune`.

All on a randomly initialised 10-class supernet (the `ofa_supernet` fixture) and the embedded digits at 32 px,
one thread (the CI machine is shared). The inherited weights of a random supernet classify at chance, so
"fine-tuning improves on them" is a check that training works at all, with a margin well above noise.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nni_ext.cli import main
from nni_ext.ofa2.export import from_subnet, load_exported, read_architectures, to_subnet
from nni_ext.spaces.ofa_mbv3 import OfaMbv3Space, to_ofa

SPACE = OfaMbv3Space(num_classes=10, resolutions=[32])
#: what the digits tests run at: the smallest resolution of configs/ofa2_eval_digits.yml (tests/test_ofa2_trials.py)
R = 32
LOADER = ["--backend", "torchvision", "--workers", "0"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def archs() -> list[dict[str, Any]]:
    """The smallest sub-network and a random one with mixed depths, kernels and expand ratios."""
    rng = np.random.default_rng(5)
    return [SPACE.smallest(), SPACE.sample(rng)]


@pytest.fixture(scope="module")
def exported(ofa_supernet: Path, archs: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`nni-ext ofa export` of a select-style pick_01.json and a plain OFA-dict architecture file."""
    src = tmp_path_factory.mktemp("ofa_picks")
    (src / "pick_01.json").write_text(json.dumps({"rank": 1, "trial_id": "Ab3dE", "parameter_id": 0,
                                                  "parameters": archs[0], "metrics": {"default": 0.1}}))
    (src / "random.json").write_text(json.dumps(to_ofa(archs[1])))  # OFA's 20-entry form
    out = tmp_path_factory.mktemp("ofa_export")
    assert main(["ofa", "export", str(src / "pick_01.json"), str(src / "random.json"), "--supernet",
                 str(ofa_supernet), "--out", str(out)]) == 0
    return out


def test_export_round_trip_gives_the_supernet_outputs(exported: Path, ofa_supernet: Path,
                                                      archs: list[dict[str, Any]]) -> None:
    from nni_ext.ofa2 import load_supernet
    from nni_ext.trainers.checkpoint import safe_torch_load

    supernet = load_supernet(ofa_supernet).eval()
    x = torch.randn(6, 3, R, R, generator=torch.Generator().manual_seed(0))
    for name, arch in zip(["pick_01", "random"], archs):
        folder = exported / name
        subnet = json.loads((folder / "net.subnet").read_text())
        assert subnet == to_subnet(arch) and isinstance(subnet["r"], int)  # NSGANetV2: active blocks only
        assert len(subnet["ks"]) == len(subnet["e"]) == sum(subnet["d"])
        assert from_subnet(subnet) == SPACE.canonicalize(arch)  # skipped blocks: ks 3, e 3
        config = json.loads((folder / "net.config").read_text())
        assert config["name"] == "MobileNetV3" and config["resolution"] == R
        assert config["classifier"]["out_features"] == 10
        inherited = safe_torch_load(folder / "net.inherited", "weights")  # weights_only=True
        assert set(inherited) == {"state_dict"}
        model = load_exported(folder).eval()
        assert inherited["state_dict"].keys() == model.state_dict().keys()
        ofa = to_ofa(arch)
        supernet.set_active_subnet(ks=ofa["ks"], e=ofa["e"], d=ofa["d"])
        with torch.no_grad():
            expected, got = supernet(x), model(x)
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5), (got - expected).abs().max()
    # the exported folder (its net.subnet) reads back as the same architecture
    assert [p.arch for p in read_architectures([exported / "random"])] == [SPACE.canonicalize(archs[1])]


def test_export_from_an_experiment_front(ofa_supernet: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`--experiment EXP -n 2` picks as `nni-ext select` does (here from a stand-in for the experiment's database)."""
    import nni_ext.results
    from nni_ext.experiment import Trial
    from nni_ext.results import ExperimentResults

    rng = np.random.default_rng(1)
    archs = [SPACE.sample(rng) for _ in range(4)]
    # a front: top-1 up with flops; trial 3 is dominated by trial 2
    values = [(0.10, 1e6), (0.20, 2e6), (0.30, 3e6), (0.25, 4e6)]
    trials = [Trial(f"T{i}", "SUCCEEDED", str(i), {k: {"_value": v, "_idx": 0} for k, v in arch.items()},
                    {"default": top1, "flops": flops}, finished_at=i)
              for i, (arch, (top1, flops)) in enumerate(zip(archs, values))]
    fake = ExperimentResults("EXP", tmp_path / "EXP", {"tuner": {}}, trials)
    monkeypatch.setattr(nni_ext.results, "load_experiment", lambda ref: fake)
    out = tmp_path / "out"
    assert main(["ofa", "export", "--experiment", "EXP", "-n", "2", "--objectives", "default:max,flops:min",
                 "--supernet", str(ofa_supernet), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["pick_01", "pick_02"]
    first = from_subnet(json.loads((out / "pick_01" / "net.subnet").read_text()))
    assert first == SPACE.canonicalize(archs[2])  # the best top-1 comes first


@pytest.mark.parametrize("case", ["bad_value", "compact_length", "not_json", "missing", "no_source"])
def test_export_bad_input_is_one_line(case: str, ofa_supernet: Path, archs: list[dict[str, Any]], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    arch = tmp_path / "arch.json"
    content, message = {
        "bad_value": ({**archs[0], "ks_3": 4}, "label 'ks_3' has value 4"),
        "compact_length": ({**to_subnet(archs[0]), "ks": [3, 3]}, "'ks' holds 2 values"),
        "not_json": ("{ks: 3", "is not valid JSON"),
        "missing": (None, "not found"),
        "no_source": (None, "one of the two"),
    }[case]
    if content is not None:
        arch.write_text(content if isinstance(content, str) else json.dumps(content))
    sources = [] if case == "no_source" else [str(arch)]
    assert main(["ofa", "export", *sources, "--supernet", str(ofa_supernet), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nni-ext: error: ") and message in err[0], err


def test_finetune_bad_files_are_one_line(exported: Path, digits_root: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    class Boom:
        def __reduce__(self) -> Any:
            return (print, ("pwned",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"state_dict": Boom()}))
    (tmp_path / "other.config").write_text(json.dumps({"name": "ResNets", "blocks": []}))
    config = str(exported / "pick_01" / "net.config")
    common = ["--data", str(digits_root), "--steps", "1", "--output", str(tmp_path / "ft"), *LOADER]
    for argv, message in (([f"--config={tmp_path / 'other.config'}"], "not an OFA MobileNetV3 config"),
                          (["--config", config, "--weights", str(tmp_path / "evil.pth")], "safely"),
                          (["--config", config, "--weights", str(exported / "random" / "net.inherited")],
                           "does not fit this network")):
        assert main(["ofa", "finetune", *argv, *common]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("nni-ext: error: ") and message in err[0], err
        assert "pwned" not in captured.out


def _trial(supernet: Path, digits: Path, arch: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> dict:
    from nni_ext.trials.ofa2_eval import main as trial_main

    assert trial_main(["--supernet", str(supernet), "--data", str(digits), "--resolutions", str(R), "--arch",
                       str(arch), "--calib-images", "200", "--val-per-class", "20", "--threads", "1", *LOADER,
                       *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_trial_fine_tunes_from_inherited_weights(ofa_supernet: Path, digits_root: Path,
                                                      archs: list[dict[str, Any]], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "arch.json").write_text(json.dumps(archs[0]))
    inherited = _trial(ofa_supernet, digits_root, tmp_path / "arch.json", capsys=capsys)  # --epochs 0: as before
    assert "finetune_epochs" not in inherited and inherited["val_images"] == 200
    tuned = _trial(ofa_supernet, digits_root, tmp_path / "arch.json", "--epochs", "1", "--train-batch-size", "32",
                   capsys=capsys)
    print(f"trial top-1: inherited {inherited['default']:.3f}, fine-tuned 1 epoch {tuned['default']:.3f}")
    assert tuned["finetune_epochs"] == 1 and 0 < tuned["train_loss"] < 10
    assert tuned["params"] == inherited["params"]  # the classifier was reset to the same 10 classes
    assert tuned["default"] >= inherited["default"] + 0.2, (inherited["default"], tuned["default"])


def _finetune(exported: Path, digits: Path, out: Path, *extra: str) -> dict[str, Any]:
    assert main(["ofa", "finetune", "--config", str(exported / "pick_01" / "net.config"), "--data", str(digits),
                 "--steps", "40", "--batch-size", "32", "--min-area", "0.5", "--calib-images", "200",
                 "--val-per-class", "20", "--output", str(out), "--quiet", *LOADER, *extra]) == 0
    return torch.load(out / "checkpoint.pth", weights_only=True)


@pytest.fixture(scope="module")
def straight(exported: Path, digits_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """An uninterrupted 40-step `nni-ext ofa finetune` of pick_01: its output folder and checkpoint."""
    out = tmp_path_factory.mktemp("ofa_finetune") / "straight"
    return out, _finetune(exported, digits_root, out)


def test_finetune_resumes_to_the_same_weights(straight: tuple[Path, dict], exported: Path, digits_root: Path,
                                              tmp_path: Path) -> None:
    _, full = straight
    assert full["step"] == 40 and full["kind"] == "ofa_subnet" and full["resolution"] == R
    stopped = _finetune(exported, digits_root, tmp_path / "b", "--stop-at", "16")
    assert stopped["step"] == 16 and not (tmp_path / "b" / "net.finetuned").exists()
    resumed = _finetune(exported, digits_root, tmp_path / "b", "--resume")
    assert resumed["step"] == 40
    assert all(torch.equal(full["model"][k], resumed["model"][k]) for k in full["model"]), "weights differ"
    assert full["history"][-1] == resumed["history"][-1]
    momenta = zip(full["optimizer"]["state"].values(), resumed["optimizer"]["state"].values())
    assert all(torch.equal(x["momentum_buffer"], y["momentum_buffer"]) for x, y in momenta)


def test_finetune_improves_over_the_inherited_weights(straight: tuple[Path, dict], exported: Path,
                                                      digits_root: Path, tmp_path: Path) -> None:
    from nni_ext.data import Preprocessing, build_loader
    from nni_ext.ofa2.finetune import finetune_recipe, load_finetuned, recalibrate
    from nni_ext.trainers.evaluation import evaluate
    from nni_ext.trainers.train_loop import RunConfig, seed_everything

    out, full = straight
    # the end product: net.config + net.finetuned, and the checkpoint, hold the fine-tuned network
    model = load_exported(out, weights="net.finetuned").eval()
    same, r, _ = load_finetuned(out / "checkpoint.pth")
    assert r == R and all(torch.equal(v, same.state_dict()[k]) for k, v in model.state_dict().items())
    assert model.classifier.linear.out_features == 10
    # against the inherited weights, BN recalibrated the same way, on the same 200 validation images
    seed_everything(0)
    inherited = load_exported(exported / "pick_01")
    cfg = RunConfig(digits_root, tmp_path, backend="torchvision", workers=0, min_area=0.5, device="cpu")
    recalibrate(inherited, cfg, finetune_recipe(), R, 200)
    val = build_loader(digits_root, "val", batch_size=100, train=False, backend="torchvision", device="cpu",
                       preprocessing=Preprocessing.for_crop(R), num_workers=0, max_per_class=20)
    before = evaluate(inherited.eval(), val)["top1"]
    after = full["history"][-1]["top1"]
    print(f"finetune top-1 on 200 val images: inherited {before:.3f}, 40 steps {after:.3f}")
    assert after >= before + 0.2, (before, after)
    assert evaluate(model, val)["top1"] == pytest.approx(after)


def test_finetune_recipe_is_nsganetv2s_cosine_nesterov_sgd() -> None:
    from nni_ext.ofa2.finetune import finetune_recipe
    from nni_ext.trainers.train_loop import Trainer

    recipe = finetune_recipe()
    assert (recipe.lr, recipe.weight_decay, recipe.momentum, recipe.nesterov, recipe.batch_size) == \
        (0.01, 4e-5, 0.9, True, 96)
    trainer = Trainer(torch.nn.Linear(4, 2), recipe, total_steps=10, device=torch.device("cpu"))
    assert trainer.optimizer.param_groups[0]["nesterov"] is True
    lrs = []
    for _ in range(10):
        lrs.append(trainer.lr)
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert lrs[0] == pytest.approx(0.01) and lrs[5] == pytest.approx(0.005) and trainer.lr == pytest.approx(0.0)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_in_memory_loader_shards_reseeds_and_upsamples() -> None:
    """The CIFAR path (`--data cifar10:ROOT`) without CIFAR's files: the loader over an in-memory split."""
    from nni_ext.data.in_memory import ImageTensors
    from nni_ext.ofa2.finetune import InMemoryLoader

    g = torch.Generator().manual_seed(0)
    data = ImageTensors(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g),
                        torch.arange(40) % 10, [str(c) for c in range(10)], "memory")
    loader = InMemoryLoader(data, batch_size=8, train=True, resolution=48, seed=3)
    assert len(loader) == 5
    loader.set_epoch(2)
    first = [(x.clone(), y.clone()) for x, y in loader]
    loader.set_epoch(2)
    again = list(loader)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert first[0][0].shape == (8, 3, 48, 48)
    shards = [InMemoryLoader(data, batch_size=4, train=False, resolution=32, rank=k, world_size=2) for k in range(2)]
    labels = torch.cat([y for shard in shards for _, y in shard])
    assert len(labels) == 40 and sorted(labels.tolist()) == sorted(data.labels.tolist())
