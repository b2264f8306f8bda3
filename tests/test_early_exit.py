"""Early-exit networks (EDANAS / NACHOS): exit rule, avg_macs, repair, heads and costs, the trial, nnictl + MSuNAS."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nni_ext.cost import CostTable, count
from nni_ext.earlyexit import (
    ExitHead,
    assign_exits,
    average_macs,
    choose_pool,
    exit_statistics,
    head_cost,
    nachos_repair,
    score_margin,
    select_exit_logits,
)
from nni_ext.earlyexit.rule import check_thresholds
from nni_ext.spaces import create_space
from nni_ext.spaces.ofa_mbv3 import LABELS, OfaMbv3Space
from nni_ext.spaces.ofa_mbv3_ee import OfaMbv3EeSpace

from .conftest import REPO, run_until_done

torch.set_num_threads(1)


def probs_to_logits(rows: list[list[float]]) -> torch.Tensor:
    """Logits whose softmax is exactly (up to float rounding) the given probability rows."""
    return torch.log(torch.tensor(rows, dtype=torch.float64)).float()


# ------------------------------------------------------------------------------------------ exit rule
def test_exit_rule_and_avg_macs_by_hand() -> None:
    # four images, two intermediate exits and the final classifier, three classes
    exit1 = probs_to_logits([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.45, 0.35, 0.2], [0.1, 0.85, 0.05]])
    exit2 = probs_to_logits([[0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.4, 0.3, 0.3], [0.3, 0.4, 0.3]])
    final = probs_to_logits([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    assert score_margin(exit1).tolist() == pytest.approx([0.85, 0.2, 0.1, 0.75], abs=1e-6)
    # margins: exit1 0.85/0.2/0.1/0.75 vs 0.6; exit2 0.5/0.5/0.1/0.1 vs 0.4 -> exits 0, 1, final, 0
    thresholds = [0.6, 0.4]
    assert assign_exits([exit1, exit2, final], thresholds).tolist() == [0, 1, 2, 0]
    chosen = select_exit_logits([exit1, exit2, final], thresholds)
    assert torch.equal(chosen, torch.stack([exit1[0], exit2[1], final[2], exit1[3]]))
    labels = torch.tensor([0, 2, 0, 1])  # right, right, wrong (final says 1), right
    stats = exit_statistics([exit1, exit2, final], labels, thresholds)
    assert stats.counts == (2, 1, 1) and stats.correct == (2, 1, 0)
    assert stats.ratios == (0.5, 0.25, 0.25) and stats.top1 == 0.75 and stats.accuracies == (1.0, 1.0, 0.0)
    B, C = [100, 200, 400], [10, 20, 50]
    assert average_macs(stats.ratios, B, C) == 0.5 * 110 + 0.25 * 220 + 0.25 * 450 == 222.5
    assert average_macs(stats.ratios, B, C, cumulative_heads=True) == 0.5 * 110 + 0.25 * 230 + 0.25 * 480
    # a threshold of 1 lets (almost) nothing leave; only the final classifier decides
    assert assign_exits([exit1, exit2, final], [1.0, 1.0]).tolist() == [2, 2, 2, 2]
    for bad in (0.0, 1.5, -0.1, math.nan):
        with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
            check_thresholds([0.2, bad], 2)
    with pytest.raises(ValueError, match="one per exit"):
        assign_exits([exit1, final], [0.2, 0.3])


def test_nachos_repair_lowers_thresholds_backwards_and_keeps_the_accuracy() -> None:
    n = 10
    labels = torch.zeros(n, dtype=torch.long)
    sure, unsure = [0.8, 0.15, 0.05], [0.4, 0.35, 0.25]  # margins 0.65 and 0.05, both class 0 (right)
    wrong = [0.2, 0.65, 0.15]  # margin 0.45, class 1 (wrong)
    exit1 = probs_to_logits([unsure] * 5 + [wrong] * 2 + [unsure] * 3)
    exit2 = probs_to_logits([sure] * 5 + [unsure] * 5)
    final = probs_to_logits([sure] * n)
    logits, B, C = [exit1, exit2, final], [10, 20, 40], [1, 2, 4]
    # everything leaves at the final classifier (avg 44); lowering exit 2 to 0.6 lets 5 images out: 0.5*22+0.5*44
    fixed = nachos_repair(logits, labels, [0.9, 0.9], B, C, mmax=35, top1_min=0.9)
    assert fixed.thresholds == (0.9, 0.6) and fixed.steps == 3 and fixed.satisfied
    assert fixed.avg_macs == 33.0 and fixed.top1 == 1.0 and fixed.stats.counts == (0, 5, 5)
    # a bound it cannot reach: exit 2 goes down to the floor 0.1, exit 1 down to 0.5; 0.4 would let the two
    # wrong images out (accuracy 0.8 < top1_min 0.9), so that step is refused and the repair ends unsatisfied
    stuck = nachos_repair(logits, labels, [0.9, 0.9], B, C, mmax=20, top1_min=0.9)
    assert stuck.thresholds == pytest.approx((0.5, 0.1)) and not stuck.satisfied and stuck.top1 == 1.0
    assert stuck.avg_macs == 33.0
    # without the accuracy floor the wrong images leave at exit 1
    free = nachos_repair(logits, labels, [0.9, 0.9], B, C, mmax=20, top1_min=0.0)
    assert free.thresholds == pytest.approx((0.1, 0.1)) and free.stats.counts == (2, 5, 3)
    assert free.avg_macs == pytest.approx(0.2 * 11 + 0.5 * 22 + 0.3 * 44) and free.top1 == 0.8
    # already within the bound, or starting below top1_min: nothing changes
    assert nachos_repair(logits, labels, [0.9, 0.9], B, C, mmax=50).steps == 0
    assert nachos_repair(logits, labels, [0.9, 0.9], B, C, mmax=20, top1_min=1.1).thresholds == (0.9, 0.9)


# ------------------------------------------------------------------------------------- heads and costs
def test_head_cost_is_the_counted_cost_and_the_pooling_rule() -> None:
    for channels, side, classes, pool in ((32, 8, 10, 1), (48, 4, 10, 2), (136, 14, 100, 4), (96, 2, 10, 2)):
        head = ExitHead(channels, side, classes, pool)
        counted = count(head, (1, channels, side, side))
        assert (counted.flops, counted.params) == head_cost(channels, side, classes, pool)
        assert head(torch.zeros(2, channels, side, side)).shape == (2, classes)
    macs = {k: head_cost(32, 8, 10, k)[0] for k in (1, 2, 4)}
    assert macs[1] > macs[2] > macs[4]
    assert choose_pool(1000, 32, 8, 10, next_macs=1000 + macs[1] + 1) == 1  # cheap enough unpooled
    assert choose_pool(1000, 32, 8, 10, next_macs=1000 + macs[2] + 1) == 2
    assert choose_pool(1000, 32, 8, 10, next_macs=1000 + macs[4] + 1) == 4
    assert choose_pool(1000, 32, 8, 10, next_macs=10) == 4  # nothing is cheaper: the largest kernel
    assert choose_pool(1000, 96, 2, 10, next_macs=10) == 2  # a 2-pixel map takes no 4x4 pooling
    with pytest.raises(ValueError, match="does not fit"):
        ExitHead(96, 2, 10, pool=4)


@pytest.fixture(scope="module")
def space() -> OfaMbv3EeSpace:
    return OfaMbv3EeSpace(num_classes=10, resolutions=[32, 48])


def test_space_costs_equal_the_built_network(space: OfaMbv3EeSpace) -> None:
    assert space.labels[-4:] == ["t_1", "t_2", "t_3", "t_4"] and space.choices()["t_2"] == [0.1, 0.2, 1.0]
    base = OfaMbv3Space(num_classes=10, resolutions=[32, 48])
    for size in (32, 48):
        table, base_table = CostTable.build(space, size), CostTable.cached(base, size)
        rng = np.random.default_rng(5)
        archs = [space.largest(), space.smallest(), space.sample(rng)]
        for arch in archs:
            net = space.build(arch, input_size=size).eval()
            assert [e.stage for e in net.exits] == sorted(space.exit_thresholds(arch))
            exact = count(net, size)
            assert table.cost(arch) == exact  # backbone, final classifier and every head
            costs = net.exit_costs(size)
            b, c = costs["backbone_macs"], costs["head_macs"]
            # flops: the backbone with its own classifier, as ofa-mbv3 counts it
            assert b[-1] + c[-1] == base_table.cost({k: arch[k] for k in LABELS}).flops
            assert b[-1] + sum(c) == exact.flops and b == sorted(b)
            # EDANAS's rule: every exit costs less than the next one unless fully pooled
            for i, e in enumerate(net.exits):
                if e.pool != max(k for k in (1, 2, 4) if k <= e.side):
                    assert b[i] + c[i] < b[i + 1] + c[i + 1]
            with torch.no_grad():
                out = net(torch.randn(3, 3, size, size))
            assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert space.largest()["t_1"] == 0.1 and space.exit_thresholds(space.smallest()) == {}


def test_binary_genes_and_bad_space_arguments() -> None:
    nachos = create_space("ofa-mbv3-ee", num_classes=10, resolutions=[32], exits="binary", stages=[2, 4],
                          exit_threshold=0.3)
    assert nachos.labels[-2:] == ["exit_2", "exit_4"] and nachos.choices()["exit_2"] == [0, 1]
    arch = {**nachos.smallest(), "exit_4": 1}
    assert nachos.exit_thresholds(arch) == {4: 0.3}
    assert [(e.stage, e.block) for e in nachos.exit_plan(arch, 32)] == [(4, 8)]  # 1 + 4 units of depth 2
    for kwargs, message in (({"thresholds": [0.1, 1.5]}, r"threshold 1.5 is outside \(0, 1\]"),
                            ({"thresholds": [0.0, 1.0]}, r"threshold 0.0 is outside \(0, 1\]"),
                            ({"stages": [1, 5]}, "an exit after stage 5 does not exist"),
                            ({"stages": [0]}, "an exit after stage 0 does not exist"),
                            ({"exits": "bits"}, "exits='bits'")):
        with pytest.raises(ValueError, match=message) as info:
            OfaMbv3EeSpace(num_classes=10, resolutions=[32], **kwargs)
        assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------- the trial
def _arch_file(tmp_path: Path, **genes: float) -> Path:
    space = OfaMbv3EeSpace(num_classes=10, resolutions=[32])
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({**space.smallest(), **genes}))
    return path


def test_trial_errors_are_one_line(ofa_supernet: Path, digits_root: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from nni_ext.trials.ofa_ee_trial import main

    arch = _arch_file(tmp_path, t_2=0.2)
    common = ["--supernet", str(ofa_supernet), "--data", str(digits_root), "--arch", str(arch), "--resolutions", "32"]
    for extra, message in ((["--thresholds", "0.1,1.2"], r"threshold 1.2 is outside (0, 1]"),
                           (["--stages", "2,5"], "an exit after stage 5 does not exist"),
                           (["--mmax", "-3"], "--mmax -3.0 must be a positive number")):
        assert main([*common, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("nni-ext: error: ") and message in err[0], err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(arch.read_text()), "t_5": 0.2}))
    assert main([*common[:4], "--arch", str(bad), "--resolutions", "32"]) == 2
    assert "unknown label 't_5'" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_trial_on_the_digits_reports_exits_avg_macs_and_a_repair(ofa_supernet: Path, digits_root: Path,
                                                                  tmp_path: Path) -> None:
    from nni_ext.trials.ofa_ee_trial import build_arg_parser, run

    arch_path = _arch_file(tmp_path, t_2=0.1, t_3=0.2, t_4=0.1)
    args = build_arg_parser().parse_args([
        "--supernet", str(ofa_supernet), "--data", str(digits_root), "--arch", str(arch_path), "--resolutions", "32",
        "--calib-images", "64", "--epochs", "1", "--ee-epochs", "1", "--train-per-class", "24",
        "--val-per-class", "10", "--train-batch-size", "32", "--backend", "torchvision", "--workers", "0",
        "--threads", "1"])
    m = run(args)
    space = OfaMbv3EeSpace(num_classes=10, resolutions=[32])
    arch = space.validate(json.loads(arch_path.read_text()))
    assert m["exits"] == 3 and m["val_images"] == 100 and m["exit1_ratio"] == 0.0
    ratios = [m["exit2_ratio"], m["exit3_ratio"], m["exit4_ratio"], m["final_ratio"]]
    assert sum(ratios) == pytest.approx(1.0) and all(0 <= r <= 1 for r in ratios)
    # top-1 of the network = the exits' accuracies weighted by their ratios
    parts = [(r, m.get(f"{k}_top1", 0.0)) for r, k in zip(ratios, ("exit2", "exit3", "exit4", "final"))]
    assert m["default"] == pytest.approx(sum(r * a for r, a in parts))
    assert (m["exit2_threshold"], m["exit3_threshold"], m["exit4_threshold"]) == (0.1, 0.2, 0.1)
    backbone = {k: v for k, v in arch.items() if k in LABELS}
    assert m["flops"] == CostTable.cached(OfaMbv3Space(num_classes=10, resolutions=[32]), 32).cost(backbone).flops
    whole = CostTable.build(space, 32).cost(arch)  # the space's cost: backbone, final classifier and every head
    assert (m["max_macs"], m["params"]) == (whole.flops, whole.params)
    assert m["avg_macs"] <= m["avg_macs_cumulative"] <= m["max_macs"] and m["avg_macs"] > 0
    if m["final_ratio"] == 1.0:
        assert m["avg_macs"] == m["flops"]
    assert 0 <= m["backbone_top1"] <= 1 and m["finetune_epochs"] == 1 and m["ee_epochs"] == 1

    # NACHOS: a bound below what the network needs: thresholds only go down, never below 0.1
    args.mmax, args.top1_min = 0.5 * m["avg_macs"], 0.0
    fixed = run(args)
    assert fixed["mmax"] == args.mmax and fixed["repair_steps"] >= 1
    thresholds = [fixed[f"exit{s}_threshold"] for s in (2, 3, 4)]
    assert all(0.1 - 1e-9 <= t <= o + 1e-9 for t, o in zip(thresholds, (0.1, 0.2, 0.1)))
    assert fixed["avg_macs"] <= m["avg_macs"] + 1e-6
    assert fixed["mmax_satisfied"] == int(fixed["avg_macs"] <= args.mmax)


def test_search_space_file_matches_the_trial_space() -> None:
    from nni_ext.ss_gen import search_space_json

    path = REPO / "search_spaces" / "ofa-mbv3-ee-digits.json"
    space = OfaMbv3EeSpace(resolutions=[32, 48, 64])
    assert json.loads(path.read_text()) == json.loads(search_space_json(space)), \
        f"{path} drifted; regenerate it with the `nni-ext ss_gen -t` command in nni_ext/trials/ofa_ee_trial.py"


# ------------------------------------------------------------------------------------- nnictl + MSuNAS
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_nnictl_msunas_early_exit_search_on_the_digits(tmp_path: Path, ofa_supernet: Path,
                                                       digits_root: Path) -> None:
    config = yaml.safe_load((REPO / "configs" / "ofa_ee_digits.yml").read_text())
    trials_n = 6
    classargs = {**config["tuner"]["classArgs"], "initial_samples": 4, "batch_size": 2}
    config.update(
        searchSpaceFile=str(REPO / "search_spaces" / "ofa-mbv3-ee-digits.json"), trialCodeDirectory=str(REPO),
        trialCommand=f"{sys.executable} -m nni_ext.trials.ofa_ee_trial --supernet {ofa_supernet} "
                     f"--data {digits_root} --resolutions 32,48,64 --calib-images 32 --calib-batch-size 32 "
                     "--epochs 0 --ee-epochs 1 --ee-mode frozen --train-per-class 8 --train-batch-size 16 "
                     "--val-per-class 5 --backend torchvision --workers 0 --threads 1",
        experimentWorkingDirectory=str(tmp_path / "experiments"), maxTrialNumber=trials_n, trialConcurrency=2,
        tuner={"className": "nni_ext.tuners.MSuNASTuner", "codeDirectory": str(REPO), "classArgs": classargs})
    trials, directory = run_until_done(config, tmp_path)
    assert len(trials) == trials_n
    space = OfaMbv3EeSpace(num_classes=10, resolutions=[32, 48, 64])
    for t in trials:
        m = t.metrics
        arch = space.validate(json.loads(m["architecture"]))
        assert m["exits"] == len(space.exit_thresholds(arch)) and m["val_images"] == 50
        assert 0 < m["avg_macs"] <= m["max_macs"] and 0 <= m["default"] <= 1
        assert sum(m[f"exit{s}_ratio"] for s in (1, 2, 3, 4)) + m["final_ratio"] == pytest.approx(1.0)
    out = directory / "msunas"
    assert json.loads((out / "archive.json").read_text())["evaluated"] == trials_n
    assert sorted(out.glob("iter_*.json")), "MSuNAS planned no iteration after its design"
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 1 + trials_n and "avg_macs" in history[0]
