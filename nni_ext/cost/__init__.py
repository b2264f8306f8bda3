"""Cost of a network: exact FLOPs (MACs)/params/activations, fast per-space lookup tables, tiny_ml, and latency.

The names load lazily (PEP 562), so a tuner can import :mod:`nni_ext.cost.tiny_ml` without loading torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {"ACTIVATION_LAYERS": "counting", "Cost": "counting", "count": "counting", "count_params": "counting",
          "Latency": "latency", "LatencyTable": "latency", "build_latency_table": "latency",
          "load_resolution_tables": "latency", "measure_latency": "latency", "ofa_layer_key": "latency",
          "CostTable": "table", "CNAS_SCRIPT": "tiny_ml", "EXACT_KEYS": "tiny_ml", "TinyML": "tiny_ml",
          "ExactCosts": "exact"}

if TYPE_CHECKING:
    from .counting import ACTIVATION_LAYERS as ACTIVATION_LAYERS
    from .counting import Cost as Cost
    from .counting import count as count
    from .counting import count_params as count_params
    from .exact import ExactCosts as ExactCosts
    from .latency import Latency as Latency
    from .latency import LatencyTable as LatencyTable
    from .latency import build_latency_table as build_latency_table
    from .latency import load_resolution_tables as load_resolution_tables
    from .latency import measure_latency as measure_latency
    from .latency import ofa_layer_key as ofa_layer_key
    from .table import CostTable as CostTable
    from .tiny_ml import CNAS_SCRIPT as CNAS_SCRIPT
    from .tiny_ml import EXACT_KEYS as EXACT_KEYS
    from .tiny_ml import TinyML as TinyML


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = sorted(_WHERE)
