"""FlatNAS robustness on the real digits: weight-noise robustness, SAM, corruption folders and the mCE command."""
from __future__ import annotations

import copy
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from nni_ext.cli import main
from nni_ext.cost.tiny_ml import TinyML
from nni_ext.data.in_memory import TensorBatches, load_split
from nni_ext.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from nni_ext.robustness import (
    CORRUPTIONS,
    SAM,
    evaluate_corruptions,
    top1_robust,
    weight_noise_robustness,
    write_corruptions,
)

from .conftest import REPO, run_cli, run_until_done

SIZE = 16  # training resolution of the small networks (the digits are 8x8 at heart)
MEAN = torch.tensor(IMAGENET_MEAN)
STD = torch.tensor(IMAGENET_STD)


def small_cnn(seed: int, width: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 10))


def train(model: nn.Module, data, *, sam: bool, steps: int, seed: int = 0) -> nn.Module:
    """CNAS's candidate recipe on a small scale: SGD lr 0.05, momentum 0.9, wd 5e-5, cosine per step; or SAM over it."""
    kw = dict(lr=0.05, momentum=0.9, weight_decay=5e-5)
    opt = SAM(model.parameters(), torch.optim.SGD, **kw) if sam else torch.optim.SGD(model.parameters(), **kw)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    batches = TensorBatches(data, batch_size=64, mean=MEAN, std=STD, seed=seed).cycle()
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(steps):
        x, y = next(batches)
        loss_fn(model(x), y).backward()
        if sam:
            opt.first_step(zero_grad=True)
            loss_fn(model(x), y).backward()
            opt.second_step(zero_grad=True)
        else:
            opt.step()
            opt.zero_grad()
        sched.step()
    return model.eval()


def val_tensors(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    val = load_split(root, "val", image_size=SIZE)
    x = (val.images.float() / 255 - MEAN.view(1, -1, 1, 1)) / STD.view(1, -1, 1, 1)
    return x, val.labels


@pytest.fixture(scope="module")
def trained(digits_root: Path) -> dict[str, nn.Module]:
    """The same small CNN (same init, same batches, 300 steps) trained with SGD and with adaptive SAM (rho 2.0)."""
    torch.set_num_threads(1)
    data = load_split(digits_root, "train", image_size=SIZE)
    return {"sgd": train(small_cnn(0), data, sam=False, steps=300),
            "sam": train(small_cnn(0), data, sam=True, steps=300)}


# --------------------------------------------------------------------------------------- weight noise
def test_weight_noise_is_seeded_zero_at_sigma_0_and_restores_the_model(digits_root: Path) -> None:
    torch.set_num_threads(1)
    data = load_split(digits_root, "train", image_size=SIZE)
    model = train(small_cnn(1, width=8), data, sam=False, steps=40)
    x, y = val_tensors(digits_root)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    a = weight_noise_robustness(model, (x, y), sigma=0.05, draws=5, seed=3)
    b = weight_noise_robustness(model, (x, y), sigma=0.05, draws=5, seed=3)
    c = weight_noise_robustness(model, (x, y), sigma=0.05, draws=5, seed=4)
    assert a.draw_accuracies == b.draw_accuracies and a.robustness == b.robustness
    assert a.draw_accuracies != c.draw_accuracies  # another seed, other noise
    assert a.robustness == pytest.approx(np.mean([abs(a.accuracy - d) for d in a.draw_accuracies]))
    assert a.images == len(y) and 0 < a.robustness < 1
    # a loader of batches gives the same numbers as the tensor pair
    batches = [(x[i:i + 50], y[i:i + 50]) for i in range(0, len(y), 50)]
    assert weight_noise_robustness(model, batches, sigma=0.05, draws=5, seed=3).draw_accuracies == a.draw_accuracies

    zero = weight_noise_robustness(model, (x, y), sigma=0.0, draws=3, seed=0)
    assert zero.robustness == 0.0 and zero.draw_accuracies == [zero.accuracy] * 3
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit for bit, buffers too
    assert weight_noise_robustness(model, (x, y), sigma=0.5, draws=2, seed=0).robustness > a.robustness / 2
    with pytest.raises(ValueError, match="sigma"):
        weight_noise_robustness(model, (x, y), sigma=-0.1)


def test_top1_robust_and_alpha_norm() -> None:
    values, alpha_norm = top1_robust(np.array([10.0, 20.0]), np.array([1.0, 3.0]))
    assert alpha_norm == pytest.approx(15 / 2)
    assert values == pytest.approx([0.5 * 10 + 7.5 * 0.5 * 1, 0.5 * 20 + 7.5 * 0.5 * 3])
    assert top1_robust(np.array([10.0]), np.array([0.0]))[1] == 1.0  # nothing sensitive: error only
    assert top1_robust(np.array([10.0]), np.array([2.0]), alpha_norm=5.0)[0] == pytest.approx([5 + 5 * 0.5 * 2])


# ------------------------------------------------------------------------------------------------ SAM
def test_sam_steps_follow_the_adaptive_definition() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    w0 = [p.detach().clone() for p in model.parameters()]
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1, rho=2.0, adaptive=True)
    nn.functional.cross_entropy(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    norm = torch.cat([(g * w.abs()).flatten() for g, w in zip(grads, w0)]).norm()
    opt.first_step(zero_grad=True)
    for p, w, g in zip(model.parameters(), w0, grads):  # e(w) = rho * w^2 * g / ||w * g||
        assert torch.allclose(p, w + 2.0 * w.square() * g / norm, atol=1e-6)
    nn.functional.cross_entropy(model(x), y).backward()
    g_sharp = [p.grad.clone() for p in model.parameters()]
    opt.second_step()
    for p, w, g in zip(model.parameters(), w0, g_sharp):  # plain SGD step from w with the perturbed gradient
        assert torch.allclose(p, w - 0.1 * g, atol=1e-6)

    # step(closure) is the same update; the state dict round-trips the base optimizer's momentum
    def run(use_closure: bool) -> tuple[list[torch.Tensor], dict]:
        torch.manual_seed(0)
        m = nn.Linear(4, 3)
        o = SAM(m.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5)
        for _ in range(3):
            nn.functional.cross_entropy(m(x), y).backward()
            if use_closure:
                def closure() -> torch.Tensor:
                    loss = nn.functional.cross_entropy(m(x), y)
                    loss.backward()
                    return loss
                o.step(closure)
                o.zero_grad()
            else:
                o.first_step(zero_grad=True)
                nn.functional.cross_entropy(m(x), y).backward()
                o.second_step(zero_grad=True)
            sched.step()
        return [p.detach().clone() for p in m.parameters()], o.state_dict()

    with _no_scheduler_warning():
        explicit, state = run(False)
    closure_params, _ = run(True)
    assert all(torch.allclose(a, b) for a, b in zip(explicit, closure_params))
    assert state["param_groups"][0]["lr"] == pytest.approx(0.1 * 0.5 ** 3) and state["param_groups"][0]["rho"] == 2.0
    fresh = SAM(nn.Linear(4, 3).parameters(), torch.optim.SGD, lr=1.0, momentum=0.9)
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)
    assert fresh.param_groups is fresh.base_optimizer.param_groups
    assert all(torch.equal(a["momentum_buffer"], b["momentum_buffer"])
               for a, b in zip(fresh.base_optimizer.state.values(), state["state"].values()))


class _no_scheduler_warning:
    """No 'lr_scheduler.step() before optimizer.step()' warning with first_step/second_step."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.filterwarnings("error", message=".*lr_scheduler.step.*")

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


@pytest.mark.slow
def test_sam_trained_network_is_more_robust_to_weight_noise(trained: dict, digits_root: Path) -> None:
    x, y = val_tensors(digits_root)
    sgd = weight_noise_robustness(trained["sgd"], (x, y), sigma=0.05, draws=20, seed=0)
    sam = weight_noise_robustness(trained["sam"], (x, y), sigma=0.05, draws=20, seed=0)
    assert sgd.accuracy > 0.9 and sam.accuracy > 0.8  # both learnt the digits (SAM with rho 2.0 a little less)
    assert sam.robustness < sgd.robustness, (sam.robustness, sgd.robustness)


# --------------------------------------------------------------------------------------- corruptions
@pytest.fixture(scope="module")
def corrupted(digits_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("digits_c") / "c"
    counts = write_corruptions(digits_root, dst, per_class=1, seed=0)
    assert counts == {name: 10 for name in CORRUPTIONS}
    return dst


def _images(folder: Path) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) for p in sorted(folder.rglob("*.png"))]


def test_corruption_folders_and_severity_order(corrupted: Path, digits_root: Path) -> None:
    from PIL import Image

    originals = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float64)
                 for p in sorted((digits_root / "val").glob("*/*.JPEG"))
                 if p.name == sorted(p.parent.glob("*.JPEG"))[0].name]
    assert len(originals) == 10
    increasing = []
    for name in CORRUPTIONS:
        diffs = []
        for s in range(1, 6):
            folder = corrupted / name / str(s)
            assert sorted(d.name for d in folder.iterdir()) == [f"digit_{k}" for k in range(10)]
            imgs = _images(folder)
            assert len(imgs) == 10 and imgs[0].shape == (32, 32, 3)
            diffs.append(np.mean([np.abs(a - b).mean() for a, b in zip(imgs, originals)]))
        # severity 1 changes the images least, for every type but glass_blur: ImageNet-C's parameters shuffle
        # pixels twice at severity 1 (sigma 0.7, distance 1) and once at 2 (sigma 0.9, distance 2), and on the
        # digits one shuffle of the wider blur moves less than two; severity 1 is still below 3, 4 and 5
        assert diffs[0] == min(diffs) if name != "glass_blur" else diffs[0] < min(diffs[2:]), (name, diffs)
        assert diffs[0] > 0, name
        assert diffs[4] > diffs[0], (name, diffs)
        increasing.append(all(np.diff(diffs) > 0))
    # the difference grows strictly from severity 1 to 5 for most types; the exceptions come from ImageNet-C's
    # parameters: glass_blur (above), frost (severity 4 keeps more of the image than 3: weights 0.65 and 0.7 of
    # the same frost picture), fog (severities 3 and 4 have the same strength 2.5, only the fractal's roughness
    # differs) and pixelate at 32 px (severities 4 and 5 give 9 and 8 px blocks): near-ties on 10 digits
    not_increasing = {name for name, up in zip(CORRUPTIONS, increasing) if not up}
    assert not_increasing <= {"glass_blur", "frost", "fog", "pixelate"}, not_increasing
    assert len(not_increasing) <= 4
    manifest = json.loads((corrupted / "corruptions.json").read_text())
    assert manifest["severities"] == [1, 2, 3, 4, 5] and manifest["per_class"] == 1
    assert json.loads((corrupted / "dataset.json").read_text())["hflip"] is False  # the source's defaults travel


def test_corruptions_are_deterministic_for_a_seed(corrupted: Path, digits_root: Path, tmp_path: Path) -> None:
    names = ["gaussian_noise", "impulse_noise", "glass_blur", "frost"]
    write_corruptions(digits_root, tmp_path / "again", per_class=1, seed=0, severities=[3], corruptions=names,
                      workers=2)
    write_corruptions(digits_root, tmp_path / "other", per_class=1, seed=1, severities=[3], corruptions=names)
    for name in names:
        first = sorted((corrupted / name / "3").rglob("*.png"))
        again = sorted((tmp_path / "again" / name / "3").rglob("*.png"))
        assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again], name
        other = sorted((tmp_path / "other" / name / "3").rglob("*.png"))
        assert [p.read_bytes() for p in first] != [p.read_bytes() for p in other], name
    # the package's global NumPy RNG is seeded per image and put back afterwards
    from nni_ext.robustness import corrupt_image

    np.random.seed(7)
    expected = np.random.random()
    np.random.seed(7)
    image = np.full((32, 32, 3), 128, dtype=np.uint8)
    assert np.array_equal(corrupt_image(image, "gaussian_noise", 2, 5), corrupt_image(image, "gaussian_noise", 2, 5))
    assert np.random.random() == expected


def test_bad_corruption_input_is_one_line(digits_root: Path, corrupted: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    cases = [
        (["data", "corrupt", str(digits_root), str(tmp_path / "a"), "--corruptions", "fog,rain"],
         "unknown corruption 'rain'"),
        (["data", "corrupt", str(digits_root), str(tmp_path / "b"), "--corruptions", ""], "no corruption named"),
        (["data", "corrupt", str(digits_root), str(tmp_path / "c"), "--severity", "0-3"], "severity 0 is outside 1-5"),
        (["data", "corrupt", str(digits_root), str(tmp_path / "d"), "--severity", "6"], "severity 6 is outside 1-5"),
        (["data", "corrupt", str(digits_root), str(tmp_path / "e"), "--severity", "high"], "not a number or range"),
        (["data", "corrupt", str(digits_root / "val" / "digit_0"), str(tmp_path / "f")], "no class sub-folders"),
        (["data", "corrupt", str(tmp_path / "missing"), str(tmp_path / "g")], "does not exist"),
        (["data", "corrupt", str(digits_root), str(tmp_path / "h"), "--size", "16"], "below 32"),
        (["robustness", "evaluate", "--data", str(digits_root), "--space", "spos-digits", "--arch", "x.json",
          "--weights", "w.pth", "--out", str(tmp_path / "o")], "holds none of the 15 corruption folders"),
        (["robustness", "evaluate", "--data", str(corrupted), "--out", str(tmp_path / "o")], "name the network"),
        (["robustness", "evaluate", "--data", str(corrupted), "--space", "spos-digits", "--arch",
          str(tmp_path / "none.json"), "--weights", str(tmp_path / "w.pth"), "--out", str(tmp_path / "o")],
         "cannot read architecture file"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("nni-ext: error: ") and "\n" not in err and message in err, (argv, err)
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()  # nothing written on bad input


# ----------------------------------------------------------------------------------------------- mCE
@pytest.mark.slow
def test_corruption_error_of_a_trained_network(trained: dict, corrupted: Path) -> None:
    report = evaluate_corruptions(trained["sgd"], corrupted, resolution=SIZE, workers=0)
    assert list(report.errors) == list(CORRUPTIONS) and report.images == 15 * 5 * 10
    assert report.clean_error is not None and report.clean_error <= 20  # the 10 source images, uncorrupted
    severe = np.mean([row[5] for row in report.errors.values()])
    assert severe > report.clean_error + 20  # severity 5 costs accuracy
    assert report.mce == pytest.approx(np.mean([np.mean(list(r.values())) for r in report.errors.values()]))


@pytest.mark.slow
def test_evaluate_command_writes_csv_and_png(corrupted: Path, tmp_path: Path) -> None:
    from nni_ext.spaces import create_space
    from nni_ext.trainers.checkpoint import save_checkpoint

    space = create_space("spos-digits")
    arch = {label: values[-1] for label, values in space.choices().items()}
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    torch.manual_seed(0)
    model = space.build(arch)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "w.pth")
    out = tmp_path / "ood"
    proc = run_cli("robustness", "evaluate", "--space", "spos-digits", "--arch", str(tmp_path / "arch.json"),
                   "--weights", str(tmp_path / "w.pth"), "--data", str(corrupted), "--out", str(out),
                   "--threads", "1", "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert f"plot {out / 'corruption_errors.png'}" in proc.stdout and "mCE (unnormalised)" in proc.stdout
    with open(out / "corruption_errors.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["corruption"] for r in rows] == [*CORRUPTIONS, "mean"]
    for r in rows[:-1]:
        errors = [float(r[f"s{s}"]) for s in range(1, 6)]
        assert all(e in {10.0 * k for k in range(11)} for e in errors)  # 10 images per folder
        assert float(r["ce"]) == pytest.approx(np.mean(errors), abs=1e-3)
    summary = json.loads((out / "corruption_errors.json").read_text())
    assert float(rows[-1]["ce"]) == pytest.approx(summary["mce"], abs=1e-3) and summary["resolution"] == 32
    png = (out / "corruption_errors.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000

    # the same network as a self-describing retrain checkpoint (and as a plain state dict) loads identically
    from nni_ext.robustness import load_network

    save_checkpoint(tmp_path / "ckpt.pth", model=model, space=space, kind="spos_fixed", arch=arch,
                    args={"crop_size": 32})
    x = torch.randn(2, 3, 32, 32)
    from_ckpt = load_network(checkpoint=tmp_path / "ckpt.pth")
    from_triple = load_network(space="spos-digits", arch=tmp_path / "arch.json", weights=tmp_path / "ckpt.pth")
    assert from_ckpt.input_size == 32 and not from_ckpt.spos_preprocessing
    with torch.no_grad():
        assert torch.equal(from_ckpt.model(x), model.eval()(x)) and torch.equal(from_triple.model(x), model(x))


def test_noise_command(digits_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nni_ext.spaces import create_space

    space = create_space("spos-digits")
    arch = {label: values[0] for label, values in space.choices().items()}
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    torch.manual_seed(0)
    torch.save(space.build(arch).state_dict(), tmp_path / "w.pth")
    argv = ["robustness", "noise", "--space", "spos-digits", "--arch", str(tmp_path / "arch.json"), "--weights",
            str(tmp_path / "w.pth"), "--data", str(digits_root), "--per-class", "3", "--draws", "2", "--workers", "0"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert first.startswith("robustness ") and "30 images" in first
    assert main(argv) == 0 and capsys.readouterr().out == first  # seeded
    assert main(argv[:-4] + ["--sigma", "0", "--draws", "2", "--workers", "0"]) == 0
    assert capsys.readouterr().out.startswith("robustness 0.000000 ")


def test_trainer_with_sam_rho_takes_the_sam_step() -> None:
    """``Recipe(sam_rho=...)`` (``ofa finetune --sam-rho``) runs SAM's two passes inside ``Trainer.train_step``."""
    from nni_ext.trainers.train_loop import Recipe, Trainer

    torch.manual_seed(0)
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    base = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    models = [copy.deepcopy(base) for _ in range(3)]
    common = dict(lr=0.1, momentum=0.0, weight_decay=0.0, label_smoothing=0.0, batch_size=16, schedule="cosine")
    Trainer(models[0], Recipe(**common, sam_rho=0.5), total_steps=10, device=torch.device("cpu")).train_step(x, y)
    Trainer(models[1], Recipe(**common), total_steps=10, device=torch.device("cpu")).train_step(x, y)
    manual = models[2]  # the same step by hand with the SAM optimizer
    opt = SAM([{"params": [p for p in manual.parameters() if p.dim() > 1], "weight_decay": 0.0},
               {"params": [p for p in manual.parameters() if p.dim() <= 1], "weight_decay": 0.0}],
              torch.optim.SGD, rho=0.5, adaptive=True, lr=0.1, momentum=0.0, nesterov=False)
    torch.nn.functional.cross_entropy(manual(x), y).backward()
    opt.first_step(zero_grad=True)
    torch.nn.functional.cross_entropy(manual(x), y).backward()
    opt.second_step(zero_grad=True)
    for a, b in zip(models[0].parameters(), models[2].parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert any(not torch.allclose(a, c) for a, c in zip(models[0].parameters(), models[1].parameters()))
    with pytest.raises(Exception, match="--sam-rho -1.0 must be > 0"):
        Recipe(**common, sam_rho=-1.0).check()


@pytest.mark.slow
def test_flatnas_config_runs_under_nnictl_with_feasible_trials_and_derived_top1_robust(
        tmp_path: Path, ofa_supernet: Path, digits_root: Path) -> None:
    """configs/flatnas_digits.yml as shipped (tuner, objectives, limits), with shorter trials: SAM fine-tuning and
    weight-noise robustness in every trial, every dispatched network within the limits, top1_robust rescored."""
    config = yaml.safe_load((REPO / "configs" / "flatnas_digits.yml").read_text())
    classargs = {**config["tuner"]["classArgs"], "population_size": 4}
    trials_n = 4
    command = config["trialCommand"].replace("python ", f"{sys.executable} ", 1)
    for old, new in (("runs/ofa2-digits/supernet.pth", str(ofa_supernet)), ("data/digits", str(digits_root)),
                     ("--calib-images 500", "--calib-images 32 --calib-batch-size 32"),
                     ("--val-per-class 20", "--val-per-class 5"),
                     ("--epochs 5", "--epochs 1"), ("--robustness-draws 20", "--robustness-draws 3")):
        assert old in command, old
        command = command.replace(old, new)
    assert "--sam-rho 2.0" in command
    config.update(searchSpaceFile=str(REPO / "search_spaces" / "ofa-mbv3-digits.json"),
                  trialCodeDirectory=str(REPO), trialCommand=command, maxTrialNumber=trials_n,
                  experimentWorkingDirectory=str(tmp_path / "experiments"),
                  tuner={"className": "nni_ext.tuners.NSGA2Tuner", "codeDirectory": str(REPO),
                         "classArgs": classargs})
    trials, directory = run_until_done(config, tmp_path)
    assert len(trials) == trials_n
    with open(directory / "moo" / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == trials_n
    tiny = TinyML.from_mapping(classargs["tiny_ml"])
    for row in rows:  # the limits hold for every trained network, and tiny_ml is then free of penalty
        params, flops, activations = (float(row[k]) for k in ("params", "flops", "activations"))
        assert params <= 5e6 and flops <= 20e6 and activations <= 0.6e6, row
        assert float(row["tiny_ml"]) == pytest.approx(tiny.score(params, flops, activations))
        assert float(row["tiny_ml"]) < 5 + 20 + 0.6
    err = np.array([1 - float(r["default"]) for r in rows])
    robustness = np.array([float(r["robustness"]) for r in rows])
    assert (robustness >= 0).all() and (robustness <= 1).all()
    expected, alpha_norm = top1_robust(err, robustness)
    np.testing.assert_allclose([float(r["top1_robust"]) for r in rows], expected, rtol=1e-9)
    assert json.loads((directory / "moo" / "archive.json").read_text())["alpha_norm"] == pytest.approx(alpha_norm)
