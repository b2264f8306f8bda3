"""Write the 15 ImageNet-C / CIFAR-10-C corruptions of an image folder at 5 severities (FlatNAS's OOD test data).

The corruptions are those of Hendrycks & Dietterich (2019), as implemented by the ``imagecorruptions``
package (we depend on its maintained fork ``imagecorruptions-imaug``, which installs the same
``imagecorruptions`` module: the original 1.1.2 fails on current libraries, ``glass_blur`` on
scikit-image >= 0.21 and ``fog`` on NumPy 2). It uses the ImageNet-C parameters at any resolution,
as CNAS does when it corrupts CIFAR at the search resolution; images must be at least 32 pixels on
each side (give ``size`` to resize smaller ones first).

Output layout: ``dst/<corruption>/<severity>/<class>/<image>.png`` (PNG, so no JPEG artefacts are
added on top of the corruption), plus ``dst/corruptions.json`` saying what was written and the
source's ``dataset.json``, if any, so evaluation uses the source's preprocessing.

Determinism: every image gets its own seed from ``(seed, corruption, image position)`` and the same
seed at every severity (common random numbers: severity 3 adds more of the same noise than
severity 1, and ``frost`` lays the same frost picture), for ``imagecorruptions``' global NumPy RNG
and for the two corruptions that take a ``seed`` argument (``impulse_noise``, ``glass_blur``). A
run with the same seed writes identical files, whatever the number of worker processes.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .._io import atomic_write_json
from ..errors import DataError, NniExtError

#: the 15 corruption types of ImageNet-C / CIFAR-10-C, in their usual order (noise, blur, weather, digital)
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")
SEVERITIES = (1, 2, 3, 4, 5)
#: the corruptions whose function takes a ``seed`` argument (the others use NumPy's global RNG)
_SEEDED = ("impulse_noise", "glass_blur")
#: the distribution that provides the working ``imagecorruptions`` module
PACKAGE = "imagecorruptions-imaug"
MANIFEST = "corruptions.json"
MIN_SIDE = 32


def parse_severities(text: str) -> list[int]:
    """``"1-5"`` -> ``[1, 2, 3, 4, 5]``; ``"3"`` -> ``[3]``; ``"1,3,5"`` -> ``[1, 3, 5]`` (each 1..5)."""
    values: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        found = re.fullmatch(r"(-?\d+)(?:\s*-\s*(-?\d+))?", part)
        if not found:
            raise NniExtError(f"severity {text!r} is not a number or range; give e.g. 3, 1-5 or 1,3,5 (each 1 to 5)")
        low = int(found.group(1))
        high = int(found.group(2)) if found.group(2) is not None else low
        if low > high:
            raise NniExtError(f"severity range {part!r} runs backwards; give e.g. 1-5")
        for s in range(low, high + 1):
            if s not in SEVERITIES:
                raise NniExtError(f"severity {s} is outside 1-5; ImageNet-C defines severities 1 to 5")
            if s not in values:
                values.append(s)
    return sorted(values)


def parse_corruptions(names: str | Sequence[str] | None) -> list[str]:
    """The corruption names of a comma-separated string or list (``None``, ``"all"``: all 15), each checked."""
    if names is None:
        return list(CORRUPTIONS)
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else [str(n).strip() for n in names]
    items = [n for n in items if n]
    if not items:
        raise NniExtError("no corruption named; give names such as gaussian_noise,fog or 'all'")
    if items == ["all"]:
        return list(CORRUPTIONS)
    unknown = [n for n in items if n not in CORRUPTIONS]
    if unknown:
        raise NniExtError(f"unknown corruption {unknown[0]!r}; choose from: {', '.join(CORRUPTIONS)}")
    return [n for n in CORRUPTIONS if n in items]


def _corrupt_function():  # noqa: ANN202 - the package's own function
    """``imagecorruptions.corrupt``, after checking that the working fork provides it."""
    from importlib import metadata

    try:
        metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        raise NniExtError(f"image corruptions need the {PACKAGE} package: pip install 'nni-ext[robust]' (the "
                          "original 'imagecorruptions' 1.1.2 fails with NumPy 2; uninstall it first)") from None
    try:
        from imagecorruptions import corrupt
    except ImportError as exc:  # e.g. OpenCV without its system libraries (libGL)
        raise NniExtError(f"cannot import the {PACKAGE} package: {exc}") from None
    return corrupt


def image_seed(seed: int, corruption: str, position: int) -> int:
    """The seed of one image: a stable function of the run's seed, the corruption and the image's position."""
    return zlib.crc32(f"{seed}/{corruption}/{position}".encode()) & 0x7FFFFFFF


def corrupt_image(image: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    """One image (H, W, 3 uint8, sides >= 32) corrupted deterministically for ``seed``."""
    if corruption not in CORRUPTIONS:
        raise NniExtError(f"unknown corruption {corruption!r}; choose from: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise NniExtError(f"severity {severity} is outside 1-5; ImageNet-C defines severities 1 to 5")
    if min(image.shape[:2]) < MIN_SIDE:
        raise DataError(f"image of {image.shape[1]}x{image.shape[0]} pixels is smaller than {MIN_SIDE} px; "
                        f"resize first (--size {MIN_SIDE} or more)")
    corrupt = _corrupt_function()
    state = np.random.get_state()  # the package draws from NumPy's global RNG: seed it, then put it back
    try:
        np.random.seed(seed)
        kwargs = {"seed": seed} if corruption in _SEEDED else {}
        out = corrupt(np.ascontiguousarray(image), severity=severity, corruption_name=corruption, **kwargs)
    finally:
        np.random.set_state(state)
    return np.asarray(out, dtype=np.uint8)


@dataclass(frozen=True)
class _Job:
    corruption: str
    files: tuple[tuple[str, str], ...]  # (source path, class name)
    severities: tuple[int, ...]
    dst: str
    seed: int
    size: int | None


def _load(path: str, size: int | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}; remove or replace the file") from None


def _run_job(job: _Job) -> int:
    from PIL import Image

    written = 0
    for position, (path, cls) in enumerate(job.files):
        image = _load(path, job.size)
        seed = image_seed(job.seed, job.corruption, position)
        for severity in job.severities:
            out = Path(job.dst) / job.corruption / str(severity) / cls / (Path(path).stem + ".png")
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".tmp")
            Image.fromarray(corrupt_image(image, job.corruption, severity, seed)).save(tmp, format="PNG")
            os.replace(tmp, out)
            written += 1
    return written


def source_folder(src: str | os.PathLike, split: str = "val") -> Path:
    """The image folder to corrupt: ``src/split`` of a dataset root, else ``src`` itself (``src/<class>/*``)."""
    root = Path(src)
    if not root.is_dir():
        raise DataError(f"source {root} does not exist; give an ImageNet-layout root (with {split}/) or an image "
                        "folder <class>/*.JPEG")
    if (root / split).is_dir():
        return root / split
    if (root / "train").is_dir() or (root / "val").is_dir():
        raise DataError(f"data root {root} has no {split}/ folder; give --split (e.g. train) or the image folder")
    return root


def write_corruptions(src: str | os.PathLike, dst: str | os.PathLike, *, severities: Sequence[int] = SEVERITIES,
                      corruptions: Sequence[str] | None = None, seed: int = 0, size: int | None = None,
                      split: str = "val", per_class: int | None = None, workers: int = 1) -> dict[str, int]:
    """Write ``dst/<corruption>/<severity>/<class>/<image>.png`` for the images of ``src``.

    Returns the number of images per corruption (each written once per severity).

    Args:
        src: a dataset root (its ``split`` folder is read) or an image folder ``src/<class>/*``.
        dst: output folder (created); must not lie inside ``src``.
        severities: any of 1..5.
        corruptions: names from :data:`CORRUPTIONS` (default all 15).
        seed: base seed; see the module docstring for how each image's noise is fixed.
        size: resize images to ``size`` x ``size`` first (the evaluation resolution); default: keep.
        per_class: corrupt only the first N images (by name) of each class.
        workers: processes, one corruption type at a time each (1: in this process).
    """
    from ..data.folder import index_folder

    names = parse_corruptions(corruptions)
    sevs = tuple(parse_severities(",".join(str(s) for s in severities)))
    if size is not None and size < MIN_SIDE:
        raise NniExtError(f"--size {size} is below {MIN_SIDE}; the corruptions need images of at least {MIN_SIDE} px")
    folder = source_folder(src, split)
    index = index_folder(folder)
    if per_class is not None:
        index = index.first_per_class(per_class)
    out = Path(dst)
    if out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents:
        raise DataError(f"destination {out} is inside the source {folder}; choose another folder")
    if size is None:  # check the smallest image up front rather than after minutes of work
        _check_sizes([p for p, _ in index.samples])
    _corrupt_function()  # a missing package fails before anything is written
    files = tuple((path, index.classes[label]) for path, label in index.samples)
    jobs = [_Job(name, files, sevs, str(out), seed, size) for name in names]
    out.mkdir(parents=True, exist_ok=True)
    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            counts = list(pool.map(_run_job, jobs))
    else:
        counts = [_run_job(job) for job in jobs]
    defaults = Path(src) / "dataset.json"
    if defaults.is_file():
        shutil.copyfile(defaults, out / "dataset.json")
    atomic_write_json(out / MANIFEST, {"source": str(folder.resolve()), "corruptions": names, "severities": list(sevs),
                                       "seed": seed, "size": size, "per_class": per_class, "images": len(files),
                                       "classes": index.classes,
                                       "package": PACKAGE})
    return {name: n // len(sevs) for name, n in zip(names, counts)}


def _check_sizes(paths: list[str]) -> None:
    from PIL import Image

    for path in paths:
        try:
            with Image.open(path) as img:
                w, h = img.size
        except OSError as exc:
            raise DataError(f"cannot read image {path}: {exc}; remove or replace the file") from None
        if min(w, h) < MIN_SIDE:
            raise DataError(f"image {path} is {w}x{h} pixels, smaller than the {MIN_SIDE} px the corruptions need; "
                            f"give --size {MIN_SIDE} (or larger) to resize")


def read_manifest(root: str | os.PathLike) -> dict:
    """``root/corruptions.json`` of :func:`write_corruptions`, or ``{}`` when absent."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}; fix or delete the file") from None
    return data if isinstance(data, dict) else {}
