"""Top-k prediction tables of a population of OFA sub-networks (``nni-ext ofa3 tables``).

Each member is built from the supernet checkpoint with inherited weights, its BatchNorm statistics are
re-estimated on ``calib_images`` training images at the member's resolution (OFA's protocol, as in
:mod:`nni_ext.trials.ofa2_eval`), and it is run over ``data/split`` in ImageFolder order (no shuffling).
Its top-k softmax probabilities are written with :func:`~nni_ext.ensemble.tables.write_model` as
``model_XX_class.csv`` / ``model_XX_prob.csv``.

Resumable per model: a model whose two files exist with one row per image (and whose architecture
matches the ``tables.json`` manifest of the folder, when there is one) is skipped. Each file is
written atomically, so an interrupted run leaves either a complete file or none.

Keep the search subset and the validation set apart: run it once per split, into two folders, e.g.::

    nni-ext data subset data/imagenet data/search --per-class 50 --holdout
    nni-ext ofa3 tables --population runs/ofa2/result.json --supernet ofa.pth --data data/search --split val \\
        --out runs/ofa3/search
    nni-ext ofa3 tables --population runs/ofa2/result.json --supernet ofa.pth --data data/imagenet --split val \\
        --out runs/ofa3/val
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_json
from ..errors import NniExtError
from .tables import CLASS_SUFFIX, PROB_SUFFIX, _header, model_names, write_model

log = logging.getLogger(__name__)
MANIFEST = "tables.json"


def _member_dict(item: Any, i: int) -> dict[str, Any]:
    """The architecture of one population entry (an OFA² record, NNI labels or an OFA dict)."""
    if isinstance(item, Mapping):
        for key in ("ofa", "nni", "parameter", "parameters"):  # OFA² records, nnictl exports
            if isinstance(item.get(key), Mapping):
                return dict(item[key])
        return dict(item)
    raise NniExtError(f"population member {i} is a {type(item).__name__}, not an architecture (NNI labels or an "
                      "OFA dict with ks, e, d, r)")


def read_population(population: str | os.PathLike | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The raw architectures of a population: OFA²'s ``result.json``, or a JSON list of NNI / OFA dicts."""
    data: Any = population
    if isinstance(population, (str, os.PathLike)):
        path = Path(population)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise NniExtError(f"cannot read population file {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise NniExtError(f"population file {path} is not valid JSON: {exc}") from None
    if isinstance(data, Mapping):
        data = data.get("networks", data.get("population"))
        if data is None:
            raise NniExtError("population must be OFA²'s result.json (a 'networks' list) or a JSON list of "
                              "architectures")
    if not isinstance(data, (list, tuple)) or not data:
        raise NniExtError("population is empty; give OFA²'s result.json or a JSON list of architectures")
    return [_member_dict(item, i) for i, item in enumerate(data)]


def _resolution(arch: Mapping[str, Any], i: int) -> int:
    r = arch.get("r")
    if isinstance(r, (list, tuple)) and len(r) == 1:
        r = r[0]
    if isinstance(r, Mapping):
        r = r.get("_value")
    try:
        return int(r)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise NniExtError(f"population member {i} has no resolution 'r' (got {r!r})") from None


def population_archs(raw: Sequence[Mapping[str, Any]], *, num_classes: int,
                     resolutions: Sequence[int] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """``(space, NNI label dicts)`` of validated members; the space's resolutions default to the members'."""
    from ..spaces.ofa_mbv3 import OfaMbv3Space, from_ofa

    res = list(resolutions) if resolutions else sorted({_resolution(a, i) for i, a in enumerate(raw)})
    try:
        space = OfaMbv3Space(num_classes=num_classes, resolutions=res)
    except ValueError as exc:
        raise NniExtError(str(exc)) from None
    archs = []
    for i, arch in enumerate(raw):
        try:
            archs.append(from_ofa(arch, space) if "ks" in arch else space.validate(arch))
        except NniExtError as exc:
            raise NniExtError(f"population member {i}: {exc}") from None
    return space, archs


def _rows(path: Path) -> int:
    """Data rows of a table file (its header row not counted)."""
    with open(path, "rb") as fh:
        lines = sum(1 for line in fh if line.strip())
    return lines - (1 if lines and _header(path) is not None else 0)


def _complete(out: Path, name: str, images: int) -> bool:
    files = [out / f"{name}{CLASS_SUFFIX}", out / f"{name}{PROB_SUFFIX}"]
    try:
        return all(f.is_file() and _rows(f) == images for f in files)
    except (OSError, UnicodeDecodeError):
        return False


def _previous(out: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """``name -> OFA dict`` of the folder's manifest if it describes the same images, ``{}`` if it does not,
    ``None`` without a manifest."""
    try:
        old = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(old, dict) or any(old.get(k) != v for k, v in key.items()):
        return {}
    return {m.get("name"): m.get("ofa") for m in old.get("models", []) if isinstance(m, dict)}


def write_prediction_tables(population: str | os.PathLike | Sequence[Mapping[str, Any]], *,
                            supernet_path: str | os.PathLike, data: str | os.PathLike, split: str,
                            out: str | os.PathLike, k: int = 5, batch_size: int = 200, calib_images: int = 2000,
                            device: str = "auto", backend: str = "auto", resolutions: Sequence[int] | None = None,
                            progress: bool = True, calib_batch_size: int = 100, num_workers: int = 2,
                            seed: int = 0) -> dict[str, Any]:
    """Write ``model_XX_class.csv`` / ``model_XX_prob.csv`` for every member; returns a summary.

    Returns ``{"out": folder, "images": n, "written": [names], "skipped": [names]}``.

    Raises:
        NniExtError: an empty or unreadable population, a bad architecture, a missing checkpoint or image
            folder (one line each).
    """
    import torch
    from tqdm.auto import tqdm

    from ..data import Preprocessing, build_loader
    from ..data.folder import index_split
    from ..devices import resolve_device
    from ..spaces.ofa_mbv3 import subnet, to_ofa
    from ..trainers.evaluation import recalibrate_batchnorm
    from ..trials.ofa2_eval import load_supernet

    if k < 1 or batch_size < 1 or calib_images < 0 or calib_batch_size < 1:
        raise NniExtError(f"k={k}, batch size {batch_size} and calibration batch size {calib_batch_size} must be "
                          f">= 1 and calibration images {calib_images} >= 0")
    raw = read_population(population)
    images = len(index_split(data, split).samples)  # one-line DataError for a missing folder
    supernet = load_supernet(supernet_path)
    classes = int(supernet.classifier.out_features)
    if k > classes:
        raise NniExtError(f"k={k} exceeds the supernet's {classes} classes")
    _, archs = population_archs(raw, num_classes=classes, resolutions=resolutions)
    ofas = [to_ofa(a) for a in archs]
    names = model_names(len(archs))
    root = Path(out)
    key = {"data": str(Path(data).resolve()), "split": split, "images": images, "k": k,
           "supernet": str(Path(supernet_path).resolve()), "calib_images": calib_images}
    previous = _previous(root, key)
    todo = [m for m in range(len(archs))
            if not (_complete(root, names[m], images) and (previous is None or previous.get(names[m]) == ofas[m]))]
    atomic_write_json(root / MANIFEST, {**key, "models": [{"name": n, "ofa": o} for n, o in zip(names, ofas)]})
    skipped = [names[m] for m in range(len(archs)) if m not in todo]
    if skipped:
        log.info("%d model(s) already written in %s, skipped: %s", len(skipped), root, ", ".join(skipped))
    dev = resolve_device(device)
    written: list[str] = []
    loaders: dict[str, Any] = {}
    current = None
    for m in sorted(todo, key=lambda m: archs[m]["r"]):  # one resolution's loaders at a time
        r = int(archs[m]["r"])
        if r != current:
            loaders.clear()
            prep = Preprocessing.for_crop(r)
            loaders["val"] = build_loader(data, split, batch_size=batch_size, train=False, backend=backend,
                                          device=dev, preprocessing=prep, num_workers=num_workers)
            if calib_images:
                cb = min(calib_batch_size, calib_images)
                loaders["train"] = build_loader(data, "train", batch_size=cb, train=True, backend=backend,
                                                device=dev, preprocessing=prep, num_workers=num_workers, seed=seed)
            current = r
        model = subnet(supernet, ofas[m], preserve_weight=True).to(dev).eval()
        if calib_images:
            loaders["train"].set_epoch(0)  # the same calibration images for every member
            torch.manual_seed(seed)
            recalibrate_batchnorm(model, [model], loaders["train"],
                                  math.ceil(calib_images / min(calib_batch_size, calib_images)))
        ids, probs, labels = [], [], []
        with torch.no_grad(), tqdm(total=len(loaders["val"]), desc=f"{names[m]} (r={r})", unit="batch",
                                   disable=not progress, dynamic_ncols=True) as bar:
            for x, y in loaders["val"]:
                p = model(x).float().softmax(dim=1)
                top = p.topk(k, dim=1)
                ids.append(top.indices.cpu().numpy())
                probs.append(top.values.cpu().numpy())
                labels.append(y.cpu().numpy())
                bar.update()
        got = sum(len(y) for y in labels)
        if got != images:
            raise NniExtError(f"{names[m]}: the loader gave {got} images but {Path(data) / split} holds {images}")
        write_model(root, names[m], np.concatenate(ids), np.concatenate(probs), np.concatenate(labels))
        written.append(names[m])
        del model
    return {"out": root, "images": images, "written": sorted(written), "skipped": skipped}
