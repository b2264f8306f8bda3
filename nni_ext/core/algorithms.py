"""The one ``name -> pymoo algorithm`` catalogue of nni-ext.

Every search that runs a pymoo algorithm by name (the OFA² search, the OFA³ ensemble selection, the
multi-objective tuners) looks the name up here, so they accept the same names, give the same error
for an unknown one and set up the algorithms the same way:

========  ==========  ===============================================
name      algorithm   pymoo class
========  ==========  ===============================================
nsga2     NSGA-II     ``pymoo.algorithms.moo.nsga2:NSGA2``
smsemoa   SMS-EMOA    ``pymoo.algorithms.moo.sms:SMSEMOA``
spea2     SPEA2       ``pymoo.algorithms.moo.spea2:SPEA2``
nsga3     NSGA-III    ``pymoo.algorithms.moo.nsga3:NSGA3``
agemoea   AGE-MOEA    ``pymoo.algorithms.moo.age:AGEMOEA`` (needs numba)
========  ==========  ===============================================

Names are case-insensitive and may be spelled as the papers do (``NSGA-II``, ``SMS-EMOA``, ``AGE-MOEA``).
:func:`make_algorithm` passes the caller's operators (``sampling``, ``crossover``, ``mutation``,
``repair``, ``eliminate_duplicates``, ``selection`` ...) through to the class; NSGA-III also gets one
reference direction per individual (:func:`reference_directions`). pymoo is imported only when an
algorithm is built, so listing or checking names costs nothing.

This module imports nothing else of nni-ext (only the standard library, numpy and pymoo).

Example:
    >>> algorithm_names()
    ('nsga2', 'smsemoa', 'spea2', 'nsga3', 'agemoea')
    >>> canonical_algorithm("NSGA-II")
    'nsga2'
    >>> type(make_algorithm("nsga3", pop_size=12, n_obj=3)).__name__
    'NSGA3'
"""
from __future__ import annotations

import importlib
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AlgorithmSpec", "algorithm_names", "algorithm_spec", "canonical_algorithm", "make_algorithm",
           "reference_directions"]


@dataclass(frozen=True)
class AlgorithmSpec:
    """One catalogue entry: its name, the pymoo class and what the class does by default."""

    #: catalogue name (lower case)
    name: str
    #: the algorithm's usual spelling, e.g. ``NSGA-II``
    title: str
    #: the pymoo class as ``module:Class``
    target: str
    #: pymoo's default parent selection: ``binary_tournament`` is NSGA-II's (constraint violation, then
    #: dominance or rank, then crowding distance), the one ``nni_ext.pymoo_tools.fast_binary_tournament``
    #: reproduces; ``cv_then_random`` (NSGA-III), ``cv_and_dom_tournament`` (SMS-EMOA) and
    #: ``spea_binary_tournament`` (SPEA2) are others
    selection: str
    #: whether the class needs reference directions (one per individual here)
    reference_directions: bool = False
    #: an extra package the class needs, if any
    requires: str | None = None

    def load(self) -> type:
        """The pymoo class (imported on first use)."""
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # pymoo's age.py raises a plain Exception when numba is missing
            hint = f"; install {self.requires} (pip install {self.requires})" if self.requires else ""
            raise ImportError(f"algorithm {self.name!r} ({self.title}) cannot be loaded: {exc}{hint}") from exc
        return getattr(module, attr)


_CATALOGUE: dict[str, AlgorithmSpec] = {spec.name: spec for spec in (
    AlgorithmSpec("nsga2", "NSGA-II", "pymoo.algorithms.moo.nsga2:NSGA2", "binary_tournament"),
    AlgorithmSpec("smsemoa", "SMS-EMOA", "pymoo.algorithms.moo.sms:SMSEMOA", "cv_and_dom_tournament"),
    AlgorithmSpec("spea2", "SPEA2", "pymoo.algorithms.moo.spea2:SPEA2", "spea_binary_tournament"),
    AlgorithmSpec("nsga3", "NSGA-III", "pymoo.algorithms.moo.nsga3:NSGA3", "cv_then_random",
                  reference_directions=True),
    AlgorithmSpec("agemoea", "AGE-MOEA", "pymoo.algorithms.moo.age:AGEMOEA", "binary_tournament",
                  requires="numba"),
)}
#: other spellings, after lower-casing and dropping ``-``, ``_`` and spaces
_ALIASES = {"nsgaii": "nsga2", "nsgaiii": "nsga3", "sms": "smsemoa", "age": "agemoea"}


def algorithm_names() -> tuple[str, ...]:
    """The catalogue's names, in a fixed order (the first is the default of every search)."""
    return tuple(_CATALOGUE)


def canonical_algorithm(name: str) -> str:
    """The catalogue name of ``name`` (``"NSGA2"``, ``"nsga-ii"`` -> ``"nsga2"``); ``ValueError`` if unknown."""
    key = name.lower().replace("-", "").replace("_", "").replace(" ", "") if isinstance(name, str) else None
    key = _ALIASES.get(key, key) if key is not None else None
    if key not in _CATALOGUE:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(_CATALOGUE)}")
    return key


def algorithm_spec(name: str) -> AlgorithmSpec:
    """The catalogue entry of ``name`` (any accepted spelling); ``ValueError`` if unknown."""
    return _CATALOGUE[canonical_algorithm(name)]


def _check_int(value: Any, argument: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{argument}={value!r} must be an integer of at least {minimum}")
    return int(value)


def _das_dennis_partitions(n_obj: int, n_points: int) -> int | None:
    """The Das-Dennis partition count giving exactly ``n_points`` directions in ``n_obj`` dimensions, if any."""
    p = 0
    while (count := math.comb(p + n_obj - 1, n_obj - 1)) <= n_points:
        if count == n_points:
            return p
        p += 1
    return None


def reference_directions(n_obj: int, n_points: int, *, seed: int | None = None) -> np.ndarray:
    """``(n_points, n_obj)`` reference directions on the unit simplex, exactly ``n_points`` of them.

    Das-Dennis's uniform lattice where one has exactly ``n_points`` directions (always for two objectives,
    also for 3 objectives and 91 points, ...; deterministic and instant), else Riesz s-energy directions
    (pymoo's ``energy``, started from ``seed``, default 1). One objective: the single direction ``[[1]]``
    whatever ``n_points`` (NSGA-III then keeps the best ``pop_size`` individuals, as a plain GA would).
    """
    n_obj = _check_int(n_obj, "n_obj", 1)
    n_points = _check_int(n_points, "n_points", 1)
    if n_obj == 1:
        return np.ones((1, 1))
    from pymoo.util.ref_dirs import get_reference_directions

    partitions = _das_dennis_partitions(n_obj, n_points)
    if partitions is not None:
        return get_reference_directions("das-dennis", n_obj, n_partitions=partitions)
    from pymoo.util.ref_dirs.energy import RieszEnergyReferenceDirectionFactory

    seed = 1 if seed is None else int(seed)
    factory = RieszEnergyReferenceDirectionFactory(n_obj, n_points, seed=seed)  # pymoo 0.6.1 reads it here
    try:
        return factory.do(seed=seed)  # pymoo >= 0.6.2: the seed goes to do()
    except TypeError:  # pymoo 0.6.1: do() takes no seed
        return factory.do()


def make_algorithm(name: str, *, pop_size: int, n_obj: int, n_offsprings: int | None = None,
                   seed: int | None = None, **operators: Any) -> Any:
    """Build the catalogue's pymoo algorithm ``name`` with the caller's operators.

    Args:
        name: a catalogue name (:func:`algorithm_names`), any case or the papers' spelling.
        pop_size: population size, an integer of at least 2.
        n_obj: the problem's number of objectives (NSGA-III's reference directions need it).
        n_offsprings: offspring per generation (pymoo's default, ``pop_size``, when ``None``).
        seed: the algorithm's seed (``minimize(..., seed=...)`` overrides it) and the seed of NSGA-III's
            energy reference directions.
        operators: passed to the class as they are: ``sampling``, ``crossover``, ``mutation``, ``repair``,
            ``eliminate_duplicates``, ``selection``, ... (``ref_dirs`` replaces NSGA-III's own).

    Raises:
        ValueError: an unknown name, or a bad ``pop_size``, ``n_obj`` or ``n_offsprings``.
        ImportError: the algorithm needs a package that is not installed (AGE-MOEA: numba).
    """
    spec = algorithm_spec(name)
    pop_size = _check_int(pop_size, "pop_size", 2)
    n_obj = _check_int(n_obj, "n_obj", 1)
    kwargs = dict(operators)
    if n_offsprings is not None:
        kwargs["n_offsprings"] = _check_int(n_offsprings, "n_offsprings", 1)
    if seed is not None:
        kwargs["seed"] = int(seed)
    if spec.reference_directions and kwargs.get("ref_dirs") is None:
        kwargs["ref_dirs"] = reference_directions(n_obj, pop_size, seed=seed)
    return spec.load()(pop_size=pop_size, **kwargs)
