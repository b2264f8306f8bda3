"""Preprocessing settings shared by the DALI and torchvision loaders, and a dataset's own preprocessing defaults."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: validation resize / crop of the ImageNet recipe (resize 256, centre-crop 224)
IMAGENET_RESIZE_RATIO = 256 / 224
#: optional file at a dataset root: preprocessing defaults of that data (``{"hflip": false}`` for digits)
DATASET_FILE = "dataset.json"


@dataclass(frozen=True)
class Preprocessing:
    """How images become tensors.

    Train: random-resized-crop to ``crop_size`` (area ``min_area``..1) and, with ``hflip``, a random
    horizontal flip. ``hflip=None`` means: as the dataset says (``"hflip"`` in its ``dataset.json``,
    see :func:`dataset_defaults`; flips when it says nothing), so data whose mirror image changes the
    class (digits) is never flipped. Val: resize the shorter side to ``resize_size`` then centre-crop
    ``crop_size``; ``resize_size=None`` means ``crop_size`` times the dataset's ``"resize_ratio"``
    (ImageNet's 256/224 unless its ``dataset.json`` says otherwise: the digits say 1.0, as their images
    already have the crop size and a 256/224 zoom would show the network digits 16 % larger, cut at
    the border, than any it trained on).
    ``spos=True`` gives the official SPOS checkpoints' input: BGR channel order, values 0..255,
    no mean/std normalisation. Otherwise RGB, scaled to 0..1 and normalised with ImageNet stats.
    """

    crop_size: int = 224
    resize_size: int | None = 256
    min_area: float = 0.08
    spos: bool = False
    hflip: bool | None = None

    def __post_init__(self) -> None:
        if self.crop_size < 1 or (self.resize_size is not None and self.resize_size < self.crop_size):
            raise ValueError(f"need 1 <= crop_size ({self.crop_size}) <= resize_size ({self.resize_size})")
        if not 0 < self.min_area <= 1:
            raise ValueError(f"min_area={self.min_area} must be in (0, 1]")

    @property
    def mean255(self) -> tuple[float, ...]:
        """Per-channel mean on the 0..255 scale, in the output channel order."""
        return (0.0, 0.0, 0.0) if self.spos else tuple(m * 255 for m in IMAGENET_MEAN)

    @property
    def std255(self) -> tuple[float, ...]:
        return (1.0, 1.0, 1.0) if self.spos else tuple(s * 255 for s in IMAGENET_STD)

    @property
    def resize(self) -> int:
        """The validation resize (``resize_size=None``, not resolved against a dataset: the 256/224 ratio)."""
        return self.resize_size if self.resize_size is not None else resize_for(self.crop_size, IMAGENET_RESIZE_RATIO)

    def for_dataset(self, root: str | os.PathLike) -> Preprocessing:
        """These settings with ``hflip=None`` and ``resize_size=None`` taken from the dataset at ``root``."""
        if self.hflip is not None and self.resize_size is not None:
            return self
        info = dataset_defaults(root)
        return replace(self, hflip=info.get("hflip", True) if self.hflip is None else self.hflip,
                       resize_size=resize_for(self.crop_size, info.get("resize_ratio", IMAGENET_RESIZE_RATIO))
                       if self.resize_size is None else self.resize_size)

    @property
    def flips(self) -> bool:
        """Whether training images are flipped (``hflip=None``, not resolved against a dataset: yes)."""
        return self.hflip is not False

    @classmethod
    def for_crop(cls, crop_size: int, *, spos: bool = False, min_area: float = 0.08,
                 hflip: bool | None = None, resize_size: int | None = None) -> Preprocessing:
        """Settings for another crop size; the resize follows the dataset's ratio (usually 256/224)."""
        return cls(crop_size=crop_size, resize_size=resize_size, min_area=min_area, spos=spos, hflip=hflip)


def resize_for(crop_size: int, ratio: float) -> int:
    """The validation resize of ``crop_size`` at ``ratio`` (never below the crop)."""
    return max(crop_size, round(crop_size * ratio))


def dataset_defaults(root: str | os.PathLike) -> dict[str, Any]:
    """The preprocessing defaults a dataset declares in ``root/dataset.json`` (``{}`` without one).

    Known keys: ``hflip`` (bool): whether a horizontal flip keeps the class (``false`` for digits and
    text); ``resize_ratio`` (number >= 1): validation resize over crop size (ImageNet's 256/224 when
    absent; 1.0 for images stored at the crop size). A malformed file raises
    :class:`~nni_ext.errors.DataError` naming it.
    """
    from ..errors import DataError

    path = Path(root) / DATASET_FILE
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}; fix or delete the file") from None
    ratio = info.get("resize_ratio", IMAGENET_RESIZE_RATIO) if isinstance(info, dict) else None
    if not isinstance(info, dict) or not isinstance(info.get("hflip", True), bool) \
            or isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio < 1:
        raise DataError(f"{path} must be a JSON object whose optional 'hflip' is true or false and optional "
                        "'resize_ratio' a number >= 1")
    return info


def write_dataset_defaults(root: str | os.PathLike, **values: Any) -> Path:
    """Write ``root/dataset.json`` (see :func:`dataset_defaults`); returns its path."""
    path = Path(root) / DATASET_FILE
    path.write_text(json.dumps(values, indent=2) + "\n")
    return path
