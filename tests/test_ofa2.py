"""OFA²: the OFA MobileNetV3 space and its encodings, OFA's predictor, efficiency models and the search."""
from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
import torch

from nni_ext.cli import ofa2_cmd
from nni_ext.cli.common import run_guarded
from nni_ext.cost import LatencyTable, count, load_resolution_tables
from nni_ext.errors import ArchitectureError, NniExtError, TableError
from nni_ext.ofa2 import AccuracyPredictor, FlopsModel, LatencyModel, compare_algorithms, fit_predictor, run_search
from nni_ext.spaces import create_space
from nni_ext.spaces.ofa_mbv3 import OfaMbv3Space, from_ofa, to_ofa


@pytest.fixture(scope="module")
def space() -> OfaMbv3Space:
    return create_space("ofa-mbv3")


@pytest.fixture(scope="module")
def predictor(ofa_data) -> AccuracyPredictor:
    return AccuracyPredictor.load(ofa_data / "acc_predictor.pth")


@pytest.fixture(scope="module")
def latency(ofa_data) -> LatencyModel:
    return LatencyModel.from_path(ofa_data / "note10")


def raw_sample(space: OfaMbv3Space, rng: np.random.Generator) -> dict:
    """An architecture as NNI draws it: independent labels, skipped blocks not canonical."""
    return {label: values[int(rng.integers(len(values)))] for label, values in space.choices().items()}


# ---------------------------------------------------------------- encodings
def test_encodings_round_trip_and_canonicalise(space: OfaMbv3Space) -> None:
    rng = np.random.default_rng(0)
    assert space.labels[:2] == ["ks_0", "ks_1"] and space.labels[-6:] == ["d_0", "d_1", "d_2", "d_3", "d_4", "r"]
    assert len(space.labels) == 46 and space.choices()["r"] == [160, 176, 192, 208, 224]
    for _ in range(30):
        arch = raw_sample(space, rng)
        assert space.validate(arch) == arch  # NNI's parameters round-trip unchanged
        ofa = to_ofa(arch)
        assert [len(ofa[k]) for k in ("ks", "e", "d", "r")] == [20, 20, 5, 1]
        assert from_ofa(ofa) == arch
        canonical = space.canonicalize(arch)
        assert space.from_matrix(space.to_matrix([arch])) == [canonical]
        assert space.canonicalize_matrix(space.to_matrix([arch])).tolist() == space.to_matrix([canonical]).tolist()
    arch = {**space.largest(), "d_1": 2}
    other = {**arch, "ks_6": 3, "e_7": 4}  # blocks 6 and 7 are skipped at depth 2
    assert arch != other and space.canonicalize(arch) == space.canonicalize(other)
    assert space.canonicalize(arch)["ks_6"] == 3 and space.canonicalize(arch)["e_7"] == 3
    assert space.to_matrix([arch]).tolist() == space.to_matrix([other]).tolist()
    assert space.cost_units(arch, 224) == space.cost_units(other, 224)
    assert space.latency_keys(arch, 224) == space.latency_keys(other, 224)


def test_from_ofa_names_the_bad_field(space: OfaMbv3Space) -> None:
    ofa = to_ofa(space.largest())
    with pytest.raises(ArchitectureError, match=r"OFA field 'ks' must be a list of 20"):
        from_ofa({**ofa, "ks": [3] * 19})
    with pytest.raises(ArchitectureError, match=r"label 'e_2' has value 5.*\[3, 4, 6\]"):
        from_ofa({**ofa, "e": [6, 6, 5] + [6] * 17})
    with pytest.raises(ArchitectureError, match=r"label 'r' has value 100"):
        from_ofa({**ofa, "r": [100]})
    with pytest.raises(ArchitectureError, match="unknown OFA field 'w'"):
        from_ofa({**ofa, "w": [1]})
    with pytest.raises(ValueError, match="resolutions="):
        OfaMbv3Space(resolutions=[])
    with pytest.raises(ValueError, match="num_classes=0"):
        OfaMbv3Space(num_classes=0)


def test_latency_keys_exist_in_note10_and_vectorised_sum_matches(space, latency, ofa_data) -> None:
    tables = load_resolution_tables(ofa_data / "note10")
    for r in space.resolutions:
        assert set(space.all_latency_keys(r)) == set(tables[r].entries)  # exactly OFA's layer shapes
    rng = np.random.default_rng(1)
    archs = [raw_sample(space, rng) for _ in range(40)] + [space.largest(), space.smallest()]
    expected = [tables[a["r"]].predict(space.latency_keys(a, a["r"])) for a in archs]
    np.testing.assert_allclose(latency(space.to_matrix(archs)), expected, rtol=1e-12)
    assert latency(space.to_matrix([space.largest()]))[0] == pytest.approx(92.398, abs=1e-3)


def test_latency_model_errors(space, ofa_data, tmp_path) -> None:
    table = LatencyTable.load(ofa_data / "note10" / "160_lookup_table.yaml")
    small = OfaMbv3Space(resolutions=[160])
    key = small.block_latency_key(4, 7, 6, 160)
    del table.entries[key]
    with pytest.raises(TableError, match=f"no entry '{key}'"):
        LatencyModel(small, tables=table)
    with pytest.raises(TableError, match="no latency table for resolution 240"):
        LatencyModel.from_path(ofa_data / "note10", space=OfaMbv3Space(resolutions=[160, 240]))


# ---------------------------------------------------------------- predictor
KS_MAP, E_MAP = {3: 0, 5: 1, 7: 2}, {3: 0, 4: 1, 6: 2}


def reference_features(ofa: dict) -> list[float]:
    """OFA's published layout, written out independently: 60 kernel, 60 expand (skipped: zero), 8 resolution slots."""
    ks, e = list(ofa["ks"]), list(ofa["e"])
    for unit, depth in enumerate(ofa["d"]):
        for j in range(unit * 4 + depth, unit * 4 + 4):
            ks[j] = e[j] = 0
    feats = [0.0] * 128
    for i in range(20):
        if ks[i]:
            feats[3 * i + KS_MAP[ks[i]]] = 1.0
        if e[i]:
            feats[60 + 3 * i + E_MAP[e[i]]] = 1.0
    feats[120 + (ofa["r"][0] - 112) // 16] = 1.0
    return feats


def reference_predict(state: dict, feats: list[list[float]]) -> np.ndarray:
    x = torch.tensor(feats, dtype=torch.float64)
    for i, layer in enumerate(("0", "2", "4", "6")):
        x = x @ state[f"{layer}.weight"].double().T + state[f"{layer}.bias"].double()
        if i < 3:
            x = torch.relu(x)
    return x[:, 0].numpy()


def test_predictor_matches_published_layout(space, predictor, ofa_data) -> None:
    state = torch.load(ofa_data / "acc_predictor.pth", map_location="cpu", weights_only=True)
    rng = np.random.default_rng(2)
    archs = [space.smallest(), space.largest()] + [raw_sample(space, rng) for _ in range(20)]
    feats = [reference_features(to_ofa(a)) for a in archs]
    X = space.to_matrix(archs)
    np.testing.assert_array_equal(predictor.features(X), np.asarray(feats, dtype=np.float32))
    got = predictor.predict(X)
    np.testing.assert_allclose(got, reference_predict(state, feats), atol=1e-5)
    assert got[0] == pytest.approx(0.75, abs=0.01)  # smallest, 160 px (README: about 0.75)
    assert got[1] == pytest.approx(0.84, abs=0.01)  # largest, 224 px (README: about 0.84)
    assert ((got > 0.7) & (got < 0.86)).all()


def test_predictor_file_errors(tmp_path) -> None:
    with pytest.raises(NniExtError, match="accuracy predictor .*missing.pth not found"):
        AccuracyPredictor.load(tmp_path / "missing.pth")
    bad = {k: v for k, v in torch.nn.Sequential(torch.nn.Linear(120, 400), torch.nn.ReLU(),
                                               torch.nn.Linear(400, 400), torch.nn.ReLU(),
                                               torch.nn.Linear(400, 400), torch.nn.ReLU(),
                                               torch.nn.Linear(400, 1)).state_dict().items()}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(NniExtError, match=r"0.weight has shape \[400, 120\], expected \[400, 128\]"):
        AccuracyPredictor.load(tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(NniExtError, match="cannot read accuracy predictor"):
        AccuracyPredictor.load(tmp_path / "junk.pth")


def test_fit_predictor_round_trip(space, predictor, tmp_path) -> None:
    rng = np.random.default_rng(3)
    archs = [raw_sample(space, rng) for _ in range(300)]
    target = predictor.predict_archs(archs)  # a realistic synthetic archive
    fitted = fit_predictor(archs[:250], target[:250], seed=0, epochs=30, out=tmp_path / "fit.pth")
    again = AccuracyPredictor.load(tmp_path / "fit.pth")
    X = space.to_matrix(archs[250:])
    np.testing.assert_allclose(again.predict(X), fitted.predict(X), rtol=0, atol=1e-7)
    held_out = np.corrcoef(again.predict(X), target[250:])[0, 1]
    assert held_out > 0.8
    same = fit_predictor(archs[:250], target[:250], seed=0, epochs=2)
    assert np.allclose(same.predict(X), fit_predictor(archs[:250], target[:250], seed=0, epochs=2).predict(X))
    with pytest.raises(NniExtError, match="fractions"):
        fit_predictor(archs[:3], [76.0, 70.0, 71.0])
    # the CLI reads a JSON archive (NNI or OFA dicts) and a CSV one
    archive = [{"arch": to_ofa(a) if i % 2 else a, "accuracy": float(t)}
               for i, (a, t) in enumerate(zip(archs[:40], target))]
    (tmp_path / "archive.json").write_text(json.dumps(archive))
    with (tmp_path / "archive.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*space.labels, "accuracy"])
        for a, t in zip(archs[:40], target):
            writer.writerow([*(a[k] for k in space.labels), t])
    for name in ("archive.json", "archive.csv"):
        assert invoke("fit-predictor", "--archive", str(tmp_path / name), "--out", str(tmp_path / "cli.pth"),
                      "--epochs", "3") == 0
        assert AccuracyPredictor.load(tmp_path / "cli.pth").predict(X).shape == (50,)


# ---------------------------------------------------------------- FLOPs
def test_flops_model_equals_exact_count(tmp_path) -> None:
    space = OfaMbv3Space(resolutions=[160, 208])
    model = FlopsModel(space, cache_dir=tmp_path)
    rng = np.random.default_rng(4)
    archs = [space.largest(), space.smallest(), raw_sample(space, rng)]
    X = space.to_matrix(archs)
    supernet = space.supernet()
    for arch, flops, params in zip(archs, model.flops(X), model.params(X)):
        exact = count(space.build(arch, supernet=supernet), arch["r"])
        assert (int(flops), int(params)) == (exact.flops, exact.params)
    assert model(X)[0] == pytest.approx(model.flops(X)[0] / 1e6)


# ---------------------------------------------------------------- search
def is_non_dominated(F: np.ndarray) -> bool:
    for i in range(len(F)):
        dominated = (F <= F[i]).all(axis=1) & (F < F[i]).any(axis=1)
        if dominated.any():
            return False
    return True


def test_short_search_improves_hypervolume_and_writes_front(space, predictor, latency, tmp_path) -> None:
    result = run_search(predictor=predictor, efficiency=latency, algorithm="nsga2", seed=1, population=20,
                        generations=15, out_dir=tmp_path)
    hv = np.array([row[2] for row in result.history])
    hv_archive = np.array([row[3] for row in result.history])
    assert len(hv) == 15 and hv[-1] > hv[0]
    assert (np.diff(hv_archive) >= 0).all() and hv_archive[-1] > hv_archive[0]
    assert result.hypervolume == pytest.approx(hv[-1])
    F = np.column_stack([result.error, result.efficiency])
    assert 1 <= len(F) <= 20 and is_non_dominated(F)
    assert (np.diff(result.efficiency) >= 0).all()  # sorted by efficiency
    np.testing.assert_allclose(result.error, 100 * (1 - predictor.predict(result.matrix)), atol=1e-9)
    np.testing.assert_allclose(result.efficiency, latency(result.matrix), atol=1e-9)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["reference_point"] == {"top1_error_percent": 25.0, "latency": 100.0}
    assert len(saved["networks"]) == len(F)
    for net in saved["networks"]:
        assert from_ofa(net["ofa"]) == net["nni"] == space.canonicalize(net["nni"])
    with (tmp_path / "hypervolume.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["generation"]) for r in rows] == list(range(1, 16))
    assert rows[0]["ref_latency"] == "100.0"
    with (tmp_path / "result.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == len(F)
    again = run_search(predictor=predictor, efficiency=latency, algorithm="nsga2", seed=1, population=20,
                       generations=15)
    assert again.matrix.tolist() == result.matrix.tolist()  # seeded


@pytest.mark.parametrize("algorithm", ["nsga2", "smsemoa", "spea2", "nsga3", "agemoea"])
def test_every_catalogue_algorithm_searches(predictor, latency, algorithm: str) -> None:
    """Every algorithm of nni_ext.core.algorithms runs OFA²: a non-empty non-dominated front, hypervolume > 0."""
    from nni_ext.core.algorithms import algorithm_names
    from nni_ext.ofa2.search import ALGORITHMS

    assert ALGORITHMS == algorithm_names() and algorithm in ALGORITHMS
    result = run_search(predictor=predictor, efficiency=latency, algorithm=algorithm.upper(), seed=2, population=16,
                        generations=6, log_every=0)
    assert result.algorithm == algorithm
    F = np.column_stack([result.error, result.efficiency])
    assert 1 <= len(F) <= 16 and is_non_dominated(F)
    assert result.hypervolume > 0 and len(result.history) == 6
    assert all(b[3] >= a[3] for a, b in zip(result.history, result.history[1:]))  # the archive's never drops
    np.testing.assert_allclose(result.error, 100 * (1 - predictor.predict(result.matrix)), atol=1e-9)
    np.testing.assert_allclose(result.efficiency, latency(result.matrix), atol=1e-9)
    again = run_search(predictor=predictor, efficiency=latency, algorithm=algorithm, seed=2, population=16,
                       generations=6, log_every=0)
    assert again.matrix.tolist() == result.matrix.tolist()  # seeded


def test_unknown_algorithm_names_the_catalogue(predictor, latency, ofa_data, tmp_path, capsys) -> None:
    message = "unknown algorithm 'moead'; choose one of nsga2, smsemoa, spea2, nsga3, agemoea"
    with pytest.raises(ValueError) as info:
        run_search(predictor=predictor, efficiency=latency, algorithm="moead", generations=1)
    assert str(info.value) == message
    with pytest.raises(ValueError, match="^population=1 must be an integer of at least 2$"):
        run_search(predictor=predictor, efficiency=latency, population=1, generations=1)
    assert invoke("search", "--algorithm", "moead", "--predictor", str(ofa_data / "acc_predictor.pth"),
                  "--out", str(tmp_path)) == 2
    assert capsys.readouterr().err == f"nni-ext: error: {message}\n"  # one line, no traceback
    assert invoke("search", "--algorithm", "NSGA-III", "--population", "10", "--generations", "2", "--efficiency",
                  "flops", "--predictor", str(ofa_data / "acc_predictor.pth"), "--out", str(tmp_path / "run"),
                  "--log-every", "0") == 0
    assert json.loads((tmp_path / "run" / "result.json").read_text())["algorithm"] == "nsga3"


def test_all_algorithms_compare_and_plot(predictor, latency, tmp_path) -> None:
    results = compare_algorithms(predictor=predictor, efficiency=latency, out_dir=tmp_path, seeds=(1,),
                                 population=12, generations=4)
    assert [r.algorithm for r in results] == ["nsga2", "smsemoa", "spea2", "nsga3", "agemoea"]  # the catalogue
    assert all(r.hypervolume > 0 for r in results)
    table = (tmp_path / "comparison.md").read_text()
    assert "smsemoa" in table and "100.0 ms" in table
    assert (tmp_path / "fronts.png").stat().st_size > 1000
    assert (tmp_path / "spea2-seed1" / "result.json").exists()


# ---------------------------------------------------------------- CLI handlers
def invoke(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="nni-ext")
    ofa2_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ofa2", *argv])
    return run_guarded(lambda: args.func(args))


def test_cli_search_and_bad_input(ofa_data, tmp_path, capsys) -> None:
    predictor_path = str(ofa_data / "acc_predictor.pth")
    assert invoke("search", "--algorithm", "spea2", "--population", "10", "--generations", "3", "--efficiency",
                  "note10", "--latency-tables", str(ofa_data / "note10"), "--predictor", predictor_path,
                  "--out", str(tmp_path / "run"), "--log-every", "0") == 0
    assert json.loads((tmp_path / "run" / "result.json").read_text())["algorithm"] == "spea2"
    capsys.readouterr()
    assert invoke("search", "--algorithm", "moead", "--predictor", predictor_path, "--out", str(tmp_path)) == 2
    assert "unknown algorithm 'moead'; choose one of nsga2, smsemoa, spea2" in capsys.readouterr().err
    assert invoke("search", "--predictor", str(tmp_path / "nope.pth"), "--out", str(tmp_path)) == 2
    assert "nope.pth not found" in capsys.readouterr().err
    assert invoke("search", "--predictor", predictor_path, "--out", str(tmp_path)) == 2
    assert "--efficiency note10 needs --latency-tables DIR" in capsys.readouterr().err
    assert invoke("search", "--predictor", predictor_path, "--efficiency", str(tmp_path / "t.yaml"),
                  "--out", str(tmp_path)) == 2
    assert "latency table" in capsys.readouterr().err
