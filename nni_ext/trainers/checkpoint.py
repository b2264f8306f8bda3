"""Atomic, resumable checkpoints of a supernet (or fixed network) with the space they belong to.

Every file nni_ext reads with ``torch.load`` goes through :func:`safe_torch_load`: ``weights_only=True``,
so a crafted file cannot run code; the files hold only tensors and plain values.
"""
from __future__ import annotations

import os
import pickle
import pickletools
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_write
from ..errors import NniExtError
from ..spaces import create_space
from ..spaces.base import SearchSpace

FORMAT = "nni_ext.checkpoint/1"


def _legacy_numpy_globals() -> list[Any]:
    """What older nni_ext files need beyond tensors: the uint32 key of NumPy's RNG state, as an array.

    Rebuilding a uint32 array runs no code (other dtypes, objects included, stay refused).
    """
    import numpy as np

    rebuild = (getattr(np, "_core", None) or np.core).multiarray._reconstruct  # written as either name
    return [(rebuild, "numpy._core.multiarray._reconstruct"), (rebuild, "numpy.core.multiarray._reconstruct"),
            np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _unsafe_detail(message: str) -> str:
    """The global or pickle feature a ``weights_only`` load refused, from torch's multi-line message."""
    found = re.search(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", message)
    if found:
        return found.group(1) or found.group(2)
    found = re.search(r"Unsupported operand (\d+)", message)
    if found:
        return f"pickle opcode {found.group(1)}, e.g. a plain pickle of Python objects"
    lines = [ln.strip().split("WeightsUnpickler error:")[-1].strip() for ln in message.splitlines()[1:]]
    return next((ln for ln in lines if ln and not ln.startswith(("Check the documentation", "(1)", "(2)"))),
                "unsupported content")


def safe_torch_load(path: str | os.PathLike, what: str, *, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; any failure is one :class:`NniExtError` line naming the file.

    Nothing in the file is executed: only tensors and plain values (dict, list, tuple, str, int, float,
    bool, None) load, plus the uint32 NumPy arrays of older nni_ext RNG states. ``what`` names the
    file's role in messages (``"checkpoint"``, ``"predictions file"``).
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_legacy_numpy_globals()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # the refusal below says it all
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        opcode = re.search(r"Unsupported operand (\d+)", str(exc))
        if opcode and chr(int(opcode.group(1))) not in pickletools.code2op:  # not a pickle at all (JSON, text)
            raise NniExtError(f"cannot read {what} {path}: not a PyTorch file (invalid load key "
                              f"{chr(int(opcode.group(1)))!r})") from None
        raise NniExtError(f"cannot read {what} {path} safely: it holds Python objects or pickle code other than "
                          f"tensors and plain values ({_unsafe_detail(str(exc))}); nothing in it was run. Give a "
                          "file written by nni-ext, or re-save only its tensors and plain values if you trust "
                          "it") from None
    except OSError as exc:
        raise NniExtError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except EOFError:
        raise NniExtError(f"cannot read {what} {path}: the file ends early (empty or truncated)") from None
    except RuntimeError as exc:
        first = (str(exc).splitlines() or [""])[0].split(". ")[0]
        hint = " (truncated, or not a PyTorch file)" if "zip archive" in first else ""
        raise NniExtError(f"cannot read {what} {path}: {first}{hint}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a file of another format
        raise NniExtError(f"cannot read {what} {path}: not a PyTorch file ({type(exc).__name__}: "
                          f"{(str(exc).splitlines() or [''])[0]})") from None


_PLAIN = (str, bytes, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)
_CONTAINERS = (dict, OrderedDict, list, tuple)


def check_plain(obj: Any, what: str) -> None:
    """Refuse (``TypeError``) what :func:`safe_torch_load` could not read back: anything but tensors and plain values.

    Exact types: a NumPy scalar, a ``Path`` or a dataclass must be converted to a plain value first.
    """
    stack: list[tuple[Any, str]] = [(obj, what)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, torch.Tensor) or type(item) in _PLAIN:
            continue
        if type(item) not in _CONTAINERS:
            raise TypeError(f"{where} is a {type(item).__module__}.{type(item).__qualname__}; store tensors and "
                            "plain values only (dict, list, tuple, str, int, float, bool, None)")
        if isinstance(item, dict):
            for key, value in item.items():
                stack.append((key, f"{where} key {key!r}"))
                stack.append((value, f"{where}[{key!r}]"))
        else:
            stack.extend((value, f"{where}[{i}]") for i, value in enumerate(item))


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, space: SearchSpace, kind: str,
                    **state: Any) -> Path:
    """Write ``{format, kind, space, space_config, model, **state}`` atomically (temp file + rename).

    ``kind`` is ``"spos_supernet"`` or ``"spos_fixed"``; ``state`` holds optimizer/scheduler state,
    the step, RNG states and the training arguments: tensors and plain values only (:func:`check_plain`),
    so :func:`read_checkpoint` loads it with ``weights_only=True``.
    """
    module = model.module if hasattr(model, "module") else model  # unwrap DDP
    payload = {"format": FORMAT, "kind": kind, "space": space.name, "space_config": space.config,
               "affine": getattr(module, "affine", None), "model": module.state_dict(), **state}
    check_plain(payload, "checkpoint")
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | os.PathLike, *, kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint dict on the CPU; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise NniExtError(f"checkpoint {path} does not exist; train one with `nni-ext spos train-supernet`")
    ckpt = safe_torch_load(path, "checkpoint")
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
