"""One base for every nni_ext tuner: NNI's Tuner interface and its bookkeeping written once.

``BaseTuner`` owns the search space, the seeded generator, the parameter ids handed out, the one
:class:`~nni_ext.core.archive.Archive` (every tuner's results, front and hypervolume) and its files, and
routes live results, trials that end without one and imported data (``nnictl resume``) through the
same path. Subclasses implement small hooks:

* :meth:`BaseTuner._ask` — propose one parameter dict (``nni.NoMoreTrialError`` when done);
* :meth:`BaseTuner._tell` — react to a finished record (succeeded or failed; live, late or imported);
* :meth:`BaseTuner._on_search_space` — check or prepare for the experiment's search space;
* :meth:`BaseTuner._after_import` — rebuild counters after ``import_data`` replayed a history;
* :meth:`BaseTuner._write_files` — write the tuner's own files next to the archive's.

It also holds the classArg validation helpers every tuner uses, so a bad value is a ``ValueError``
naming the argument and the fix, never a ``TypeError`` from inside numpy or pymoo.
"""
from __future__ import annotations

import atexit
import functools
import inspect
import logging
import math
import os
import threading
import weakref
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, TypeVar

import numpy as np
from nni.tuner import Tuner

from .archive import Archive, ArchiveFiles, Record, Status, params_key, replay_row
from .metrics import ARCH_KEY, decode_report, decode_values, reported_parameters
from .params import SUPPORTED_TYPES, ParameterSpace

logger = logging.getLogger(__name__)

_TUNERS: dict[str, type[BaseTuner]] = {}
T = TypeVar("T", bound=type)


def register_tuner(name: str) -> Callable[[T], T]:
    """Class decorator: make a tuner known to ``nni-ext register`` (and to the contract tests) under ``name``."""

    def decorator(cls: T) -> T:
        _TUNERS[name] = cls  # type: ignore[assignment]
        cls.registered_name = name  # type: ignore[attr-defined]
        return cls

    return decorator


def registered_tuners() -> dict[str, type[BaseTuner]]:
    """``name -> class`` of every registered tuner."""
    return dict(_TUNERS)


def tuner_output_dir(output_dir: str | None, name: str) -> Path | None:
    """Where a tuner keeps its files: ``output_dir`` if given, else ``<experiment dir>/<name>`` under nnictl
    (NNI 3.0 runs the dispatcher with ``NNI_LOG_DIRECTORY=<experiment dir>/log``), else nowhere (``None``)."""
    if output_dir:
        return Path(output_dir)
    log_dir = os.environ.get("NNI_LOG_DIRECTORY")
    return Path(log_dir).parent / name if log_dir else None


# ---------------------------------------------------------------- classArg validation
def check_int(name: str, value: Any, low: int | None = None, *, optional: bool = False) -> int | None:
    """``value`` as an int >= ``low``; ``ValueError`` naming ``name`` otherwise (YAML strings included)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        hint = " (write it without quotes in the YAML)" if isinstance(value, str) else ""
        tail = " or left out" if optional else ""
        raise ValueError(f"{name}={value!r} must be an integer{bound}{tail}{hint}")
    return int(value)


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, optional: bool = False) -> float | None:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if value is None and optional:
        return None
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"<= {high:g}"
        rng = " and ".join(filter(None, (lo, hi)))
        hint = " (write it without quotes in the YAML)" if isinstance(value, str) else ""
        raise ValueError(f"{name}={value!r} must be a number{' ' + rng if rng else ''}{hint}")
    return float(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> str:
    """``value`` as one of ``choices``; ``ValueError`` listing them otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}={value!r}; use one of {', '.join(map(repr, choices))}")
    return value


def check_mapping(name: str, value: Any, *, optional: bool = True) -> dict[str, Any] | None:
    """``value`` as a dict (``None`` when optional and left out)."""
    if value is None and optional:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}={value!r} must be a mapping, e.g. {{key: value}}")
    return dict(value)


def accepted_class_args(cls: type) -> set[str]:
    """The keyword arguments ``cls(**classArgs)`` accepts (through ``**kwargs`` passed up to its bases)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        params = inspect.signature(inspect.unwrap(init)).parameters.values()
        names |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def _check_optimize_mode(tuner: Any, mode: Any) -> str:
    """The ``optimize_mode`` classArg, which NNI's web UI reads to rank trials by ``default``.

    Every nni_ext tuner accepts it; it must agree with the sense of the ``default`` objective (when
    ``default`` is one), and is that sense when left out.
    """
    archive = getattr(tuner, "archive", None)
    sense = archive.objectives.describe().get("default") if archive is not None else None
    if mode is None:
        return sense or "maximize"
    check_choice("optimize_mode", mode, ("maximize", "minimize"))
    if sense is not None and mode != sense:
        raise ValueError(f"optimize_mode={mode!r} contradicts objectives (default: {sense}); set "
                         f"optimize_mode: {sense} (NNI's web UI ranks trials by it) or change the objective")
    return str(mode)


def _checked_init(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a tuner's ``__init__``: unknown or missing classArgs are a ``ValueError`` naming them (not a TypeError)."""

    @functools.wraps(init)
    def checked(self: Any, *args: Any, **kwargs: Any) -> None:
        if not self.__dict__.get("_class_args_checked"):
            self.__dict__["_class_args_checked"] = True
            accepted = accepted_class_args(type(self))
            mode = kwargs.pop("optimize_mode", None) if "optimize_mode" not in accepted else None
            unknown = sorted(set(kwargs) - accepted)
            if unknown:
                raise ValueError(f"{type(self).__name__} has no classArg {', '.join(map(repr, unknown))}; its "
                                 f"classArgs are {', '.join(sorted(accepted))}")
            try:
                inspect.signature(inspect.unwrap(init)).bind(self, *args, **kwargs)
            except TypeError as exc:
                raise ValueError(f"{type(self).__name__}: {exc}; see its classArgs: "
                                 f"{', '.join(sorted(accepted | {'optimize_mode'}))}") from None
            init(self, *args, **kwargs)
            self.optimize_mode = _check_optimize_mode(self, mode)
            return
        init(self, *args, **kwargs)

    checked._checks_class_args = True  # type: ignore[attr-defined]
    return checked


#: one re-entrant lock per tuner (kept outside the object, so tuners pickle without it)
_LOCKS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def api_lock(tuner: Any) -> Any:
    """The re-entrant lock that serialises a tuner's NNI calls (subclasses take it for their own entry points)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(tuner)
        if lock is None:
            lock = _LOCKS[tuner] = threading.RLock()
        return lock


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run an NNI entry point under the tuner's lock: NNI's dispatcher calls ``trial_end`` (and intermediate
    results) from another thread than ``generate_parameters`` and final results."""

    @functools.wraps(method)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with api_lock(self):
            return method(self, *args, **kwargs)

    return locked


#: why a record failed when its trial ended with no final result (a result that comes later revives it)
NO_RESULT = "trial ended without a final result"


def result_grace_seconds() -> float:
    """How long a trial that ended successfully without a final result waits for that result.

    NNI's dispatcher handles ``TrialEnd`` on another thread than final metrics, so the end of a trial can
    reach the tuner a moment before its result. Inside NNI's dispatcher (``NNI_LOG_DIRECTORY`` set) the
    record is failed only if no result came after ``NNI_EXT_RESULT_GRACE`` seconds (default 10); in-process
    (tests, benchmarks) at once.
    """
    if not os.environ.get("NNI_LOG_DIRECTORY"):
        return 0.0
    try:
        return max(0.0, float(os.environ.get("NNI_EXT_RESULT_GRACE", "10")))
    except ValueError:
        return 10.0


#: trial ends whose result may still come: tuner -> {parameter_id: (grace timer, success)} (outside the tuner,
#: which pickles without them)
_WAITING: weakref.WeakKeyDictionary[Any, dict[int, tuple[threading.Timer, bool]]] = weakref.WeakKeyDictionary()


def flush_waiting_ends() -> None:
    """Record now, as failed, every trial whose end still waits for its result (run when the dispatcher exits).

    NNI stops the dispatcher right after the last trial: no result comes any more, and a grace timer left
    running would die with the process, so the trial would be missing from the archive files.
    """
    for tuner, waiting in list(_WAITING.items()):
        for parameter_id, (timer, success) in list(waiting.items()):
            timer.cancel()
            tuner._ended_without_result(parameter_id, success)


atexit.register(flush_waiting_ends)


class BaseTuner(Tuner):
    """Base class of every nni_ext tuner (see the module docstring for the hooks).

    Args:
        seed: seed of :attr:`rng` (drawn and logged when ``None``).
        objectives, constraints, reference_point, reference_after: the :class:`Archive`'s.
        output_dir: where the archive files go (``None``: nowhere).
    """

    #: name under which the tuner is registered (set by :func:`register_tuner`)
    registered_name: ClassVar[str] = ""
    #: the NNI ``_type`` s the tuner accepts in a search space (the contract tests use them)
    supported_types: ClassVar[tuple[str, ...]] = SUPPORTED_TYPES
    #: whether results this tuner did not hand out must fit the search space to be recorded
    check_foreign_in_space: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_checks_class_args", False):
            cls.__init__ = _checked_init(init)  # type: ignore[method-assign]

    def __init__(self, *, seed: int | None = None, objectives: Any = None, constraints: Any = None,
                 reference_point: Mapping[str, float] | None = None, reference_after: int = 1,
                 output_dir: Path | None = None) -> None:
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] % (2**31))
            logger.info("%s: no seed given, drew seed=%d", type(self).__name__, seed)
        self.seed = int(check_int("seed", seed, 0))  # type: ignore[arg-type]
        self.rng = np.random.default_rng(self.seed)
        self.space: ParameterSpace | None = None
        self.archive = Archive({"default": "maximize"} if objectives is None else objectives, constraints,
                               reference_point=reference_point,
                               reference_after=reference_after)
        self.output_dir = output_dir
        self.files = ArchiveFiles(output_dir) if output_dir is not None else None
        #: the generation new proposals belong to (tuners without generations leave it ``None``)
        self.generation: int | None = None

    # ------------------------------------------------------------------ NNI API
    @_serialized
    def update_search_space(self, search_space: Mapping[str, Any]) -> None:
        self.space = ParameterSpace(search_space)
        unsupported = sorted({p.type for p in self.space.parameters} - set(self.supported_types))
        if unsupported:
            raise ValueError(f"{type(self).__name__} does not support _type {', '.join(map(repr, unsupported))} in "
                             f"the search space; it supports {', '.join(self.supported_types)}")
        self._on_search_space()

    @_serialized
    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if self.space is None:
            raise RuntimeError("the search space has not been set; give searchSpaceFile in the experiment config")
        params = self._ask(parameter_id)
        self.archive.propose(params, parameter_id, generation=self.generation)
        return params

    @_serialized
    def receive_trial_result(self, parameter_id: int, parameters: Mapping[str, Any], value: Any,
                             **kwargs: Any) -> None:
        record = self.archive.pending(parameter_id)
        ended = self.archive.by_id(parameter_id) if record is None else None
        if ended is not None and ended.status is Status.FAILED and ended.reason.startswith(NO_RESULT):
            # NNI reported the end first (or another trial's end under this id, microsoft/nni#5726): the result
            # replaces the failure, and is told like a late result (the trial's end was counted already)
            logger.info("%s: trial %d's result came after NNI reported its end; recorded", type(self).__name__,
                        parameter_id)
            ended.dispatched = False
            self.archive.revive(ended, self._with_known(ended.params, value))
            self._tell(ended)
            self.write_files()
            return
        if ended is not None:
            logger.warning("%s: a second result for trial %d ignored", type(self).__name__, parameter_id)
            return
        if record is None:  # late, customized, or handed out by an earlier run of the experiment
            record = self._add_foreign(reported_parameters(value) or dict(parameters), value, parameter_id)
            if record is None:
                return
        else:
            self.archive.finish(record, self._with_known(record.params, value))
            if not record.ok:
                logger.warning("%s: trial %d failed: %s", type(self).__name__, parameter_id, record.reason)
        self._tell(record)
        self.write_files()

    @_serialized
    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        if self.archive.pending(parameter_id) is None:
            return
        grace = result_grace_seconds() if success else 0.0
        if grace > 0:  # its result may still be on NNI's other queue: fail it only if none comes
            timer = threading.Timer(grace, self._ended_without_result, (parameter_id, success))
            timer.daemon = True
            _WAITING.setdefault(self, {})[parameter_id] = (timer, success)
            timer.start()
            return
        self._ended_without_result(parameter_id, success)

    @_serialized
    def _ended_without_result(self, parameter_id: int, success: bool) -> None:
        _WAITING.get(self, {}).pop(parameter_id, None)
        record = self.archive.pending(parameter_id)
        if record is None:  # the result came after all
            return
        reason = NO_RESULT + ("" if success else " (failed or early-stopped)")
        logger.warning("%s: trial %d %s", type(self).__name__, parameter_id, reason)
        self.archive.fail(record, reason)
        self._tell(record)
        self.write_files()

    @_serialized
    def import_data(self, data: list[dict[str, Any]]) -> None:
        """Replay finished trials (``[{"parameter": ..., "value": ...}]``) so a resumed search continues.

        When the metric carries the parameters the trial really ran (``core.metrics.encode_report``),
        they replace the recorded ones, which NNI 3.0 can mismatch (microsoft/nni#5726).

        Into a fresh tuner whose output directory holds archive files (``nnictl resume``), the stored
        history is read back first, failed trials and their order included, with the stored reference
        point; the imported trials it already holds are not added twice. So the files after a resume start
        with the rows they had before it, and the hypervolume curve stays comparable.
        """
        fresh = not self.archive.records
        records: list[Record] = self._restore_history() if fresh else []
        unmatched: dict[str, list[Record]] = {}
        for r in records:
            if r.ok:
                unmatched.setdefault(r.key, []).append(r)
        imported = 0
        for item in data:
            if not isinstance(item, Mapping) or "parameter" not in item or "value" not in item:
                continue
            params = reported_parameters(item["value"]) or dict(item["parameter"] or {})
            known = unmatched.get(params_key(params))
            if known:  # already read back from the history file
                extra = decode_values(item["value"]) or {}
                known.pop(0).extra.update({k: v for k, v in extra.items() if isinstance(v, str) and k != ARCH_KEY})
                continue
            record = self._add_foreign(params, item["value"], None)
            if record is not None:
                records.append(record)
                imported += 1
                self._tell(record)
        logger.info("%s: imported %d finished trials (%d read back from the archive files)", type(self).__name__,
                    imported, sum(r.restored for r in records))
        if records:
            self._after_import(records, fresh)
        self.write_files()

    def _restore_history(self) -> list[Record]:
        """On resume: the reference point and every row of the archive's own ``history.csv``."""
        if self.files is None or not self.files.exists():
            return []
        self._restore_reference()
        try:
            rows = self.files.read_history()
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("%s: cannot read back %s (%s); importing NNI's data only", type(self).__name__,
                           self.files.directory / "history.csv", exc)
            return []
        records = []
        for row in rows:
            if self.check_foreign_in_space and self.space is not None and not self.space.contains(row["parameters"]):
                continue
            record = replay_row(self.archive, row)
            records.append(record)
            self._tell(record)
        return records

    # ------------------------------------------------------------------ shared pieces
    def _add_foreign(self, params: dict[str, Any], value: Any, parameter_id: int | None) -> Record | None:
        if self.check_foreign_in_space and self.space is not None and not self.space.contains(params):
            logger.warning("%s: ignoring a result whose parameters do not fit the search space: %s",
                           type(self).__name__, params)
            return None
        return self.archive.add(params, self._with_known(params, value), parameter_id=parameter_id,
                                generation=self.generation)

    def _with_known(self, params: Mapping[str, Any], value: Any) -> Any:
        known = self._known_metrics(params)
        if not known:
            return value
        return {**(decode_values(value) or {}), **known}

    def _restore_reference(self) -> None:
        if self.files is None or self.archive.reference is not None or not self.files.exists():
            return
        try:
            meta = self.files.read_meta()
            ref = meta.get("reference_point")
            if ref and list(meta["objectives"]) == list(self.archive.objectives.keys):
                self.archive.restore_reference(ref, meta.get("reference_fixed_at"))
                logger.info("%s: hypervolume reference point restored from %s: %s", type(self).__name__,
                            self.files.directory / "archive.json", ref)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("%s: cannot restore the reference point (%s)", type(self).__name__, exc)

    def write_files(self) -> None:
        """Rewrite the archive files and the tuner's own (after every result: complete whenever it ends)."""
        if self.files is not None:
            self.files.write(self.archive, **self._meta())
        self._write_files()

    def _meta(self) -> dict[str, Any]:
        return {"tuner": type(self).__name__, "seed": self.seed}

    @staticmethod
    def metrics_of(value: Any) -> dict[str, float]:
        """A reported value as ``{canonical key: float}`` (see :func:`nni_ext.core.metrics.decode_report`)."""
        return decode_report(value)

    # ------------------------------------------------------------------ hooks
    def _on_search_space(self) -> None:
        """Called after the search space is (re)set."""

    def _ask(self, parameter_id: int) -> dict[str, Any]:
        raise NotImplementedError

    def _tell(self, record: Record) -> None:
        """Called for every finished record (``record.status``: succeeded or failed; ``record.dispatched``)."""

    def _known_metrics(self, params: Mapping[str, Any]) -> dict[str, float]:
        """Metrics the tuner computes exactly itself (e.g. a cost from a lookup table); they win over the report."""
        return {}

    def _after_import(self, records: list[Record], fresh: bool) -> None:
        """Called once after :meth:`import_data` replayed ``records`` (``fresh``: into a new tuner)."""

    def _write_files(self) -> None:
        """Write the tuner's own files (beside the archive's)."""


__all__ = ["BaseTuner", "Record", "Status", "accepted_class_args", "api_lock", "check_choice", "check_int",
           "check_mapping", "check_number", "flush_waiting_ends", "register_tuner", "registered_tuners",
           "tuner_output_dir"]
