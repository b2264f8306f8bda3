"""Builders shared by the OFA³ tests (tables, tuner, end to end); the fixtures wrapping them are in conftest.py."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .conftest import run_cli


def init_ofa_supernet(path: Path) -> Path:
    """A randomly initialised OFA MobileNetV3 w1.2 supernet for 10 classes, written by the CLI (seed 0)."""
    proc = run_cli("ofa2", "init-supernet", "--num-classes", "10", "--out", str(path), "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    return path


def ofa_population(path: Path, n: int = 3, *, seed: int = 3, largest: bool = True) -> list[dict[str, Any]]:
    """``n`` OFA sub-networks at 32 px (the smallest, random ones, the largest unless ``largest=False``: the
    slowest to run), written to ``path`` in OFA²'s ``result.json`` layout; returns their NNI label dicts."""
    from nni_ext.spaces.ofa_mbv3 import OfaMbv3Space, to_ofa

    space = OfaMbv3Space(num_classes=10, resolutions=[32])
    rng = np.random.default_rng(seed)
    archs = [space.smallest(), *(space.sample(rng) for _ in range(n - 1 - largest))]
    archs += [space.largest()] if largest else []
    path.write_text(json.dumps({"algorithm": "nsga2", "networks": [{"rank": i, "ofa": to_ofa(a), "nni": a}
                                                                   for i, a in enumerate(archs)]}))
    return archs


def search_subset(digits_root: Path, out: Path, per_class: int = 4) -> Path:
    """The search subset of the digits: ``per_class`` images per class in val/, the rest of train in train/."""
    from nni_ext.cli import main

    assert main(["data", "subset", str(digits_root), str(out), "--per-class", str(per_class), "--holdout"]) == 0
    return out
