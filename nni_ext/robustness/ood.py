"""Corruption error of a network on a folder of :mod:`nni_ext.robustness.corruptions` (CNAS's ``compute_mCE``).

For each corruption type, ``CE = mean over severities of the top-1 error (%)``; the *unnormalised*
mean corruption error is ``mCE = mean of CE over the types`` (no division by AlexNet's errors, as
CNAS/FlatNAS report it). Images go through the validation preprocessing of the training data
(resize, centre crop, ImageNet normalisation; the dataset's ``dataset.json`` ratio, copied next to
the corrupted images, decides the resize).

The report is written as a CSV table (one row per corruption, a column per severity, ``ce``; a last
row ``mean`` whose ``ce`` is the mCE), a JSON summary and a PNG plot.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_write, atomic_write_csv, atomic_write_json
from ..errors import DataError
from ..trainers.evaluation import evaluate
from .corruptions import CORRUPTIONS, SEVERITIES, read_manifest


@dataclass
class CorruptionReport:
    """Top-1 errors (%) per corruption and severity, the clean error if measured, and the mCE."""

    errors: dict[str, dict[int, float]]
    images: int
    clean_error: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def severities(self) -> list[int]:
        return sorted({s for row in self.errors.values() for s in row})

    def ce(self, corruption: str) -> float:
        """Corruption error of one type: mean error over its severities (%)."""
        row = self.errors[corruption]
        return sum(row.values()) / len(row)

    @property
    def mce(self) -> float:
        """Unnormalised mean corruption error (%): mean of the per-type CE."""
        return sum(self.ce(c) for c in self.errors) / len(self.errors)

    def rows(self) -> list[dict[str, Any]]:
        """The CSV rows: ``corruption, s1..s5, ce`` and a last ``mean`` row (``ce`` = mCE)."""
        sevs = self.severities
        rows: list[dict[str, Any]] = []
        for name, row in self.errors.items():
            rows.append({"corruption": name, **{f"s{s}": round(row[s], 4) for s in sevs},
                         "ce": round(self.ce(name), 4)})
        rows.append({"corruption": "mean", **{f"s{s}": round(sum(r[s] for r in self.errors.values())
                                                             / len(self.errors), 4) for s in sevs},
                     "ce": round(self.mce, 4)})
        return rows

    def table(self) -> str:
        """A fixed-width text table of :meth:`rows`, with the clean error when known."""
        rows = self.rows()
        cols = list(rows[0])
        widths = {c: max(len(c), *(len(f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c])) for r in rows))
                  for c in cols}
        fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
        lines = ["  ".join(c.ljust(widths[c]) if c == "corruption" else c.rjust(widths[c]) for c in cols)]
        for r in rows:
            lines.append("  ".join(fmt(r[c]).ljust(widths[c]) if c == "corruption" else fmt(r[c]).rjust(widths[c])
                                   for c in cols))
        if self.clean_error is not None:
            lines.append(f"clean error {self.clean_error:.2f} %")
        return "\n".join(lines)


def corruption_folders(root: str | os.PathLike) -> dict[str, list[int]]:
    """The ``<corruption>/<severity>`` folders under ``root``; errors name a folder that is not such a layout."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"corruption folder {root} does not exist; write one with `nni-ext data corrupt SRC {root}`")
    found: dict[str, list[int]] = {}
    for name in CORRUPTIONS:
        if (root / name).is_dir():
            sevs = [s for s in SEVERITIES if (root / name / str(s)).is_dir()]
            if not sevs:
                raise DataError(f"{root / name} has no severity folders 1..5; expected {root}/{name}/<severity>/"
                                "<class>/<image> as `nni-ext data corrupt` writes")
            found[name] = sevs
    if not found:
        others = sorted(e.name for e in os.scandir(root) if e.is_dir())[:3]
        hint = f" (it holds {', '.join(others)})" if others else ""
        raise DataError(f"{root} holds none of the 15 corruption folders (gaussian_noise, ..., jpeg_compression)"
                        f"{hint}; write them with `nni-ext data corrupt SRC {root}`")
    return found


def _error(model: nn.Module, loader: Any, device: torch.device) -> tuple[float, int]:
    """Top-1 error (%) of ``model`` over ``loader`` and the number of images."""
    result = evaluate(lambda images: model(images.to(device)), loader)
    if not result["images"]:
        raise DataError("a corruption folder gave no images")
    return 100.0 * (1.0 - result["top1"]), int(result["images"])


def evaluate_corruptions(model: nn.Module, root: str | os.PathLike, *, resolution: int, device: str = "cpu",
                         batch_size: int = 64, workers: int = 0, spos_preprocessing: bool = False,
                         clean: bool = True) -> CorruptionReport:
    """Top-1 error of ``model`` on every ``root/<corruption>/<severity>`` folder (and on the clean source).

    ``clean``: also measure the uncorrupted images the folder was made from (same subset), when
    ``root/corruptions.json`` names a source that still exists.
    """
    from ..data import Preprocessing, build_loader
    from ..data.transforms import IMAGENET_RESIZE_RATIO, dataset_defaults, resize_for
    from ..devices import resolve_device

    folders = corruption_folders(root)
    dev = resolve_device(device)
    ratio = dataset_defaults(root).get("resize_ratio", IMAGENET_RESIZE_RATIO)
    prep = Preprocessing.for_crop(resolution, spos=spos_preprocessing, hflip=False,
                                  resize_size=resize_for(resolution, ratio))
    model = model.to(dev).eval()

    def loader(base: Path, split: str, per_class: int | None = None) -> Any:
        return build_loader(base, split, batch_size=batch_size, train=False, backend="torchvision", device=dev,
                            preprocessing=prep, num_workers=workers, drop_last=False, max_per_class=per_class)

    errors: dict[str, dict[int, float]] = {}
    images = 0
    for name, sevs in folders.items():
        errors[name] = {}
        for s in sevs:
            errors[name][s], n = _error(model, loader(Path(root) / name, str(s)), dev)
            images += n
    manifest = read_manifest(root)
    clean_error = None
    source = manifest.get("source")
    if clean and isinstance(source, str) and Path(source).is_dir():
        per_class = manifest.get("per_class") if isinstance(manifest.get("per_class"), int) else None
        clean_error, _ = _error(model, loader(Path(source).parent, Path(source).name, per_class), dev)
    return CorruptionReport(errors, images, clean_error, {"resolution": resolution, "root": str(root)})


def write_report(report: CorruptionReport, out_dir: str | os.PathLike, *, title: str = "") -> dict[str, Path]:
    """Write ``corruption_errors.csv``, ``corruption_errors.json`` and ``corruption_errors.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "corruption_errors.csv", "json": out / "corruption_errors.json",
             "png": out / "corruption_errors.png"}
    atomic_write_csv(paths["csv"], report.rows())
    atomic_write_json(paths["json"], {"mce": report.mce, "clean_error": report.clean_error,
                                      "ce": {c: report.ce(c) for c in report.errors},
                                      "errors": {c: {str(s): e for s, e in row.items()}
                                                 for c, row in report.errors.items()},
                                      "images": report.images, **report.meta})
    _plot(report, paths["png"], title)
    return paths


def _plot(report: CorruptionReport, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(report.errors)
    sevs = report.severities
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.6 * len(names) + 4), 4.2))
    ax.bar(x, [report.ce(n) for n in names], color="#9ecae1", label="CE (mean over severities)")
    cmap = plt.get_cmap("viridis")
    for i, s in enumerate(sevs):
        ax.plot(x, [report.errors[n].get(s, np.nan) for n in names], "o", ms=4,
                color=cmap(i / max(1, len(sevs) - 1)), label=f"severity {s}")
    ax.axhline(report.mce, color="#d62728", lw=1.5, label=f"mCE {report.mce:.2f} %")
    if report.clean_error is not None:
        ax.axhline(report.clean_error, color="k", lw=1, ls="--", label=f"clean {report.clean_error:.2f} %")
    ax.set_xticks(x)
    ax.set_xticklabels([n.replace("_", " ") for n in names], rotation=45, ha="right")
    ax.set_ylabel("top-1 error (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or "corruption error (unnormalised)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
