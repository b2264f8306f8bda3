"""OFA3Ensemble tuner (in-process, on synthetic tables) and its ensemble trial (standalone, on the digits)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nni import NoMoreTrialError

from nni_ext.data import Preprocessing, build_loader
from nni_ext.ensemble.tables import (
    synthetic_latency,
    synthetic_tables,
    write_latency,
    write_tables,
)
from nni_ext.spaces.ofa_mbv3 import subnet, to_ofa
from nni_ext.testing import simulate
from nni_ext.trainers.evaluation import recalibrate_batchnorm
from nni_ext.trials.ofa2_eval import load_supernet
from nni_ext.tuners._ofa3_ensemble import OFA3EnsembleTuner, parse_members

from .conftest import REPO, venv_env
from .ofa3_fixtures import ofa_population

SPACE = {"members": {"_type": "choice", "_value": ["chosen by the OFA3Ensemble tuner"]}}
CALIB, BATCH, PER_CLASS = 32, 16, 3


@pytest.fixture(scope="module")
def small_tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ofa3_tuner")
    t = synthetic_tables(models=8, images=200, classes=20, seed=0)
    write_tables(t, root / "search")
    write_latency(root / "latency.csv", t.names, synthetic_latency(t, seed=0))
    return root / "search", root / "latency.csv"


def _tuner(tables: Path, latency: Path, out: Path, **kw) -> OFA3EnsembleTuner:  # type: ignore[no-untyped-def]
    return OFA3EnsembleTuner(tables=str(tables), latency=str(latency), criterion="max", population=12,
                             generations=8, min_members=2, seed=1, output_dir=str(out), **kw)


def test_tuner_dispatches_distinct_ensembles_then_stops(small_tables, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tables, latency = small_tables
    tuner = _tuner(tables, latency, tmp_path / "ofa3")
    done = simulate(tuner, SPACE, lambda p: {"default": 0.5, "latency_max": 1.0, "latency_sum": 2.0,
                                             "members": p["members"], "n_members": len(parse_members(p["members"]))},
                    n_trials=100, concurrency=2)
    chosen = [parse_members(p["members"]) for p, _ in done]
    assert chosen and len(chosen) == len(tuner.selection.members)  # every efficient ensemble, once
    assert len({tuple(c) for c in chosen}) == len(chosen)
    assert all(len(c) >= 2 and max(c) < 8 for c in chosen)
    with pytest.raises(NoMoreTrialError):
        tuner.generate_parameters(1000)
    acc = [e["search_accuracy"] for e in tuner.ensembles]
    assert acc == sorted(acc, reverse=True)  # most accurate first
    record = json.loads((tmp_path / "ofa3" / "dispatched.json").read_text())
    assert record["dispatched"] == record["measured"] == len(chosen)
    assert all(e["measured"]["default"] == 0.5 for e in record["ensembles"])
    assert (tmp_path / "ofa3" / "selection" / "ensembles.json").is_file()

    # max_ensembles with spread: evenly along the front (fastest first); a resumed tuner skips measured ones
    spread = _tuner(tables, latency, tmp_path / "spread", max_ensembles=3, order="spread")
    spread.update_search_space(SPACE)
    assert len(spread.ensembles) == min(3, len(spread.selection.members))
    lat = [e["latency_ms"] for e in spread.ensembles]
    assert lat == sorted(lat)
    spread.import_data([{"parameter": {"members": json.dumps(spread.ensembles[0]["members"])},
                         "value": json.dumps({"default": 0.9})}])
    first = spread.generate_parameters(0)
    assert parse_members(first["members"]) != spread.ensembles[0]["members"]


def test_tuner_rejects_bad_space_and_args(small_tables, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tables, latency = small_tables
    with pytest.raises(ValueError, match="members"):
        _tuner(tables, latency, tmp_path).update_search_space({"x": {"_type": "choice", "_value": [1]}})
    with pytest.raises(ValueError, match="order"):
        _tuner(tables, latency, tmp_path, order="best")
    with pytest.raises(ValueError, match="max_ensembles"):
        _tuner(tables, latency, tmp_path, max_ensembles=0)
    assert parse_members("3,0") == parse_members("[0, 3]") == [0, 3]
    with pytest.raises(ValueError):
        parse_members("[0, 0]")


def test_tuner_val_tables_and_exact_count(tmp_path: Path) -> None:
    """val_tables: val_accuracy next to search_accuracy, ranking by search accuracy only; max_ensembles is exact."""
    from nni_ext.ensemble import SoftVotingScorer, read_tables

    t = synthetic_tables(models=5, images=200, classes=20, seed=0)
    write_tables(t, tmp_path / "search")
    # validation tables that rank the models in reverse: a selection peeking at them would pick other ensembles
    v = synthetic_tables(models=5, images=150, classes=20, seed=1)
    v = type(v)(v.ids[::-1], v.probs[::-1], v.labels, v.names)
    write_tables(v, tmp_path / "val")
    write_latency(tmp_path / "latency.csv", t.names, synthetic_latency(t, seed=0))
    search, val = read_tables(tmp_path / "search"), read_tables(tmp_path / "val")
    plain = _tuner(tmp_path / "search", tmp_path / "latency.csv", tmp_path / "plain")
    plain.update_search_space(SPACE)
    front = len(plain.selection.members)
    n = front + 3  # more than the front: topped up with the next best ensembles
    tuner = _tuner(tmp_path / "search", tmp_path / "latency.csv", tmp_path / "ofa3", max_ensembles=n,
                   val_tables=str(tmp_path / "val"))
    done = simulate(tuner, SPACE, lambda p: {"default": 0.5, "latency_max": 1.0, "latency_sum": 2.0}, n_trials=100)
    assert len(done) == n  # exactly max_ensembles trials: maxTrialNumber = max_ensembles ends the experiment DONE
    record = json.loads((tmp_path / "ofa3" / "dispatched.json").read_text())
    ens = record["ensembles"]
    assert record["val_tables"] == str(tmp_path / "val") and record["dispatched"] == record["measured"] == n
    assert [e["members"] for e in ens[:front]] == [e["members"] for e in plain.ensembles]  # val never chooses
    assert [e["efficient"] for e in ens] == [True] * front + [False] * 3
    assert len({tuple(e["members"]) for e in ens}) == n and all(e["size"] >= 2 for e in ens)
    acc = [e["search_accuracy"] for e in ens[:front]]
    assert acc == sorted(acc, reverse=True)  # order: accuracy ranks by the search tables
    rows = np.zeros((n, 5), dtype=bool)
    for i, e in enumerate(ens):
        rows[i, e["members"]] = True
    assert [e["search_accuracy"] for e in ens] == pytest.approx(SoftVotingScorer(search).accuracy(rows).tolist())
    assert [e["val_accuracy"] for e in ens] == pytest.approx(SoftVotingScorer(val).accuracy(rows).tolist())
    with pytest.raises(ValueError, match="only 26 distinct ensembles"):  # sum of C(5, k) for k >= 2
        _tuner(tmp_path / "search", tmp_path / "latency.csv", tmp_path / "x", max_ensembles=27).select()


@pytest.fixture(scope="module")
def digits_setup(ofa_supernet: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    pop = tmp_path_factory.mktemp("ofa3_trial") / "result.json"
    return pop, ofa_supernet, ofa_population(pop, 3)


def _softmax(ckpt: Path, data: Path, arch: dict) -> tuple[np.ndarray, np.ndarray]:
    """One member's softmax over the validation subset, computed here from the primitives."""
    model = subnet(load_supernet(ckpt), to_ofa(arch), preserve_weight=True).eval()
    prep = Preprocessing.for_crop(arch["r"])
    train = build_loader(data, "train", batch_size=CALIB, train=True, backend="torchvision", device="cpu",
                         preprocessing=prep, num_workers=0, seed=0)
    train.set_epoch(0)
    torch.manual_seed(0)
    recalibrate_batchnorm(model, [model], train, math.ceil(CALIB / CALIB))
    val = build_loader(data, "val", batch_size=BATCH, train=False, backend="torchvision", device="cpu",
                       preprocessing=prep, num_workers=0, max_per_class=PER_CLASS)
    probs, labels = [], []
    with torch.no_grad():
        for x, y in val:
            probs.append(model(x).double().softmax(dim=1).numpy())
            labels.append(y.numpy())
    return np.concatenate(probs), np.concatenate(labels)


def test_trial_standalone_measures_the_ensemble(digits_setup, digits_root: Path) -> None:  # type: ignore[no-untyped-def]
    pop, ckpt, archs = digits_setup
    cmd = [sys.executable, "-m", "nni_ext.trials.ofa3_ensemble_trial", "--population", str(pop),
           "--supernet", str(ckpt), "--data", str(digits_root), "--split", "val", "--members", "2,0",
           "--calib-images", str(CALIB), "--calib-batch-size", str(CALIB), "--batch-size", str(BATCH),
           "--val-per-class", str(PER_CLASS), "--latency-warmup", "1", "--latency-repeats", "3", "--device", "cpu",
           "--backend", "torchvision", "--workers", "0", "--threads", "1"]
    proc = subprocess.run(cmd, cwd=REPO, env=venv_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("default", "latency_max", "latency_sum", "members", "n_members"):
        assert key in metrics, key
    assert metrics["members"] == "[0, 2]" and metrics["n_members"] == 2
    assert metrics["latency_sum"] >= metrics["latency_max"] > 0
    outs = [_softmax(ckpt, digits_root, archs[m]) for m in (0, 2)]
    assert np.array_equal(outs[0][1], outs[1][1]) and len(outs[0][1]) == 10 * PER_CLASS
    expected = float(((outs[0][0] + outs[1][0]) / 2).argmax(axis=1).__eq__(outs[0][1]).mean())
    assert metrics["default"] == pytest.approx(expected, abs=1e-12)
    assert metrics["val_images"] == 10 * PER_CLASS

    bad = subprocess.run(cmd[:cmd.index("--members") + 1] + ["0,7"] + cmd[cmd.index("--members") + 2:], cwd=REPO,
                         env=venv_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not in the population" in bad.stderr and "Traceback" not in bad.stderr
