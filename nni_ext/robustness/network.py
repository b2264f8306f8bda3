"""Name a trained network on the command line the way the other nni-ext commands do, and load it safely.

Three forms (every file read with ``torch.load(weights_only=True)``):

* ``checkpoint``: an nni-ext checkpoint that describes its own network, from ``nni-ext spos retrain``
  (``spos_fixed``: space, architecture and weights) or ``nni-ext ofa finetune`` (``ofa_subnet``);
* ``config`` + ``weights``: an OFA network of ``nni-ext ofa export`` (``net.config`` and ``net.inherited``
  or ``net.finetuned``);
* ``space`` (+ ``space_args``) + ``arch`` + ``weights``: any registered search space, an architecture
  JSON file, and a state dict (plain, ``{"state_dict": ...}`` or an nni-ext checkpoint's ``model``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from torch import nn

from ..errors import NniExtError


@dataclass
class LoadedNetwork:
    """A network with its trained weights, on the CPU in eval mode, and the input size it expects (if known)."""

    model: nn.Module
    input_size: int | None
    description: str
    #: trained on BGR 0..255 input (``--spos-preprocessing``), as the checkpoint records
    spos_preprocessing: bool = False


def _state_dict(path: str | os.PathLike) -> dict[str, Any]:
    import torch

    from ..trainers.checkpoint import FORMAT, safe_torch_load

    state = safe_torch_load(path, "weights file")
    if isinstance(state, Mapping) and state.get("format") == FORMAT and isinstance(state.get("model"), Mapping):
        state = state["model"]
    elif isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NniExtError(f"weights file {path} holds no state dict (name -> tensor, or {{'state_dict': ...}})")
    return dict(state)


def load_network(*, checkpoint: str | os.PathLike | None = None, config: str | os.PathLike | None = None,
                 space: str | None = None, space_args: Mapping[str, Any] | None = None,
                 arch: str | os.PathLike | None = None, weights: str | os.PathLike | None = None) -> LoadedNetwork:
    """Load the network named by exactly one of the three forms of the module docstring."""
    from ..trainers.checkpoint import load_state_checked

    forms = [name for name, given in (("--checkpoint", checkpoint), ("--config", config), ("--space", space))
             if given is not None]
    if len(forms) != 1:
        raise NniExtError("name the network one way: --checkpoint CKPT, or --config net.config --weights FILE, "
                          "or --space NAME --arch ARCH.json --weights FILE" +
                          (f" (got {' and '.join(forms)})" if forms else ""))
    if checkpoint is not None:
        if weights is not None or arch is not None:
            raise NniExtError("--checkpoint holds the architecture and weights; drop --arch/--weights")
        return _from_checkpoint(checkpoint)
    if weights is None:
        raise NniExtError(f"{forms[0]} needs --weights FILE (the trained state dict)")
    if config is not None:
        from ..ofa2.export import build_from_config, config_resolution, read_net_config

        net_config = read_net_config(config)
        model = build_from_config(net_config, f"network config {config}")
        load_state_checked(model, _state_dict(weights), str(weights))
        return LoadedNetwork(model.eval(), config_resolution(net_config, config), f"OFA network {config}")
    from ..spaces import create_space
    from ..trainers.retrain import read_fixed_arc

    if arch is None:
        raise NniExtError("--space needs --arch ARCH.json (the architecture, label -> value)")
    search_space = create_space(str(space), **dict(space_args or {}))
    architecture = read_fixed_arc(str(arch), search_space)
    model = search_space.build(architecture)
    load_state_checked(model, _state_dict(weights), str(weights))
    return LoadedNetwork(model.eval(), int(search_space.default_input_size), f"{search_space.name} network {arch}")


def _from_checkpoint(path: str | os.PathLike) -> LoadedNetwork:
    from ..trainers.checkpoint import read_checkpoint

    kind = read_checkpoint(path).get("kind")
    if kind == "spos_fixed":
        from ..trainers.checkpoint import space_of
        from ..trainers.retrain import load_fixed

        model, _, ckpt = load_fixed(path)
        args = ckpt.get("args") if isinstance(ckpt.get("args"), Mapping) else {}
        size = args.get("crop_size") or space_of(ckpt).default_input_size
        spos = bool((args.get("run") or {}).get("spos_preprocessing", False))
        return LoadedNetwork(model.eval(), int(size), f"retrained network {path}", spos_preprocessing=spos)
    if kind == "ofa_subnet":
        from ..ofa2.finetune import load_finetuned

        model, resolution, _ = load_finetuned(path)
        return LoadedNetwork(model.eval(), int(resolution), f"fine-tuned OFA network {path}")
    raise NniExtError(f"checkpoint {path} holds a {kind!r}, not a trained network ('spos_fixed' of `nni-ext spos "
                      "retrain` or 'ofa_subnet' of `nni-ext ofa finetune`)")
