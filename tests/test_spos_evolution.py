"""The SPOS evolution tuners (EvolutionWithFlops / EvolutionWithLatency) driven directly, without nnictl.

A deterministic synthetic accuracy stands in for the supernet evaluation; a small scheduler simulates
NNI's asynchronous dispatch (several trials in flight, results in any order, failures).
"""
from __future__ import annotations

import json
import math
import pickle
import shutil
from collections import deque
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from nni import NoMoreTrialError

from nni_ext.cost import CostTable, LatencyTable, build_latency_table
from nni_ext.spaces import create_space
from nni_ext.tuners import EvolutionWithFlops, EvolutionWithLatency

from .conftest import REPO

SPACE = create_space("spos-digits")
SEARCH_SPACE = json.loads((REPO / "search_spaces" / "spos-digits.json").read_text())
LIMIT = 470e3  # about half of spos-digits' architectures are under it
SMALL = dict(space="spos-digits", population_size=12, topk=4, num_mutation=6, num_crossover=6, num_generations=4)
_WEIGHTS = np.random.default_rng(123).random((len(SPACE.labels), 4))


def accuracy(params: dict[str, Any]) -> float:
    """A deterministic 'top-1 accuracy' of an architecture."""
    return float(np.mean([_WEIGHTS[i, SPACE.choices()[label].index(params[label])]
                          for i, label in enumerate(SPACE.labels)]))


def key(params: dict[str, Any]) -> tuple:
    return tuple(params[label] for label in SPACE.labels)


def make(cls: type = EvolutionWithFlops, **kwargs: Any) -> Any:
    args = dict(SMALL, flops_limit=LIMIT, seed=0) if cls is EvolutionWithFlops else dict(SMALL, seed=0)
    args.update(kwargs)
    tuner = cls(**args)
    tuner.update_search_space(SEARCH_SPACE)
    return tuner


def drive(tuner: Any, *, concurrency: int = 8, answer: Callable[[int, dict], Any] | None = None, seed: int = 0,
          max_asks: int = 2000) -> tuple[list[dict], bool]:
    """Simulate NNI: keep ``concurrency`` trials in flight, finish a random few, repeat until NoMoreTrialError.

    ``answer(pid, params)`` returns the reported value, or the string "end" for a trial ending without a result.
    Returns every proposal and whether the tuner ended the search.
    """
    answer = answer or (lambda pid, params: {"default": accuracy(params)})
    rng = np.random.default_rng(seed)
    running: dict[int, dict] = {}
    proposals: list[dict] = []
    ended = False
    while len(proposals) < max_asks:
        while not ended and len(running) < concurrency:
            try:
                params = tuner.generate_parameters(len(proposals))
            except NoMoreTrialError:
                ended = True
                break
            running[len(proposals)] = params
            proposals.append(params)
        if not running:
            break
        for pid in rng.permutation(sorted(running))[:int(rng.integers(1, len(running) + 1))]:
            params = running.pop(int(pid))
            value = answer(int(pid), params)
            if value != "end":
                tuner.receive_trial_result(int(pid), params, value)
            tuner.trial_end(int(pid), value != "end")
    return proposals, ended


def test_full_asynchronous_run_respects_limit_never_repeats_and_writes_files(tmp_path: Path) -> None:
    tuner = make(output_dir=str(tmp_path))
    proposals, ended = drive(tuner)
    table = CostTable.cached(SPACE)
    assert ended and tuner.generation == 3
    assert all(SPACE.validate(p) == p and all(isinstance(v, str) for v in p.values()) for p in proposals)
    assert max(table.cost(p).flops for p in proposals) <= LIMIT
    assert len({key(p) for p in proposals}) == len(proposals) == 4 * 12  # extras are taken off the next generation
    with pytest.raises(NoMoreTrialError):  # and stays ended
        tuner.generate_parameters(10_000)

    files = sorted(tmp_path.glob("generation_*.json"))
    assert [f.name for f in files] == [f"generation_{g:03d}.json" for g in range(4)]
    gens = [json.loads(f.read_text()) for f in files]
    assert sum(len(g["members"]) for g in gens) == len(proposals)
    bests = [g["topk"][0]["accuracy"] for g in gens]
    assert bests == sorted(bests)  # elitist selection: the best never gets worse
    for g in gens:
        assert len(g["topk"]) == 4 and g["limit"] == {"flops": LIMIT}
        for item in g["topk"]:
            assert item["accuracy"] == pytest.approx(accuracy(item["architecture"]))
            assert item["flops"] == table.cost(item["architecture"]).flops <= LIMIT
    best_acc = max(accuracy(p) for p in proposals)
    best_arch = json.loads((tmp_path / "best_architecture.json").read_text())
    assert SPACE.validate(best_arch) == best_arch and accuracy(best_arch) == pytest.approx(best_acc)
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["accuracy"] == pytest.approx(best_acc) == bests[-1] and best["found_after"] <= len(proposals)


def test_generation_selection_also_terminates_without_repeats() -> None:
    proposals, ended = drive(make(selection="generation", seed=3), concurrency=5)
    assert ended and len({key(p) for p in proposals}) == len(proposals) == 48


def test_extra_random_candidates_while_too_few_results_and_files_wait_for_the_generation(tmp_path: Path) -> None:
    tuner = make(output_dir=str(tmp_path))
    first = [tuner.generate_parameters(i) for i in range(12)]
    assert tuner.generation == 0
    extra = tuner.generate_parameters(12)  # nothing finished: an extra random candidate, still generation 0
    assert tuner.generation == 0 and key(extra) not in {key(p) for p in first}
    for pid, params in enumerate(first):
        tuner.receive_trial_result(pid, params, accuracy(params))
    assert not (tmp_path / "generation_000.json").exists()  # the extra one still runs
    tuner.receive_trial_result(12, extra, accuracy(extra))
    assert len(json.loads((tmp_path / "generation_000.json").read_text())["members"]) == 13
    second = [tuner.generate_parameters(13 + i) for i in range(11)]
    assert tuner.generation == 1 and tuner.queue == deque()  # 12 - 1 extra
    assert not {key(p) for p in second} & {key(p) for p in first + [extra]}


def test_failed_trials_are_recorded_never_reproposed_and_the_search_ends(tmp_path: Path) -> None:
    def answer(pid: int, params: dict) -> Any:
        return [{"default": math.nan}, {"loss": 1.0}, "end", "not json", accuracy(params)][pid % 5]

    tuner = make(output_dir=str(tmp_path))
    proposals, ended = drive(tuner, answer=answer, seed=1)
    assert ended and len({key(p) for p in proposals}) == len(proposals)
    assert tuner.n_done == len(proposals) and tuner.n_ok == sum(1 for i in range(len(proposals)) if i % 5 == 4)
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["accuracy"] == pytest.approx(max(accuracy(p) for i, p in enumerate(proposals) if i % 5 == 4))
    assert json.loads((tmp_path / "generation_003.json").read_text())["failed"] == len(proposals) - tuner.n_ok

    proposals, ended = drive(make(seed=2), answer=lambda pid, params: "end")  # every trial fails
    assert ended and len(proposals) == 48 and len({key(p) for p in proposals}) == len(proposals)


def min_flops(space_name: str) -> int:
    """FLOPs of the cheapest architecture (cheapest block of every layer), checked against the table's sum."""
    space = create_space(space_name)
    table = CostTable.cached(space)
    cheapest = {label: min(cands, key=lambda c: table.entries[f"{label}={c}"][0])
                for label, cands in space.choices().items()}
    minimum = sum(table.entries[u][0] for u in ("stem", "head", *(f"{k}={v}" for k, v in cheapest.items())))
    assert table.cost(cheapest).flops == minimum
    return minimum


def test_default_tuner_on_the_imagenet_space_keeps_its_first_generation_under_330m() -> None:
    tuner = EvolutionWithFlops(seed=0)  # space spos at 224px, 330e6 FLOPs, population 50
    tuner.update_search_space(json.loads((REPO / "search_spaces" / "spos.json").read_text()))
    first = [tuner.generate_parameters(i) for i in range(50)]
    assert tuner.generation == 0 and len({key(p) for p in first}) == 50
    assert max(tuner.cost_table.cost(p).flops for p in first) <= 330e6
    minimum = min_flops("spos")
    with pytest.raises(ValueError, match=f"space 'spos' at 224px \\({minimum} flops\\); .* at least {minimum}$"):
        EvolutionWithFlops(flops_limit=minimum - 1).update_search_space(
            json.loads((REPO / "search_spaces" / "spos.json").read_text()))


def test_bad_arguments_raise_value_errors_naming_the_fix() -> None:
    minimum = min_flops("spos-digits")
    with pytest.raises(ValueError, match=f"below the cheapest.*'spos-digits'.*{minimum}.*at least {minimum}$"):
        make(flops_limit=minimum - 1)  # checked when the search space arrives (the constructor stays light)
    make(flops_limit=minimum)  # exactly the minimum is allowed
    with pytest.raises(ValueError, match="selection='best'"):
        EvolutionWithFlops(**SMALL, selection="best")
    with pytest.raises(ValueError, match="num_mutation \\+ num_crossover = 50 must be <= population_size=12"):
        EvolutionWithFlops(space="spos-digits", population_size=12)
    with pytest.raises(ValueError, match="flops_limit=-1"):
        EvolutionWithFlops(**SMALL, flops_limit=-1)
    with pytest.raises(ValueError, match="does not match space 'spos-digits'"):
        make().update_search_space({"layer_1": {"_type": "choice", "_value": ["a"]}})


@pytest.mark.parametrize("with_files", [True, False])
def test_resume_continues_the_generation_counter_and_never_reproposes(tmp_path: Path, with_files: bool) -> None:
    out = tmp_path / "run"
    first = make(output_dir=str(out) if with_files else None)
    done = []
    for pid in range(24):  # one trial at a time: generations 0 and 1 complete
        params = first.generate_parameters(pid)
        first.receive_trial_result(pid, params, accuracy(params))
        done.append({"parameter": params, "value": json.dumps({"default": accuracy(params)})})
    assert first.generation == 1

    resumed = make(output_dir=str(out) if with_files else None, seed=7)
    # NNI exports only trials with a final result; a failed one is still known from generation_000.json
    before = (out / "history.csv").read_text().splitlines() if with_files else []
    resumed.import_data(done[:5] + done[6:] if with_files else done)
    # with files, the one result NNI did not export is read back from the archive's history: nothing is lost
    assert resumed.generation == 1 and resumed.n_done == 24
    if with_files:
        assert (out / "history.csv").read_text().splitlines() == before
    assert resumed.archive.seen(done[5]["parameter"])  # never proposed again
    proposals, ended = drive(resumed)
    assert ended and resumed.generation == 3 and len(proposals) == 24
    assert not {key(p) for p in proposals} & {key(r["parameter"]) for r in done}
    assert len({key(p) for p in proposals}) == len(proposals)
    if with_files:
        assert sorted(f.name for f in out.glob("generation_*.json")) == [f"generation_{g:03d}.json" for g in range(4)]

    # stopped in the middle of generation 1: its 6 missing members are handed out before generation 2
    partial_dir = tmp_path / "partial"
    if with_files:
        partial_dir.mkdir()
        shutil.copy(out / "generation_000.json", partial_dir)
    partial = make(output_dir=str(partial_dir) if with_files else None, seed=8)
    partial.import_data(done[:18])
    assert partial.generation == 1
    refill = [partial.generate_parameters(100 + i) for i in range(6)]
    assert partial.generation == 1 and len(partial.gens[1].members) == 12
    for pid, params in enumerate(refill):
        partial.receive_trial_result(100 + pid, params, accuracy(params))
    proposals, ended = drive(partial)
    assert partial.generation == 3 and ended and 18 + len(refill) + len(proposals) == 48
    keys = [key(p) for p in refill + proposals] + [key(r["parameter"]) for r in done[:18]]
    assert len(set(keys)) == len(keys)
    if with_files:
        assert len(json.loads((partial_dir / "generation_001.json").read_text())["members"]) == 12


def test_fixed_seed_reproduces_proposals_and_the_tuner_pickles() -> None:
    runs = [drive(make(seed=5), concurrency=3, seed=4)[0] for _ in range(2)]
    assert runs[0] == runs[1]
    assert drive(make(seed=6), concurrency=3, seed=4)[0] != runs[0]

    tuner = make(seed=5)
    drive(tuner, max_asks=20)
    clone = pickle.loads(pickle.dumps(tuner))
    assert [clone.generate_parameters(100 + i) for i in range(5)] == [tuner.generate_parameters(100 + i)
                                                                      for i in range(5)]


def test_latency_tuner_with_a_table_never_proposes_slower_architectures(tmp_path: Path) -> None:
    path = tmp_path / "spos_digits_cpu.yaml"
    build_latency_table(SPACE, 32, device="cpu", warmup=0, repeats=1, progress=False).save(path)
    table = LatencyTable.load(path)
    predicted = [table.predict(SPACE.latency_keys(SPACE.sample(np.random.default_rng(i)), 32)) for i in range(200)]
    limit = float(np.median(predicted))
    tuner = make(EvolutionWithLatency, latency_limit_ms=limit, latency_table=str(path), output_dir=str(tmp_path))
    proposals, ended = drive(tuner)
    assert ended and len({key(p) for p in proposals}) == len(proposals)
    assert max(table.predict(SPACE.latency_keys(p, 32)) for p in proposals) <= limit
    assert json.loads((tmp_path / "best.json").read_text())["latency_ms"] <= limit
    with pytest.raises(ValueError, match="latency_limit_ms=.*below the cheapest"):
        make(EvolutionWithLatency, latency_limit_ms=min(predicted) / 10, latency_table=str(path))


def test_latency_tuner_measures_each_architecture_once_without_a_table() -> None:
    tuner = make(EvolutionWithLatency, latency_limit_ms=1e6, measure_warmup=0, measure_repeats=1,
                 population_size=4, topk=2, num_mutation=2, num_crossover=2, num_generations=2)
    proposals, ended = drive(tuner, concurrency=2)
    assert ended and len(proposals) >= 8 and len(tuner._measured) >= len(proposals)
    assert all(tuner._measured[key(p)] > 0 for p in proposals)


