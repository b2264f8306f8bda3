"""Per-class subsets of an image folder (OFA³'s 50-per-class train subset) and held-out search splits."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import DataError
from .folder import index_folder, list_class_files


def _place(src: Path, dst: Path, mode: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if mode == "symlink":
        dst.symlink_to(src.resolve())
    elif mode == "hardlink":
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def make_subset(src: str | os.PathLike, dst: str | os.PathLike, *, per_class: int, split: str = "train",
                holdout: bool = False, mode: str = "symlink") -> dict[str, int]:
    """Take the first ``per_class`` files (sorted by name) of every class of ``src/split``.

    Without ``holdout`` they go to ``dst/<class>/`` (an image folder). With ``holdout`` ``dst``
    becomes a dataset root: ``dst/val/`` holds the subset and ``dst/train/`` the remaining images
    of ``src/split``, so a search can validate on data it never trains on while ``src/val``
    stays untouched. Files are symbolic links by default (``mode``: symlink, hardlink, copy).
    Returns the number of files written per output folder.
    """
    if per_class < 1:
        raise DataError(f"--per-class {per_class} must be at least 1")
    if mode not in ("symlink", "hardlink", "copy"):
        raise DataError(f"mode {mode!r} must be symlink, hardlink or copy")
    src_root = Path(src)
    folder = src_root / split if (src_root / split).is_dir() else src_root
    if folder == src_root and split != "train" and not (src_root / split).is_dir():
        raise DataError(f"{src_root} has no {split}/ folder")
    index = index_folder(folder)
    dst = Path(dst)
    if dst.resolve() == folder.resolve() or folder.resolve() in dst.resolve().parents:
        raise DataError(f"destination {dst} is inside the source {folder}; choose another folder")
    counts: dict[str, int] = {}
    for name in index.classes:
        files = list_class_files(folder / name)
        if holdout and len(files) <= per_class:
            raise DataError(f"class {name} has {len(files)} images; --holdout needs more than --per-class {per_class}")
        chosen, rest = files[:per_class], files[per_class:]
        outputs = [("val", chosen), ("train", rest)] if holdout else [("", chosen)]
        for sub, names in outputs:
            for f in names:
                _place(folder / name / f, dst / sub / name / f, mode)
            counts[sub or "subset"] = counts.get(sub or "subset", 0) + len(names)
    return counts
