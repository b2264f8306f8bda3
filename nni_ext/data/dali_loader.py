"""NVIDIA DALI back-end of the image loader: GPU (``mixed``) decoding on CUDA, DALI's CPU pipeline otherwise."""
from __future__ import annotations

from typing import Iterator

import torch

from ..errors import DataError
from .folder import FolderIndex, check_headers, find_unreadable
from .transforms import Preprocessing


def dali_available() -> bool:
    """True when ``nvidia-dali`` imports (install ``nni-ext[dali]``)."""
    try:
        import nvidia.dali  # noqa: F401
        from nvidia.dali.plugin import pytorch  # noqa: F401
    except ImportError:
        return False
    return True


#: shards up to this many files get their image headers checked by default (about 4k files/s on 2 cores)
AUTO_VERIFY_LIMIT = 100_000


class DaliLoader:
    """Batches of ``(images float NCHW, labels int64)`` decoded by DALI, sharded by rank.

    The reader gets the explicit file list of the :class:`FolderIndex`, so labels are those of
    the torchvision back-end. Training shuffles with DALI's reader buffer; evaluation reads every
    file of the shard once, in order, with a partial last batch. DALI's CPU decoder can crash
    the process on a corrupt JPEG header, so headers are checked first (``verify_headers``;
    by default for shards of at most :data:`AUTO_VERIFY_LIMIT` files; run ``nni-ext data check``
    once on a large dataset instead).
    """

    backend = "dali"

    def __init__(self, index: FolderIndex, prep: Preprocessing, *, train: bool, batch_size: int, num_workers: int,
                 rank: int, world_size: int, seed: int, drop_last: bool, device: torch.device,
                 verify_headers: bool | None = None) -> None:
        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        gpu = device.type == "cuda"
        self.index, self.device, self.train = index, device, train
        n = len(index)  # DALI shards contiguously: [rank*n/ws, (rank+1)*n/ws)
        self.shard_files = index.files[rank * n // world_size:(rank + 1) * n // world_size]
        if verify_headers is None:
            verify_headers = len(self.shard_files) <= AUTO_VERIFY_LIMIT
        bad = check_headers(self.shard_files) if verify_headers else None
        if bad:
            raise DataError(f"cannot read image {bad[0]}: {bad[1]}; replace or delete the file")

        @pipeline_def(batch_size=batch_size, num_threads=max(1, num_workers),
                      device_id=(device.index if device.index is not None else torch.cuda.current_device())
                      if gpu else None, seed=seed + rank)
        def pipeline():  # type: ignore[no-untyped-def]
            jpegs, labels = fn.readers.file(files=index.files, labels=index.labels, random_shuffle=train,
                                            initial_fill=min(4096, max(len(index), 1)), shard_id=rank,
                                            num_shards=world_size, pad_last_batch=not train, name="Reader")
            images = fn.decoders.image(jpegs, device="mixed" if gpu else "cpu",
                                       output_type=types.BGR if prep.spos else types.RGB)
            if train:
                images = fn.random_resized_crop(images, size=prep.crop_size, random_area=[prep.min_area, 1.0])
                mirror = fn.random.coin_flip(probability=0.5) if prep.flips else 0
            else:
                images = fn.resize(images, resize_shorter=prep.resize)
                mirror = 0
            images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW",
                                              crop=(prep.crop_size, prep.crop_size), mean=list(prep.mean255),
                                              std=list(prep.std255), mirror=mirror)
            return images, labels.gpu() if gpu else labels

        self.pipe = pipeline()
        try:
            self.pipe.build()
            self.iterator = DALIGenericIterator(
                [self.pipe], ["images", "labels"], reader_name="Reader", auto_reset=True,
                last_batch_policy=LastBatchPolicy.DROP if drop_last else LastBatchPolicy.PARTIAL)
        except RuntimeError as exc:
            self._raise_data_error(exc)

    def _raise_data_error(self, exc: Exception) -> None:
        bad = find_unreadable(self.shard_files)
        if bad:
            raise DataError(f"cannot read image {bad[0]}: {bad[1]}; replace or delete the file") from None
        raise exc

    def set_epoch(self, epoch: int) -> None:
        """DALI reshuffles on its own each epoch; kept for API parity."""

    def __len__(self) -> int:
        return len(self.iterator)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        try:
            for batch in self.iterator:
                data = batch[0]
                yield data["images"], data["labels"].view(-1).long()
        except (RuntimeError, StopIteration) as exc:
            if isinstance(exc, StopIteration):
                return
            self._raise_data_error(exc)
