"""The ``RegularizationSweep`` tuner: MOOD-NAS's adaptive weighted-sum sweep of a regularisation strength ν."""
from __future__ import annotations

import json
import logging
import math
from collections import deque
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from nni import NoMoreTrialError

from .._io import atomic_write_csv, atomic_write_json
from ..core.archive import Record
from ..core.tuner import BaseTuner, api_lock, check_int, check_number, register_tuner, tuner_output_dir
from ..sweep import front_order, normalised_gaps, open_gaps, was_tried

logger = logging.getLogger(__name__)


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


@register_tuner("RegularizationSweep")
class RegularizationSweep(BaseTuner):
    """Fill the (reg_loss, criterion_loss) Pareto front by choosing regularisation strengths ν (MOOD-NAS).

    Each trial trains with loss ``(1 - ν) * CE + ν * R`` for the ν it is given and reports a metric dict
    with ``reg_loss`` (``R``) and ``criterion_loss`` (``CE``), both minimised; ``default`` is only recorded.
    The sweep starts with the ``initial`` ν (0.2, then 0.0); from then on it keeps the non-dominated
    (reg_loss, criterion_loss) points sorted by reg_loss, measures each gap between neighbours in
    objectives normalised to [0, 1] over the front, and proposes for the widest unvisited gap the ν
    normal to the segment between its two points, in raw units:
    ``ν = (C_a - C_b) / ((C_a - C_b) + (R_b - R_a))`` (both points then have the same weighted sum,
    MOOD-NAS's ``WeightEstimator.calculate_next_weight``). A gap is visited once its ν is tried, being
    tried, or failed (so a ν is never proposed twice); the sweep ends when the widest unvisited gap is
    narrower than ``delta`` (or after ``max_trials``). The kernels live in :mod:`nni_ext.sweep`.

    **Concurrency.** MOOD-NAS runs one search at a time; here several trials run at once: a gap being
    evaluated counts as visited and the next request takes the next-widest gap. When no gap is open but
    trials still run (their results may open new gaps), the request is refused with
    ``NoMoreTrialError`` and *owed*: the tuner keeps the parameter ids NNI's dispatcher created for the
    refused requests (``msg_dispatcher._create_parameter_id``; the dispatcher never uses them) and the
    ``st_callback`` it passes to :meth:`generate_multiple_parameters`, and as soon as a later result opens
    gaps it sends the owed trials through ``st_callback(parameter_id, parameters)``
    (``MsgDispatcher.send_trial_callback``, a ``NEW_TRIAL_JOB`` command). Running plus owed trials always
    equal ``trialConcurrency``, so no more than that many run.

    What NNI 3.0's manager (``nni_node/core/nnimanager.js``) does meanwhile:

    * a refused request: the dispatcher answers ``NO_MORE_TRIAL_JOBS`` and the manager sets the experiment
      status to ``TUNER_NO_MORE_TRIAL``; running trials go on, and the manager still asks for one new trial
      per trial that ends, which the tuner grants when a gap is open;
    * an owed trial sent through the callback: ``NEW_TRIAL_JOB`` queues it; if the status was
      ``TUNER_NO_MORE_TRIAL`` the manager logs "It is not supposed to receive more trials after
      NO_MORE_TRIAL is set" (harmless) and sets the status back to ``RUNNING``; the trial starts in the
      free slot;
    * the end: the sweep is finished and nothing runs, so every request is refused and the experiment
      stays in ``TUNER_NO_MORE_TRIAL`` (NNI 3.0 never turns that into ``DONE``); ``front.json`` then says
      ``"finished": true``; stop the experiment with ``nnictl stop``. If ``maxTrialNumber`` is reached
      first the manager goes ``NO_MORE_TRIAL`` and then ``DONE`` as usual.

    Failed trials (a crash, a NaN or missing ``reg_loss``/``criterion_loss``) are recorded; their ν
    counts as tried, so they never stall the sweep. When every trial failed and none runs (e.g. a wrong
    ``--data`` path), the sweep tells NNI's manager (``Dispatcher error: RegularizationSweep: all N trials
    failed (...)`` in ``nnimanager.log`` and ``dispatcher.log``) and the experiment ends in ``ERROR``.
    ``nnictl resume`` (or ``experiment import``) feeds
    finished trials to :meth:`import_data`, which rebuilds the points and the visited gaps (the gaps
    whose ν was tried): the resumed sweep proposes what the uninterrupted one would have.

    Output, rewritten atomically after every change in ``output_dir`` (default ``<experiment dir>/sweep``,
    i.e. ``<cwd>/../sweep`` under NNI, which starts the tuner in ``<experiment dir>/log``; nothing is
    written outside NNI unless ``output_dir`` is given):

    * ``sweep.csv``: every trial (parameter_id, nu, status, reg_loss, criterion_loss, default, pareto,
      reason);
    * ``front.json``: the settings, counts, whether the sweep is finished, the largest unvisited gap and
      the front (ν, losses, the trial's other scalar metrics such as ``params``/``flops``/``genotype``,
      its parameters and the normalised gap to the next point).

    YAML::

        searchSpace:
          nu: {_type: uniform, _value: [0, 1]}   # only the name is used
        tuner:
          className: nni_ext.tuners.RegularizationSweep   # or name: RegularizationSweep after `nni-ext register`
          classArgs:
            delta: 0.15

    Args:
        parameter: name of ν in the search space (default ``"nu"``). Every other parameter of the space
            must be a ``choice`` with one value, passed to the trials as is.
        initial: the ν tried first, in order (default ``[0.2, 0.0]``), each in [0, 1].
        delta: stop when the widest unvisited normalised gap is below this (default 0.15).
        max_trials: stop after this many trials in all (imported ones included); default no limit.
        reg_key, criterion_key: metric keys of ``R`` and ``CE`` (default ``reg_loss``, ``criterion_loss``).
        output_dir: where ``sweep.csv`` and ``front.json`` go.

    Example (in-process, without NNI):
        >>> tuner = RegularizationSweep(delta=0.6)
        >>> tuner.update_search_space({"nu": {"_type": "uniform", "_value": [0, 1]}})
        >>> for pid in range(4):
        ...     nu = tuner.generate_parameters(pid)["nu"]
        ...     tuner.receive_trial_result(pid, {}, {"reg_loss": (1 - nu) ** 2, "criterion_loss": nu ** 2})
        ...     tuner.trial_end(pid, True)
        >>> [round(nu, 6) for nu in tuner.tried()]
        [0.2, 0.0, 0.1, 0.15]
        >>> tuner.generate_parameters(4)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        nni.NoMoreTrialError: the sweep is finished: no unvisited gap of the front is 0.6 wide ...
    """

    def __init__(self, *, parameter: str = "nu", initial: Sequence[float] = (0.2, 0.0), delta: float = 0.15,
                 max_trials: int | None = None, reg_key: str = "reg_loss", criterion_key: str = "criterion_loss",
                 output_dir: str | None = None) -> None:
        if not isinstance(parameter, str) or not parameter:
            raise ValueError(f"parameter={parameter!r} must be the (non-empty) name of ν in the search space")
        if isinstance(initial, (int, float)):
            initial = [initial]
        if not isinstance(initial, Sequence) or isinstance(initial, str) or not initial:
            raise ValueError(f"initial={initial!r} must be a non-empty list of weights in [0, 1], e.g. [0.2, 0.0]")
        values = []
        for v in initial:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"initial={list(initial)!r}: {v!r} is not a weight in [0, 1]")
            if was_tried(float(v), values):
                raise ValueError(f"initial={list(initial)!r} names {v!r} twice")
            values.append(float(v))
        check_number("delta", delta, 0.0, low_open=True)
        check_int("max_trials", max_trials, 1, optional=True)
        for name, key in (("reg_key", reg_key), ("criterion_key", criterion_key)):
            if not isinstance(key, str) or not key:
                raise ValueError(f"{name}={key!r} must be a metric key")
        if reg_key == criterion_key:
            raise ValueError(f"reg_key and criterion_key are both {reg_key!r}; they must differ")
        # deterministic: no random choice is made
        super().__init__(seed=0, objectives={reg_key: "minimize", criterion_key: "minimize"},
                         output_dir=tuner_output_dir(output_dir, "sweep"))
        self.parameter, self.initial, self.delta = parameter, values, float(delta)
        self.max_trials = max_trials
        self.reg_key, self.criterion_key = self.archive.objectives.keys
        self.fixed: dict[str, Any] = {}
        self._owed: deque[int] = deque()
        self._callback: Callable[[int, dict[str, Any]], None] | None = None
        self._failure_reported = False

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without NNI's callback (it does not survive a process); owed ids are dropped."""
        state = dict(self.__dict__)
        state["_callback"], state["_owed"] = None, deque()
        return state

    # ------------------------------------------------------------------ set-up
    def _on_search_space(self) -> None:
        assert self.space is not None
        if self.parameter not in self.space.names:
            raise ValueError(f"parameter={self.parameter!r} is not in the search space (it has "
                             f"{', '.join(map(repr, self.space.names)) or 'nothing'}); name ν there or set "
                             "classArgs parameter")
        fixed, bad = {}, []
        for p in self.space.parameters:
            if p.name == self.parameter:
                continue
            if p.type == "choice" and len(p.args) == 1:
                fixed[p.name] = p.args[0]
            else:
                bad.append(p.name)
        if bad:
            raise ValueError(f"search space parameter(s) {', '.join(map(repr, bad))} are not fixed: besides "
                             f"{self.parameter!r} the sweep only passes through choices with one value")
        self.fixed = fixed

    @classmethod
    def contract_case(cls, workdir: Any) -> dict[str, Any]:
        """What the tuner contract tests run: ν in [0, 1] and an analytic front (a fixed space: one ``uniform``)."""
        return {"class_args": {"delta": 0.05, "max_trials": 12},
                "search_space": {"nu": {"_type": "uniform", "_value": [0, 1]}},
                "report": lambda p, i: {"reg_loss": (1 - p["nu"]) ** 2, "criterion_loss": p["nu"] ** 2}}

    # ------------------------------------------------------------------ state
    @property
    def trials(self) -> list[Record]:
        """Every tried ν's record (pending, succeeded or failed), in the order tried (imported first)."""
        return list(self.archive.records)

    def nu(self, record: Record) -> float:
        """The ν of a record."""
        return float(record.params[self.parameter])

    def tried(self) -> list[float]:
        """Every ν tried, being tried or failed (the visited gaps are those whose ν is here)."""
        return [self.nu(r) for r in self.archive.records]

    def _ok(self) -> list[Record]:
        return [r for r in self.archive.records if r.ok]

    def points(self) -> np.ndarray:
        """``(R, C)`` of every successful trial, in the order tried."""
        return np.array([(r.value(self.reg_key), r.value(self.criterion_key)) for r in self._ok()],
                        dtype=float).reshape(-1, 2)

    def front(self) -> list[Record]:
        """The successful trials on the Pareto front, sorted by reg_loss."""
        ok = self._ok()
        return [ok[i] for i in front_order(self.points())]

    def running(self) -> int:
        """How many proposed trials have neither a result nor an end yet."""
        return len(self.archive.running())

    def is_finished(self) -> bool:
        """Nothing runs and nothing is left to propose (no wide unvisited gap, or ``max_trials`` reached)."""
        with api_lock(self):  # NNI calls trial_end from another thread than the rest
            return self.running() == 0 and self._next()[0] is None

    def _next(self) -> tuple[float | None, str]:
        """The next ν to try, or ``None`` and why not."""
        tried = self.tried()
        if self.max_trials is not None and len(tried) >= self.max_trials:
            return None, f"max_trials={self.max_trials} trials have been proposed"
        for v in self.initial:
            if not was_tried(v, tried):
                return v, "initial"
        gaps = open_gaps(self.points(), tried, self.delta)
        if gaps:
            return gaps[0].nu, f"gap {gaps[0].distance:.4g}"
        running = self.running()
        if running:
            return None, f"no unvisited gap of the front is {self.delta:g} wide while {running} trial(s) run"
        return None, (f"the sweep is finished: no unvisited gap of the front is {self.delta:g} wide "
                      f"({len(tried)} trials, front of {len(self.front())})")

    def _issue(self, parameter_id: int, nu: float, why: str) -> dict[str, Any]:
        params = {**self.fixed, self.parameter: nu}
        self.archive.propose(params, parameter_id)
        logger.debug("RegularizationSweep: trial %d gets %s=%r (%s)", parameter_id, self.parameter, nu, why)
        return params

    # ------------------------------------------------------------------ NNI API
    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if self.space is None:
            raise RuntimeError("the search space has not been set; give searchSpaceFile in the experiment config")
        with api_lock(self):
            nu, why = self._next()
            if nu is None:
                self.write_files()
                raise NoMoreTrialError(why)
            params = self._issue(parameter_id, nu, why)
            self.write_files()
            return params

    def failure(self) -> str | None:
        """Why the sweep cannot go on, when every trial failed and none runs (else ``None``)."""
        failed = self.archive.failed()
        if self.running() or self.archive.succeeded() or not failed or self._next()[0] is not None:
            return None
        reasons = sorted({r.reason for r in failed})
        return (f"RegularizationSweep: all {len(failed)} trials failed ({'; '.join(reasons)}), so no front can be "
                f"swept; see the trials' logs (e.g. a wrong --data path in trialCommand), fix it and create the "
                f"experiment again")

    def _report_failure(self, callback: Any) -> str | None:
        """Tell NNI's manager the sweep failed (the web UI shows the message; the experiment ends in ERROR)."""
        message = self.failure()
        if message is None:
            return None
        logger.error(message)
        dispatcher = getattr(callback, "__self__", None)  # MsgDispatcher.send_trial_callback is a bound method
        if not self._failure_reported and hasattr(dispatcher, "report_error"):
            self._failure_reported = True
            dispatcher.report_error(message)
        return message

    def generate_multiple_parameters(self, parameter_id_list: list[int], **kwargs: Any) -> list[dict[str, Any]]:
        """NNI's dispatcher entry point: as many parameter sets as gaps allow; the rest are owed (see above).

        When every trial has failed and none runs, the sweep ends with an error (dispatcher log, experiment
        status ERROR with the reasons in the web UI) instead of waiting in ``TUNER_NO_MORE_TRIAL`` forever.
        """
        callback = kwargs.get("st_callback")
        out: list[dict[str, Any]] = []
        with api_lock(self):
            reported = self._failure_reported
            message = self._report_failure(callback or self._callback)
            if message is not None:
                if self._failure_reported and reported:  # NNI's manager has the message: refuse quietly
                    return []
                if not self._failure_reported:  # no manager to tell (not under nnictl): fail loudly
                    raise RuntimeError(message)
                return []
            for i, parameter_id in enumerate(parameter_id_list):
                try:
                    out.append(self.generate_parameters(parameter_id, **kwargs))
                except NoMoreTrialError as exc:
                    refused = list(parameter_id_list[i:])
                    if callback is not None:  # running + owed trials = trialConcurrency
                        self._callback = callback
                        self._owed.extend(refused)
                    if self.running():
                        logger.info("RegularizationSweep: %s; %d request(s) owed, answered when a result opens a "
                                    "gap", exc, len(self._owed))
                    else:  # the owed ids are kept all the same, for a result arriving late
                        logger.info("RegularizationSweep: %s", exc)
                    break
        return out

    def receive_trial_result(self, parameter_id: int, parameters: Mapping[str, Any], value: Any,
                             **kwargs: Any) -> None:
        # ``parameters`` is not trusted: NNI's dispatcher can hand over '' (it overwrites the first id of a
        # partly refused request when it sends NO_MORE_TRIAL_JOBS); the tuner knows what it issued.
        super().receive_trial_result(parameter_id, parameters if isinstance(parameters, Mapping) else {}, value)

    def import_data(self, data: list[dict[str, Any]]) -> None:
        """Replay finished trials (``nnictl resume``): the points and the tried ν, hence the visited gaps."""
        super().import_data(data)
        logger.info("RegularizationSweep: front of %d points after the import", len(self.front()))

    def _add_foreign(self, params: dict[str, Any], value: Any, parameter_id: int | None) -> Record | None:
        nu = params.get(self.parameter) if isinstance(params, Mapping) else None
        if isinstance(nu, bool) or not isinstance(nu, (int, float)) or not math.isfinite(nu):
            logger.warning("RegularizationSweep: ignoring a result without a numeric %r parameter: %s",
                           self.parameter, params)
            return None
        return self.archive.add(params, value, parameter_id=parameter_id)

    def _tell(self, record: Record) -> None:
        if not record.ok:
            logger.info("RegularizationSweep: %s=%.6g failed: %s", self.parameter, self.nu(record), record.reason)
        else:
            gaps = open_gaps(self.points(), self.tried(), self.delta)
            logger.info("RegularizationSweep: %s=%.6g -> %s=%.6g %s=%.6g; front of %d, %d open gap(s)%s",
                        self.parameter, self.nu(record), self.reg_key, record.value(self.reg_key),
                        self.criterion_key, record.value(self.criterion_key), len(self.front()), len(gaps),
                        f", widest {gaps[0].distance:.4g}" if gaps else "")
        self._send_owed()  # a failure opens no gap; kept for symmetry (and a result arriving late)
        if not record.ok:
            self._report_failure(self._callback)

    def _send_owed(self) -> None:
        while self._owed and self._callback is not None:
            nu, why = self._next()
            if nu is None:
                return
            parameter_id = self._owed.popleft()
            params = self._issue(parameter_id, nu, why)
            try:
                self._callback(parameter_id, params)
            except Exception:  # the channel is gone: forget the trial rather than wait for it forever
                logger.exception("RegularizationSweep: sending owed trial %d failed", parameter_id)
                self.archive.withdraw(parameter_id)
                self._owed.appendleft(parameter_id)
                return
            logger.info("RegularizationSweep: sent owed trial %d with %s=%.6g (%s)", parameter_id,
                        self.parameter, nu, why)

    # ------------------------------------------------------------------ files
    def _meta(self) -> dict[str, Any]:
        return {**super()._meta(), "parameter": self.parameter, "delta": self.delta}

    def _write_files(self) -> None:
        if self.output_dir is None:
            return
        front = self.front()
        on_front = {id(t) for t in front}
        rows = [{"parameter_id": t.parameter_id, "nu": self.nu(t), "status": t.status.value,
                 "reg_loss": _number(t.value(self.reg_key)), "criterion_loss": _number(t.value(self.criterion_key)),
                 "default": _number(t.value("default")), "pareto": id(t) in on_front, "reason": t.reason}
                for t in self.archive.records]
        atomic_write_csv(self.output_dir / "sweep.csv", rows, ["parameter_id", "nu", "status", "reg_loss",
                                                               "criterion_loss", "default", "pareto", "reason"])
        F = self.points()[[self._ok().index(t) for t in front]] if front else np.zeros((0, 2))
        distances = normalised_gaps(F).tolist() + [None]
        gaps = open_gaps(self.points(), self.tried(), self.delta)
        skip = {self.reg_key, self.criterion_key, "default"}
        atomic_write_json(self.output_dir / "front.json", {
            "parameter": self.parameter, "delta": self.delta, "initial": self.initial,
            "max_trials": self.max_trials, "objectives": {self.reg_key: "minimize", self.criterion_key: "minimize"},
            "finished": self.is_finished(), "trials": len(self.archive.records),
            "ok": len(self.archive.succeeded()), "failed": len(self.archive.failed()), "running": self.running(),
            "largest_open_gap": gaps[0].distance if gaps else None,
            "front": [{"nu": self.nu(t), self.reg_key: t.value(self.reg_key),
                       self.criterion_key: t.value(self.criterion_key), "default": _number(t.value("default")),
                       "parameter_id": t.parameter_id, "gap_to_next": d,
                       "metrics": {**{k: v for k, v in t.metrics.items() if k not in skip and math.isfinite(v)},
                                   **t.extra},
                       "parameters": json.loads(json.dumps(t.params, default=str))}
                      for t, d in zip(front, distances)]})
