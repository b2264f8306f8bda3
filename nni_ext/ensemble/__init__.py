"""OFA³: top-k prediction tables of a population, sparse soft-voting ensemble scoring and ensemble selection."""
from __future__ import annotations

from .members import member_index as member_index
from .members import parse_members as parse_members
from .scoring import SoftVotingScorer as SoftVotingScorer
from .scoring import dense_accuracy as dense_accuracy
from .scoring import ensemble_latency as ensemble_latency
from .selection import SelectionResult as SelectionResult
from .selection import select_ensembles as select_ensembles
from .tables import TopKTables as TopKTables
from .tables import read_latency as read_latency
from .tables import read_tables as read_tables
from .tables import synthetic_latency as synthetic_latency
from .tables import synthetic_tables as synthetic_tables
from .tables import write_latency as write_latency
from .tables import write_tables as write_tables

__all__ = ["SelectionResult", "SoftVotingScorer", "TopKTables", "dense_accuracy", "ensemble_latency",
           "member_index", "parse_members", "read_latency", "read_tables", "select_ensembles", "synthetic_latency",
           "synthetic_tables", "write_latency", "write_tables"]
