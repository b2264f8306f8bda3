"""The contract every registered nni_ext tuner keeps, as pytest tests to inherit (Optuna's ``testing/pytest_samplers``).

A test module makes it run over every tuner of :func:`nni_ext.core.tuner.registered_tuners` with::

    from nni_ext.testing.tuner_contract import TunerContract, contract_params

    @pytest.mark.parametrize("name", contract_params())
    class TestTunerContract(TunerContract):
        pass

Each tuner class describes how to exercise it with the classmethod ``contract_case(workdir)``, which
returns ``{"class_args": {...}, "report": fn(params, i) -> metric dict}`` and optionally
``"search_space"`` (default: one parameter of every NNI ``_type`` the tuner supports) and
``"contains"`` (default: the space's own check). Subclasses inherit their parent's case, so a new
algorithm added as a small subclass is contract-tested without writing a test.

What is checked, for every tuner:

* proposals always lie inside the search space;
* failed trials, NaN or missing keys, and unparsable reports never stall or crash it;
* the same seed gives the same proposals;
* ``import_data`` of a finished history rebuilds the state: the resumed tuner keeps the front and
  proposes nothing already evaluated;
* bad classArgs (wrong type, out of range, a YAML string where a number belongs, unknown keys) raise
  ``ValueError`` naming the argument, never a ``TypeError`` from deep inside;
* the tuner pickles, and the copy proposes what the original would;
* its constructor does not import torch: NNI gives the dispatcher 10 s to connect, and importing torch on
  a loaded machine takes most of that (build spaces and cost models when the search space arrives).
"""
from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from nni import NoMoreTrialError

from ..core.metrics import encode_report
from ..core.params import ParameterSpace
from ..core.tuner import BaseTuner, registered_tuners
from .dispatcher import simulate

#: one parameter of every NNI ``_type``
EVERY_TYPE_SPACE: dict[str, Any] = {
    "optimizer": {"_type": "choice", "_value": ["sgd", "adam", 3]},
    "layers": {"_type": "randint", "_value": [1, 5]},
    "dropout": {"_type": "uniform", "_value": [0.0, 0.5]},
    "width": {"_type": "quniform", "_value": [16, 128, 16]},
    "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
    "batch": {"_type": "qloguniform", "_value": [16, 256, 16]},
    "momentum": {"_type": "normal", "_value": [0.9, 0.01]},
    "wd": {"_type": "qnormal", "_value": [5.0, 1.0, 0.5]},
    "scale": {"_type": "lognormal", "_value": [0.0, 0.5]},
    "decay": {"_type": "qlognormal", "_value": [0.0, 0.5, 0.1]},
}


def contract_params() -> list[str]:
    """The registered tuner names (the parametrisation of :class:`TunerContract`)."""
    import nni_ext.tuners  # noqa: F401 - registers the package's tuners

    return sorted(registered_tuners())


def key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


class Case:
    """A tuner's contract case, built in ``workdir``."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.cls: type[BaseTuner] = registered_tuners()[name]
        spec = self.cls.contract_case(workdir)  # type: ignore[attr-defined]
        self.class_args: dict[str, Any] = dict(spec["class_args"])
        supported = set(self.cls.supported_types)
        self.search_space: dict[str, Any] = spec.get("search_space") or {
            k: v for k, v in EVERY_TYPE_SPACE.items() if v["_type"] in supported}
        space = ParameterSpace(self.search_space)
        self.contains: Callable[[dict[str, Any]], bool] = spec.get("contains") or space.contains
        self.report: Callable[[dict[str, Any], int], dict[str, Any]] = spec["report"]
        self.seeded = "seed" in _accepted_args(self.cls)

    def make(self, **overrides: Any) -> BaseTuner:
        args = {**self.class_args, **overrides}
        if self.seeded:
            args.setdefault("seed", 1)
        return self.cls(**args)


def _accepted_args(cls: type) -> set[str]:
    from ..core.tuner import accepted_class_args

    return accepted_class_args(cls)


class TunerContract:
    """Tests every registered tuner inherits; parametrise the subclass over ``name`` (see the module docs)."""

    n_trials = 24

    def case(self, name: str, tmp_path: Path) -> Case:
        return Case(name, tmp_path)

    def test_is_exported_under_its_public_path(self, name: str, tmp_path: Path) -> None:
        import nni_ext.tuners as tuners

        cls = registered_tuners()[name]
        assert getattr(tuners, cls.__name__) is cls, f"{name}: export {cls.__name__} from nni_ext.tuners"
        assert cls.__name__ in tuners.__all__, f"{name}: list {cls.__name__} in nni_ext.tuners.__all__"
        assert cls.registered_name == name

    def test_constructor_leaves_torch_unimported(self, name: str, tmp_path: Path) -> None:
        case = self.case(name, tmp_path)
        args = {**case.class_args, **({"seed": 1} if case.seeded else {})}
        code = ("import json, sys; import nni_ext.tuners; from nni_ext.core.tuner import registered_tuners; "
                f"registered_tuners()[{name!r}](**json.loads(sys.argv[1])); print('torch' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "False", (
            f"{name}'s constructor imports torch (slow enough for NNI's 10 s dispatcher limit on a loaded "
            "machine): build spaces and cost models in _on_search_space")

    def test_proposals_stay_inside_the_search_space(self, name: str, tmp_path: Path) -> None:
        case = self.case(name, tmp_path)
        tuner = case.make()
        done = simulate(tuner, case.search_space, lambda p: case.report(p, len(p)), n_trials=self.n_trials,
                        concurrency=3)
        assert done, f"{name} proposed nothing"
        for params, _ in done:
            assert case.contains(params), f"{name} proposed {params}, outside the search space"

    def test_failures_nan_and_missing_keys_never_stall_it(self, name: str, tmp_path: Path) -> None:
        case = self.case(name, tmp_path / "files")
        tuner = case.make(output_dir=str(tmp_path / "out"))
        counter = iter(range(10**6))

        def flaky(params: dict[str, Any]) -> Any:
            i = next(counter)
            good = case.report(params, i)
            return [None, {k: math.nan for k in good}, {"unrelated": 1.0}, "not json", good][i % 5]

        done = simulate(tuner, case.search_space, flaky, n_trials=self.n_trials, concurrency=3)
        assert done
        finished = tuner.archive.finished
        assert len(finished) == len(done), f"{name}: every ended trial must be in the archive"
        assert sum(not r.ok for r in finished) >= len(done) * 3 // 5 - 1
        assert all(r.reason for r in finished if not r.ok), "a failed record names why"
        history = (tmp_path / "out" / "history.csv").read_text().splitlines()
        assert len(history) == 1 + len(done), "the history file holds every ended trial"

    def test_a_result_after_its_trials_end_replaces_the_failure(self, name: str, tmp_path: Path) -> None:
        """NNI can report a trial's end before its result, or another trial's end under its id (nni#5726)."""
        case = self.case(name, tmp_path / "files")
        tuner = case.make(output_dir=str(tmp_path / "out"))
        tuner.update_search_space(case.search_space)
        first, second = tuner.generate_parameters(0), tuner.generate_parameters(1)
        tuner.receive_trial_result(1, second, case.report(second, 1))
        tuner.trial_end(0, True)  # the end of trial 1, under id 0: no result for 0 yet, so it fails
        tuner.trial_end(1, True)
        assert [r.ok for r in tuner.archive.finished] == [True, False]
        tuner.receive_trial_result(0, first, case.report(first, 0))
        assert [r.parameter_id for r in tuner.archive.finished] == [1, 0]
        assert all(r.ok for r in tuner.archive.finished), f"{name}: the late result must replace the failure"
        assert [row["evaluated"] for row in tuner.archive.history] == [1, 2]
        assert [row["failed"] for row in tuner.archive.history] == [0, 0]
        history = (tmp_path / "out" / "history.csv").read_text().splitlines()
        assert len(history) == 3 and ",failed," not in "".join(history[1:])
        tuner.receive_trial_result(0, first, case.report(first, 0))  # a third one is still ignored
        assert len(tuner.archive.finished) == 2
        for i in range(2, self.n_trials):  # and the search goes on
            try:
                params = tuner.generate_parameters(i)
            except NoMoreTrialError:
                break
            tuner.receive_trial_result(i, params, case.report(params, i))
            tuner.trial_end(i, True)
        assert all(r.ok for r in tuner.archive.finished)

    def test_same_seed_same_proposals(self, name: str, tmp_path: Path) -> None:
        case = self.case(name, tmp_path)
        runs = []
        for _ in range(2):
            tuner = case.make()
            runs.append([p for p, _ in simulate(tuner, case.search_space, lambda p: case.report(p, len(key(p))),
                                                n_trials=self.n_trials, concurrency=2, seed=3)])
        assert runs[0] == runs[1], f"{name}: the same seed must give the same proposals"

    def test_import_data_resumes_without_repeats(self, name: str, tmp_path: Path) -> None:
        case = self.case(name, tmp_path)
        first = case.make()
        done = simulate(first, case.search_space, lambda p: case.report(p, len(key(p))), n_trials=self.n_trials // 2,
                        concurrency=2)
        data = [{"parameter": p, "value": json.dumps(encode_report(v, p))} for p, v in done]
        resumed = case.make()
        resumed.update_search_space(case.search_space)
        resumed.import_data(data)
        assert len(resumed.archive.finished) == len(done)
        front = sorted(key(r.params) for r in resumed.archive.front())
        assert front == sorted(key(r.params) for r in first.archive.front()), f"{name}: the front is kept"
        evaluated = {key(p) for p, _ in done}
        for i in range(self.n_trials // 2):
            try:
                params = resumed.generate_parameters(1000 + i)
            except NoMoreTrialError:
                break
            assert key(params) not in evaluated, f"{name} proposed {params} again after a resume"
            evaluated.add(key(params))
            resumed.receive_trial_result(1000 + i, params, case.report(params, i))
            resumed.trial_end(1000 + i, True)

    def test_bad_class_args_raise_value_errors_naming_the_argument(self, name: str, tmp_path: Path) -> None:
        case = self.case(name, tmp_path)
        accepted = _accepted_args(case.cls)
        bad: list[tuple[str, Any]] = [("no_such_arg", 1)]
        numbers = {k: v for k, v in case.class_args.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if case.seeded:
            numbers["seed"] = 1
        for arg, value in numbers.items():
            bad += [(arg, str(value)), (arg, [value]), (arg, -1), (arg, math.nan)]
        for arg, value in bad:
            try:
                case.make(**{arg: value})
            except ValueError as exc:
                assert arg in str(exc), f"{name}: {arg}={value!r} gave {exc!r}, which does not name {arg!r}"
                if arg == "no_such_arg":
                    assert any(a in str(exc) for a in accepted), "the error lists the classArgs there are"
            except Exception as exc:  # noqa: BLE001 - anything else is what the contract forbids
                raise AssertionError(f"{name}: {arg}={value!r} raised {type(exc).__name__}: {exc}") from exc
            else:
                if value != -1:  # -1 may be legal for some numbers (none of the cases' today)
                    raise AssertionError(f"{name}: {arg}={value!r} was accepted")
                raise AssertionError(f"{name}: {arg}=-1 was accepted; check its range")

    def test_pickles_and_the_copy_proposes_the_same(self, name: str, tmp_path: Path) -> None:
        case = self.case(name, tmp_path)
        tuner = case.make()
        simulate(tuner, case.search_space, lambda p: case.report(p, len(key(p))), n_trials=self.n_trials // 3,
                 concurrency=1)
        clone = pickle.loads(pickle.dumps(tuner))
        try:
            expected = tuner.generate_parameters(5000)
        except NoMoreTrialError:
            return
        assert clone.generate_parameters(5000) == expected
