"""One entry point for image loading: ``build_loader`` picks DALI or torchvision and validates the folder."""
from __future__ import annotations

import os
from typing import Iterator, Literal, Protocol

import torch

from ..devices import resolve_device
from ..errors import DataError
from .dali_loader import DaliLoader, dali_available
from .folder import index_split
from .torchvision_loader import TorchvisionLoader
from .transforms import Preprocessing

Backend = Literal["auto", "dali", "torchvision"]


class ImageLoader(Protocol):
    """What every back-end offers: iterate ``(images, labels)`` batches on the target device."""

    backend: str

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...
    def set_epoch(self, epoch: int) -> None: ...


def build_loader(root: str | os.PathLike, split: str = "train", *, batch_size: int = 256, train: bool | None = None,
                 backend: Backend = "auto", device: str | torch.device = "auto",
                 preprocessing: Preprocessing | None = None, num_workers: int = 4, rank: int = 0,
                 world_size: int = 1, seed: int = 0, drop_last: bool | None = None,
                 verify_headers: bool | None = None, max_per_class: int | None = None) -> ImageLoader:
    """Build a loader over ``root/split`` of an ImageNet-layout folder.

    Args:
        root: dataset root holding ``train/`` and ``val/`` (each ``<class>/*.JPEG``).
        split: sub-folder to read.
        train: training augmentation and shuffling; defaults to ``split == "train"``.
        backend: ``"dali"``, ``"torchvision"`` or ``"auto"`` (DALI when installed).
        device: where batches are produced; ``"auto"`` is CUDA when available. DALI decodes on
            the GPU (``mixed``) for CUDA and runs its CPU pipeline otherwise.
        preprocessing: crop/resize sizes and the SPOS (BGR, 0..255) option; defaults to 224/256. Its
            ``hflip=None`` and ``resize_size=None`` take the dataset's own settings from
            ``root/dataset.json`` (:func:`~nni_ext.data.transforms.dataset_defaults`; the embedded digits
            say no flips, as a mirrored digit is another class or none, and no validation zoom).
        rank, world_size: data-parallel shard of this process.
        drop_last: drop the last partial batch; defaults to ``train``.
        max_per_class: read only the first N files of each class (a fixed, class-balanced subset).
        verify_headers: DALI only: check every image header before decoding (DALI may crash on
            a corrupt JPEG header instead of raising); default: for shards up to 100k files.

    Example:
        >>> loader = build_loader("data/digits", "val", batch_size=64, backend="torchvision",
        ...                       preprocessing=Preprocessing.for_crop(32), num_workers=0)  # doctest: +SKIP
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    train = split == "train" if train is None else train
    drop_last = train if drop_last is None else drop_last
    dev = resolve_device(device)
    index = index_split(root, split)
    if max_per_class is not None:
        index = index.first_per_class(max_per_class)
    if backend == "auto":
        backend = "dali" if dali_available() else "torchvision"
    if backend == "dali" and not dali_available():
        raise DataError("backend 'dali' needs NVIDIA DALI: pip install 'nni-ext[dali]' (or use --backend torchvision)")
    if backend not in ("dali", "torchvision"):
        raise ValueError(f"backend={backend!r}; choose 'auto', 'dali' or 'torchvision'")
    preprocessing = (preprocessing or Preprocessing()).for_dataset(root)
    common = dict(train=train, batch_size=batch_size, num_workers=num_workers, rank=rank, world_size=world_size,
                  seed=seed, drop_last=drop_last, device=dev)
    if backend == "dali":
        return DaliLoader(index, preprocessing, verify_headers=verify_headers, **common)
    return TorchvisionLoader(index, preprocessing, **common)
