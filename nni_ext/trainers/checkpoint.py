"""Atomic, resumable checkpoints of a supernet (or fixed network) with the space they belong to."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_write
from ..errors import NniExtError
from ..spaces import create_space
from ..spaces.base import SearchSpace

FORMAT = "nni_ext.checkpoint/1"


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, space: SearchSpace, kind: str,
                    **state: Any) -> Path:
    """Write ``{format, kind, space, space_config, model, **state}`` atomically (temp file + rename).

    ``kind`` is ``"spos_supernet"`` or ``"spos_fixed"``; ``state`` holds optimizer/scheduler state,
    the step, RNG states and the training arguments.
    """
    module = model.module if hasattr(model, "module") else model  # unwrap DDP
    payload = {"format": FORMAT, "kind": kind, "space": space.name, "space_config": space.config,
               "affine": getattr(module, "affine", None), "model": module.state_dict(), **state}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | os.PathLike, *, kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint dict on the CPU; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise NniExtError(f"checkpoint {path} does not exist; train one with `nni-ext spos train-supernet`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        raise NniExtError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise NniExtError(f"{path} is not an nni_ext checkpoint (no '{FORMAT}' format tag)")
    if kind is not None and ckpt.get("kind") != kind:
        raise NniExtError(f"checkpoint {path} holds a {ckpt.get('kind')!r}, not a {kind!r}")
    return ckpt


def space_of(ckpt: dict[str, Any]) -> SearchSpace:
    """Rebuild the search space a checkpoint was trained for."""
    return create_space(ckpt["space"], **ckpt["space_config"])


def load_state_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` that explains a mismatch: missing/unexpected keys and shape differences."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (checkpoint vs model), e.g. {'; '.join(shapes[:2])}")
        if missing:
            parts.append(f"{len(missing)} missing keys, e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, e.g. {', '.join(unexpected[:3])}")
        raise NniExtError(f"checkpoint {source} does not fit this network (another space, width or BN setting?): "
                          + "; ".join(parts))
    model.load_state_dict(state)


def load_supernet(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """A :class:`~nni_ext.spaces.spos_supernet.ShuffleNetV2Supernet` with the weights of a checkpoint.

    Returns ``(supernet, checkpoint dict)``; the space (and its width) comes from the checkpoint.
    """

    ckpt = read_checkpoint(path, kind="spos_supernet")
    return supernet_from_checkpoint(ckpt, str(path), device=device), ckpt


def supernet_from_checkpoint(ckpt: dict[str, Any], source: str, *, device: str | torch.device = "cpu") -> Any:
    """The supernet of an already-read ``spos_supernet`` checkpoint dict (``source`` names it in errors)."""
    from ..spaces.spos_supernet import ShuffleNetV2Supernet

    space = space_of(ckpt)
    affine = ckpt.get("affine")
    if affine is None:  # older files: affine BN adds weight/bias keys
        affine = len(ckpt["model"]) > len(ShuffleNetV2Supernet(space, affine=False).state_dict())
    model = ShuffleNetV2Supernet(space, affine=bool(affine))
    load_state_checked(model, ckpt["model"], source)
    return model.to(device)
