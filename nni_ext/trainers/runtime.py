"""Runtime plumbing of the training loop: devices, torchrun/DDP set-up, RNG state, resumable epochs.

Kept apart from :mod:`nni_ext.trainers.train_loop` so the loop reads as the recipe; everything here is
re-exported there.
"""
from __future__ import annotations

import os
import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from ..devices import resolve_device


@dataclass
class DistInfo:
    """This process's place in a ``torchrun`` job (``enabled=False``: a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@contextmanager
def distributed(device: str | torch.device = "auto") -> Iterator[tuple[DistInfo, torch.device]]:
    """Join the ``torchrun`` job described by ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (NCCL on CUDA, gloo on CPU)."""
    import torch.distributed as tdist

    dev = resolve_device(device)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        yield DistInfo(), dev
        return
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)), True)
    if dev.type == "cuda":
        dev = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(dev)
    owner = not tdist.is_initialized()
    if owner:
        tdist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=info.rank, world_size=info.world_size)
    try:
        yield info, dev
    finally:
        if owner:
            tdist.destroy_process_group()


def capture_rng() -> dict[str, Any]:
    """Global torch (CPU and CUDA), NumPy and Python RNG states, as tensors and plain values.

    NumPy's state is its dict form with the key as a list of ints (no arrays), so a checkpoint holding
    it loads with ``torch.load(weights_only=True)``.
    """
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in numpy_state["state"].items()}
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state: Mapping[str, Any]) -> None:
    """Restore :func:`capture_rng`'s states (also the legacy tuple form of NumPy's state in older files)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _SkipFirst:
    """Sampler view that drops the first ``n`` items of one pass over ``sampler``."""

    def __init__(self, sampler: Any, n: int) -> None:
        self.sampler, self.n = sampler, n

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.n)

    def __iter__(self) -> Iterator[Any]:
        it = iter(self.sampler)
        for _ in range(self.n):
            next(it, None)
        return it


def _skipping(loader: Any, batch_sampler: Any, n: int) -> Iterator[Any]:
    original = batch_sampler.sampler
    batch_sampler.sampler = _SkipFirst(original, n)
    try:
        yield from loader
    finally:
        batch_sampler.sampler = original


def epoch_batches(loader: Any, epoch: int, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of ``epoch``, without its first ``skip`` (already trained on before a resume).

    A PyTorch ``DataLoader`` back-end skips the indices without loading them; others (DALI)
    load and drop the skipped batches.
    """
    loader.set_epoch(epoch)
    batch_sampler = getattr(getattr(loader, "loader", None), "batch_sampler", None)
    if skip == 0:
        return iter(loader)
    if batch_sampler is not None and hasattr(batch_sampler, "sampler"):
        return _skipping(loader, batch_sampler, skip * batch_sampler.batch_size)
    it = iter(loader)
    for _ in range(skip):
        next(it, None)
    return it


class EpochStateFile:
    """The atomic per-epoch state of a resumable run (PC-DARTS search, evaluation training).

    Holds the ``state_dict`` of every named object (model, optimizers, schedulers), the state of
    named ``torch.Generator`` s, the global RNG, the epoch count and the history: tensors and plain
    values only, read back with ``weights_only=True``. :meth:`load` refuses a file written with other
    options (``fingerprint``), or one that is not a state file, with one clear line.
    """

    def __init__(self, path: str | os.PathLike, *, fingerprint: Mapping[str, Any], what: str) -> None:
        from pathlib import Path

        self.path, self.fingerprint, self.what = Path(path), dict(fingerprint), what

    def load(self, objects: Mapping[str, Any], generators: Mapping[str, torch.Generator], *,
             device: torch.device | str = "cpu") -> tuple[int, list[dict[str, Any]]]:
        """Restore everything from the file if it exists; returns ``(epochs done, history)`` (``(0, [])`` if not)."""
        from ..errors import NniExtError
        from .checkpoint import safe_torch_load

        if not self.path.exists():
            return 0, []
        state = safe_torch_load(self.path, f"{self.what} state file", map_location=device)
        if not isinstance(state, dict):
            raise NniExtError(f"{self.path} holds a {type(state).__name__}, not a {self.what} state file; use a new "
                              f"--out folder or delete the file to start over")
        if state.get("config") != self.fingerprint:
            raise NniExtError(f"{self.path} was written by a {self.what} with other options; use a new --out folder "
                              f"or delete the file to start over")
        missing = [key for key in ("epoch", "history", "rng", *objects, *generators) if key not in state]
        if missing:
            raise NniExtError(f"{self.path} is not a complete {self.what} state file (no {', '.join(missing[:3])}); "
                              f"use a new --out folder or delete the file to start over")
        for name, obj in objects.items():
            obj.load_state_dict(state[name])
        for name, gen in generators.items():
            gen.set_state(state[name])
        restore_rng(state["rng"])
        return state["epoch"], state["history"]

    def save(self, epoch: int, history: list[dict[str, Any]], objects: Mapping[str, Any],
             generators: Mapping[str, torch.Generator]) -> None:
        from .._io import atomic_write
        from .checkpoint import check_plain

        state = {"config": self.fingerprint, "epoch": epoch, "history": history, "rng": capture_rng(),
                 **{name: obj.state_dict() for name, obj in objects.items()},
                 **{name: gen.get_state() for name, gen in generators.items()}}
        check_plain(state, f"{self.what} state")
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))
