"""The embedded default dataset: scikit-learn's bundled 8x8 digits written as an ImageNet-layout JPEG folder.

Nothing is downloaded: the 1,797 images ship inside scikit-learn. They are upscaled (bilinear)
to ``size`` pixels, turned to RGB and split per class into train and val, deterministically.
``dataset.json`` at the root tells the loaders never to mirror a digit (``"hflip": false``: a
mirrored 2, 3, 4, 5, 6, 7 or 9 is another shape, so flips teach noise) and to validate on the whole
image (``"resize_ratio": 1.0``: no ImageNet-style 256/224 zoom of images that already have the crop size).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .transforms import write_dataset_defaults

#: what ``dataset.json`` of the digits says (see :func:`nni_ext.data.transforms.dataset_defaults`)
DIGITS_DEFAULTS = {"dataset": "sklearn-digits", "hflip": False, "resize_ratio": 1.0}


def write_digits(out_dir: str | os.PathLike, *, size: int = 32, val_fraction: float = 0.2, seed: int = 0,
                 quality: int = 95) -> dict[str, int]:
    """Write ``out_dir/{train,val}/digit_<k>/<n>.JPEG`` and ``out_dir/dataset.json``; returns the images per split.

    Example:
        >>> counts = write_digits("/tmp/digits")  # doctest: +SKIP
        >>> counts
        {'train': 1434, 'val': 363}
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction} must be between 0 and 1")
    if size < 8:
        raise ValueError(f"size={size} must be at least 8 (the digits are 8x8)")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not (out / "train").is_dir():
            raise DataError(f"{out} exists and is not a digits dataset; choose an empty or new folder")
    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "val": 0}
    for label in range(10):
        idx = np.flatnonzero(digits.target == label)
        idx = idx[rng.permutation(len(idx))]
        n_val = max(1, round(len(idx) * val_fraction))
        for split, members in (("val", idx[:n_val]), ("train", idx[n_val:])):
            folder = out / split / f"digit_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in sorted(members):
                img = Image.fromarray(images[i], mode="L").resize((size, size), Image.BILINEAR).convert("RGB")
                img.save(folder / f"{i:04d}.JPEG", quality=quality)
            counts[split] += len(members)
    write_dataset_defaults(out, **DIGITS_DEFAULTS)
    return counts
