"""Training one fixed SPOS architecture from scratch (the searched network's final training).

``space.build(arch)`` (affine BatchNorm) trained with the shared loop of
:mod:`nni_ext.trainers.train_loop`: same recipe, evaluation after each epoch, atomic resumable
checkpoints of kind ``spos_fixed`` and NNI reports.

Example:
    >>> from nni_ext.spaces import create_space
    >>> space = create_space("spos-digits")
    >>> arch = read_fixed_arc("official", space)
    >>> result = retrain(space, arch, RunConfig("data/digits", "runs/fixed"), Recipe(epochs=5))  # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import NniExtError
from ..spaces.base import SearchSpace
from .train_loop import Recipe, RunConfig, TrainResult, run_training

#: default length of a from-scratch run when neither steps nor epochs are given
DEFAULT_RETRAIN_EPOCHS = 240


def unwrap_architecture(data: Any) -> Any:
    """Accept NNI's wrapped forms: ``{"parameters": {...}}`` (a trial's parameters), ``{"arch": {...}}``,
    and ``{"_value": v, "_idx": i}`` per label (handled by the space's ``validate``)."""
    while isinstance(data, Mapping) and len(data) <= 3 and isinstance(data.get("parameters", data.get("arch")),
                                                                        Mapping):
        data = data.get("parameters", data.get("arch"))
    return data


def read_fixed_arc(source: str | os.PathLike | Mapping[str, Any], space: SearchSpace) -> dict[str, Any]:
    """The architecture of ``--fixed-arc``: a JSON file, a dict, or ``"official"`` (the SPOS authors' one)."""
    from ..runner import load_architecture

    if isinstance(source, str) and source == "official":
        if not hasattr(space, "official_architecture"):
            raise NniExtError(f"space {space.name!r} has no official architecture; give --fixed-arc ARCH.json")
        try:
            return space.official_architecture()
        except ValueError as exc:
            raise NniExtError(f"--fixed-arc official: {exc}") from None
    data = source if isinstance(source, Mapping) else load_architecture(source)
    return space.validate(unwrap_architecture(data))


def retrain(space: SearchSpace, arch: Mapping[str, Any], cfg: RunConfig, recipe: Recipe | None = None) -> TrainResult:
    """Train ``space.build(arch)`` from scratch; writes ``cfg.output/checkpoint.pth`` (kind ``spos_fixed``).

    Without ``recipe.steps``/``epochs``: :data:`DEFAULT_RETRAIN_EPOCHS` epochs. The checkpoint holds
    the architecture under ``"arch"``; :func:`load_fixed` rebuilds the network from it.
    """
    arch = space.validate(arch)
    recipe = recipe or Recipe()
    return run_training(lambda: space.build(arch), space=space, kind="spos_fixed", recipe=recipe, cfg=cfg,
                        default_steps=lambda per_epoch: DEFAULT_RETRAIN_EPOCHS * per_epoch,
                        meta={"arch": arch}, desc="retrain", report_parameters=arch)


def load_fixed(path: str | os.PathLike, *, device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """``(network with the trained weights, architecture, checkpoint dict)`` of a ``spos_fixed`` checkpoint."""
    from .checkpoint import load_state_checked, read_checkpoint, space_of

    ckpt = read_checkpoint(path, kind="spos_fixed")
    space = space_of(ckpt)
    arch = space.validate(ckpt["arch"])
    model = space.build(arch)
    load_state_checked(model, ckpt["model"], str(path))
    return model.to(device), arch, ckpt
