"""Top-k prediction tables of a population of sub-networks (``nni-ext ofa3 tables``), and its member runner.

Two kinds of population, told apart by the supernet checkpoint (``space="auto"``) or named:

* ``ofa``: OFA MobileNetV3 sub-networks (OFA²'s ``result.json`` or a JSON list of NNI / OFA dicts)
  taken from OFA's w1.2 supernet weights with inherited weights (as :mod:`nni_ext.trials.ofa2_eval`),
  each at its own resolution;
* ``spos``: SPOS ShuffleNetV2 architectures (a JSON list of NNI dicts ``{"layer_1": ...}``, nnictl
  exports ``{"parameter": ...}``, or the SPOS evolution tuners' files: ``generation_NNN.json`` (its
  ``topk``), ``best.json``, ``best_architecture.json``) run as paths of a supernet checkpoint written by
  :func:`nni_ext.trainers.checkpoint.save_checkpoint` (``nni-ext spos train-supernet``), at the crop size
  and preprocessing the supernet was trained with (as :mod:`nni_ext.trials.spos_tester`).

Only building a member differs (:class:`OfaPopulation` / :class:`SposPopulation`); the rest is one code
path (:class:`MemberRunner`): the member's BatchNorm statistics are re-estimated on ``calib_images``
training images (the same images, batches and seed for every member, so the tables and the
OFA3Ensemble trial see identical networks), then it runs over ``data/split`` in ImageFolder order
(no shuffling). Its top-k softmax probabilities are written with
:func:`~nni_ext.ensemble.tables.write_model` as ``model_XX_class.csv`` / ``model_XX_prob.csv``.

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
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_json
from ..errors import NniExtError
from .tables import CLASS_SUFFIX, PROB_SUFFIX, _header, model_names, write_model

log = logging.getLogger(__name__)
MANIFEST = "tables.json"
SPACES = ("auto", "ofa", "spos")
#: manifest keys older folders did not record, with the value they were written with
_UNRECORDED = {"calib_batch_size": 100, "seed": 0, "space": "ofa"}
_LISTS = ("networks", "population", "topk")  # OFA²'s result.json, a plain wrapper, a SPOS generation file


def _member_dict(item: Any, i: int) -> dict[str, Any]:
    """The architecture of one population entry (an OFA² / SPOS record, an nnictl export, NNI labels, an OFA dict)."""
    if isinstance(item, Mapping):
        for key in ("ofa", "nni", "architecture", "parameter", "parameters"):
            if isinstance(item.get(key), Mapping):
                return dict(item[key])
        return dict(item)
    raise NniExtError(f"population member {i} is a {type(item).__name__}, not an architecture (NNI labels, an "
                      "OFA dict with ks, e, d, r, or a record with an 'architecture')")


def read_population(population: str | os.PathLike | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The raw architectures of a population: OFA²'s ``result.json``, a SPOS tuner file, or a JSON list of dicts."""
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
        listed = next((data[k] for k in _LISTS if k in data), None)
        if listed is not None:
            data = listed
        elif "architecture" in data or "ks" in data or "layer_1" in data:  # one architecture (best.json, ...)
            data = [data]
        else:
            raise NniExtError("population must be OFA²'s result.json (a 'networks' list), a SPOS generation file "
                              "(a 'topk' list) or a JSON list of architectures")
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
    """``(space, NNI label dicts)`` of validated OFA members; the space's resolutions default to the members'."""
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


# ---------------------------------------------------------------------------------------------- populations
def supernet_kind(path: str | os.PathLike) -> str:
    """``spos`` for an nni_ext SPOS supernet checkpoint (``save_checkpoint``), else ``ofa``; nothing is unpickled."""
    from ..trainers.checkpoint import FORMAT

    try:
        with zipfile.ZipFile(path) as zf:
            pkl = next((n for n in zf.namelist() if n.endswith("/data.pkl")), None)
            head = zf.read(pkl) if pkl else b""
    except (OSError, zipfile.BadZipFile):
        return "ofa"  # missing or legacy files: the OFA loader explains the problem
    return "spos" if FORMAT.encode() in head and b"spos_supernet" in head else "ofa"


class OfaPopulation:
    """OFA MobileNetV3 sub-networks of a w1.2 supernet, each with inherited weights at its own resolution."""

    kind = "ofa"

    def __init__(self, raw: Sequence[Mapping[str, Any]], supernet_path: str | os.PathLike, *,
                 resolutions: Sequence[int] | None = None) -> None:
        from ..ofa2.supernet import load_supernet
        from ..spaces.ofa_mbv3 import to_ofa

        self.supernet = load_supernet(supernet_path)
        self.num_classes = int(self.supernet.classifier.out_features)
        _, self.archs = population_archs(raw, num_classes=self.num_classes, resolutions=resolutions)
        self.ofas = [to_ofa(a) for a in self.archs]

    def __len__(self) -> int:
        return len(self.archs)

    def resolution(self, m: int) -> int:
        return int(self.archs[m]["r"])

    def preprocessing(self, m: int) -> Any:
        from ..data import Preprocessing

        return Preprocessing.for_crop(self.resolution(m))

    def describe(self, m: int) -> dict[str, Any]:
        """The manifest entry of member ``m`` (besides its name)."""
        return {"ofa": self.ofas[m]}

    def build(self, m: int, device: Any) -> tuple[Any, list[Any]]:
        """``(network in eval mode, modules whose BN statistics to recalibrate)`` of member ``m``."""
        from ..spaces.ofa_mbv3 import subnet

        model = subnet(self.supernet, self.ofas[m], preserve_weight=True).to(device).eval()
        return model, [model]


def _spos_path_module(supernet: Any, path: list[int]) -> Any:
    from torch import nn

    class SposPath(nn.Module):
        """One path of a SPOS supernet as a network (``forward(x)``), sharing the supernet's weights."""

        def __init__(self) -> None:
            super().__init__()
            self.supernet, self.path = supernet, path

        def forward(self, x: Any) -> Any:
            return self.supernet(x, self.path)

    return SposPath()


class SposPopulation:
    """SPOS architectures run as paths of a supernet checkpoint, at the supernet's training crop and preprocessing.

    Members share the supernet's weights (and BN layers): build, recalibrate and run one member at a time.
    """

    kind = "spos"

    def __init__(self, raw: Sequence[Mapping[str, Any]], checkpoint: str | os.PathLike, *,
                 resolutions: Sequence[int] | None = None) -> None:
        from ..trainers.checkpoint import (
            read_checkpoint,
            space_of,
            supernet_from_checkpoint,
        )

        ckpt = read_checkpoint(checkpoint, kind="spos_supernet")
        self.space = space_of(ckpt)
        trained = ckpt.get("args", {}) or {}
        run = trained.get("run", {}) or {}
        if resolutions and len(set(resolutions)) != 1:
            raise NniExtError(f"--resolutions {list(resolutions)}: a SPOS population runs at one crop size; give one")
        self.crop = int(resolutions[0]) if resolutions else int(trained.get("crop_size")
                                                                  or self.space.default_input_size)
        self.spos_preprocessing = bool(run.get("spos_preprocessing", False))
        self.min_area = float(run.get("min_area", 0.08))
        self.supernet = supernet_from_checkpoint(ckpt, str(checkpoint)).eval()
        del ckpt
        self.num_classes = int(self.space.config["num_classes"])
        self.archs = []
        for i, arch in enumerate(raw):
            try:
                self.archs.append(self.space.validate(arch))
            except NniExtError as exc:
                raise NniExtError(f"population member {i}: {exc}") from None

    def __len__(self) -> int:
        return len(self.archs)

    def resolution(self, m: int) -> int:
        return self.crop

    def preprocessing(self, m: int) -> Any:
        from ..data import Preprocessing

        return Preprocessing.for_crop(self.crop, spos=self.spos_preprocessing, min_area=self.min_area)

    def describe(self, m: int) -> dict[str, Any]:
        return {"arch": self.archs[m]}

    def build(self, m: int, device: Any) -> tuple[Any, list[Any]]:
        path = self.supernet.path_of(self.archs[m])
        self.supernet.to(device)
        return _spos_path_module(self.supernet, path).eval(), self.supernet.path_modules(path)


def open_population(population: str | os.PathLike | Sequence[Mapping[str, Any]], supernet: str | os.PathLike, *,
                    space: str = "auto", resolutions: Sequence[int] | None = None) -> OfaPopulation | SposPopulation:
    """The population's members, buildable from ``supernet`` (``space``: ``auto`` tells by the checkpoint)."""
    if space not in SPACES:
        raise NniExtError(f"space={space!r}; use one of {', '.join(SPACES)}")
    raw = read_population(population)
    kind = supernet_kind(supernet) if space == "auto" else space
    return (SposPopulation if kind == "spos" else OfaPopulation)(raw, supernet, resolutions=resolutions)


class MemberRunner:
    """Calibrate and run members of a population on one dataset, with the same protocol for every member.

    BN recalibration: ``calib_images`` images of ``data/train`` in batches of ``min(calib_batch_size,
    calib_images)``, epoch 0 of a loader seeded with ``seed`` (the same images and crops for every member,
    and for the tables and the ensemble trial). Loaders are cached per preprocessing (one resolution at a time).
    """

    def __init__(self, pop: OfaPopulation | SposPopulation, *, data: str | os.PathLike, split: str, device: Any,
                 batch_size: int = 200, calib_images: int = 2000, calib_batch_size: int = 100, seed: int = 0,
                 backend: str = "auto", num_workers: int = 2, max_per_class: int | None = None) -> None:
        if batch_size < 1 or calib_images < 0 or calib_batch_size < 1:
            raise NniExtError(f"batch size {batch_size} and calibration batch size {calib_batch_size} must be >= 1 "
                              f"and calibration images {calib_images} >= 0")
        self.pop, self.data, self.split, self.device = pop, data, split, device
        self.batch_size, self.calib_images, self.seed = batch_size, calib_images, seed
        self.calib_batch = min(calib_batch_size, calib_images) if calib_images else calib_batch_size
        self.backend, self.num_workers, self.max_per_class = backend, num_workers, max_per_class
        self._prep: Any = None
        self._loaders: dict[str, Any] = {}

    def _loader(self, m: int, which: str) -> Any:
        from ..data import build_loader

        prep = self.pop.preprocessing(m)
        if prep != self._prep:
            self._loaders.clear()
            self._prep = prep
        if which not in self._loaders:
            if which == "val":
                self._loaders[which] = build_loader(
                    self.data, self.split, batch_size=self.batch_size, train=False, backend=self.backend,
                    device=self.device, preprocessing=prep, num_workers=self.num_workers,
                    max_per_class=self.max_per_class)
            else:
                self._loaders[which] = build_loader(
                    self.data, "train", batch_size=self.calib_batch, train=True, backend=self.backend,
                    device=self.device, preprocessing=prep, num_workers=self.num_workers, seed=self.seed)
        return self._loaders[which]

    def val_loader(self, m: int) -> Any:
        """The evaluation loader of member ``m``'s preprocessing (folder order)."""
        return self._loader(m, "val")

    def model(self, m: int) -> Any:
        """Member ``m`` in eval mode on the device, its BN statistics re-estimated (when ``calib_images``)."""
        import torch

        from ..trainers.evaluation import recalibrate_batchnorm

        model, bn_modules = self.pop.build(m, self.device)
        if self.calib_images:
            train = self._loader(m, "train")
            train.set_epoch(0)  # the same calibration images for every member
            torch.manual_seed(self.seed)
            recalibrate_batchnorm(model, bn_modules, train, math.ceil(self.calib_images / self.calib_batch))
        return model


# ---------------------------------------------------------------------------------------------- tables
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
    """``name -> manifest entry`` of the folder's manifest if it describes the same images, ``{}`` if it does
    not, ``None`` without a manifest."""
    try:
        old = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(old, dict) or any(old.get(k, _UNRECORDED.get(k)) != v for k, v in key.items()):
        return {}
    return {m.get("name"): {k: v for k, v in m.items() if k != "name"}
            for m in old.get("models", []) if isinstance(m, dict)}


@dataclass
class TablePlan:
    """What a tables job writes: the population, member names and descriptions, the folder and its key."""

    pop: Any
    names: list[str]
    entries: list[dict[str, Any]]
    root: Path
    key: dict[str, Any]
    images: int

    def todo(self) -> list[int]:
        """Members not yet written with these settings (complete files of the same member are kept)."""
        previous = _previous(self.root, self.key)
        return [m for m in range(len(self.pop)) if not (_complete(self.root, self.names[m], self.images) and (
            previous is None or previous.get(self.names[m]) == self.entries[m]))]

    def write_manifest(self) -> None:
        atomic_write_json(self.root / MANIFEST, {**self.key, "models": [
            {"name": n, **e} for n, e in zip(self.names, self.entries)]})


def plan_tables(population: str | os.PathLike | Sequence[Mapping[str, Any]], *, supernet_path: str | os.PathLike,
                data: str | os.PathLike, split: str, out: str | os.PathLike, k: int, batch_size: int,
                calib_images: int, calib_batch_size: int, seed: int, space: str,
                resolutions: Sequence[int] | None) -> TablePlan:
    """Check the settings and open the population of a tables job (one-line errors for bad input)."""
    from ..data.folder import index_split

    if k < 1 or batch_size < 1 or calib_images < 0 or calib_batch_size < 1:
        raise NniExtError(f"k={k}, batch size {batch_size} and calibration batch size {calib_batch_size} must be "
                          f">= 1 and calibration images {calib_images} >= 0")
    raw = read_population(population)  # an empty or unreadable population fails before anything is loaded
    images = len(index_split(data, split).samples)  # one-line DataError for a missing folder
    pop = open_population(raw, supernet_path, space=space, resolutions=resolutions)
    if k > pop.num_classes:
        raise NniExtError(f"k={k} exceeds the supernet's {pop.num_classes} classes")
    key = {"data": str(Path(data).resolve()), "split": split, "images": images, "k": k,
           "supernet": str(Path(supernet_path).resolve()), "calib_images": calib_images}
    key.update(calib_batch_size=calib_batch_size, seed=seed, space=pop.kind)
    return TablePlan(pop, model_names(len(pop)), [pop.describe(m) for m in range(len(pop))], Path(out), key, images)


def predict_member(runner: MemberRunner, m: int, k: int, *, desc: str = "", progress: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(top-k ids, top-k softmax probabilities, labels)`` of member ``m`` over the runner's split (folder order)."""
    import torch
    from tqdm.auto import tqdm

    model = runner.model(m)
    val = runner.val_loader(m)
    ids, probs, labels = [], [], []
    with torch.no_grad(), tqdm(total=len(val), desc=desc, unit="batch", disable=not progress,
                               dynamic_ncols=True) as bar:
        for x, y in val:
            p = model(x).float().softmax(dim=1)
            top = p.topk(k, dim=1)
            ids.append(top.indices.cpu().numpy())
            probs.append(top.values.cpu().numpy())
            labels.append(y.cpu().numpy())
            bar.update()
    return np.concatenate(ids), np.concatenate(probs), np.concatenate(labels)


def check_member_images(name: str, got: int, plan: TablePlan, data: str | os.PathLike, split: str) -> None:
    if got != plan.images:
        raise NniExtError(f"{name}: the loader gave {got} images but {Path(data) / split} holds {plan.images}")


def write_prediction_tables(population: str | os.PathLike | Sequence[Mapping[str, Any]], *,
                            supernet_path: str | os.PathLike, data: str | os.PathLike, split: str,
                            out: str | os.PathLike, k: int = 5, batch_size: int = 200, calib_images: int = 2000,
                            device: str = "auto", backend: str = "auto", resolutions: Sequence[int] | None = None,
                            progress: bool = True, calib_batch_size: int = 100, num_workers: int = 2,
                            seed: int = 0, space: str = "auto") -> dict[str, Any]:
    """Write ``model_XX_class.csv`` / ``model_XX_prob.csv`` for every member; returns a summary.

    ``space``: ``auto`` (an nni_ext SPOS supernet checkpoint makes a SPOS population, anything else is
    read as OFA weights), ``ofa`` or ``spos``. Over the processes of a ``torchrun`` job:
    :func:`nni_ext.distributed.write_prediction_tables_distributed`.

    Returns ``{"out": folder, "images": n, "written": [names], "skipped": [names], "space": kind}``.

    Raises:
        NniExtError: an empty or unreadable population, a bad architecture, a missing checkpoint or image
            folder (one line each).
    """
    from ..devices import resolve_device

    plan = plan_tables(population, supernet_path=supernet_path, data=data, split=split, out=out, k=k,
                       batch_size=batch_size, calib_images=calib_images, calib_batch_size=calib_batch_size,
                       seed=seed, space=space, resolutions=resolutions)
    pop, names, root = plan.pop, plan.names, plan.root
    todo = plan.todo()
    plan.write_manifest()
    skipped = [names[m] for m in range(len(pop)) if m not in todo]
    if skipped:
        log.info("%d model(s) already written in %s, skipped: %s", len(skipped), root, ", ".join(skipped))
    runner = MemberRunner(pop, data=data, split=split, device=resolve_device(device), batch_size=batch_size,
                          calib_images=calib_images, calib_batch_size=calib_batch_size, seed=seed, backend=backend,
                          num_workers=num_workers)
    written: list[str] = []
    for m in sorted(todo, key=pop.resolution):  # one resolution's loaders at a time
        ids, probs, labels = predict_member(runner, m, k, desc=f"{names[m]} (r={pop.resolution(m)})",
                                            progress=progress)
        check_member_images(names[m], len(labels), plan, data, split)
        write_model(root, names[m], ids, probs, labels)
        written.append(names[m])
    return {"out": root, "images": plan.images, "written": sorted(written), "skipped": skipped, "space": pop.kind}
