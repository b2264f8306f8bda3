"""SPOS supernet training: one path per step, sampled FLOPs-uniformly (official) or uniformly.

The step loop, checkpoints and resuming are :mod:`nni_ext.trainers.train_loop`'s; this module
chooses the path sampler and the evaluation paths. Load a trained supernet with
:func:`nni_ext.trainers.checkpoint.load_supernet`.

Example:
    >>> from nni_ext.spaces import create_space
    >>> from nni_ext.trainers.train_loop import Recipe, RunConfig
    >>> result = train_supernet(create_space("spos-digits"), RunConfig("data/digits", "runs/sn"),
    ...                         Recipe(batch_size=64, steps=200))  # doctest: +SKIP
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import NniExtError
from ..spaces.spos import SposShuffleNetV2Space
from ..spaces.spos_supernet import ShuffleNetV2Supernet
from .sampling import SPOS_FLOPS_BINS, SPOS_FLOPS_RANGE, FlopsUniformSampler, UniformSampler
from .train_loop import OFFICIAL_BATCH_SIZE, Recipe, RunConfig, TrainResult, run_training

#: official supernet length: 120,000 iterations of batch 1024 (scaled to keep the images seen)
OFFICIAL_SUPERNET_STEPS = 120_000
SAMPLING_KINDS = ("flops-uniform", "uniform")
#: offset of the seed of the fixed evaluation paths from the training seed
EVAL_PATH_SEED_OFFSET = 1_000_003


@dataclass
class SamplingConfig:
    """Path sampling. ``flops_range=None``: the official 290M-360M for the ImageNet ``spos`` space at
    224 px, else :meth:`FlopsUniformSampler.auto_range` (5th-95th percentile of uniform paths)."""

    kind: str = "flops-uniform"
    flops_range: tuple[float, float] | None = None
    bins: int = SPOS_FLOPS_BINS
    max_draws: int = 500


def is_official_space(space: SposShuffleNetV2Space, input_size: int) -> bool:
    """True for the ImageNet SPOS space (default widths and depths) at 224 px, where the official range applies."""
    default = SposShuffleNetV2Space().config
    keys = ("stage_repeats", "stage_channels", "stem_channels", "last_channels")
    return input_size == 224 and all(space.config.get(k) == default[k] for k in keys)


def build_sampler(space: SposShuffleNetV2Space, input_size: int, sampling: SamplingConfig | None = None, *,
                  seed: int = 0) -> UniformSampler:
    """The path sampler of ``sampling`` for ``space`` at ``input_size`` pixels."""
    from ..cost import CostTable

    sampling = sampling or SamplingConfig()
    if sampling.kind == "uniform":
        return UniformSampler(len(space.labels), seed=seed)
    if sampling.kind != "flops-uniform":
        raise NniExtError(f"--sampling {sampling.kind!r} is unknown; choose one of {', '.join(SAMPLING_KINDS)}")
    table = CostTable.cached(space, input_size)
    low, high = sampling.flops_range or (SPOS_FLOPS_RANGE if is_official_space(space, input_size)
                                         else FlopsUniformSampler.auto_range(table))
    return FlopsUniformSampler(table, low=low, high=high, bins=sampling.bins, max_draws=sampling.max_draws, seed=seed)


def _check_space(space: Any) -> SposShuffleNetV2Space:
    if not isinstance(space, SposShuffleNetV2Space):
        raise NniExtError(f"supernet training needs a SPOS space (spos, spos-digits), not {space.name!r}")
    return space


def train_supernet(space: SposShuffleNetV2Space, cfg: RunConfig, recipe: Recipe | None = None,
                   sampling: SamplingConfig | None = None, *, eval_paths: int = 1,
                   affine: bool = False) -> TrainResult:
    """Train a :class:`ShuffleNetV2Supernet` of ``space``; writes ``cfg.output/checkpoint.pth``.

    The checkpoint (kind ``spos_supernet``) also holds ``affine``, ``sampling`` and ``eval_paths``.
    Without ``recipe.steps``/``epochs`` the length is the official 120,000 iterations at batch 1024,
    scaled to the batch size (same number of images). Validation top-1 is the mean over
    ``eval_paths`` fixed paths drawn like the training paths, with BatchNorm statistics of each path
    estimated on the validation images (:meth:`Trainer.evaluate` ``batch_stats``): a cheap progress
    signal, as the supernet's running statistics mix all paths (the tester recalibrates them per path
    on training batches). The space's ``supernet_init`` chooses the initialisation (``spos-digits``:
    ``identity``, without which its supernet stays at chance; ``spos``: PyTorch's default, official).
    """
    space = _check_space(space)
    recipe = recipe or Recipe()
    recipe.check()
    sampling = sampling or SamplingConfig()
    if eval_paths < 1:
        raise NniExtError(f"--eval-paths {eval_paths} must be >= 1")
    crop = cfg.crop_size or space.default_input_size
    sampler = build_sampler(space, crop, sampling, seed=recipe.seed)  # same stream on every rank
    probe = copy.deepcopy(sampler)
    probe.rng = np.random.default_rng(recipe.seed + EVAL_PATH_SEED_OFFSET)
    fixed_paths = [probe.sample() for _ in range(eval_paths)]
    flops_range = [getattr(sampler, "low", None), getattr(sampler, "high", None)]
    meta = {"affine": affine, "sampling": {**asdict(sampling), "flops_range": flops_range}, "eval_paths": fixed_paths,
            "init": space.config.get("supernet_init", "default")}
    steps = round(OFFICIAL_SUPERNET_STEPS * OFFICIAL_BATCH_SIZE / recipe.batch_size)
    return run_training(lambda: ShuffleNetV2Supernet(space, affine=affine), space=space, kind="spos_supernet",
                        recipe=recipe, cfg=cfg, default_steps=lambda per_epoch: steps,
                        path_fn=lambda step: sampler.sample(), eval_paths=fixed_paths, stateful={"sampler": sampler},
                        find_unused_parameters=True, eval_batch_stats=True, meta=meta, desc="supernet")

