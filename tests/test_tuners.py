"""Parameter spaces, constraints, metric normalisation and the ConstrainedRandom tuner (without nnictl)."""
from __future__ import annotations

import csv
import json
import math
import pickle

import numpy as np
import pytest

from nni_ext.constraints import parse_constraint, parse_constraints
from nni_ext.cost import CostTable
from nni_ext.spaces import create_space
from nni_ext.ss_gen import search_space_json
from nni_ext.tuners import ConstrainedRandomTuner, ParameterSpace
from nni_ext.tuners.base import normalize_metrics

from .conftest import venv_env

HPO_SPACE = {
    "optimizer": {"_type": "choice", "_value": ["sgd", "adam", 3]},
    "layers": {"_type": "randint", "_value": [1, 5]},
    "dropout": {"_type": "uniform", "_value": [0.0, 0.5]},
    "width": {"_type": "quniform", "_value": [16, 128, 16]},
    "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
    "batch": {"_type": "qloguniform", "_value": [16, 256, 16]},
    "momentum": {"_type": "normal", "_value": [0.9, 0.01]},
    "wd": {"_type": "qnormal", "_value": [5.0, 1.0, 0.5]},
    "scale": {"_type": "lognormal", "_value": [0.0, 0.5]},
}


def test_parameter_space_samples_every_type_in_range() -> None:
    space = ParameterSpace(HPO_SPACE)
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = space.sample(rng)
        assert space.contains(p)
        assert isinstance(p["layers"], int) and 1 <= p["layers"] <= 4
        assert p["width"] % 16 == 0 and 16 <= p["width"] <= 128
        assert 1e-4 <= p["lr"] <= 1e-1 and p["batch"] % 16 == 0
        assert p["wd"] % 0.5 == 0 and p["scale"] > 0
        assert space.decode(space.encode(p)) == p


def test_decode_keeps_integers_and_choice_indices_valid() -> None:
    space = ParameterSpace(HPO_SPACE)
    lows, highs = space.bounds.T
    for x in (lows - 10, highs + 10, (lows + highs) / 2 + 0.37):
        p = space.decode(x)
        assert p["optimizer"] in ["sgd", "adam", 3] and isinstance(p["layers"], int)
        assert space.contains(p)


@pytest.mark.parametrize("spec,match", [
    ({"a": {"_type": "foo", "_value": [1]}}, "_type 'foo'; supported"),
    ({"a": {"_type": "uniform", "_value": [2, 1]}}, "lower bound 2 must be below 1"),
    ({"a": {"_type": "quniform", "_value": [1, 2]}}, "needs 3 numbers"),
    ({"a": {"_type": "loguniform", "_value": [0, 1]}}, "positive lower bound"),
    ({"a": {"_type": "choice", "_value": []}}, "non-empty list"),
    ({"a": [1, 2]}, "must be {'_type'"),
])
def test_bad_search_spaces_name_the_parameter(spec: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ParameterSpace(spec)


def test_constraints_parse_and_measure_violation() -> None:
    c = parse_constraint("params", "<= 5e6")
    assert c.satisfied(5e6) and not c.satisfied(5e6 + 1)
    assert c.violation(6e6) == 1e6 and c.violation(1) == 0 and math.isinf(c.violation(math.nan))
    assert parse_constraint("flops", 3e8).op == "<="
    assert [str(x) for x in parse_constraints({"a": "> 1", "b": ">= 2.5"})] == ["a > 1", "b >= 2.5"]
    with pytest.raises(ValueError, match="constraint for 'params' is 'about 5M'; write it like '<= 5e6'"):
        parse_constraint("params", "about 5M")


def test_normalize_metrics() -> None:
    assert normalize_metrics(0.5) == {"default": 0.5}
    assert normalize_metrics('{"default": 0.7, "flops": 3, "genotype": "x"}') == {"default": 0.7, "flops": 3.0}
    assert math.isnan(normalize_metrics({"flops": 1})["default"])
    assert math.isnan(normalize_metrics(None)["default"])


def _tuner(**kw) -> ConstrainedRandomTuner:
    tuner = ConstrainedRandomTuner(space="spos", **kw)
    tuner.update_search_space(__import__("json").loads(search_space_json(create_space("spos"))))
    return tuner


def test_constrained_random_respects_flops_limit_and_is_seeded() -> None:
    table = CostTable.cached(create_space("spos"), 224)
    tuner = _tuner(constraints={"flops": "<= 300e6"}, seed=7)
    proposals = [tuner.generate_parameters(i) for i in range(15)]
    assert all(table.cost(p).flops <= 300e6 for p in proposals)
    assert len({repr(sorted(p.items())) for p in proposals}) == 15
    again = _tuner(constraints={"flops": "<= 300e6"}, seed=7)
    assert [again.generate_parameters(i) for i in range(15)] == proposals


def test_constrained_random_falls_back_to_least_violating() -> None:
    tuner = _tuner(constraints={"flops": "<= 1e6"}, seed=1, max_draws=20)
    params = tuner.generate_parameters(0)
    assert tuner.violation(params) > 0 and create_space("spos").validate(params) == params


def test_constrained_random_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="need classArgs 'space'"):
        ConstrainedRandomTuner(constraints={"flops": "<= 3e8"})
    with pytest.raises(ValueError, match="constraint on 'latency' cannot be checked before dispatch"):
        ConstrainedRandomTuner(space="spos", constraints={"latency": "<= 3"})
    tuner = ConstrainedRandomTuner(space="spos")
    with pytest.raises(ValueError, match="does not match space 'spos'"):
        tuner.update_search_space({"lr": {"_type": "uniform", "_value": [0, 1]}})


def test_tuner_records_results_imports_data_and_pickles() -> None:
    tuner = _tuner(seed=3)
    params = tuner.generate_parameters(0)
    tuner.receive_trial_result(0, params, {"default": 300.0, "flops": 3e8})
    tuner.import_data([{"parameter": params, "value": '{"default": 1.0}'}, {"bad": 1}])
    assert [r.value("default") for r in tuner.archive.finished] == [300.0, 1.0]
    clone = pickle.loads(pickle.dumps(tuner))
    assert clone.generate_parameters(1) == tuner.generate_parameters(1)


def test_import_data_trusts_the_parameters_a_trial_reported() -> None:
    tuner = _tuner(seed=4)
    ran, recorded = tuner.generate_parameters(0), tuner.generate_parameters(1)
    metric = json.dumps(json.dumps({"default": 2.0, "architecture": json.dumps(ran)}))  # NNI's double encoding
    tuner.import_data([{"parameter": recorded, "value": metric}])
    assert [(r.params, r.metrics) for r in tuner.archive.finished] == [(ran, {"default": 2.0})]




def test_a_result_arriving_after_its_trial_end_is_kept(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """NNI's dispatcher handles TrialEnd on another thread than final results: the end can come first.

    Inside the dispatcher a successful end waits (NNI_EXT_RESULT_GRACE seconds) for the result instead of
    recording the trial as failed; a trial whose result never comes is failed after the wait.
    """
    import json
    import time

    from nni_ext.core.tuner import api_lock
    from nni_ext.tuners import NSGA2Tuner

    monkeypatch.setenv("NNI_LOG_DIRECTORY", str(tmp_path / "log"))
    monkeypatch.setenv("NNI_EXT_RESULT_GRACE", "0.3")
    tuner = NSGA2Tuner(objectives={"default": "maximize", "f2": "minimize"}, seed=0, population_size=4,
                       output_dir=str(tmp_path / "out"))
    tuner.update_search_space({"a": {"_type": "uniform", "_value": [0, 1]}})
    first, _ = tuner.generate_parameters(0), tuner.generate_parameters(1)
    tuner.trial_end(0, True)  # the end first, then its result
    tuner.receive_trial_result(0, first, json.dumps({"default": 0.5, "f2": 1.0}))
    tuner.trial_end(1, True)  # no result ever
    assert [r.parameter_id for r in tuner.archive.running()] == [1]
    deadline = time.time() + 10
    while tuner.archive.running() and time.time() < deadline:
        time.sleep(0.05)
    with api_lock(tuner):  # the timer thread records the failure and writes the files under the tuner's lock
        pass
    assert [(r.parameter_id, r.status.value) for r in tuner.archive.finished] == [(0, "succeeded"), (1, "failed")]
    assert "trial ended without a final result" in (tmp_path / "out" / "history.csv").read_text()


def test_constrained_random_checks_activation_limits_before_dispatch() -> None:
    space = create_space("spos-digits")
    table = CostTable.cached(space)
    limit = float(np.median([table.cost(space.sample(np.random.default_rng(i))).activations for i in range(50)]))
    tuner = ConstrainedRandomTuner(space="spos-digits", constraints={"activations": f"<= {limit!r}"}, seed=2)
    tuner.update_search_space(json.loads(search_space_json(space)))
    proposals = [tuner.generate_parameters(i) for i in range(12)]
    assert all(table.cost(p).activations <= limit for p in proposals)


def test_a_trial_end_still_waiting_for_its_result_is_recorded_when_the_dispatcher_exits(tmp_path) -> None:
    """NNI stops the dispatcher right after the last trial: the end that waits out its grace period is written
    as failed at exit (atexit), at once, not lost with the grace timer."""
    import subprocess
    import sys
    import time

    code = ("from nni_ext.tuners import ConstrainedRandomTuner\n"
            f"tuner = ConstrainedRandomTuner(seed=1, output_dir={str(tmp_path / 'out')!r})\n"
            "tuner.update_search_space({'x': {'_type': 'uniform', '_value': [0, 1]}})\n"
            "tuner.generate_parameters(0)\n"
            "tuner.trial_end(0, True)\n"
            "assert tuner.archive.pending(0) is not None, 'the end should wait for its result'\n")
    env = {**venv_env(), "NNI_LOG_DIRECTORY": str(tmp_path / "log"), "NNI_EXT_RESULT_GRACE": "120"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - start < 60, "the exit must not wait out the grace period"
    with open(tmp_path / "out" / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["parameter_id"], r["status"], r["reason"]) for r in rows] == [
        ("0", "failed", "trial ended without a final result")]
