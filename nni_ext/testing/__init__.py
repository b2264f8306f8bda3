"""Helpers for testing and benchmarking tuners without starting nnictl (the real experiments are in tests/)."""
from .dispatcher import simulate as simulate

__all__ = ["simulate"]
