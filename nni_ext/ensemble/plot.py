"""Accuracy vs latency plot of OFA³: single models (the OFA² front), selected ensembles, optional extra points."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

from .._io import atomic_write
from ..errors import DataError

_ACCURACY_KEYS = ("val_accuracy", "accuracy", "search_accuracy", "top1")


def _accuracy_key(fields: Sequence[str], path: Path) -> str:
    key = next((k for k in _ACCURACY_KEYS if k in fields), None)
    if key is None or "latency_ms" not in fields:
        raise DataError(f"{path} needs columns latency_ms and one of {', '.join(_ACCURACY_KEYS)}; found "
                        f"{', '.join(fields)}")
    return key


def read_points(path: str | Path) -> tuple[list[float], list[float], str]:
    """``(latency ms, accuracy %, accuracy column)`` from a CSV with ``latency_ms`` and an accuracy column.

    Accuracy columns, first found wins: ``val_accuracy``, ``accuracy``, ``search_accuracy``, ``top1``;
    fractions (all <= 1) are turned into percent.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DataError(f"{path} has no rows")
    key = _accuracy_key(list(rows[0]), path)
    lat = [float(r["latency_ms"]) for r in rows]
    acc = [float(r[key]) for r in rows]
    if max(acc) <= 1.0:
        acc = [100 * a for a in acc]
    return lat, acc, key


def plot_ensembles(*, models: str | Path, ensembles: Sequence[str | Path], out: str | Path,
                   extra: Sequence[tuple[str, str | Path]] = (), title: str = "OFA³: accuracy vs latency") -> Path:
    """Draw accuracy vs latency into a PNG and return its path.

    Args:
        models: CSV of the single models (``models.csv`` of ``ofa3 select``, or any with ``latency_ms``
            and an accuracy column).
        ensembles: output folders of ``ofa3 select`` (their ``ensembles.csv``); one series per folder,
            labelled with its criterion and the accuracy column used (validation when present).
        extra: ``(label, CSV)`` pairs of other points, e.g. OFA single-objective networks.
        out: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    lat, acc, key = read_points(models)
    ax.scatter(lat, acc, s=14, c="black", marker="o", label=f"single models (OFA², {key})", zorder=3)
    for folder in ensembles:
        folder = Path(folder)
        info = json.loads((folder / "ensembles.json").read_text()) if (folder / "ensembles.json").is_file() else {}
        lat, acc, key = read_points(folder / "ensembles.csv")
        order = sorted(range(len(lat)), key=lat.__getitem__)
        label = f"OFA³ ensembles, {info.get('criterion', '?')} latency ({key})"
        ax.plot([lat[i] for i in order], [acc[i] for i in order], ".-", ms=5, lw=0.8, label=label)
    for label, path in extra:
        lat, acc, _ = read_points(path)
        ax.scatter(lat, acc, s=30, marker="^", label=label, zorder=4)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path
