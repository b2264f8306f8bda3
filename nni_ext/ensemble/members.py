"""Ensemble members as population indices: ``model_07`` of the tables is member 7 of the population.

Shared by the OFA3Ensemble tuner (which hands out ``{"members": "[0, 3, 7]"}``) and the trial that
measures those ensembles (:mod:`nni_ext.trials.ofa3_ensemble_trial`).
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

#: the trial parameter that names an ensemble's members
PARAM = "members"


def member_index(name: str, position: int) -> int:
    """The population index of a table model: the number of ``model_07``, else its position in the tables."""
    m = re.fullmatch(r"model_(\d+)", name)
    return int(m.group(1)) if m else position


def parse_members(value: Any) -> list[int]:
    """Population indices from ``"[0, 3, 7]"``, ``"0,3,7"`` or a list; sorted, distinct, non-negative."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"members {text!r}: give population indices as '[0, 3, 7]' or '0,3,7'") from None
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"members {value!r}: give a non-empty list of population indices")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"members {list(value)!r}: {v!r} is not a population index (an integer >= 0)")
        out.append(int(v))
    if len(set(out)) != len(out):
        raise ValueError(f"members {out}: an index is repeated")
    return sorted(out)


__all__ = ["PARAM", "member_index", "parse_members"]
