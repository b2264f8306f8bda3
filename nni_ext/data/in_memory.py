"""Small image datasets held in memory as uint8 tensors, with CIFAR-style augmentation on the fly.

DARTS-family searches and evaluation trainings run on CIFAR-size data (32 px, tens of thousands of
images), where a whole split fits in memory (CIFAR-10's 50k training images are 150 MB) and
batching tensors is faster than a loader pipeline, on CPU especially. Sources:

* ``cifar10`` / ``cifar100``: torchvision's datasets read from ``--data`` (the files the user has;
  nothing is downloaded);
* any ImageNet-layout folder (``root/{train,val}/<class>/*``, e.g. the embedded digits), decoded
  once and resized to ``image_size``.

Normalisation uses the per-channel mean and standard deviation of the training split (for CIFAR-10
these are the usual 0.4914/0.4822/0.4465, 0.2470/0.2435/0.2616). Augmentation follows DARTS:
random crop with 4 px zero padding, horizontal flip (off for data where a mirror image changes the
class, such as digits) and optional Cutout.

Example:
    >>> data = load_split("data/digits", "train", image_size=32)  # doctest: +SKIP
    >>> batches = TensorBatches(data, batch_size=64, augment=Augment(flip=False), seed=0)  # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import DataError

TORCHVISION_SETS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}
TORCHVISION_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


@dataclass
class ImageTensors:
    """One split in memory: ``images`` (N, 3, H, W) uint8, ``labels`` (N,) int64, class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: np.ndarray | torch.Tensor) -> ImageTensors:
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageTensors(self.images[idx], self.labels[idx], self.classes, self.source)

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std in [0, 1] units."""
        x = self.images.float().div_(255.0)
        return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))


def load_split(data: str | os.PathLike, split: str = "train", *, image_size: int | None = None) -> ImageTensors:
    """Load ``split`` (``train`` or ``val``/``test``) of ``cifar10``/``cifar100`` or of an image folder.

    Args:
        data: ``cifar10:ROOT`` / ``cifar100:ROOT`` (torchvision's files under ROOT) or a folder root.
        split: ``train``, or ``val`` (``test`` for the torchvision sets).
        image_size: resize folder images to this square size (default: keep; all must then agree).
    """
    text = str(data)
    kind, sep, root = text.partition(":")
    if sep and kind.lower() in TORCHVISION_SETS:
        return _load_torchvision(kind.lower(), Path(root), split)
    return _load_folder(Path(text), split, image_size)


def _load_torchvision(kind: str, root: Path, split: str) -> ImageTensors:
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_SETS[kind])
    try:
        ds = cls(root=str(root), train=split == "train", download=False)
    except RuntimeError:
        raise DataError(f"{kind} files not found under {root} (expected torchvision's python version, e.g. "
                        f"{root / TORCHVISION_FOLDERS[kind]}); put them there first "
                        "(nni-ext never downloads at run time)") from None
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return ImageTensors(images, torch.as_tensor(ds.targets, dtype=torch.long), list(ds.classes), f"{kind}:{root}")


def _load_folder(root: Path, split: str, image_size: int | None) -> ImageTensors:
    from PIL import Image

    from .folder import index_split

    index = index_split(root, split)
    arrays = []
    for path, _ in index.samples:
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if image_size is not None and img.size != (image_size, image_size):
                    img = img.resize((image_size, image_size), Image.BILINEAR)
                arrays.append(np.asarray(img, dtype=np.uint8))
        except OSError as exc:
            raise DataError(f"cannot read image {path}: {exc}; remove or replace the file") from None
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"images under {root / split} have different sizes {sorted(shapes)[:3]}...; "
                        f"give an image size (e.g. --image-size 32)")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageTensors(images, torch.as_tensor(index.labels, dtype=torch.long), list(index.classes), str(root))


def split_in_two(data: ImageTensors, portion: float = 0.5, *, seed: int = 0) -> tuple[ImageTensors, ImageTensors]:
    """A seeded random split of one set into ``portion`` and ``1 - portion`` (DARTS's weight/architecture halves)."""
    if not 0 < portion < 1:
        raise ValueError(f"portion={portion} must be strictly between 0 and 1 (e.g. 0.5)")
    order = np.random.default_rng(seed).permutation(len(data))
    cut = int(np.floor(portion * len(data)))
    if cut == 0 or cut == len(data):
        raise DataError(f"{len(data)} images cannot be split at {portion}: one part would be empty")
    return data.subset(order[:cut]), data.subset(order[cut:])


@dataclass(frozen=True)
class Augment:
    """Training augmentation: random crop with ``pad`` zero padding, horizontal ``flip``, Cutout of ``cutout`` px."""

    pad: int = 4
    flip: bool = True
    cutout: int = 0


class TensorBatches:
    """Shuffled (or ordered) normalised batches of an :class:`ImageTensors`, augmented on the fly.

    ``len()`` is the number of batches per epoch; every ``iter()`` starts a new epoch with its own
    seeded permutation, so a run is reproducible from ``seed``.
    """

    def __init__(self, data: ImageTensors, *, batch_size: int, mean: torch.Tensor | None = None,
                 std: torch.Tensor | None = None, augment: Augment | None = None, shuffle: bool = True,
                 drop_last: bool = False, seed: int = 0, device: torch.device | str = "cpu") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if len(data) == 0:
            raise DataError(f"no images in {data.source}")
        self.data, self.batch_size, self.augment = data, batch_size, augment
        self.shuffle, self.drop_last, self.device = shuffle, drop_last, torch.device(device)
        if mean is None or std is None:
            mean, std = data.channel_stats()
        self.mean = mean.view(1, -1, 1, 1).to(self.device)
        self.std = std.clamp_min(1e-6).view(1, -1, 1, 1).to(self.device)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.data)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            images = self.data.images[idx]
            if self.augment is not None:
                images = augment_batch(images, self.augment, self.generator)
            x = images.to(self.device, non_blocking=True).float().div_(255.0).sub_(self.mean).div_(self.std)
            if self.augment is not None and self.augment.cutout > 0:
                x = cutout(x, self.augment.cutout, self.generator)
            yield x, self.data.labels[idx].to(self.device, non_blocking=True)

    def cycle(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches (a new epoch each pass), for the architecture step's search batches."""
        while True:
            yield from self


def augment_batch(images: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding ``augment.pad``) and horizontal flip of a uint8 batch (N, C, H, W)."""
    n, _, h, w = images.shape
    if augment.pad > 0:
        p = augment.pad
        padded = torch.nn.functional.pad(images, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        rows = (dy.view(n, 1) + torch.arange(h).view(1, h))  # (n, h)
        cols = (dx.view(n, 1) + torch.arange(w).view(1, w))  # (n, w)
        images = padded[torch.arange(n).view(n, 1, 1), :, rows.view(n, h, 1), cols.view(n, 1, w)]  # (n, h, w, c)
        images = images.permute(0, 3, 1, 2)
    if augment.flip:
        flip = torch.rand(n, generator=generator) < 0.5
        images = torch.where(flip.view(n, 1, 1, 1), images.flip(3), images)
    return images.contiguous()


def cutout(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Cutout (DeVries & Taylor): zero one ``length`` x ``length`` square per image, centred anywhere (clipped)."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1), generator=generator)
    cx = torch.randint(0, w, (n, 1, 1), generator=generator)
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    half = length // 2
    dy, dx = ys - cy, xs - cx
    hole = (dy >= -half) & (dy < length - half) & (dx >= -half) & (dx < length - half)
    return x * (~hole).unsqueeze(1).to(x.device, x.dtype)
