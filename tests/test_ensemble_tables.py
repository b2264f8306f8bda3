"""``nni-ext ofa3 tables``: prediction tables of OFA and SPOS populations on the digits, then selection."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nni_ext.cli import main
from nni_ext.data import Preprocessing, build_loader
from nni_ext.data.folder import index_split
from nni_ext.ensemble import read_tables, write_latency
from nni_ext.ensemble.predict import write_prediction_tables
from nni_ext.errors import NniExtError
from nni_ext.spaces.ofa_mbv3 import subnet, to_ofa
from nni_ext.trainers.evaluation import recalibrate_batchnorm
from nni_ext.trials.ofa2_eval import load_supernet

from .ofa3_fixtures import ofa_population

CALIB, BATCH = 32, 16


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    path = tmp_path_factory.mktemp("ofa3_pop") / "result.json"  # OFA²'s result.json layout
    return path, ofa_population(path, 3)


def _tables(pop: Path, ckpt: Path, data: Path, out: Path) -> int:
    return main(["ofa3", "tables", "--population", str(pop), "--supernet", str(ckpt), "--data", str(data),
                 "--split", "val", "--out", str(out), "--calib-images", str(CALIB), "--batch-size", str(BATCH),
                 "--device", "cpu", "--backend", "torchvision", "--workers", "0"])


def _first_batch_top1(ckpt: Path, data: Path, arch: dict) -> np.ndarray:
    """Arg-max of the member's logits on the first validation batch, computed here from the primitives."""
    model = subnet(load_supernet(ckpt), to_ofa(arch), preserve_weight=True).eval()
    prep = Preprocessing.for_crop(arch["r"])
    train = build_loader(data, "train", batch_size=CALIB, train=True, backend="torchvision", device="cpu",
                         preprocessing=prep, num_workers=0, seed=0)
    recalibrate_batchnorm(model, [model], train, math.ceil(CALIB / CALIB))
    val = build_loader(data, "val", batch_size=BATCH, train=False, backend="torchvision", device="cpu",
                       preprocessing=prep, num_workers=0)
    with torch.no_grad():
        x, _ = next(iter(val))
        return model(x).argmax(dim=1).numpy()


def test_tables_resume_and_select(ofa_supernet: Path, population, digits_search_root: Path,  # type: ignore[no-untyped-def]
                                  tmp_path: Path) -> None:
    supernet_path, search_root = ofa_supernet, digits_search_root
    pop, archs = population
    out = tmp_path / "val"
    assert _tables(pop, supernet_path, search_root, out) == 0
    names = [f"model_{i:02d}" for i in range(3)]
    files = sorted(p.name for p in out.glob("model_*.csv"))
    assert files == sorted(f"{n}_{kind}.csv" for n in names for kind in ("class", "prob"))
    t = read_tables(out)
    assert t.names == tuple(names) and t.k == 5 and t.n_images == 40
    folder_labels = np.array([label for _, label in index_split(search_root, "val").samples])
    assert np.array_equal(t.labels, folder_labels)
    assert np.all(np.diff(t.probs, axis=2) <= 0) and np.all(t.probs.sum(axis=2) <= 1 + 1e-5)
    assert np.all(t.probs >= 0)
    for m, arch in enumerate(archs):
        top1 = _first_batch_top1(supernet_path, search_root, arch)
        assert np.array_equal(t.ids[m, :len(top1), 0], top1), f"model {m}"

    # a second run skips every model
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("model_*.csv")}
    assert _tables(pop, supernet_path, search_root, out) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("model_*.csv")} == stamps
    # a missing (never half-written) prob file: only that model is recomputed
    (out / "model_01_prob.csv").unlink()
    assert _tables(pop, supernet_path, search_root, out) == 0
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("model_*.csv")}
    changed = sorted(n for n in after if after[n] != stamps.get(n))
    assert changed == ["model_01_class.csv", "model_01_prob.csv"]
    again = read_tables(out)
    assert np.array_equal(again.ids, t.ids) and np.allclose(again.probs, t.probs)
    assert not list(out.glob(".*.tmp"))

    # the tables feed the selection
    write_latency(tmp_path / "lat.csv", names, [3.0, 5.0, 9.0])
    sel = tmp_path / "sel"
    assert main(["ofa3", "select", "--tables", str(out), "--val-tables", str(out), "--latency",
                 str(tmp_path / "lat.csv"), "--population", "8", "--generations", "5", "--log-every", "0",
                 "--out", str(sel)]) == 0
    assert (sel / "ensembles.csv").is_file()


def test_population_input(ofa_supernet: Path, population, digits_search_root: Path,  # type: ignore[no-untyped-def]
                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    supernet_path, search_root = ofa_supernet, digits_search_root
    _, archs = population
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for pop in (empty, bad, tmp_path / "missing.json"):
        assert _tables(pop, supernet_path, search_root, tmp_path / "out") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "population" in err[0], err
    lst = tmp_path / "list.json"
    lst.write_text(json.dumps([to_ofa(archs[0])]))
    assert _tables(lst, supernet_path, tmp_path / "no-data", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-data" in err[0], err
    with pytest.raises(NniExtError, match="population member 0"):
        write_prediction_tables([{"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": [31]}],
                                supernet_path=supernet_path, data=search_root, split="val", out=tmp_path / "o",
                                calib_images=0, device="cpu", backend="torchvision", resolutions=[32],
                                progress=False, num_workers=0)


@pytest.fixture(scope="module")
def spos_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A freshly initialised 2-layer SPOS digits supernet (save_checkpoint) and 3 of its architectures."""
    from nni_ext.spaces import create_space
    from nni_ext.spaces.spos_supernet import ShuffleNetV2Supernet
    from nni_ext.trainers.checkpoint import save_checkpoint

    torch.manual_seed(0)
    space = create_space("spos-digits", stage_repeats=[1, 1], stage_channels=[16, 32])
    ckpt = tmp_path_factory.mktemp("spos_supernet") / "checkpoint.pth"
    save_checkpoint(ckpt, model=ShuffleNetV2Supernet(space), space=space, kind="spos_supernet", step=0)
    rng = np.random.default_rng(0)
    return ckpt, [space.sample(rng) for _ in range(3)]


def test_spos_population_tables(spos_setup, digits_search_root: Path, ofa_supernet: Path,  # type: ignore[no-untyped-def]
                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nni_ext.trainers.checkpoint import load_supernet as load_spos

    ckpt, archs = spos_setup
    # the SPOS evolution tuner's generation file (its top-k records) and a plain list of NNI dicts
    generation = tmp_path / "generation_000.json"
    generation.write_text(json.dumps({"generation": 0, "topk": [{"architecture": a, "accuracy": 0.1, "flops": 1e6,
                                                                 "generation": 0} for a in archs]}))
    plain = tmp_path / "archs.json"
    plain.write_text(json.dumps(archs))
    out = tmp_path / "spos"
    assert _tables(generation, ckpt, digits_search_root, out) == 0  # the checkpoint's kind is detected
    assert "3 SPOS model(s) written" in capsys.readouterr().out
    names = [f"model_{i:02d}" for i in range(3)]
    assert sorted(p.name for p in out.glob("model_*.csv")) == sorted(f"{n}_{kind}.csv" for n in names
                                                                     for kind in ("class", "prob"))
    t = read_tables(out)
    assert t.names == tuple(names) and t.k == 5 and t.n_images == 40
    assert np.array_equal(t.labels, [label for _, label in index_split(digits_search_root, "val").samples])
    assert np.all(np.diff(t.probs, axis=2) <= 0) and np.all(t.probs >= 0) and np.all(t.probs.sum(axis=2) <= 1 + 1e-5)
    prep = Preprocessing.for_crop(32)  # the supernet's crop size, ImageNet-normalised RGB (not SPOS's BGR)
    for m, arch in enumerate(archs):  # arg-max of the path's logits on the first batch, from the primitives
        model, _ = load_spos(ckpt)
        model.eval()
        path = model.path_of(arch)
        train = build_loader(digits_search_root, "train", batch_size=CALIB, train=True, backend="torchvision",
                             device="cpu", preprocessing=prep, num_workers=0, seed=0)
        train.set_epoch(0)
        torch.manual_seed(0)
        recalibrate_batchnorm(lambda x, model=model, path=path: model(x, path), model.path_modules(path), train, 1)
        val = build_loader(digits_search_root, "val", batch_size=BATCH, train=False, backend="torchvision",
                           device="cpu", preprocessing=prep, num_workers=0)
        with torch.no_grad():
            x, _ = next(iter(val))
            top1 = model(x, path).argmax(dim=1).numpy()
        assert np.array_equal(t.ids[m, :len(top1), 0], top1), f"model {m}"
    # the same architectures as NNI dicts: the manifest matches, every model is skipped
    assert _tables(plain, ckpt, digits_search_root, out) == 0
    assert "0 SPOS model(s) written, 3 skipped" in capsys.readouterr().out
    # a SPOS architecture against OFA weights, or OFA weights read as a SPOS checkpoint: one line each
    for pop, weights, space in ((plain, ofa_supernet, "auto"), (plain, ofa_supernet, "spos")):
        assert main(["ofa3", "tables", "--population", str(pop), "--supernet", str(weights), "--space", space,
                     "--data", str(digits_search_root), "--out", str(tmp_path / "bad"), "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ("population member 0" in err[0] or "not an nni_ext checkpoint" in err[0]), err
