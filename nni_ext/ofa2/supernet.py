"""The OFA MobileNetV3 w1.2 supernet with the weights of a checkpoint (OFA's published ones or ``init-supernet``'s)."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import NniExtError

if TYPE_CHECKING:
    from torch import nn


def load_supernet(path: str | os.PathLike, *, dropout: float = 0.1) -> nn.Module:
    """An OFA MobileNetV3 w1.2 supernet with the weights of a checkpoint, on the CPU (classes: the classifier's rows).

    Accepts a plain state dict or ``{"state_dict": ...}`` (OFA's published ``ofa_mbv3_d234_e346_k357_w1.2``
    and ``nni-ext ofa2 init-supernet``); OFA's own loader maps its older key names. Nothing is downloaded.
    Errors (missing file, another network) are :class:`NniExtError` naming the file and the problem.
    """
    import torch

    from ..spaces.ofa_mbv3 import WIDTH_MULT, build_supernet

    path = Path(path)
    if not path.is_file():
        raise NniExtError(f"supernet checkpoint {path} not found; give OFA's ofa_mbv3_d234_e346_k357_w1.2 weights "
                          "or a file written by `nni-ext ofa2 init-supernet`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise NniExtError(f"cannot read supernet checkpoint {path}: not a PyTorch file of tensors only (if it is "
                          "a checkpoint you trust, re-save just its state dict)") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise NniExtError(f"cannot read supernet checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NniExtError(f"supernet checkpoint {path} holds no state dict (a mapping of tensors, or "
                          "{'state_dict': ...})")
    heads = [v for k, v in state.items() if k.startswith("classifier.") and k.endswith("weight") and v.dim() == 2]
    if len(heads) != 1:
        raise NniExtError(f"supernet checkpoint {path} has no classifier weight (classifier.*.weight); it is not "
                          "an OFA MobileNetV3 supernet")
    supernet = build_supernet(num_classes=int(heads[0].shape[0]), dropout=dropout)

    def tensors(keys: Any) -> int:
        return sum(1 for k in keys if not k.endswith("num_batches_tracked"))

    found, expected = tensors(state), tensors(supernet.state_dict())
    problem = f"it holds {found} tensors, the supernet has {expected}" if found != expected else ""
    if not problem:
        try:
            supernet.load_state_dict(dict(state))  # OFA's override: renames keys of older checkpoints
        except (AssertionError, ValueError, KeyError) as exc:
            problem = f"unexpected key {str(exc).strip(chr(39))!r}"
        except RuntimeError as exc:  # torch: "Error(s) in loading ...:\n\tsize mismatch for ...: ..."
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            problem = lines[1] if len(lines) > 1 else lines[0]
    if problem:
        raise NniExtError(f"supernet checkpoint {path} does not fit OFA MobileNetV3 w{WIDTH_MULT} (ks 3/5/7, e 3/4/6, "
                          f"d 2/3/4): {problem}")
    return supernet


__all__ = ["load_supernet"]
