"""CNAS's ``tiny_ml`` figure of merit and its limits (torch-free: tuners validate their classArgs with it).

``tiny_ml`` (CBNAS/CNAS, ``utils.py get_net_info``) weighs parameters ``P``, MACs ``M`` and activations ``A``,
all in millions, with a static penalty above each limit::

    tiny_ml = wp·(P + pen·max(0, P − pmax)) + wm·(M + pen·max(0, M − mmax)) + wa·(A + pen·max(0, A − amax))

Defaults are CNAS's (pmax 2.0, mmax 1e10, amax 5.0, wp 1, wm 1/40, wa 1, pen 1e10); its tiny-ML search script
uses pmax 2.2, mmax 7, amax 0.3, wp = wm = wa = 1 (:data:`CNAS_SCRIPT`). CNAS rounds P, M and A to two
decimals first; we do not (the score is then exact and continuous in the costs).

A tuner with an nni_ext space computes the keys of :data:`EXACT_KEYS` exactly with
:class:`nni_ext.cost.exact.ExactCosts`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..core.tuner import check_mapping, check_number

#: metric keys a tuner with a space computes exactly from the cost tables
EXACT_KEYS: tuple[str, ...] = ("flops", "params", "activations", "peak_activation_bytes", "tiny_ml")


@dataclass(frozen=True)
class TinyML:
    """Parameters of ``tiny_ml``: limits (millions) ``pmax``/``mmax``/``amax``, weights ``wp``/``wm``/``wa``, ``pen``.

    Example:
        >>> tiny = TinyML.from_mapping({"pmax": 2.2, "mmax": 7, "amax": 0.3, "wm": 1})
        >>> tiny.score(params=2_000_000, macs=5_000_000, activations=250_000)
        7.25
    """

    pmax: float = 2.0
    mmax: float = 1e10
    amax: float = 5.0
    wp: float = 1.0
    wm: float = 1.0 / 40
    wa: float = 1.0
    pen: float = 1e10

    @classmethod
    def from_mapping(cls, value: Any, name: str = "tiny_ml") -> TinyML:
        """Parameters from a classArg mapping (``None``: the defaults); ``ValueError`` naming a bad key or value."""
        given = check_mapping(name, value) or {}
        known = list(asdict(cls()))
        unknown = sorted(str(k) for k in set(given) - set(known))
        if unknown:
            raise ValueError(f"{name} has no key {', '.join(map(repr, unknown))}; its keys are {', '.join(known)}")
        checked = {k: check_number(f"{name}.{k}", v, 0.0) for k, v in given.items()}
        return cls(**checked)  # type: ignore[arg-type]

    def score(self, params: float, macs: float, activations: float) -> float:
        """``tiny_ml`` of a network of ``params`` parameters, ``macs`` MACs, ``activations`` elements (raw counts)."""
        p, m, a = params / 1e6, macs / 1e6, activations / 1e6
        return (self.wp * (p + self.pen * max(0.0, p - self.pmax)) + self.wm * (m + self.pen * max(0.0, m - self.mmax))
                + self.wa * (a + self.pen * max(0.0, a - self.amax)))

    def feasible(self, params: float, macs: float, activations: float) -> bool:
        """Whether no limit is exceeded (no penalty term is active)."""
        return params / 1e6 <= self.pmax and macs / 1e6 <= self.mmax and activations / 1e6 <= self.amax

    def as_constraints(self) -> dict[str, str]:
        """The limits as true constraints in raw units (``{params: "<= 2.2e6", ...}``) for a tuner's ``constraints``.

        A limit of 1e10 million or more (CNAS's "no limit" for MACs) is left out.
        """
        limits = {"params": self.pmax, "flops": self.mmax, "activations": self.amax}
        return {k: f"<= {v * 1e6:g}" for k, v in limits.items() if v < 1e10}


#: the limits and weights of CNAS's tiny-ML search script (``search_mbv3_tinyml.sh``)
CNAS_SCRIPT = TinyML(pmax=2.2, mmax=7.0, amax=0.3, wp=1.0, wm=1.0, wa=1.0)


def check_exact_cost_args(space: Any, tiny_ml: Any, latency_table: Any) -> TinyML:
    """A tuner's ``tiny_ml`` and ``latency_table`` classArgs, which come from a ``space``'s tables.

    Returns the :class:`TinyML` parameters (CNAS's defaults when ``tiny_ml`` is left out); one clear
    ``ValueError`` for a bad value or either argument without ``space``.
    """
    parsed = TinyML.from_mapping(tiny_ml)
    if tiny_ml is not None and space is None:
        raise ValueError("tiny_ml is computed from a space's cost tables: give space (e.g. space: ofa-mbv3) "
                         "or leave tiny_ml out")
    if latency_table is not None:
        if not isinstance(latency_table, str) or not latency_table:
            raise ValueError(f"latency_table={latency_table!r} must be the path of a latency table or of a folder "
                             "of '<resolution>_lookup_table.yaml' files")
        if space is None:
            raise ValueError("latency_table sums per-layer latencies of a space's layers: give space (e.g. space: "
                             "ofa-mbv3) or leave latency_table out")
    return parsed
