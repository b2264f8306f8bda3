"""The RegularizationSweep tuner (MOOD-NAS's adaptive weighted-sum sweep) and its numpy kernels."""
from __future__ import annotations

import csv
import json
import math
import random
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml
from nni import NoMoreTrialError

from examples.regularization_sweep.analytic_trial import evaluate as analytic
from nni_ext import experiment
from nni_ext.sweep import (
    front_order,
    normal_weight,
    normalised_gaps,
    open_gaps,
    run_sweep,
    same_weight,
)
from nni_ext.testing.dispatcher import simulate
from nni_ext.tuners import RegularizationSweep

from .conftest import REPO

SPACE = {"nu": {"_type": "uniform", "_value": [0, 1]}}
DELTA = 0.15


def make(**kwargs: Any) -> RegularizationSweep:
    tuner = RegularizationSweep(**kwargs)
    tuner.update_search_space(SPACE)
    return tuner


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines()))


def analytic_metric(params: dict) -> dict:
    return analytic(params["nu"])


# ------------------------------------------------------------------ a hand-made front
# nu -> (reg_loss, criterion_loss). Normalisation over the front is fixed by P1 (R 1, C 4) and P2 (R 5, C 0).
HAND = {0.2: (1.0, 4.0),      # P1
        0.0: (5.0, 0.0),      # P2; P1-P2: normalised gap sqrt(2), nu = 4 / (4 + 4) = 1/2
        1 / 2: (2.0, 1.5),    # P3; gaps P1-P3 0.673, P3-P2 0.839 (widest): nu = 1.5 / (1.5 + 3) = 1/3
        1 / 3: (3.0, 1.6),    # dominated by P3: ignored, P3-P2 visited; next P1-P3: nu = 2.5 / (2.5 + 1) = 5/7
        5 / 7: (1.5, 2.0),    # P5; gaps P1-P5 0.515, P5-P3 0.177 (its nu 1/2 was tried): nu = 2 / (2 + 0.5) = 4/5
        4 / 5: (1.2, 2.8),    # P6; gaps P1-P6 0.304, P6-P5 0.214: nu = 1.2 / (1.2 + 0.2) = 6/7
        6 / 7: (1.1, 3.3),    # P7; gaps P1-P7 0.177, P7-P6 0.127, P6-P5 0.214 (nu = 0.8 / 1.1 = 8/11)
        8 / 11: (1.4, 2.3)}   # P8


def hand(nu: float) -> tuple[float, float]:
    for key, value in HAND.items():
        if same_weight(key, nu, 1e-9):
            return value
    raise AssertionError(f"the sweep proposed nu={nu!r}, which the hand-made front does not foresee")


@pytest.mark.parametrize("delta,expected", [
    (0.25, [1 / 2, 1 / 3, 5 / 7, 4 / 5, 6 / 7]),  # then every unvisited gap is below 0.25
    (0.5, [1 / 2, 1 / 3, 5 / 7, 4 / 5]),          # P1-P6 (0.304) is below 0.5
    (0.2, [1 / 2, 1 / 3, 5 / 7, 4 / 5, 6 / 7, 8 / 11]),
    (1.5, []),                                    # the first gap (sqrt 2) is already below delta
])
def test_hand_made_front_proposals_in_order_of_the_widest_gap(delta: float, expected: list[float]) -> None:
    tuner = make(delta=delta)
    done = simulate(tuner, SPACE, lambda p: dict(zip(("reg_loss", "criterion_loss"), hand(p["nu"]))),
                    n_trials=100, concurrency=1)
    proposed = [p["nu"] for p, _ in done]
    assert proposed[:2] == [0.2, 0.0]
    assert proposed[2:] == pytest.approx(expected, rel=1e-12, abs=0)
    with pytest.raises(NoMoreTrialError, match="sweep is finished"):
        tuner.generate_parameters(1000)
    front = [(t.value("reg_loss"), t.value("criterion_loss")) for t in tuner.front()]
    assert (3.0, 1.6) not in front  # the dominated result of nu = 1/3
    assert front == sorted(front) and all(c1 > c2 for (_, c1), (_, c2) in zip(front, front[1:]))
    assert len(front) == len(proposed) - (1 if len(proposed) > 3 else 0)
    assert run_sweep(hand, delta=delta) == [(nu, *hand(nu), ) for nu in proposed]  # the kernel's reference agrees


def test_kernels_on_the_hand_made_front() -> None:
    F = np.array([HAND[k] for k in (0.2, 0.0, 1 / 2, 1 / 3, 5 / 7)])
    order = front_order(F)
    assert order.tolist() == [0, 4, 2, 1]  # by reg_loss; row 3 (nu = 1/3) is dominated
    assert normalised_gaps(F[order]) == pytest.approx([math.hypot(0.125, 0.5), math.hypot(0.125, 0.125),
                                                       math.hypot(0.75, 0.375)])
    assert normal_weight(HAND[0.2], HAND[0.0]) == normal_weight(HAND[0.0], HAND[0.2]) == 0.5
    # equal weighted sums at both ends of the segment
    a, b = HAND[5 / 7], HAND[1 / 2]
    nu = normal_weight(a, b)
    assert (1 - nu) * a[1] + nu * a[0] == pytest.approx((1 - nu) * b[1] + nu * b[0])
    # P5-P3 is 0.177 wide (>= 0.15) but its weight 1/2 was tried: a duplicate, visited; P3-P2 visited by 1/3
    gaps = open_gaps(F, [0.2, 0.0, 0.5, 1 / 3, 5 / 7], 0.15)
    assert [(g.left, g.right) for g in gaps] == [(0, 4)] and gaps[0].nu == pytest.approx(0.8)
    assert [(g.left, g.right) for g in open_gaps(F, [0.2, 0.0, 0.5], 0.15)] == [(2, 1), (0, 4)]
    with pytest.raises(ValueError, match="non-dominated"):
        normal_weight((1.0, 1.0), (2.0, 2.0))
    assert front_order(np.array([[np.nan, 1.0], [1.0, 1.0]])).tolist() == [1]


# ------------------------------------------------------------------ NNI-like driving
class FakeNni:
    """NNI 3.0's manager and dispatcher in one: ids from a counter, ``trialConcurrency`` requested at start
    and one more per ended trial, refused requests answered by NO_MORE_TRIAL_JOBS, callback trials queued."""

    def __init__(self, tuner: RegularizationSweep, concurrency: int,
                 evaluate: Callable[[dict], Any], seed: int = 0) -> None:
        self.tuner, self.concurrency, self.evaluate = tuner, concurrency, evaluate
        self.rng = random.Random(seed)
        self.next_id = 0
        self.waiting: deque[tuple[int, dict]] = deque()
        self.running: dict[int, dict] = {}
        self.status = "RUNNING"
        self.callbacks, self.refusals, self.ids, self.max_in_flight = 0, 0, [], 0
        self.done: list[tuple[dict, Any]] = []

    def _callback(self, parameter_id: int, params: dict) -> None:
        self.callbacks += 1
        if self.status == "TUNER_NO_MORE_TRIAL":
            self.status = "RUNNING"  # what nnimanager.js does on NEW_TRIAL_JOB
        self.waiting.append((parameter_id, params))

    def _request(self, n: int) -> None:
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        out = self.tuner.generate_multiple_parameters(ids, st_callback=self._callback)
        self.waiting.extend(zip(ids, out))
        if len(out) < n:
            self.refusals += 1
            self.status = "TUNER_NO_MORE_TRIAL"

    def run(self, max_trials: int = 500) -> FakeNni:
        self._request(self.concurrency)
        while len(self.done) < max_trials:
            while self.waiting and len(self.running) < self.concurrency:
                pid, params = self.waiting.popleft()
                self.ids.append(pid)
                self.running[pid] = params
            self.max_in_flight = max(self.max_in_flight, len(self.running))
            assert not self.waiting, "the tuner sent more trials than there are slots"
            if len(self.running) < self.concurrency:  # a slot idles only when no gap is open
                assert not open_gaps(self.tuner.points(), self.tuner.tried(), self.tuner.delta)
            if not self.running:
                return self
            pid = self.rng.choice(sorted(self.running))
            params = self.running.pop(pid)
            value = self.evaluate(params)
            if value is not None:
                self.tuner.receive_trial_result(pid, params, value)
            self.tuner.trial_end(pid, value is not None)
            self.done.append((params, value))
            self._request(1)
        raise AssertionError(f"no end after {max_trials} trials")


def _check_final_front(tuner: RegularizationSweep) -> np.ndarray:
    F = np.array([(t.value("reg_loss"), t.value("criterion_loss")) for t in tuner.front()])
    assert len(F) >= 3
    assert front_order(F).tolist() == list(range(len(F)))  # non-dominated and sorted
    assert normalised_gaps(F).max() < tuner.delta
    return F


@pytest.mark.parametrize("concurrency", [1, 3])
def test_analytic_sweep_terminates_and_fills_the_front(concurrency: int, tmp_path: Path) -> None:
    tuner = make(delta=DELTA, output_dir=str(tmp_path))
    nni = FakeNni(tuner, concurrency, analytic_metric, seed=concurrency).run()
    assert nni.status == "TUNER_NO_MORE_TRIAL" and tuner.is_finished()
    with pytest.raises(NoMoreTrialError, match="sweep is finished"):
        tuner.generate_parameters(10_000)
    nus = [p["nu"] for p, _ in nni.done]
    assert len(set(nus)) == len(nus) == 15 and len(set(nni.ids)) == len(nni.ids)
    reference = run_sweep(lambda nu: (analytic(nu)["reg_loss"], analytic(nu)["criterion_loss"]), delta=DELTA)
    assert sorted(nus) == pytest.approx(sorted(nu for nu, _, _ in reference))  # on this front the order does not matter
    F = _check_final_front(tuner)
    assert np.sqrt(F).sum(axis=1) == pytest.approx(1.0)  # every point on sqrt(R) + sqrt(C) = 1
    if concurrency == 1:
        assert nni.callbacks == 0 and nni.refusals == 1 and nus == [nu for nu, _, _ in reference]
    else:
        assert nni.max_in_flight == 3
        assert nni.refusals >= 2 and nni.callbacks >= 1  # owed requests answered through st_callback
    rows = _csv(tmp_path / "sweep.csv")
    assert len(rows) == 15 and {r["status"] for r in rows} == {"succeeded"}
    front = json.loads((tmp_path / "front.json").read_text())
    assert front["finished"] and front["trials"] == 15 and front["running"] == 0 and front["largest_open_gap"] is None
    assert [(p["reg_loss"], p["criterion_loss"]) for p in front["front"]] == [tuple(f) for f in F.tolist()]
    assert sum(r["pareto"] == "True" for r in rows) == len(F)


def test_callback_trials_use_the_refused_ids_and_keep_every_slot_busy() -> None:
    tuner = make(delta=DELTA)
    sent: list[tuple[int, dict]] = []
    assert [p["nu"] for p in tuner.generate_multiple_parameters([0, 1, 2], st_callback=lambda *a: sent.append(a))] \
        == [0.2, 0.0]  # id 2 is owed: no point yet, two trials run
    for pid in (0, 1):
        tuner.receive_trial_result(pid, "", analytic(tuner.archive.by_id(pid).params["nu"]))  # NNI may pass '' here
        tuner.trial_end(pid, True)
    assert len(sent) == 1 and sent[0][0] == 2 and sent[0][1]["nu"] == pytest.approx(0.1)
    assert tuner.generate_multiple_parameters([3, 4], st_callback=lambda *a: sent.append(a)) == []  # 1 runs, no gap
    tuner.receive_trial_result(2, {}, analytic(0.1))  # opens two gaps: both owed requests are answered
    assert [pid for pid, _ in sent] == [2, 3, 4]
    assert [p["nu"] for _, p in sent[1:]] == pytest.approx([0.15, 0.05])


def test_resume_from_half_a_sweep_continues_where_it_was(tmp_path: Path) -> None:
    full = make(delta=DELTA)
    uninterrupted = simulate(full, SPACE, analytic_metric, n_trials=100, concurrency=1)
    assert len(uninterrupted) == 15
    half = 7

    def exported(params: dict, metric: dict) -> dict:  # what nnictl resume hands over (NNI's double encoding)
        value = {**metric, "architecture": json.dumps(params, sort_keys=True)}
        return {"parameter": {"nu": -1.0}, "value": json.dumps(json.dumps(value))}  # recorded params may be wrong

    resumed = make(delta=DELTA, output_dir=str(tmp_path))
    resumed.import_data([exported(p, m) for p, m in uninterrupted[:half]])
    assert len(resumed.trials) == half and all(t.ok for t in resumed.trials)
    rest = simulate(resumed, SPACE, analytic_metric, n_trials=100, concurrency=1)
    nus = [p["nu"] for p, _ in uninterrupted[:half]] + [p["nu"] for p, _ in rest]
    assert len(set(nus)) == len(nus)  # no nu twice
    assert [p["nu"] for p, _ in rest] == [p["nu"] for p, _ in uninterrupted[half:]]
    def key(tuner: RegularizationSweep) -> list[tuple[float, float, float]]:
        return [(t.params["nu"], t.value("reg_loss"), t.value("criterion_loss")) for t in tuner.front()]

    assert key(resumed) == key(full)
    assert json.loads((tmp_path / "front.json").read_text())["finished"]


def test_failed_trials_are_recorded_and_never_stall(tmp_path: Path) -> None:
    def flaky(params: dict) -> Any:
        nu = params["nu"]
        if same_weight(nu, 0.15, 1e-9):
            return None  # crashes: no result, trial_end(success=False)
        metric = analytic(nu)
        if same_weight(nu, 0.05, 1e-9):
            del metric["reg_loss"]
        if same_weight(nu, 0.175, 1e-9) or same_weight(nu, 0.075, 1e-9):
            metric["criterion_loss"] = math.nan
        return metric

    for concurrency in (1, 2):
        tuner = make(delta=DELTA, output_dir=str(tmp_path / str(concurrency)))
        nni = FakeNni(tuner, concurrency, flaky, seed=1).run()
        assert nni.status == "TUNER_NO_MORE_TRIAL" and tuner.is_finished() and tuner.running() == 0
        failed = {round(t.params["nu"], 6): t.reason for t in tuner.trials if t.status == "failed"}
        assert failed[0.15].startswith("trial ended without a final result")
        assert failed[0.05] == "metric(s) reg_loss missing or not finite"
        nus = tuner.tried()
        assert len(set(nus)) == len(nus) and 0.175 not in failed  # never tried: the gap of 0.15 is visited
        rows = _csv(tmp_path / str(concurrency) / "sweep.csv")
        assert sorted(round(float(r["nu"]), 6) for r in rows if r["status"] == "failed") == sorted(failed)
        assert all(r["pareto"] == "False" for r in rows if r["status"] == "failed")


def test_max_trials_and_fixed_parameters() -> None:
    tuner = RegularizationSweep(parameter="lam", max_trials=4, initial=[0.3, 0.0])
    tuner.update_search_space({"lam": {"_type": "uniform", "_value": [0, 1]},
                               "epochs": {"_type": "choice", "_value": [5]}})
    done = simulate(tuner, {"lam": {"_type": "uniform", "_value": [0, 1]},
                            "epochs": {"_type": "choice", "_value": [5]}},
                    lambda p: analytic(p["lam"]), n_trials=100)
    assert len(done) == 4 and all(p["epochs"] == 5 for p, _ in done) and done[0][0]["lam"] == 0.3
    with pytest.raises(NoMoreTrialError, match="max_trials=4"):
        tuner.generate_parameters(99)


@pytest.mark.parametrize("kwargs,match", [
    ({"delta": 0}, "delta=0"), ({"delta": -0.1}, "delta=-0.1"), ({"delta": "x"}, "delta='x'"),
    ({"initial": []}, "initial=\\[\\]"), ({"initial": [0.2, 1.5]}, "initial="), ({"initial": [0.2, 0.2]}, "initial="),
    ({"max_trials": 0}, "max_trials=0"), ({"parameter": ""}, "parameter=''"),
    ({"reg_key": "x", "criterion_key": "x"}, "reg_key"),
])
def test_bad_class_args_name_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RegularizationSweep(**kwargs)


def test_search_space_must_hold_the_parameter_and_only_fixed_others() -> None:
    with pytest.raises(ValueError, match="parameter='lam' is not in the search space"):
        RegularizationSweep(parameter="lam").update_search_space(SPACE)
    with pytest.raises(ValueError, match="'lr'"):
        RegularizationSweep().update_search_space({**SPACE, "lr": {"_type": "uniform", "_value": [0.1, 1]}})
    with pytest.raises(ValueError, match="'op'"):
        RegularizationSweep().update_search_space({**SPACE, "op": {"_type": "choice", "_value": ["a", "b"]}})


# ------------------------------------------------------------------ a real nnictl experiment
FINAL_STATES = ("SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED")
NNICTL_DELTA = 0.3  # 8 trials instead of 15: each trial spends seconds importing nni


@pytest.mark.timeout(300)
def test_nnictl_sweep_on_the_analytic_front(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "configs" / "sweep_analytic.yml").read_text())
    assert config["trialConcurrency"] == 2 and config["tuner"]["className"] == "nni_ext.tuners.RegularizationSweep"
    config.update(searchSpaceFile=str(REPO / "examples" / "regularization_sweep" / "search_space.json"),
                  trialCodeDirectory=str(REPO), experimentWorkingDirectory=str(tmp_path / "experiments"),
                  tuner={**config["tuner"], "codeDirectory": str(REPO),
                         "classArgs": {**config["tuner"]["classArgs"], "delta": NNICTL_DELTA}})
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    started = time.time()
    exp = experiment.create(tmp_path / "config.yml")
    print(f"experiment {exp.id} created in {time.time() - started:.1f}s")
    try:
        directory = exp.directory
        front_file = directory / "sweep" / "front.json"
        while True:
            status, trials = exp.status()["status"], exp.trials()
            assert status not in ("ERROR", "STOPPED", "DONE"), exp.status()
            summary = json.loads(front_file.read_text()) if front_file.exists() else {}
            if (status == "TUNER_NO_MORE_TRIAL" and summary.get("finished") and len(trials) == summary["trials"]
                    and all(t.status in FINAL_STATES for t in trials)):
                break
            assert time.time() - started < 150, (status, summary, [t.status for t in trials])
            time.sleep(1)
        print(f"sweep finished after {time.time() - started:.1f}s")
        time.sleep(1.5)  # three more manager polls: it must stay put
        assert exp.status()["status"] == "TUNER_NO_MORE_TRIAL" and len(exp.trials()) == len(trials)
        dispatcher_log = (directory / "log" / "dispatcher.log").read_text()
        manager_log = (directory / "log" / "nnimanager.log").read_text()
        rows = _csv(directory / "sweep" / "sweep.csv")
    finally:
        exp.stop()
    reference = run_sweep(lambda nu: (analytic(nu)["reg_loss"], analytic(nu)["criterion_loss"]), delta=NNICTL_DELTA)
    assert len(trials) == len(reference) == 8 and all(t.status == "SUCCEEDED" for t in trials)
    assert sorted(t.parameters["nu"] for t in trials) == pytest.approx(sorted(nu for nu, _, _ in reference))
    # the front file is the Pareto front of what the trials reported
    F = np.array([(t.metrics["reg_loss"], t.metrics["criterion_loss"]) for t in trials])
    expected = [tuple(F[i]) for i in front_order(F)]
    front = summary["front"]
    assert [(p["reg_loss"], p["criterion_loss"]) for p in front] == expected
    assert normalised_gaps(np.array(expected)).max() < NNICTL_DELTA and summary["largest_open_gap"] is None
    assert len(rows) == 8 and sum(r["pareto"] == "True" for r in rows) == len(front)
    # owed requests went out through st_callback, which turned TUNER_NO_MORE_TRIAL back into RUNNING
    assert "sent owed trial" in dispatcher_log
    assert "It is not supposed to receive more trials after NO_MORE_TRIAL is set" in manager_log


def test_a_sweep_whose_trials_all_fail_ends_with_an_error_instead_of_waiting() -> None:
    class Dispatcher:  # the two methods of NNI's MsgDispatcher the sweep uses
        def __init__(self) -> None:
            self.errors: list[str] = []

        def send_trial_callback(self, parameter_id: int, params: dict) -> None:
            raise AssertionError("nothing should be sent")

        def report_error(self, error: str) -> None:
            self.errors.append(error)

    nni = Dispatcher()
    tuner = make()
    tuner.update_search_space(SPACE)
    first = tuner.generate_multiple_parameters([0, 1], st_callback=nni.send_trial_callback)
    assert [p["nu"] for p in first] == [0.2, 0.0]
    tuner.trial_end(0, False)  # crashed (e.g. a wrong --data path)
    assert tuner.generate_multiple_parameters([2], st_callback=nni.send_trial_callback) == []  # 0.0 still runs
    tuner.trial_end(1, False)
    assert len(nni.errors) == 1 and "all 2 trials failed" in nni.errors[0] and "--data" in nni.errors[0]
    assert tuner.generate_multiple_parameters([3], st_callback=nni.send_trial_callback) == []
    assert len(nni.errors) == 1  # reported once
    alone = make()  # without NNI's dispatcher to tell, the failure is an exception
    alone.update_search_space(SPACE)
    for pid in (0, 1):
        alone.generate_parameters(pid)
        alone.trial_end(pid, False)
    with pytest.raises(RuntimeError, match="all 2 trials failed"):
        alone.generate_multiple_parameters([2])


@pytest.mark.timeout(300)
def test_nnictl_sweep_whose_trials_all_fail_ends_in_error(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "configs" / "sweep_analytic.yml").read_text())
    config.update(searchSpaceFile=str(REPO / "examples" / "regularization_sweep" / "search_space.json"),
                  trialCodeDirectory=str(REPO), experimentWorkingDirectory=str(tmp_path / "experiments"),
                  trialCommand="python -c \"import sys; sys.exit('no data at /nowhere')\"",
                  tuner={**config["tuner"], "codeDirectory": str(REPO)})
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    exp = experiment.create(tmp_path / "config.yml")
    try:
        deadline = time.time() + 150
        while exp.status()["status"] not in ("ERROR", "DONE", "STOPPED"):
            assert time.time() < deadline, f"still {exp.status()} after 150 s"
            time.sleep(1)
        status = exp.status()
        dispatcher_log = (exp.directory / "log" / "dispatcher.log").read_text()
        manager_log = (exp.directory / "log" / "nnimanager.log").read_text()
        trials = exp.trials()
    finally:
        exp.stop()
    # NNI 3.0's manager logs the tuner's error and then reports the closed dispatcher stream as the status
    assert status["status"] == "ERROR", status
    assert "all 2 trials failed" in dispatcher_log
    assert "Dispatcher error: RegularizationSweep: all 2 trials failed" in manager_log
    assert len(trials) == 2 and all(t.status == "FAILED" for t in trials)
