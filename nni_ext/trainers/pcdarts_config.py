"""The options of a PC-DARTS search and of an evaluation training, without torch.

:mod:`.pcdarts_search` and :mod:`.pcdarts_train` run them; the command-line options
(:mod:`.pcdarts_options`) take their defaults from here, so building ``nni-ext``'s parser imports no torch.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

REGULARIZERS = ("l1", "l2", "flops", "params", "none")


@dataclass
class SearchConfig:
    """Every option of a PC-DARTS search; the defaults are PC-DARTS's published ones (CIFAR-10)."""

    data: str
    out_dir: str = "runs/pcdarts-search"
    nu: float = 0.0
    regularizer: str = "l1"
    image_size: int | None = None
    subsample: float = 1.0
    train_portion: float = 0.5
    batch_size: int = 256
    epochs: int = 50
    lr: float = 0.1
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    arch_lr: float = 6e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    arch_warmup: int = 15
    grad_clip: float = 5.0
    init_channels: int = 16
    layers: int = 8
    partial_k: int = 4
    flip: bool = True
    cutout: int = 0
    eval_channels: int = 36
    eval_layers: int = 20
    seed: int = 2
    device: str = "auto"
    max_steps: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bad option."""
        if not 0.0 <= self.nu <= 1.0 or math.isnan(self.nu):
            raise ValueError(f"nu={self.nu} must be in [0, 1]: the weight step minimises (1 - nu) * CE + nu * R")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer={self.regularizer!r}; choose one of {', '.join(REGULARIZERS)}")
        for name in ("batch_size", "epochs", "init_channels", "layers", "partial_k", "eval_channels", "eval_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.layers < 3:
            raise ValueError(f"layers={self.layers} must be >= 3 (two reduction cells and a normal one)")
        if self.init_channels % self.partial_k:
            raise ValueError(f"init_channels={self.init_channels} must be divisible by partial_k={self.partial_k}")
        if self.lr <= 0 or self.arch_lr <= 0:
            raise ValueError(f"lr={self.lr} and arch_lr={self.arch_lr} must be > 0")
        if not 0 < self.subsample <= 1:
            raise ValueError(f"subsample={self.subsample} must be in (0, 1]: the share of the training images used")
        if not 0 <= self.arch_warmup:
            raise ValueError(f"arch_warmup={self.arch_warmup} must be >= 0")

    def fingerprint(self) -> dict[str, Any]:
        """The options a resumed run must share with the state file (everything but paths and device)."""
        d = asdict(self)
        for key in ("out_dir", "device", "data", "max_steps", "extra"):
            d.pop(key)
        d["arch_betas"] = list(d["arch_betas"])
        return d


@dataclass
class TrainConfig:
    """Options of one evaluation training; defaults are DARTS/PC-DARTS's CIFAR-10 recipe."""

    data: str
    genotype: str
    out_dir: str = "runs/pcdarts-train"
    test_split: str = "val"
    image_size: int | None = None
    train_portion: float = 1.0
    batch_size: int = 96
    epochs: int = 600
    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 3e-4
    init_channels: int = 36
    layers: int = 20
    auxiliary: bool = True
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.3
    cutout: int = 16
    flip: bool = True
    grad_clip: float = 5.0
    seed: int = 0
    device: str = "auto"
    max_steps: int | None = None

    def check(self) -> None:
        for name in ("batch_size", "epochs", "init_channels", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not 0 < self.train_portion <= 1:
            raise ValueError(f"train_portion={self.train_portion} must be in (0, 1]")
        if not 0 <= self.drop_path_prob < 1:
            raise ValueError(f"drop_path_prob={self.drop_path_prob} must be in [0, 1)")

    def fingerprint(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("out_dir", "device", "data", "max_steps"):
            d.pop(key)
        return d
