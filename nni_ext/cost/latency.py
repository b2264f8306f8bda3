"""Latency: measured on the current device, or summed from per-layer lookup tables.

Tables use Once-for-All's YAML layout (``key: {mean: ms, std: ms, count: n}``), so OFA's
published tables (e.g. the Samsung Note10 ones) load as they are; we parse them with PyYAML's
safe loader because the ``ofa`` package's own loader fails on current PyYAML. Tables built on
your device by :func:`build_latency_table` are keyed by the space's cost units.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import yaml
from torch import nn

from .._io import atomic_write_text
from ..devices import resolve_device
from ..errors import TableError
from .counting import input_shape

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True)
class Latency:
    """Latency statistics of repeated forward passes, in milliseconds."""

    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    repeats: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_latency(model: nn.Module, input_size: int | Sequence[int] = (1, 3, 224, 224), *,
                    device: str | torch.device | None = None, warmup: int = 10, repeats: int = 50) -> Latency:
    """Time ``repeats`` forward passes after ``warmup`` ones (eval mode, no grad); CUDA is synchronised.

    The model is moved to ``device`` and left there.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup={warmup} must be >= 0 and repeats={repeats} >= 1")
    dev = resolve_device(device)
    model = model.to(dev).eval()
    x = torch.randn(input_shape(input_size), device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times: list[float] = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            model(x)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return Latency(median_ms=statistics.median(times), mean_ms=statistics.fmean(times),
                   std_ms=statistics.pstdev(times), min_ms=min(times), repeats=repeats, device=str(dev))


def ofa_layer_key(layer_type: str, input_shape_hwc: Sequence[int], output_shape: Sequence[int], *,
                  expand: int | None = None, kernel: int | None = None, stride: int | None = None,
                  idskip: int | None = None, se: int = 0, hs: int = 0) -> str:
    """The key of one layer in an OFA latency table.

    Example:
        >>> ofa_layer_key("Conv", (224, 224, 3), (112, 112, 24))
        'Conv-input:224x224x3-output:112x112x24'
    """
    parts = [layer_type, "input:" + "x".join(map(str, input_shape_hwc)), "output:" + "x".join(map(str, output_shape))]
    if layer_type == "expanded_conv":
        if None in (expand, kernel, stride, idskip):
            raise ValueError("expanded_conv keys need expand, kernel, stride and idskip")
        parts += [f"expand:{expand}", f"kernel:{kernel}", f"stride:{stride}", f"idskip:{idskip}", f"se:{se}",
                  f"hs:{hs}"]
    return "-".join(parts)


class LatencyTable:
    """Per-layer latency look-up: ``key -> {mean, std, count}`` in milliseconds."""

    def __init__(self, entries: dict[str, dict[str, float]], source: str = "<memory>") -> None:
        self.entries = entries
        self.source = source

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        """Read a YAML (OFA layout) or JSON table; every entry needs a numeric ``mean``."""
        path = Path(path)
        try:
            data = yaml.load(path.read_text(), Loader=_Loader)
        except OSError as exc:
            raise TableError(f"cannot read latency table {path}: {exc.strerror}; check the path") from None
        except yaml.YAMLError as exc:
            raise TableError(f"latency table {path} is not valid YAML/JSON: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict) or not data:
            raise TableError(f"latency table {path} is empty or not a mapping of layer keys to {{mean, std, count}}")
        for key, value in data.items():
            if not isinstance(value, dict) or not isinstance(value.get("mean"), (int, float)):
                raise TableError(f"latency table {path}: entry {key!r} has no numeric 'mean' (ms)")
        return cls(data, str(path))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table in OFA's YAML layout, atomically."""
        return atomic_write_text(path, yaml.dump(self.entries, Dumper=_Dumper, sort_keys=True))

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def mean(self, key: str) -> float:
        """Mean latency (ms) of one layer key."""
        try:
            return float(self.entries[key]["mean"])
        except KeyError:
            raise TableError(f"latency table {self.source} has no entry {key!r}; measure that layer "
                             "(`nni-ext cost build-latency-table`) or use a table for this space/resolution") from None

    def predict(self, keys: Iterable[str]) -> float:
        """Latency (ms) of a network made of the layers ``keys``: the sum of their means."""
        return sum(self.mean(key) for key in keys)


def load_resolution_tables(directory: str | os.PathLike) -> dict[int, LatencyTable]:
    """Load OFA-style ``{resolution}_lookup_table.yaml`` files of a directory, keyed by resolution."""
    directory = Path(directory)
    tables = {int(p.name.split("_", 1)[0]): LatencyTable.load(p)
              for p in sorted(directory.glob("*_lookup_table.yaml")) if p.name.split("_", 1)[0].isdigit()}
    if not tables:
        raise TableError(f"no '<resolution>_lookup_table.yaml' files in {directory}; "
                         "point at a folder of latency tables")
    return tables


def build_latency_table(space: Any, input_size: int | None = None, *, device: str | torch.device | None = None,
                        warmup: int = 5, repeats: int = 20, progress: bool = True) -> LatencyTable:
    """Measure every layer (cost unit) of ``space`` on ``device``; keys are ``space.latency_keys``'s."""
    from tqdm import tqdm

    size = int(input_size or space.default_input_size)
    entries: dict[str, dict[str, float]] = {}
    keys = space.all_latency_keys(size)
    for key, unit in tqdm(keys.items(), desc=f"timing {space.name} layers", disable=not progress):
        module, shape = space.build_cost_unit(unit, size)
        lat = measure_latency(module, shape, device=device, warmup=warmup, repeats=repeats)
        entries[key] = {"mean": lat.mean_ms, "std": lat.std_ms, "count": lat.repeats}
    return LatencyTable(entries, f"<measured on {resolve_device(device)}>")
