"""SPOS supernet training and training a fixed architecture from scratch, on the embedded digits (CPU).

Most tests use a 2-layer ``spos-digits`` supernet (``stage_repeats=[1, 1]``) to stay fast; the
recipe, sampling, checkpoint and resume code paths are those of the full space.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from nni_ext.cli import main
from nni_ext.cost import CostTable
from nni_ext.errors import NniExtError
from nni_ext.experiment import free_port
from nni_ext.spaces import create_space
from nni_ext.spaces.spos_supernet import ShuffleNetV2Supernet
from nni_ext.trainers.checkpoint import load_supernet, read_checkpoint
from nni_ext.trainers.evaluation import evaluate, recalibrate_batchnorm
from nni_ext.trainers.retrain import load_fixed, read_fixed_arc, retrain
from nni_ext.trainers.sampling import SPOS_FLOPS_BINS, FlopsUniformSampler
from nni_ext.trainers.supernet import SamplingConfig, build_sampler, is_official_space, train_supernet
from nni_ext.trainers.train_loop import Recipe, RunConfig, Trainer, distributed

SMALL = {"stage_repeats": [1, 1], "stage_channels": [16, 32]}
SMALL_ARGS = ["--space", "spos-digits", "--space-arg", "stage_repeats=[1,1]", "--space-arg", "stage_channels=[16,32]"]
CPU = torch.device("cpu")


def small_space():  # noqa: ANN201
    return create_space("spos-digits", **SMALL)


def run_cfg(root: Path, out: Path, **kw) -> RunConfig:  # noqa: ANN003
    return RunConfig(root, out, backend="torchvision", workers=0, min_area=0.5, **kw)


def test_supernet_training_learns_digits(digits_root: Path, tmp_path: Path) -> None:
    recipe = Recipe(batch_size=32, steps=88, lr=0.2, log_every=11, quiet=True)
    result = train_supernet(small_space(), run_cfg(digits_root, tmp_path), recipe)
    first, last = result.train_log[0], result.train_log[-1]
    assert result.finished and result.step == 88
    assert last["top1"] > 0.2, result.train_log  # chance is 0.1
    assert last["loss"] < first["loss"] - 0.2, result.train_log
    assert [h["step"] for h in result.history] == [44, 88]  # once per epoch
    assert result.val["top1"] > 0.15  # BN with batch statistics; chance 0.1 (363 val images)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("ddp", [False, True], ids=["single", "ddp-gloo-1"])
def test_unsampled_blocks_get_no_update(ddp: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if ddp:
        port = free_port()
        for key, value in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                               MASTER_PORT=str(port)).items():
            monkeypatch.setenv(key, value)
    torch.manual_seed(0)
    # affine: BN weights must stay put too; random init: with the identity one, BN scales followed by another
    # BN on the same channel are scale-invariant at step 0, so a few on the path get a zero gradient
    model = ShuffleNetV2Supernet(small_space(), affine=True, init="default")
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    with distributed("cpu") as (dist, device):
        assert dist.enabled == ddp
        trainer = Trainer(model, Recipe(lr=0.1, weight_decay=0.1), total_steps=10, device=device, dist=dist,
                          find_unused_parameters=True)
        trainer.train_step(x, y, [0, 0])  # blocks 0 now have momentum buffers
        before = _snapshot(model)
        trainer.train_step(x, y, [1, 1])
    after = _snapshot(model)
    for name, value in after.items():
        block = name.split(".")[2] if name.startswith("choice_blocks") else None
        if block in ("0", "2", "3"):  # not in path [1, 1]: bit-identical despite momentum and weight decay
            assert torch.equal(value, before[name]), name
        else:
            assert not torch.equal(value, before[name]), name
    unused = {id(p) for p in model.choice_blocks[0][2].parameters()}
    assert all(not trainer.optimizer.state[p] for p in model.parameters() if id(p) in unused)


def test_weight_decay_only_on_weights_with_dim_above_one() -> None:
    space = create_space("spos-digits")
    model = space.build(space.official_architecture())
    trainer = Trainer(model, Recipe(), total_steps=10, device=CPU)
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 4e-5 and all(p.dim() > 1 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    assert len(no_decay["params"]) > 0  # affine BN weights and biases
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert trainer.optimizer.defaults["momentum"] == 0.9
    assert trainer.criterion.label_smoothing == 0.1


def test_lr_decays_linearly_per_iteration() -> None:
    assert Recipe(batch_size=1024).base_lr == 0.5 and Recipe().base_lr == 0.125
    trainer = Trainer(nn.Sequential(nn.Flatten(), nn.Linear(12, 10)), Recipe(lr=0.5), total_steps=10, device=CPU)
    x, y = torch.randn(4, 3, 2, 2), torch.randint(0, 10, (4,))
    lrs = [trainer.lr]
    for _ in range(10):
        trainer.train_step(x, y)
        lrs.append(trainer.lr)
    assert lrs == pytest.approx([0.5 * (1 - k / 10) for k in range(11)], abs=1e-12)


def test_resume_gives_the_same_weights_as_training_straight(digits_root: Path, tmp_path: Path) -> None:
    recipe = dict(batch_size=64, steps=30, lr=0.1, save_every=7, quiet=True)  # 22 steps per epoch
    straight = train_supernet(small_space(), run_cfg(digits_root, tmp_path / "a"), Recipe(**recipe))
    half = train_supernet(small_space(), run_cfg(digits_root, tmp_path / "b"), Recipe(**recipe, stop_at=15))
    assert not half.finished and read_checkpoint(tmp_path / "b" / "checkpoint.pth")["step"] == 15
    resumed = train_supernet(small_space(), run_cfg(digits_root, tmp_path / "b", resume=True), Recipe(**recipe))
    assert resumed.finished and resumed.step == straight.step == 30
    a = read_checkpoint(tmp_path / "a" / "checkpoint.pth", kind="spos_supernet")
    b = read_checkpoint(tmp_path / "b" / "checkpoint.pth", kind="spos_supernet")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), "weights differ after resume"
    momenta = zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values())
    assert all(torch.equal(x["momentum_buffer"], y["momentum_buffer"]) for x, y in momenta)
    assert a["sampler"] == b["sampler"] and a["scheduler"] == b["scheduler"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert resumed.val["top1"] == straight.val["top1"]
    # replaced atomically: one file, no temporary leftovers
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["checkpoint.pth"]



def test_resume_into_another_space_is_one_clear_line(digits_root: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--data", str(digits_root), "--steps", "2", "--batch-size", "16", "--backend", "torchvision",
              "--workers", "0", "--output", str(tmp_path), "--quiet", "--val-per-class", "2"]
    assert main(["spos", "train-supernet", *SMALL_ARGS, *common]) == 0
    capsys.readouterr()
    wider = ["--space", "spos-digits", "--space-arg", "stage_repeats=[1,1]", "--space-arg", "stage_channels=[16,48]"]
    assert main(["spos", "train-supernet", *wider, *common, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not fit" in err and "choice_blocks.1." in err, err
    dropout = [*SMALL_ARGS, "--space-arg", "dropout=0.3"]
    assert main(["spos", "train-supernet", *dropout, *common, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "differs in dropout" in err, err


def test_retrain_official_architecture_writes_fixed_checkpoint(digits_root: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import nni

    reports: list[tuple[str, dict]] = []
    monkeypatch.setattr("nni_ext.runner.in_nni_trial", lambda: True)
    monkeypatch.setattr(nni, "report_intermediate_result", lambda m: reports.append(("intermediate", m)))
    monkeypatch.setattr(nni, "report_final_result", lambda m: reports.append(("final", m)))
    space = create_space("spos-digits")
    official = space.official_architecture()
    wrapped = {"parameter_id": 3, "parameters": {k: {"_value": v, "_idx": 0} for k, v in official.items()}}
    (tmp_path / "arch.json").write_text(json.dumps(wrapped))
    arch = read_fixed_arc(tmp_path / "arch.json", space)
    assert arch == official == read_fixed_arc("official", space)
    with pytest.raises(NniExtError, match="layer_3"):
        read_fixed_arc({**official, "layer_3": "conv_9x9"}, space)
    recipe = Recipe(batch_size=16, steps=3, eval_every=2, quiet=True)
    result = retrain(space, arch, run_cfg(digits_root, tmp_path / "out", val_per_class=2), recipe)
    assert result.finished and [kind for kind, _ in reports] == ["intermediate", "final"]
    assert 0 <= reports[-1][1]["default"] <= 1 and "top5" in reports[-1][1]
    model, loaded_arch, ckpt = load_fixed(tmp_path / "out" / "checkpoint.pth")
    assert ckpt["kind"] == "spos_fixed" and loaded_arch == official and ckpt["step"] == 3
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in model.state_dict().items())


def test_cli_train_supernet_writes_a_loadable_checkpoint(digits_root: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["spos", "train-supernet", *SMALL_ARGS, "--data", str(digits_root), "--steps", "3", "--batch-size", "16",
            "--backend", "torchvision", "--workers", "0", "--output", str(tmp_path), "--quiet", "--val-per-class", "2",
            "--flops-range", "250K", "300k"]
    assert main(argv) == 0
    assert "supernet done at step 3/3" in capsys.readouterr().out
    model, ckpt = load_supernet(tmp_path / "checkpoint.pth")
    assert isinstance(model, ShuffleNetV2Supernet) and ckpt["affine"] is False and ckpt["step"] == 3
    assert ckpt["args"]["recipe"]["batch_size"] == 16 and ckpt["sampling"]["flops_range"] == [250e3, 300e3]
    assert ckpt["sampler"]["rng"]["state"]  # sampler stream saved for resuming


def test_flops_uniform_sampler_defaults() -> None:
    assert is_official_space(create_space("spos"), 224)  # -> SPOS_FLOPS_RANGE, 7 bins, 500 draws
    assert not is_official_space(create_space("spos"), 160) and not is_official_space(create_space("spos-digits"), 224)
    digits = build_sampler(create_space("spos-digits"), 32)
    assert (digits.bins, digits.max_draws) == (SPOS_FLOPS_BINS, 500)
    assert (digits.low, digits.high) == FlopsUniformSampler.auto_range(digits_table := CostTable.cached(
        create_space("spos-digits"), 32)) and digits_table.input_size == 32
    fixed = build_sampler(create_space("spos-digits"), 32, SamplingConfig(flops_range=(4.5e5, 5e5), bins=3))
    assert (fixed.low, fixed.high, fixed.bins) == (4.5e5, 5e5, 3)
    assert all(4.5e5 <= fixed.flops(fixed.sample()) <= 5e5 for _ in range(20))
    with pytest.raises(NniExtError, match="sampling"):
        build_sampler(create_space("spos-digits"), 32, SamplingConfig(kind="greedy"))


def test_identity_init_starts_every_candidate_of_a_layer_as_the_same_function() -> None:
    space = create_space("spos-digits")
    assert space.config["supernet_init"] == "identity"
    assert "supernet_init" not in create_space("spos").config  # the ImageNet space keeps the official init
    torch.manual_seed(0)
    net = ShuffleNetV2Supernet(space).train()
    for layer in (0, 1, 16, 19):  # strided and not, 8 to 128 channels, 16 px down to 1 px
        cin, _, stride = space.layer_specs[layer]
        x = torch.randn(32, cin, 4 if layer < 16 else 2, 4 if layer < 16 else 2)
        outs = [block(x) for block in net.choice_blocks[layer]]
        assert all(torch.allclose(o, outs[0], atol=1e-5) for o in outs[1:3]), layer  # shufflenet 3x3 = 5x5 = 7x7
        corr = torch.corrcoef(torch.stack([outs[3].flatten(), outs[0].flatten()]))[0, 1]
        assert corr > 0.8, (layer, float(corr))  # xception: the same per-channel monotone map, nearly
    default = ShuffleNetV2Supernet(space, init="default")
    assert default.init == "default" and not torch.allclose(default.choice_blocks[1][0].branch_main[0].weight,
                                                             net.choice_blocks[1][0].branch_main[0].weight)
    with pytest.raises(ValueError, match="supernet_init='zeros'; choose one of default, identity"):
        create_space("spos-digits", supernet_init="zeros")


def test_supernet_validation_estimates_each_paths_statistics_on_the_whole_split() -> None:
    """Validation batches come class by class: per-batch BN statistics would normalise the class away."""
    torch.manual_seed(0)
    model = ShuffleNetV2Supernet(small_space())
    trainer = Trainer(model, Recipe(lr=0.1), total_steps=10, device=CPU)
    x, y = torch.randn(48, 3, 32, 32), torch.arange(10).repeat_interleave(5)[:48]
    for _ in range(3):
        trainer.train_step(x, y, [0, 1])
    loader = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 48, 8)]  # sorted by class, as an ImageFolder val split
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [(m.running_mean.clone(), m.momentum) for m in bns]
    got = trainer.evaluate(loader, [[0, 1]], batch_stats=True)
    assert all(torch.equal(m.running_mean, mean) and m.momentum == momentum for m, (mean, momentum) in zip(bns, before))
    assert model.training
    # the same as recalibrating the path's BN on all the images at once, then evaluating
    ref = copy.deepcopy(model).eval()
    recalibrate_batchnorm(lambda t: ref(t, [0, 1]), [ref], loader, len(loader))
    assert got["top1"] == pytest.approx(evaluate(lambda t: ref(t, [0, 1]), loader)["top1"])
