"""Index and validate ImageNet-layout folders: ``root/{train,val}/<class>/*.JPEG``.

Classes are the sorted sub-folder names and files are sorted within each class, so labels and
order are those of ``torchvision.datasets.ImageFolder``; both loader back-ends read this index.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class FolderIndex:
    """The images of one split: sorted class names and ``(path, label)`` samples."""

    root: Path
    classes: list[str]
    samples: list[tuple[str, int]] = field(repr=False)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def files(self) -> list[str]:
        return [path for path, _ in self.samples]

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.samples]

    def first_per_class(self, n: int) -> FolderIndex:
        """A fixed, class-balanced subset: the first ``n`` files (by name) of every class."""
        if n < 1:
            raise DataError(f"per-class subset size {n} must be at least 1")
        counts: dict[int, int] = {}
        kept = []
        for path, label in self.samples:
            if counts.get(label, 0) < n:
                counts[label] = counts.get(label, 0) + 1
                kept.append((path, label))
        return FolderIndex(self.root, self.classes, kept)


def list_class_files(class_dir: Path) -> list[str]:
    """Image files of one class folder, sorted by name."""
    return sorted(e.name for e in os.scandir(class_dir) if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))


def index_folder(folder: str | os.PathLike) -> FolderIndex:
    """Index an image folder ``folder/<class>/*`` (ImageFolder order); errors name the bad folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist; expected {folder}/<class>/*.JPEG")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if not classes:
        raise DataError(f"image folder {folder} has no class sub-folders; expected {folder}/<class>/*.JPEG")
    samples: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        files = list_class_files(folder / name)
        if not files:
            raise DataError(f"class folder {folder / name} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                            "remove it or add images")
        samples.extend((str(folder / name / f), label) for f in files)
    return FolderIndex(folder, classes, samples)


def index_split(root: str | os.PathLike, split: str) -> FolderIndex:
    """Index ``root/split`` of an ImageNet-layout dataset."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist; give a folder holding train/ and val/")
    if not (root / split).is_dir():
        raise DataError(f"data root {root} has no {split}/ folder; expected ImageNet layout "
                        f"{root}/{split}/<class>/*.JPEG (make a small one with `nni-ext data digits DIR`)")
    return index_folder(root / split)


_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"BM": "BMP", b"RIFF": "WEBP"}


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_marker_problem(fh: Any) -> str | None:
    """Walk a JPEG's marker segments up to the scan data; return what is wrong, or ``None``."""
    fh.seek(2)
    seen_frame = False
    while True:
        byte = fh.read(1)
        if byte != b"\xff":
            return "corrupt JPEG header (invalid marker)" if byte else "truncated JPEG header"
        marker = fh.read(1)
        while marker == b"\xff":  # fill bytes
            marker = fh.read(1)
        if not marker:
            return "truncated JPEG header"
        m = marker[0]
        if m == 0x01 or 0xD0 <= m <= 0xD7:
            continue
        if m in (0xD8, 0xD9) or m == 0x00:
            return "corrupt JPEG header (invalid marker)"
        length = fh.read(2)
        if len(length) < 2 or int.from_bytes(length, "big") < 2:
            return "truncated JPEG header"
        if m in _SOF_MARKERS:
            seen_frame = True
        if m == 0xDA:
            return None if seen_frame else "corrupt JPEG header (scan before frame header)"
        fh.seek(int.from_bytes(length, "big") - 2, 1)


def _header_problem(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if head.startswith(b"\xff\xd8\xff"):
                return _jpeg_marker_problem(fh)
    except OSError as exc:
        return exc.strerror or str(exc)
    if any(head.startswith(magic) for magic in _MAGIC):
        return None
    return "not a JPEG/PNG/BMP/WEBP file (bad header)" if head else "empty file"


def check_headers(paths: list[str], workers: int = 16) -> tuple[str, str] | None:
    """The first file whose header is not a valid image header, and why.

    Reads the signature and, for JPEGs, walks the marker segments up to the scan data (a few
    hundred bytes per file, no decoding). DALI's CPU decoder can crash the process instead of
    raising on a file whose JPEG header is corrupt, so the DALI back-end runs this check first.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, problem in zip(paths, pool.map(_header_problem, paths, chunksize=256)):
            if problem:
                return path, problem
    return None


def find_unreadable(paths: list[str]) -> tuple[str, str] | None:
    """The first file PIL cannot decode and the reason, or ``None``."""
    from PIL import Image

    for path in paths:
        try:
            with Image.open(path) as img:
                img.load()
        except Exception as exc:  # noqa: BLE001 - any decoder failure counts
            return path, str(exc) or type(exc).__name__
    return None
