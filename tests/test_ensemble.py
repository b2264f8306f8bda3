"""OFA³ ensembles: sparse scoring vs dense brute force, the seed's table format, selection, bad input, CLI."""
from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest

from nni_ext.cli import ofa3_cmd
from nni_ext.cli.common import run_guarded
from nni_ext.ensemble import (
    SoftVotingScorer,
    TopKTables,
    dense_accuracy,
    ensemble_latency,
    read_latency,
    read_tables,
    select_ensembles,
    synthetic_latency,
    synthetic_tables,
    write_latency,
    write_tables,
)
from nni_ext.ensemble.selection import _front
from nni_ext.errors import DataError, NniExtError, TableError


def quantised(t: TopKTables, steps: int) -> TopKTables:
    """Probabilities rounded to multiples of 1/steps: many exact ties between classes."""
    return TopKTables(t.ids, np.round(t.probs * steps) / steps, t.labels, t.names)


@pytest.mark.parametrize("classes,steps", [(1000, None), (15, None), (15, 8), (15, 32)])
def test_sparse_scoring_equals_dense(classes: int, steps: int | None) -> None:
    t = synthetic_tables(models=10, images=1500, classes=classes, seed=3)
    if steps:
        t = quantised(t, steps)
    B = np.random.default_rng(0).random((50, 10)) < 0.35
    B[0] = False  # empty ensemble: 0
    B[1] = np.eye(10, dtype=bool)[4]  # a single model: its own top-1 accuracy
    sparse = SoftVotingScorer(t, chunk=200).accuracy(B)
    dense = dense_accuracy(t, B, classes=classes)
    np.testing.assert_array_equal(sparse, dense)
    assert sparse[0] == 0.0
    if not steps:  # rounding makes a model's own top-1 and top-2 tie: an error by the tie rule
        assert sparse[1] == pytest.approx(t.top1_accuracy()[4])
    assert 0.5 < sparse[2:].mean() < 1.0


def test_ties_are_errors() -> None:
    # image 0: model 0 says label 3 (0.5), model 1 says 7 (0.5) -> together a tie -> wrong
    ids = np.array([[[3, 7]], [[7, 3]]], dtype=np.int32)
    probs = np.array([[[0.5, 0.25]], [[0.5, 0.25]]], dtype=np.float32)
    t = TopKTables(ids, probs, np.array([3]), ("a", "b"))
    B = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    np.testing.assert_array_equal(SoftVotingScorer(t).accuracy(B), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(dense_accuracy(t, B), [1.0, 0.0, 0.0])


def test_cache_gives_same_counts() -> None:
    t = synthetic_tables(models=8, images=400, classes=40, seed=1)
    B = np.random.default_rng(2).random((30, 8)) < 0.5
    cached, plain = SoftVotingScorer(t), SoftVotingScorer(t, cache_size=0)
    first = cached.correct(B)
    np.testing.assert_array_equal(first, plain.correct(B))
    np.testing.assert_array_equal(cached.correct(B[::-1]), first[::-1])


@pytest.mark.parametrize("block,threads", [(1, 1), (7, 3), (64, 2), (2048, 1), (2048, 2)])
def test_blocked_threaded_scoring_equals_dense(block: int, threads: int) -> None:
    """Blocks of any size, shared between threads, with many exact ties (the float64 fallback path)."""
    t = quantised(synthetic_tables(models=9, images=700, classes=12, seed=11), 8)
    rng = np.random.default_rng(4)
    B = rng.random((40, 9)) < 0.4
    B[0] = False
    B[1] = True
    B[2] = np.eye(9, dtype=bool)[0]
    scorer = SoftVotingScorer(t, chunk=150, block=block, threads=threads)
    assert scorer.stats.contested > 0 and len(scorer._blocks) >= 1
    np.testing.assert_array_equal(scorer.accuracy(B), dense_accuracy(t, B, classes=12))
    np.testing.assert_array_equal(scorer.accuracy(B[5]), dense_accuracy(t, B[5:6], classes=12))  # one row
    reference = SoftVotingScorer(t, threads=1)  # same compile, one thread, one block size
    np.testing.assert_array_equal(scorer.stats.threats, reference.stats.threats)
    np.testing.assert_array_equal(scorer.correct(B), reference.correct(B))


def test_scorer_pickles_without_its_threads() -> None:
    import pickle

    t = synthetic_tables(models=5, images=300, classes=30, seed=2)
    B = np.random.default_rng(1).random((10, 5)) < 0.5
    scorer = SoftVotingScorer(t, threads=2, block=64)
    first = scorer.correct(B)  # starts the worker thread
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(scorer)).correct(B), first)


def test_exact_fallback_decides_ties() -> None:
    """Margins exactly 0 for some ensembles: the float32 product cannot tell, the float64 recount must."""
    # image 0: label 0; model 0 gives 0 0.5 and 1 0.25, model 1 gives 1 0.5 and 0 0.25 -> {0, 1} ties
    # image 1: label 2; models agree on 2 (0.375) over 3 (0.25), model 2 gives 3 0.625 and 2 0.5
    ids = np.array([[[0, 1], [2, 3]], [[1, 0], [2, 3]], [[4, 5], [3, 2]]], dtype=np.int32)
    probs = np.array([[[0.5, 0.25], [0.375, 0.25]], [[0.5, 0.25], [0.375, 0.25]],
                      [[0.5, 0.25], [0.625, 0.5]]], dtype=np.float32)
    t = TopKTables(ids, probs, np.array([0, 2]), ("a", "b", "c"))
    B = np.array(list(np.ndindex(2, 2, 2)), dtype=bool)  # every ensemble
    for threads in (1, 2):
        sparse = SoftVotingScorer(t, threads=threads, block=1).accuracy(B)
        np.testing.assert_array_equal(sparse, dense_accuracy(t, B))
    # {b, c}: image 0 is 0.25 vs 0.5 (wrong), image 1 is 0.875 vs 0.875: a tie, wrong
    assert dense_accuracy(t, B)[3] == 0.0


def _class_spans(t: TopKTables) -> np.ndarray:
    """Per image: how many classes its top-k lists span over all the models."""
    cls = np.sort(t.ids.transpose(1, 0, 2).reshape(t.n_images, -1), axis=1)
    return 1 + np.count_nonzero(cls[:, 1:] != cls[:, :-1], axis=1)


def test_synthetic_tables_spreads() -> None:
    """``spread``: the default is unchanged; ``wide`` spans about 20 classes per image, ``uniform`` hundreds."""
    default = synthetic_tables(models=6, images=400, classes=100, seed=4)
    shared = synthetic_tables(models=6, images=400, classes=100, seed=4, spread="shared")
    for a, b in ((default.ids, shared.ids), (default.probs, shared.probs), (default.labels, shared.labels)):
        np.testing.assert_array_equal(a, b)
    ids = default.ids.astype(np.int64)  # the tables of the code before `spread` existed
    assert (int(ids.sum()), int((ids * np.arange(1, 6)).sum()), int(default.labels.sum())) == (593542, 1775623, 20501)
    assert float(default.probs.sum(dtype=np.float64)) == pytest.approx(1797.0043832881402, rel=1e-6)
    spans = {s: _class_spans(synthetic_tables(models=100, images=1000, seed=0, spread=s))
             for s in ("shared", "wide", "uniform")}
    assert 6 <= spans["shared"].mean() <= 8 and spans["shared"].max() <= 9
    assert 17 <= spans["wide"].mean() <= 23 and 30 <= np.percentile(spans["wide"], 90) <= 45
    assert spans["wide"].max() <= 76
    assert spans["uniform"].mean() > 250
    t = synthetic_tables(models=20, images=2000, seed=1, spread="wide")
    assert 0.68 < t.top1_accuracy().min() and t.top1_accuracy().max() < 0.82
    with pytest.raises(ValueError, match="spread='even'"):
        synthetic_tables(models=2, images=5, spread="even")


@pytest.mark.parametrize("spread", ["shared", "wide", "uniform"])
@pytest.mark.parametrize("steps", [None, 8])
def test_scoring_equals_dense_for_every_spread(spread: str, steps: int | None) -> None:
    """Exact whatever the spread: many threats per image (the envelope row and the exact check), ties too."""
    t = synthetic_tables(models=24, images=800, classes=60, seed=2, spread=spread)
    if steps:
        t = quantised(t, steps)  # exact ties, and zero probabilities
    rng = np.random.default_rng(3)
    B = rng.random((60, 24)) < rng.uniform(0.03, 0.9, (60, 1))
    B[0] = False
    B[1] = True
    B[2:6] = np.eye(24, dtype=bool)[[0, 5, 11, 23]]
    dense = dense_accuracy(t, B, classes=60)
    for reps in (1, 3):
        scorer = SoftVotingScorer(t, reps=reps, threads=2, block=97, chunk=150, classes=60)
        np.testing.assert_array_equal(scorer.accuracy(B), dense)
        assert scorer.stats.rows <= (reps + 2) * scorer.stats.contested
    if spread != "shared":
        assert scorer.stats.enveloped > 0  # some images keep 3 strong threats and an envelope of the others
    if spread == "uniform":
        assert scorer.stats.label_rows > 0  # and threats listed by one or two models bounded by the label's row


def test_scoring_equals_dense_on_every_ensemble() -> None:
    """Every ensemble of 8 models, coarse probabilities (many exact ties) spread uniformly over 12 classes."""
    import itertools

    for seed, spread in ((0, "uniform"), (1, "wide")):
        t = quantised(synthetic_tables(models=8, images=400, classes=12, k=4, seed=seed, spread=spread), 4)
        B = np.array(list(itertools.product([0, 1], repeat=8)), dtype=bool)
        for reps, threads in ((1, 1), (2, 2)):
            scorer = SoftVotingScorer(t, reps=reps, threads=threads, block=5, classes=12)
            np.testing.assert_array_equal(scorer.accuracy(B), dense_accuracy(t, B, classes=12))


def test_a_label_scoring_zero_ties_the_unlisted_classes() -> None:
    """A label listed with probability 0 scores 0, as does every class no member lists: a tie, an error."""
    ids = np.array([[[3], [1]], [[3], [1]]], dtype=np.int32)
    probs = np.array([[[0.0], [0.5]], [[0.5], [0.25]]], dtype=np.float32)
    t = TopKTables(ids, probs, np.array([3, 1]), ("a", "b"))
    B = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    np.testing.assert_array_equal(dense_accuracy(t, B), [0.5, 1.0, 1.0])
    np.testing.assert_array_equal(SoftVotingScorer(t).accuracy(B), [0.5, 1.0, 1.0])
    np.testing.assert_array_equal(SoftVotingScorer(t, classes=1000).accuracy(B), [0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="class id 3"):
        SoftVotingScorer(t, classes=3)


def test_scorer_memory_does_not_grow_with_the_spread() -> None:
    """The compile's and a scoring's peak (tracemalloc) stay within a bound set by the tables' size alone."""
    import tracemalloc

    B = np.random.default_rng(0).random((100, 40)) < 0.3
    for spread in ("shared", "wide", "uniform"):
        SoftVotingScorer(synthetic_tables(models=40, images=100, seed=0, spread=spread)).correct(B)  # compile jit
    peaks, scorers = {}, {}
    for spread in ("shared", "wide", "uniform"):
        t = synthetic_tables(models=40, images=2000, seed=0, spread=spread)
        size = t.ids.nbytes + t.probs.nbytes  # 3.1 MiB, the same for every spread
        tracemalloc.start()
        try:
            scorers[spread] = SoftVotingScorer(t, threads=1)
            scorers[spread].correct(B)
            peaks[spread] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert all(peak <= 2.5 * size + 2**21 for peak in peaks.values()), {s: p / 2**20 for s, p in peaks.items()}
    for scorer in scorers.values():
        assert scorer.nbytes() <= size
        assert scorer.stats.rows <= 3 * scorer.stats.contested  # reps=1: at most three dense rows per image
    uniform = scorers["uniform"].stats
    assert uniform.threats > 10 * uniform.contested  # many threats, yet as little memory


def test_fast_binary_tournament_matches_pymoo() -> None:
    from pymoo.algorithms.moo.nsga2 import binary_tournament
    from pymoo.core.population import Population

    from nni_ext.pymoo_tools import fast_binary_tournament

    class Algo:
        def __init__(self, seed: int, kind: str) -> None:
            self.random_state, self.tournament_type = np.random.default_rng(seed), kind

    rng = np.random.default_rng(0)
    for trial in range(20):
        n = 30
        F = rng.integers(0, 4, (n, 2)).astype(float)  # many equal and dominated pairs
        cv = np.where(rng.random(n) < (0.3 if trial % 2 else 0.0), rng.integers(0, 3, n).astype(float), 0.0)
        crowding = np.where(rng.random(n) < 0.3, np.inf, rng.integers(0, 3, n).astype(float))
        pop = Population.new("F", F, "CV", cv[:, None], "rank", rng.integers(0, 3, n), "crowding", crowding)
        P = rng.integers(0, n, (50, 2))
        for kind in ("comp_by_dom_and_crowding", "comp_by_rank_and_crowding"):
            ours, theirs = Algo(trial, kind), Algo(trial, kind)
            np.testing.assert_array_equal(fast_binary_tournament(pop, P, ours), binary_tournament(pop, P, theirs))
            assert ours.random_state.random() == theirs.random_state.random()  # same draws made


def test_hypervolume_2d_matches_pymoo() -> None:
    from pymoo.indicators.hv import HV

    from nni_ext.pymoo_tools import hypervolume_2d

    rng = np.random.default_rng(1)
    ref = np.array([10.0, 100.0])
    for _ in range(30):
        F = np.column_stack([rng.integers(0, 12, 15), rng.integers(0, 110, 15)]).astype(float)
        inside = F[np.all(F < ref, axis=1)]
        expected = float(HV(ref_point=ref)(inside)) if len(inside) else 0.0
        assert hypervolume_2d(F, ref) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_row_duplicate_elimination() -> None:
    from pymoo.core.population import Population

    from nni_ext.pymoo_tools import RowDuplicateElimination

    X = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 0, 1]], dtype=bool)
    other = Population.new("X", np.array([[1, 1, 1]], dtype=bool))
    kept = RowDuplicateElimination().do(Population.new("X", X), other)
    np.testing.assert_array_equal(np.array([ind.X for ind in kept]), X[[0, 1]])


def test_latency_criteria() -> None:
    B = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=bool)
    lat = np.array([2.0, 5.0, 3.0])
    np.testing.assert_array_equal(ensemble_latency(B, lat, criterion="max"), [3.0, 5.0, 0.0])
    np.testing.assert_array_equal(ensemble_latency(B, lat, criterion="sum"), [5.0, 5.0, 0.0])
    with pytest.raises(ValueError, match="criterion"):
        ensemble_latency(B, lat, criterion="mean")


def test_tables_round_trip(tmp_path) -> None:
    t = synthetic_tables(models=3, images=50, classes=100, seed=0)
    write_tables(t, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"model_0{i}_{s}.csv" for i in range(3)
                                                          for s in ("class", "prob")]
    with open(tmp_path / "model_01_class.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["top1", "top2", "top3", "top4", "top5", "label"]
    assert [int(v) for v in rows[1]] == [*t.ids[1, 0].tolist(), int(t.labels[0])]
    back = read_tables(tmp_path)
    assert back.names == t.names
    np.testing.assert_array_equal(back.ids, t.ids)
    np.testing.assert_array_equal(back.probs, t.probs)  # float32 exactly
    np.testing.assert_array_equal(back.labels, t.labels)


def test_reads_index_column_and_headerless(tmp_path) -> None:
    import pandas as pd

    t = synthetic_tables(models=2, images=30, classes=100, seed=0)
    for m, name in enumerate(t.names):  # pandas' default to_csv(): an unnamed index column
        pd.DataFrame(np.column_stack([t.ids[m], t.labels])).to_csv(tmp_path / f"{name}_class.csv")
        pd.DataFrame(t.probs[m]).to_csv(tmp_path / f"{name}_prob.csv", float_format="%.9g")
    np.testing.assert_array_equal(read_tables(tmp_path).probs, t.probs)
    for m, name in enumerate(t.names):  # no header, no index
        np.savetxt(tmp_path / f"{name}_class.csv", np.column_stack([t.ids[m], t.labels]), fmt="%d", delimiter=",")
        np.savetxt(tmp_path / f"{name}_prob.csv", t.probs[m], fmt="%.9g", delimiter=",")
    back = read_tables(tmp_path)
    np.testing.assert_array_equal(back.ids, t.ids)
    np.testing.assert_array_equal(back.probs, t.probs)


def test_bad_tables_name_the_models(tmp_path) -> None:
    with pytest.raises(DataError, match="no model_XX_class.csv"):
        read_tables(tmp_path)
    t = synthetic_tables(models=3, images=40, classes=100, seed=0)
    write_tables(t, tmp_path / "rows")
    short = t.select([2])
    write_tables(TopKTables(short.ids[:, :30], short.probs[:, :30], short.labels[:30], ("model_02",)),
                 tmp_path / "rows")
    with pytest.raises(DataError, match="model_02 have 30 rows but those of model_00 have 40"):
        read_tables(tmp_path / "rows")
    write_tables(t, tmp_path / "labels")
    labels = t.labels.copy()
    labels[7] = (labels[7] + 1) % 100
    write_tables(TopKTables(t.ids[1:2], t.probs[1:2], labels, ("model_01",)), tmp_path / "labels")
    with pytest.raises(DataError, match=r"labels of model_01 differ from those of model_00 in 1 rows \(first: row 7"):
        read_tables(tmp_path / "labels")
    (tmp_path / "labels" / "model_02_prob.csv").unlink()
    with pytest.raises(DataError, match="model_02 lack"):
        read_tables(tmp_path / "labels")


def test_latency_file(tmp_path) -> None:
    names = ("model_00", "model_01", "model_02")
    write_latency(tmp_path / "lat.csv", names, [1.5, 2.5, 3.5])
    np.testing.assert_array_equal(read_latency(tmp_path / "lat.csv", names), [1.5, 2.5, 3.5])
    (tmp_path / "num.csv").write_text("model,latency_ms\n0,1\n2,3\n")
    with pytest.raises(TableError, match="lacks model\\(s\\) model_01"):
        read_latency(tmp_path / "num.csv", names)
    (tmp_path / "num.csv").write_text("model,latency_ms\n0,1\n1,2\n2,3\n")
    np.testing.assert_array_equal(read_latency(tmp_path / "num.csv", names), [1, 2, 3])


@pytest.mark.parametrize("criterion", ["max", "sum"])
def test_selection_front(tmp_path, criterion: str) -> None:
    t = synthetic_tables(models=12, images=500, classes=100, seed=5)
    val = synthetic_tables(models=12, images=300, classes=100, seed=6)
    lat = synthetic_latency(t, seed=5)
    r = select_ensembles(tables=t, latency=lat, criterion=criterion, population=20, generations=50, seed=1,
                         min_members=3, val_tables=val, log_every=0, out_dir=tmp_path)
    sizes = r.members.sum(axis=1)
    assert len(r.members) >= 2 and sizes.min() >= 3
    F = np.column_stack([r.latency, 100 * (1 - r.search_accuracy)])
    assert len(_front(F)) == len(F)  # mutually non-dominated
    np.testing.assert_allclose(r.latency, ensemble_latency(r.members, lat, criterion=criterion))
    np.testing.assert_array_equal(r.search_accuracy, dense_accuracy(t, r.members))
    np.testing.assert_array_equal(r.val_accuracy, dense_accuracy(val, r.members))
    assert np.all(np.diff(r.latency) > 0) and np.all(np.diff(r.search_accuracy) > 0)
    hv = np.array([row[3] for row in r.history])
    assert len(hv) == 50 and np.all(np.diff(hv) >= -1e-9) and hv[-1] > hv[0]
    data = json.loads((tmp_path / "ensembles.json").read_text())
    assert data["criterion"] == criterion and len(data["ensembles"]) == len(r.members)
    assert data["ensembles"][0]["members"] == r.member_names(0)
    assert {"search_accuracy", "val_accuracy"} <= set(data["ensembles"][0])
    with open(tmp_path / "ensembles.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(r.members)
    again = select_ensembles(tables=t, latency=lat, criterion=criterion, population=20, generations=50, seed=1,
                             min_members=3, log_every=0)
    np.testing.assert_array_equal(again.members, r.members)  # same seed, same result


@pytest.mark.parametrize("algorithm", ["nsga2", "smsemoa", "spea2", "nsga3", "agemoea"])
def test_every_catalogue_algorithm_selects(algorithm: str) -> None:
    """Every algorithm of nni_ext.core.algorithms runs the OFA³ selection: a non-dominated front, hypervolume > 0."""
    from nni_ext.core.algorithms import algorithm_names
    from nni_ext.ensemble.selection import ALGORITHMS

    assert ALGORITHMS == algorithm_names() and algorithm in ALGORITHMS
    t = synthetic_tables(models=10, images=300, classes=50, seed=3)
    lat = synthetic_latency(t, seed=3)
    r = select_ensembles(tables=t, latency=lat, population=12, generations=8, seed=2, min_members=2,
                         algorithm=algorithm.upper(), log_every=0)
    assert r.algorithm == algorithm and 1 <= len(r.members) <= 12 and r.members.sum(axis=1).min() >= 2
    F = np.column_stack([r.latency, 100 * (1 - r.search_accuracy)])
    assert len(_front(F)) == len(F)  # mutually non-dominated
    np.testing.assert_array_equal(r.search_accuracy, dense_accuracy(t, r.members))
    hv = np.array([row[3] for row in r.history])
    assert len(hv) == 8 and np.all(np.diff(hv) >= -1e-9) and r.hypervolume > 0
    again = select_ensembles(tables=t, latency=lat, population=12, generations=8, seed=2, min_members=2,
                             algorithm=algorithm, log_every=0)
    np.testing.assert_array_equal(again.members, r.members)  # seeded


def test_selection_tournament_is_vectorised_only_where_pymoo_uses_nsga2s() -> None:
    from pymoo.algorithms.moo.nsga2 import binary_tournament
    from pymoo.algorithms.moo.nsga3 import comp_by_cv_then_random

    from nni_ext.ensemble.selection import make_algorithm
    from nni_ext.pymoo_tools import fast_binary_tournament

    for name in ("nsga2", "agemoea"):  # pymoo's default: NSGA-II's binary tournament, which ours reproduces
        assert make_algorithm(name, 10, 1).mating.selection.func_comp is fast_binary_tournament
    for name in ("smsemoa", "spea2", "nsga3"):  # their own tournaments stay
        func = make_algorithm(name, 10, 1).mating.selection.func_comp
        assert func is not fast_binary_tournament and func is not binary_tournament
    assert make_algorithm("nsga3", 10, 1).mating.selection.func_comp is comp_by_cv_then_random


def test_selection_arguments() -> None:
    t = synthetic_tables(models=4, images=50, classes=20, seed=0)
    lat = synthetic_latency(t)
    with pytest.raises(ValueError, match="min_members=5"):
        select_ensembles(tables=t, latency=lat, min_members=5, generations=1)
    with pytest.raises(ValueError, match="one latency"):
        select_ensembles(tables=t, latency=lat[:3], generations=1)
    with pytest.raises(ValueError, match="^unknown algorithm 'ga'; choose one of nsga2, smsemoa, spea2, nsga3, "
                                         "agemoea$"):
        select_ensembles(tables=t, latency=lat, algorithm="ga", generations=1)
    other = synthetic_tables(models=3, images=50, classes=20, seed=0)
    with pytest.raises(DataError, match="validation lacks model_03"):
        select_ensembles(tables=t, latency=lat, val_tables=other, generations=1)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nni-ext")
    ofa3_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_algorithm_choices_come_from_the_catalogue(tmp_path, capsys) -> None:
    t = synthetic_tables(models=5, images=100, classes=20, seed=0)
    write_tables(t, tmp_path / "search")
    write_latency(tmp_path / "lat.csv", t.names, synthetic_latency(t))
    common = ["ofa3", "select", "--tables", str(tmp_path / "search"), "--latency", str(tmp_path / "lat.csv"),
              "--population", "8", "--generations", "3", "--log-every", "0"]
    args = _parse([*common, "--algorithm", "NSGA3", "--out", str(tmp_path / "out")])
    assert args.algorithm == "nsga3"
    assert run_guarded(lambda: args.func(args)) == 0
    assert json.loads((tmp_path / "out" / "ensembles.json").read_text())["algorithm"] == "nsga3"
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        _parse([*common, "--algorithm", "moead", "--out", str(tmp_path / "x")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'moead'" in err and "agemoea" in err and "Traceback" not in err


def test_cli_select_and_plot(tmp_path, capsys) -> None:
    t = synthetic_tables(models=6, images=200, classes=50, seed=0)
    write_tables(t, tmp_path / "search")
    write_tables(synthetic_tables(models=6, images=100, classes=50, seed=1), tmp_path / "val")
    write_latency(tmp_path / "lat.csv", t.names, synthetic_latency(t))
    outs = []
    for crit in ("max", "sum"):
        out = tmp_path / f"sel_{crit}"
        args = _parse(["ofa3", "select", "--tables", str(tmp_path / "search"), "--val-tables", str(tmp_path / "val"),
                       "--latency", str(tmp_path / "lat.csv"), "--criterion", crit, "--population", "10",
                       "--generations", "5", "--min-members", "2", "--out", str(out), "--log-every", "0"])
        assert run_guarded(lambda args=args: args.func(args)) == 0
        assert (out / "ensembles.json").is_file() and (out / "models.csv").is_file()
        outs.append(str(out))
    assert "% on validation" in capsys.readouterr().out
    png = tmp_path / "plot.png"
    args = _parse(["ofa3", "plot", "--models", f"{outs[0]}/models.csv", "--ensembles", ",".join(outs),
                   "--extra", f"OFA={outs[0]}/models.csv", "--out", str(png)])
    assert run_guarded(lambda: args.func(args)) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "bad.csv").write_text("model,latency_ms\nmodel_00,1\n")
    args = _parse(["ofa3", "select", "--tables", str(tmp_path / "search"), "--latency", str(tmp_path / "bad.csv"),
                   "--out", str(tmp_path / "x")])
    assert run_guarded(lambda: args.func(args)) == 2
    assert "lacks model(s) model_01" in capsys.readouterr().err
    with pytest.raises(NniExtError):
        args.func(args)
