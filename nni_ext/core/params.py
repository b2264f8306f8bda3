"""NNI search spaces for tuners: parse every ``_type``, sample, and map to/from numeric vectors.

Handles ``choice``, ``randint``, ``uniform``, ``quniform``, ``loguniform``, ``qloguniform``,
``normal``, ``qnormal``, ``lognormal`` and ``qlognormal`` with NNI's semantics. ``encode`` maps a
parameter dict to a float vector (choice -> index, log types -> log value) and ``decode`` maps any
vector back into the space, rounding and clipping so that integers stay integers and choice
indices stay valid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

SUPPORTED_TYPES = ("choice", "randint", "uniform", "quniform", "loguniform", "qloguniform",
                   "normal", "qnormal", "lognormal", "qlognormal")


def _clip(v: Any, low: Any, high: Any) -> Any:
    """Scalar clip (``np.clip`` costs microseconds per call on Python scalars)."""
    return low if v < low else high if v > high else v


@dataclass(frozen=True)
class Parameter:
    """One entry of an NNI search space."""

    name: str
    type: str
    args: tuple[Any, ...]

    @property
    def is_categorical(self) -> bool:
        return self.type == "choice"

    @property
    def is_log(self) -> bool:
        return "log" in self.type

    @property
    def q(self) -> float | None:
        return float(self.args[-1]) if self.type.startswith("q") else None

    @property
    def bounds(self) -> tuple[float, float]:
        """Encoded (vector-space) bounds; normal types use mu ± 3 sigma."""
        if self.type == "choice":
            return 0.0, float(len(self.args) - 1)
        if self.type == "randint":
            return float(self.args[0]), float(self.args[1] - 1)
        if self.type.endswith("normal"):
            mu, sigma = float(self.args[0]), float(self.args[1])
            return mu - 3 * sigma, mu + 3 * sigma
        low, high = float(self.args[0]), float(self.args[1])
        return (math.log(low), math.log(high)) if self.is_log else (low, high)

    def sample(self, rng: np.random.Generator) -> Any:
        if self.type == "choice":
            return self.args[int(rng.integers(len(self.args)))]
        if self.type == "randint":
            return int(rng.integers(self.args[0], self.args[1]))
        if self.type.endswith("normal"):
            x = float(rng.normal(self.args[0], self.args[1]))
        else:
            low, high = self.bounds
            x = float(rng.uniform(low, high))
        return self.from_encoded(x)

    def to_encoded(self, value: Any) -> float:
        if self.type == "choice":
            return float(self.args.index(value))
        v = float(value)
        return math.log(v) if self.is_log else v

    def from_encoded(self, x: float) -> Any:
        if self.type == "choice":
            return self.args[_clip(round(x), 0, len(self.args) - 1)]
        if self.type == "randint":
            return int(_clip(round(x), self.args[0], self.args[1] - 1))
        v = math.exp(x) if self.is_log else x
        if self.q is not None:
            v = round(v / self.q) * self.q
        if not self.type.endswith("normal"):
            v = float(_clip(v, float(self.args[0]), float(self.args[1])))
        return v


def _check(name: str, spec: Any) -> Parameter:
    if not isinstance(spec, Mapping) or "_type" not in spec or "_value" not in spec:
        raise ValueError(f"search space parameter {name!r} must be {{'_type': ..., '_value': [...]}}, got {spec!r}")
    kind, value = spec["_type"], spec["_value"]
    if kind not in SUPPORTED_TYPES:
        raise ValueError(f"search space parameter {name!r} has _type {kind!r}; supported: {', '.join(SUPPORTED_TYPES)}")
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"search space parameter {name!r}: _value must be a non-empty list, got {value!r}")
    if kind == "choice":
        if any(isinstance(v, Mapping) and "_name" in v for v in value):
            raise ValueError(f"search space parameter {name!r}: nested choices are not supported; flatten the space")
    else:
        need = 3 if kind.startswith("q") else 2
        if len(value) != need or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ValueError(f"search space parameter {name!r} ({kind}) needs {need} numbers, got {value!r}")
        if kind in ("randint", "uniform", "quniform", "loguniform", "qloguniform") and not value[0] < value[1]:
            raise ValueError(f"search space parameter {name!r}: lower bound {value[0]} must be below {value[1]}")
        if "loguniform" in kind and value[0] <= 0:
            raise ValueError(f"search space parameter {name!r}: {kind} needs a positive lower bound, got {value[0]}")
    return Parameter(name, kind, tuple(value))


class ParameterSpace:
    """A parsed NNI search space.

    Example:
        >>> space = ParameterSpace({"lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
        ...                         "op": {"_type": "choice", "_value": ["conv", "pool"]}})
        >>> params = space.sample(np.random.default_rng(0))
        >>> space.decode(space.encode(params)) == params
        True
    """

    def __init__(self, search_space: Mapping[str, Any]) -> None:
        if not isinstance(search_space, Mapping) or not search_space:
            raise ValueError("the search space must be a non-empty JSON object of parameters")
        self.parameters = [_check(name, spec) for name, spec in search_space.items()]
        self.names = [p.name for p in self.parameters]

    def __len__(self) -> int:
        return len(self.parameters)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {p.name: p.sample(rng) for p in self.parameters}

    def encode(self, params: Mapping[str, Any]) -> np.ndarray:
        return np.array([p.to_encoded(params[p.name]) for p in self.parameters], dtype=float)

    def decode(self, x: np.ndarray) -> dict[str, Any]:
        return {p.name: p.from_encoded(float(v)) for p, v in zip(self.parameters, x)}

    @property
    def bounds(self) -> np.ndarray:
        """``(n, 2)`` array of encoded lower/upper bounds."""
        return np.array([p.bounds for p in self.parameters], dtype=float)

    def contains(self, params: Mapping[str, Any]) -> bool:
        """True when ``params`` has exactly the space's names and every value is valid."""
        if set(params) != set(self.names):
            return False
        for p in self.parameters:
            v = params[p.name]
            if p.type == "choice":
                if v not in p.args:
                    return False
            elif p.type == "randint":
                if not (isinstance(v, int) and p.args[0] <= v < p.args[1]):
                    return False
            elif not p.type.endswith("normal") and not float(p.args[0]) <= float(v) <= float(p.args[1]):
                return False
        return True
