"""One base for every nni_ext tuner: NNI's Tuner interface implemented once, small hooks for subclasses.

``BaseTuner`` parses the search space, owns the seeded random generator, normalises metric
values (a number or a dict with ``default``) and routes imported data (``nnictl resume`` /
``experiment import``) through the same ``_tell`` hook as live results.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import numpy as np
from nni.tuner import Tuner

from .params import ParameterSpace

logger = logging.getLogger(__name__)

_TUNERS: dict[str, type["BaseTuner"]] = {}
T = TypeVar("T", bound=type)


def register_tuner(name: str) -> Callable[[T], T]:
    """Class decorator: make a tuner known to ``nni-ext register`` under ``name``."""

    def decorator(cls: T) -> T:
        _TUNERS[name] = cls  # type: ignore[assignment]
        return cls

    return decorator


def registered_tuners() -> dict[str, type["BaseTuner"]]:
    """``name -> class`` of every tuner of the package."""
    return dict(_TUNERS)


def normalize_metrics(value: Any) -> dict[str, float]:
    """Turn a reported final result into ``{key: float}``; a bare number becomes ``{"default": x}``.

    Non-numeric entries (e.g. a genotype string) are dropped; missing or non-finite values
    become NaN so the caller can treat the trial as failed.
    """
    value = decode_metric(value)
    if isinstance(value, Mapping):
        out = {}
        for key, v in value.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[str(key)] = float(v)
        out.setdefault("default", math.nan)
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"default": float(value)}
    return {"default": math.nan}


def tuner_output_dir(output_dir: str | None, name: str) -> Path | None:
    """Where a tuner keeps its files: ``output_dir`` if given, else ``<experiment dir>/<name>`` under nnictl
    (NNI 3.0 runs the dispatcher with ``NNI_LOG_DIRECTORY=<experiment dir>/log``), else nowhere (``None``)."""
    if output_dir:
        return Path(output_dir)
    log_dir = os.environ.get("NNI_LOG_DIRECTORY")
    return Path(log_dir).parent / name if log_dir else None


def decode_metric(value: Any) -> Any:
    """A metric as NNI hands it over or stores it: the value itself, or JSON-encoded once or twice."""
    for _ in range(2):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value


def reported_parameters(value: Any) -> dict[str, Any] | None:
    """The parameters a trial reported with its metric (under ``"architecture"``), or ``None``."""
    value = decode_metric(value)
    text = value.get("architecture") if isinstance(value, Mapping) else None
    try:
        params = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return params if isinstance(params, dict) else None


class BaseTuner(Tuner):
    """Base class: implements ``update_search_space``/``generate_parameters``/``receive_trial_result``.

    Subclasses implement :meth:`_ask` (propose one parameter dict) and may override
    :meth:`_tell` (record a result) and :meth:`_on_search_space`.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**31))
            logger.info("%s: no seed given, drew seed=%d", type(self).__name__, seed)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed={seed!r} must be an integer")
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.space: ParameterSpace | None = None
        self.issued: dict[int, dict[str, Any]] = {}
        self.results: list[tuple[dict[str, Any], dict[str, float]]] = []

    # ------------------------------------------------------------ NNI API
    def update_search_space(self, search_space: Mapping[str, Any]) -> None:
        self.space = ParameterSpace(search_space)
        self._on_search_space()

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if self.space is None:
            raise RuntimeError("the search space has not been set; give searchSpaceFile in the experiment config")
        params = self._ask(parameter_id)
        self.issued[parameter_id] = params
        return params

    def receive_trial_result(self, parameter_id: int, parameters: Mapping[str, Any], value: Any,
                             **kwargs: Any) -> None:
        self._tell(dict(parameters), normalize_metrics(value))

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        self.issued.pop(parameter_id, None)

    def import_data(self, data: list[dict[str, Any]]) -> None:
        """Replay finished trials (``[{"parameter": ..., "value": ...}]``) so a resumed search continues.

        When the metric carries the parameters the trial really ran (``nni_ext.trial.report_final``),
        they replace the recorded ones, which NNI 3.0 can mismatch (microsoft/nni#5726).
        """
        count = 0
        for record in data:
            if "parameter" not in record or "value" not in record:
                continue
            self._tell(reported_parameters(record["value"]) or dict(record["parameter"]),
                       normalize_metrics(record["value"]))
            count += 1
        logger.info("%s: imported %d finished trials", type(self).__name__, count)

    # -------------------------------------------------------------- hooks
    def _on_search_space(self) -> None:
        """Called after the search space is (re)set."""

    def _ask(self, parameter_id: int) -> dict[str, Any]:
        raise NotImplementedError

    def _tell(self, parameters: dict[str, Any], metrics: dict[str, float]) -> None:
        self.results.append((parameters, metrics))
