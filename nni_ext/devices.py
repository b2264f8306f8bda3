"""Device selection shared by the cost model, the loaders, the trainers and the trials."""
from __future__ import annotations

import torch

from .errors import NniExtError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU; anything else is checked with a one-line error."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise NniExtError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NniExtError(f"--device {device} asked for CUDA, which this machine's torch cannot use")
    return dev
