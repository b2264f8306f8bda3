"""OFA² trials: the predictor trial against the library, and a real nnictl NSGA-II run of the evaluation trial."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nni_ext import experiment
from nni_ext.cost import count
from nni_ext.ofa2 import AccuracyPredictor, FlopsModel, LatencyModel
from nni_ext.spaces.ofa_mbv3 import OfaMbv3Space, to_ofa
from nni_ext.ss_gen import search_space_json

from .conftest import REPO, run_cli

TRIALS = 4
#: the space of configs/ofa2_eval_digits.yml (`--resolutions 32,48,64`, 10 classes)
DIGITS_RESOLUTIONS = [32, 48, 64]


def digits_space() -> OfaMbv3Space:
    return OfaMbv3Space(num_classes=10, resolutions=DIGITS_RESOLUTIONS)


def test_digits_search_space_file_matches_the_trial_space() -> None:
    path = REPO / "search_spaces" / "ofa-mbv3-digits.json"
    assert path.read_text() == search_space_json(digits_space()), (
        f"{path} drifted; regenerate it with the `nni-ext ss_gen -t` command in nni_ext/trials/ofa2_eval.py")


@pytest.mark.timeout(120)
def test_predictor_trial_reports_the_library_values(ofa_data: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from nni_ext.trials.ofa2_predictor_trial import main

    space = OfaMbv3Space(resolutions=[160])  # one resolution: one cost table to build
    arch = space.validate({**space.smallest(), **{f"d_{u}": 3 for u in range(5)}, "ks_5": 7, "e_9": 6})
    (tmp_path / "ofa.json").write_text(json.dumps(to_ofa(arch)))  # the OFA dict form is accepted too
    common = ["--predictor", str(ofa_data / "acc_predictor.pth"), "--resolutions", "160"]
    assert main([*common, "--latency-tables", str(ofa_data / "note10"), "--arch", str(tmp_path / "ofa.json")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    top1 = AccuracyPredictor.load(ofa_data / "acc_predictor.pth", space=space).predict_archs([arch])[0]
    X = space.to_matrix([arch])
    flops = FlopsModel(space)
    assert metrics["default"] == pytest.approx(top1, abs=1e-6) and 0.7 < metrics["default"] < 0.85
    assert metrics["top1_error"] == pytest.approx(100 * (1 - top1), abs=1e-4)
    assert (metrics["flops"], metrics["params"]) == (flops.flops(X)[0], flops.params(X)[0])
    note10 = LatencyModel.from_path(ofa_data / "note10", space=space)
    assert metrics["latency_ms"] == pytest.approx(note10.latency(X)[0])
    # bad paths: one line, exit 2
    for argv, message in ((["--predictor", str(tmp_path / "none.pth")], "accuracy predictor"),
                          ([*common, "--latency-tables", str(tmp_path / "none")], "latency tables")):
        (tmp_path / "arch.json").write_text(json.dumps(arch))
        assert main([*argv, "--arch", str(tmp_path / "arch.json")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"nni-ext: error: {message}") and "not found" in err[0]


@pytest.fixture(scope="module")
def digits_supernet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ofa2_supernet") / "supernet.pth"
    proc = run_cli("ofa2", "init-supernet", "--num-classes", "10", "--out", str(path), "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    return path


def test_supernet_checkpoint_errors_are_one_line(digits_supernet: Path, digits_root: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from nni_ext.trials.ofa2_eval import main

    state = torch.load(digits_supernet, weights_only=True)["state_dict"]
    assert state["classifier.linear.weight"].shape == (10, 1536)
    state["first_conv.conv.weight"] = state["first_conv.conv.weight"][:16]  # a narrower stem (another width)
    torch.save(state, tmp_path / "narrow.pth")  # a plain state dict is accepted
    (tmp_path / "arch.json").write_text(json.dumps(digits_space().smallest()))
    base = ["--data", str(digits_root), "--resolutions", "32,48,64", "--arch", str(tmp_path / "arch.json")]
    for ckpt, message in ((tmp_path / "none.pth", "not found"), (tmp_path / "arch.json", "not a PyTorch file"),
                          (tmp_path / "narrow.pth", "size mismatch for first_conv.conv.weight")):
        assert main(["--supernet", str(ckpt), *base]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("nni-ext: error: ") and message in err[0], err


@pytest.fixture(scope="module")
def eval_experiment(tmp_path_factory: pytest.TempPathFactory, digits_root: Path,
                    digits_supernet: Path) -> tuple[Path, list[experiment.Trial]]:
    tmp = tmp_path_factory.mktemp("ofa2_exp")
    config = yaml.safe_load((REPO / "configs" / "ofa2_eval_digits.yml").read_text())
    config.update(
        searchSpaceFile=str(REPO / "search_spaces" / "ofa-mbv3-digits.json"), trialCodeDirectory=str(REPO),
        trialCommand=f"python -m nni_ext.trials.ofa2_eval --supernet {digits_supernet} --data {digits_root} "
                     "--resolutions 32,48,64 --calib-images 64 --calib-batch-size 32 --val-per-class 5 "
                     "--backend torchvision --workers 0 --threads 1 --eval-before",
        experimentWorkingDirectory=str(tmp / "experiments"), maxTrialNumber=TRIALS, trialConcurrency=2,
        tuner={"className": "nni_ext.tuners.NSGA2Tuner", "codeDirectory": str(REPO),
               "classArgs": {**config["tuner"]["classArgs"], "population_size": TRIALS, "seed": 2}})
    (tmp / "config.yml").write_text(yaml.safe_dump(config))
    exp = experiment.create(tmp / "config.yml")
    try:
        status = exp.wait(timeout=240)
        assert status == "DONE", exp.status()
        trials, directory = exp.trials(), exp.directory
    finally:
        exp.stop()
    return directory, trials


@pytest.mark.timeout(300)
def test_eval_trial_under_nnictl_reports_every_objective(eval_experiment) -> None:  # type: ignore[no-untyped-def]
    directory, trials = eval_experiment
    assert len(trials) == TRIALS and all(t.status == "SUCCEEDED" for t in trials), [t.status for t in trials]
    space = digits_space()
    archs = [space.validate(json.loads(t.metrics["architecture"])) for t in trials]
    X = space.to_matrix(archs)
    flops = FlopsModel(space)
    assert [t.metrics["flops"] for t in trials] == flops.flops(X).tolist()
    assert [t.metrics["params"] for t in trials] == flops.params(X).tolist()
    built = count(space.build(archs[0]), archs[0]["r"])
    assert (trials[0].metrics["flops"], trials[0].metrics["params"]) == (built.flops, built.params)
    for t in trials:
        m = t.metrics
        assert 0 <= m["default"] <= m["top5"] <= 1 and 0 <= m["top1_before_recalibration"] <= 1
        assert m["val_images"] == 50 and m["calib_images"] == 64
    assert len({json.dumps(a, sort_keys=True) for a in archs}) == TRIALS
    assert (directory / "moo" / "history.csv").is_file()
    assert np.isfinite([t.metrics["default"] for t in trials]).all()


def test_eval_trial_reports_seeded_weight_noise_robustness(digits_supernet: Path, digits_root: Path,
                                                           tmp_path: Path) -> None:
    """``--robustness-draws`` adds FlatNAS's ``robustness`` (what a top1_robust tuner derives its objective from)."""
    from nni_ext.trials.ofa2_eval import build_arg_parser, run

    (tmp_path / "arch.json").write_text(json.dumps(digits_space().smallest()))
    base = ["--supernet", str(digits_supernet), "--data", str(digits_root), "--resolutions", "32,48,64", "--arch",
            str(tmp_path / "arch.json"), "--calib-images", "64", "--val-per-class", "6", "--backend", "torchvision",
            "--workers", "0", "--threads", "1", "--robustness-draws", "3"]
    first, again = (run(build_arg_parser().parse_args([*base, "--robustness-sigma", "0.5"])) for _ in range(2))
    assert first["robustness"] == again["robustness"] and 0 < first["robustness"] <= 1
    assert first["default"] == again["default"]
    assert run(build_arg_parser().parse_args([*base, "--robustness-sigma", "0"]))["robustness"] == 0.0
    with pytest.raises(Exception, match="--robustness-draws -1"):
        run(build_arg_parser().parse_args([*base[:-2], "--robustness-draws", "-1"]))
