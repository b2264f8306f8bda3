"""Cost of a network: exact FLOPs (MACs)/params, fast per-space lookup tables, and latency."""
from __future__ import annotations

from .counting import Cost as Cost
from .counting import count as count
from .counting import count_params as count_params
from .latency import Latency as Latency
from .latency import LatencyTable as LatencyTable
from .latency import build_latency_table as build_latency_table
from .latency import load_resolution_tables as load_resolution_tables
from .latency import measure_latency as measure_latency
from .latency import ofa_layer_key as ofa_layer_key
from .table import CostTable as CostTable

__all__ = ["Cost", "CostTable", "Latency", "LatencyTable", "build_latency_table", "count", "count_params",
           "load_resolution_tables", "measure_latency", "ofa_layer_key"]
