"""Constraints on metrics (``{"flops": "<= 330e6"}``); they live in :mod:`nni_ext.core.constraints`."""
from .core.constraints import Constraint as Constraint
from .core.constraints import parse_constraint as parse_constraint
from .core.constraints import parse_constraints as parse_constraints

__all__ = ["Constraint", "parse_constraint", "parse_constraints"]
