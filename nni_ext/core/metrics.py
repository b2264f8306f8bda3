"""The metric vocabulary of nni-ext and the one encoder/decoder of a trial's report.

Every trial reports one final dict to NNI: ``default`` (what NNI's web UI plots) plus every objective,
under the keys of :data:`VOCABULARY`, with units in the name where there is one (``latency_ms``). Older
or foreign names (``latency``, ``top1``) are accepted on read and mapped to their key by :func:`canonical`.

* :func:`encode_report` builds the dict a trial hands to ``nni.report_final_result`` (keys made canonical,
  the parameters the trial really ran under :data:`ARCH_KEY`);
* :func:`decode_metric` undoes NNI's JSON wrapping of a stored or received metric;
* :func:`decode_report` turns whatever a trial reported into ``{key: float}`` (canonical keys, NaN for a
  missing ``default``) — what tuners, ``nni-ext report`` and the experiment reader all read;
* :func:`reported_parameters` gives back the parameters a trial reported with its metric.

Example:
    >>> decode_report('{"default": 0.9, "latency": 12.5, "genotype": "x"}')
    {'default': 0.9, 'latency_ms': 12.5}
    >>> canonical("top1")
    'default'
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

#: metric key under which trials report the parameters they really ran (a JSON string)
ARCH_KEY = "architecture"


@dataclass(frozen=True)
class Metric:
    """One metric key: its unit, the sense in which it is better, what it means and other names for it."""

    key: str
    unit: str
    sense: str  # "maximize" | "minimize"
    description: str
    aliases: tuple[str, ...] = ()


VOCABULARY: dict[str, Metric] = {m.key: m for m in (
    Metric("default", "fraction", "maximize", "the trial's main result, by convention top-1 accuracy in [0, 1]",
           ("top1", "accuracy")),
    Metric("top5", "fraction", "maximize", "top-5 accuracy in [0, 1]"),
    Metric("flops", "MACs", "minimize", "multiply-accumulates of one forward pass at batch 1 (the NAS papers' "
           "'FLOPs')", ("macs",)),
    Metric("params", "count", "minimize", "number of parameters", ("num_params",)),
    Metric("latency_ms", "ms", "minimize", "latency of one forward pass at batch 1 (measured or from a table)",
           ("latency",)),
    Metric("latency_max", "ms", "minimize", "latency of an ensemble whose members run in parallel (the slowest)"),
    Metric("latency_sum", "ms", "minimize", "latency of an ensemble whose members run one after another"),
    Metric("reg_loss", "loss", "minimize", "the regulariser R of a MOOD-NAS search"),
    Metric("criterion_loss", "loss", "minimize", "the cross-entropy of a MOOD-NAS search"),
    Metric("activations", "count", "minimize", "sum of output-tensor elements at batch 1 over Conv2d, Linear, "
           "BatchNorm2d, pooling and Flatten layers (CNAS's definition)"),
    Metric("peak_activation_bytes", "bytes", "minimize", "largest input+output working set of any one layer at "
           "batch 1 (what bounds SRAM on a microcontroller)"),
    Metric("tiny_ml", "score", "minimize", "CNAS's tiny-device figure of merit: weighted params, MACs and "
           "activations with penalties above their limits"),
    Metric("avg_macs", "MACs", "minimize", "expected MACs of an early-exit network: sum over exits of the share "
           "of images leaving there times the backbone and exit-head MACs up to it"),
    Metric("robustness", "fraction", "minimize", "mean |acc(w) - acc(w + sigma w z)| over draws of multiplicative "
           "Gaussian weight noise (FlatNAS)"),
    Metric("top1_robust", "score", "minimize", "FlatNAS's alpha*err + alpha_norm*(1-alpha)*robustness, derived by "
           "the tuner over its archive"),
)}

_ALIASES: dict[str, str] = {alias: m.key for m in VOCABULARY.values() for alias in m.aliases}

#: keys that are cost objectives (minimised) whenever every finished trial reports them
COST_KEYS: tuple[str, ...] = ("flops", "params", "latency_ms", "latency_max", "latency_sum", "activations",
                               "peak_activation_bytes", "avg_macs")


def canonical(key: str) -> str:
    """The vocabulary's name for ``key`` (an alias mapped to its key; unknown keys are kept as they are)."""
    return _ALIASES.get(key, key)


def default_sense(key: str) -> str | None:
    """``"maximize"``/``"minimize"`` for a vocabulary key (or alias), ``None`` for a key it does not know."""
    metric = VOCABULARY.get(canonical(key))
    return metric.sense if metric else None


def is_number(value: Any) -> bool:
    """A real number (``bool`` excluded), finite or not."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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


def decode_report(value: Any) -> dict[str, float]:
    """A reported final result as ``{canonical key: float}``; a bare number becomes ``{"default": x}``.

    Non-numeric entries (a genotype string, the architecture) are dropped; a missing or non-numeric
    ``default`` becomes NaN so the caller can treat the trial as failed. Where a key and its alias are
    both reported, the key wins.
    """
    value = decode_metric(value)
    if isinstance(value, Mapping):
        out: dict[str, float] = {}
        for key, v in value.items():
            if is_number(v):
                name = canonical(str(key))
                if name not in out or name == key:
                    out[name] = float(v)
        out.setdefault("default", math.nan)
        return out
    if is_number(value):
        return {"default": float(value)}
    return {"default": math.nan}


def decode_values(value: Any) -> dict[str, Any] | None:
    """A reported final result as a dict with canonical keys, non-numeric entries kept (``None`` if nothing)."""
    value = decode_metric(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, v in value.items():
            name = canonical(str(key))
            if name not in out or name == key:
                out[name] = v
        return out
    if value is None:
        return None
    return {"default": value}


def reported_parameters(value: Any) -> dict[str, Any] | None:
    """The parameters a trial reported with its metric (under :data:`ARCH_KEY`), or ``None``."""
    value = decode_metric(value)
    text = value.get(ARCH_KEY) if isinstance(value, Mapping) else None
    try:
        params = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return params if isinstance(params, dict) else None


def encode_report(metrics: Mapping[str, Any], parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The final-result dict a trial reports: canonical keys, plus its parameters under :data:`ARCH_KEY`.

    NNI 3.0's local service can start a trial with another trial's parameters and then exports (for
    ``nnictl resume``) the parameters it *recorded* beside the metric (microsoft/nni#5726); readers trust
    :data:`ARCH_KEY` over the recorded parameters.
    """
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = canonical(str(key))
        if name not in out or name == key:
            out[name] = value
    if parameters is not None:
        out[ARCH_KEY] = json.dumps(dict(parameters), sort_keys=True)
    return out


def describe(key: str) -> str:
    """``"latency_ms (ms, minimize)"``: a key with its unit and sense, for plots and tables."""
    metric = VOCABULARY.get(canonical(key))
    return f"{key} ({metric.unit}, {metric.sense})" if metric else key
