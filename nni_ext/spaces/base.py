"""The search-space protocol: labelled choices, validation, NNI export and a cost decomposition.

A search space is a named set of choices (``label -> candidates``) plus a builder that turns one
choice per label (an *architecture*, the plain dict NNI hands a trial) into a standalone
``nn.Module``. It also splits any architecture into *cost units*: named pieces of the network
whose FLOPs and params add up to the whole, which lets :mod:`nni_ext.cost.table` answer the
cost of an architecture with a few dictionary look-ups.
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections import abc
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ..errors import ArchitectureError

Architecture = dict[str, Any]


def _short(values: Sequence[Any], limit: int = 12) -> str:
    shown = ", ".join(json.dumps(v) for v in values[:limit])
    return f"[{shown}{', …' if len(values) > limit else ''}]"


def _index_of(allowed: Sequence[Any], value: Any) -> int | None:
    """Position of ``value`` among ``allowed``; ``True`` does not match ``1`` nor ``"3"`` match ``3``."""
    for i, candidate in enumerate(allowed):
        if candidate == value and isinstance(candidate, bool) == isinstance(value, bool):
            return i
    return None


class SearchSpace(ABC):
    """Base class of every search space.

    Subclasses set :attr:`name`, implement :meth:`choices`, :meth:`build` and the three cost-unit
    hooks. Constructor keyword arguments must be JSON-serialisable and stored in :attr:`config`
    so that the space can be rebuilt and its cached cost tables keyed.
    """

    name: ClassVar[str] = ""
    #: input resolution (pixels, square) used when the caller gives none
    default_input_size: ClassVar[int] = 224

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = dict(config)

    # ----------------------------------------------------------------- choices
    @abstractmethod
    def choices(self) -> dict[str, list[Any]]:
        """Return ``label -> candidate values`` in a stable order."""

    @property
    def labels(self) -> list[str]:
        return list(self._validation_index()[0])

    def to_nni(self) -> dict[str, dict[str, Any]]:
        """The space as an NNI search-space dict (``{"label": {"_type": "choice", "_value": [...]}}``)."""
        return {label: {"_type": "choice", "_value": list(values)} for label, values in self.choices().items()}

    def fingerprint(self) -> str:
        """A short hash of the space's name, configuration and choices (keys cached cost tables)."""
        payload = json.dumps({"name": self.name, "config": self.config, "space": self.to_nni()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    # -------------------------------------------------------------- validation
    def validate(self, arch: Mapping[str, Any]) -> Architecture:
        """Check ``arch`` against the space and return it as a plain, canonical dict.

        Accepts NNI's ``{"_value": v, "_idx": i}`` wrapping of a choice. Raises
        :class:`~nni_ext.errors.ArchitectureError` naming the bad label and the allowed values.
        """
        if not isinstance(arch, abc.Mapping):
            raise ArchitectureError(
                f"an architecture must be a JSON object mapping labels to values, got {type(arch).__name__}")
        choices, index = self._validation_index()
        unknown = [label for label in arch if label not in choices]
        if unknown:
            raise ArchitectureError(
                f"unknown label {unknown[0]!r} for search space {self.name!r}; its labels are "
                f"{_short(list(choices), 6)} (see `nni-ext ss_gen {self.name}`)")
        result: Architecture = {}
        for label, allowed in choices.items():
            if label not in arch:
                raise ArchitectureError(
                    f"architecture is missing label {label!r}; allowed values: {_short(allowed)}")
            value = arch[label]
            if isinstance(value, dict) and "_value" in value:
                value = value["_value"]
            try:
                position = index[label].get((isinstance(value, bool), value))
            except TypeError:  # unhashable value: compare one by one
                position = _index_of(allowed, value)
            if position is None:
                raise ArchitectureError(
                    f"label {label!r} has value {json.dumps(value)}, which is not a candidate; "
                    f"allowed values: {_short(allowed)}")
            result[label] = allowed[position]
        return self.canonicalize(result)

    def _validation_index(self) -> tuple[dict[str, list[Any]], dict[str, dict[tuple[bool, Any], int]]]:
        """Choices and ``label -> {(is_bool, value): position}``, built once (spaces are immutable)."""
        cached = self.__dict__.get("_validation_cache")
        if cached is None:
            choices = self.choices()
            index: dict[str, dict[tuple[bool, Any], int]] = {}
            for label, allowed in choices.items():
                index[label] = {}
                for i, candidate in enumerate(allowed):
                    try:
                        index[label].setdefault((isinstance(candidate, bool), candidate), i)
                    except TypeError:  # unhashable candidate: validate() falls back to a scan
                        pass
            cached = self.__dict__["_validation_cache"] = (choices, index)
        return cached

    def canonicalize(self, arch: Architecture) -> Architecture:
        """Map architectures that build the same network to one dict (identity by default)."""
        return arch

    def sample(self, rng: np.random.Generator) -> Architecture:
        """Draw one architecture uniformly at random (one independent choice per label)."""
        return self.canonicalize({label: values[int(rng.integers(len(values)))]
                                  for label, values in self.choices().items()})

    # ------------------------------------------------------------ the network
    @abstractmethod
    def build(self, arch: Mapping[str, Any]) -> Any:
        """Return a standalone ``nn.Module`` for a (validated) architecture."""

    # ------------------------------------------------------------ cost units
    @abstractmethod
    def cost_units(self, arch: Mapping[str, Any], input_size: int) -> list[str]:
        """Names of the cost units the network of ``arch`` is made of at ``input_size``.

        The FLOPs and params of the network built by :meth:`build` must equal the sums over
        these units; ``tests/test_cost.py`` checks this for every registered space.
        """

    @abstractmethod
    def all_cost_units(self, input_size: int) -> list[str]:
        """Every cost unit any architecture of the space can use at ``input_size``."""

    @abstractmethod
    def build_cost_unit(self, unit: str, input_size: int) -> tuple[Any, tuple[int, ...]]:
        """The module of one cost unit and the shape of its input (batch 1)."""

    def latency_keys(self, arch: Mapping[str, Any], input_size: int) -> list[str]:
        """Keys of ``arch``'s layers in a per-layer latency table (default: ``<cost unit>@<size>px``).

        Spaces with published tables (OFA's) override this to produce those tables' keys.
        """
        return [f"{unit}@{input_size}px" for unit in self.cost_units(arch, input_size)]

    def all_latency_keys(self, input_size: int) -> dict[str, str]:
        """``latency key -> cost unit`` for every layer a latency table of this space needs."""
        return {f"{unit}@{input_size}px": unit for unit in self.all_cost_units(input_size)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"
