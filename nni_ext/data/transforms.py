"""Preprocessing settings shared by the DALI and torchvision loaders."""
from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How images become tensors.

    Train: random-resized-crop to ``crop_size`` (area ``min_area``..1) and horizontal flip.
    Val: resize the shorter side to ``resize_size`` then centre-crop ``crop_size``.
    ``spos=True`` gives the official SPOS checkpoints' input: BGR channel order, values 0..255,
    no mean/std normalisation. Otherwise RGB, scaled to 0..1 and normalised with ImageNet stats.
    """

    crop_size: int = 224
    resize_size: int = 256
    min_area: float = 0.08
    spos: bool = False

    def __post_init__(self) -> None:
        if self.crop_size < 1 or self.resize_size < self.crop_size:
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

    @classmethod
    def for_crop(cls, crop_size: int, *, spos: bool = False, min_area: float = 0.08) -> Preprocessing:
        """Settings with the usual 256/224 resize ratio for another crop size."""
        return cls(crop_size=crop_size, resize_size=max(crop_size, round(crop_size * 256 / 224)), min_area=min_area,
                   spos=spos)
