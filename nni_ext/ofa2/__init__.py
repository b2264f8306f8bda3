"""OFA²: predictor-driven multi-objective search of the Once-for-All MobileNetV3 space (accuracy vs efficiency)."""
from __future__ import annotations

from .efficiency import FlopsModel as FlopsModel
from .efficiency import LatencyModel as LatencyModel
from .predictor import AccuracyPredictor as AccuracyPredictor
from .predictor import fit_predictor as fit_predictor
from .search import SearchResult as SearchResult
from .search import compare_algorithms as compare_algorithms
from .search import run_search as run_search
from .supernet import load_supernet as load_supernet

__all__ = ["AccuracyPredictor", "FlopsModel", "LatencyModel", "SearchResult", "compare_algorithms",
           "fit_predictor", "load_supernet", "run_search"]
