"""Index and validate ImageNet-layout folders: ``root/{train,val}/<class>/*.JPEG``.

Classes are the sorted sub-folder names and files are sorted within each class, so labels and
order are those of ``torchvision.datasets.ImageFolder``; both loader back-ends read this index.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
