"""torchvision/PIL back-end of the image loader (the fallback when DALI is not installed)."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision import transforms as T

from ..errors import DataError
from .folder import FolderIndex
from .transforms import Preprocessing


def build_transform(prep: Preprocessing, train: bool) -> Callable[[Any], torch.Tensor]:
    """PIL image -> float CHW tensor, matching the DALI pipeline of the same settings."""
    ops: list[Any] = ([T.RandomResizedCrop(prep.crop_size, scale=(prep.min_area, 1.0)),
                       *([T.RandomHorizontalFlip()] if prep.flips else [])]
                      if train else [T.Resize(prep.resize), T.CenterCrop(prep.crop_size)])
    ops.append(T.PILToTensor())
    mean = torch.tensor(prep.mean255).view(3, 1, 1)
    std = torch.tensor(prep.std255).view(3, 1, 1)

    def to_float(x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if prep.spos:
            x = x.flip(0)  # RGB -> BGR
        return (x - mean) / std

    ops.append(to_float)
    return T.Compose(ops)


class FolderDataset(Dataset):
    """Dataset over a :class:`FolderIndex`; an unreadable file raises :class:`DataError` naming it.

    With ``seed`` set, item ``(i, epoch)`` is augmented with a random state derived from
    ``(seed, epoch, i)``: the same crops and flips whatever the number of workers, and a resumed
    run sees what an uninterrupted one would have.
    """

    def __init__(self, index: FolderIndex, transform: Callable[[Any], torch.Tensor], seed: int | None = None) -> None:
        self.index, self.transform, self.seed = index, transform, seed

    def __len__(self) -> int:
        return len(self.index.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        from PIL import Image

        i, epoch = key if isinstance(key, tuple) else (key, 0)
        path, label = self.index.samples[i]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except Exception as exc:  # noqa: BLE001 - PIL raises many types
            raise DataError(f"cannot read image {path}: {exc}; replace or delete the file") from None
        if self.seed is None:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch * 7_919 + i) % (2**63))
            return self.transform(image), label


class _EpochTagged:
    """Sampler wrapper yielding ``(index, epoch)`` so workers know the epoch of every item."""

    def __init__(self, sampler: Any) -> None:
        self.sampler, self.epoch = sampler, 0

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((int(i), epoch) for i in self.sampler)


class TorchvisionLoader:
    """Batches of ``(images float NCHW, labels int64)`` from a folder, sharded by rank."""

    backend = "torchvision"

    def __init__(self, index: FolderIndex, prep: Preprocessing, *, train: bool, batch_size: int, num_workers: int,
                 rank: int, world_size: int, seed: int, drop_last: bool, device: torch.device) -> None:
        self.dataset = FolderDataset(index, build_transform(prep, train), seed=seed if train else None)
        # training shards are reshuffled each epoch; evaluation shards are strided, each image exactly once
        self.sampler: DistributedSampler | list[int] = (
            DistributedSampler(self.dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
            if train else list(range(rank, len(self.dataset), world_size)))
        generator = torch.Generator().manual_seed(seed + rank)
        self.tagged = _EpochTagged(self.sampler)
        self.loader = DataLoader(self.dataset, batch_size=batch_size, sampler=self.tagged, num_workers=num_workers,
                                 drop_last=drop_last, pin_memory=device.type == "cuda", generator=generator,
                                 persistent_workers=num_workers > 0)
        self.device = device
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(self._epoch)
        self.tagged.epoch = self._epoch
        self._epoch += 1
        try:
            for images, labels in self.loader:
                yield (images.to(self.device, non_blocking=True),
                       labels.to(self.device, non_blocking=True))
        except DataError:
            raise
        except Exception as exc:  # worker errors arrive wrapped; keep the one-line message
            lines = [ln for ln in str(exc).splitlines() if "DataError: " in ln]
            if lines:
                raise DataError(lines[-1].split("DataError: ", 1)[1]) from None
            raise
