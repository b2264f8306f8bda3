"""Fine-tuning OFA sub-networks from inherited weights, as NSGANetV2 does after (and during) its search.

Two uses, one recipe (:func:`finetune_recipe`), both on the shared trainer of
:mod:`nni_ext.trainers.train_loop` (optimizer, schedule, AMP and channels-last on CUDA):

* the OFA evaluation trial's ``--epochs N`` (:func:`finetune_epochs`): NSGANetV2's evaluator for datasets
  other than ImageNet: reset the classifier to the dataset's classes (dropout 0.2), recalibrate BN, then
  ``N`` epochs (NSGANetV2: 5) of SGD, momentum 0.9 with Nesterov (OFA's ``build_optimizer`` default),
  cosine schedule per iteration from lr 0.01, weight decay 4e-5, batch 96, no label smoothing
  (NSGANetV2's ``CIFARRunConfig``); no checkpoints, the model is evaluated right after;
* ``nni-ext ofa finetune`` (:func:`finetune`): an exported network (``net.config`` + ``net.inherited``)
  trained to convergence by :func:`~nni_ext.trainers.train_loop.run_training`: ``torchrun`` DDP, atomic
  resumable checkpoints (kind ``ofa_subnet``, the network's config inside), progress bar, NNI reports;
  at the end ``net.config`` and ``net.finetuned`` beside the checkpoint (read by
  :func:`~nni_ext.ofa2.export.load_exported` with ``weights="net.finetuned"``).

Weight decay applies to conv/linear weights only (OFA's ``no_decay_keys="bn#bias"``; NSGANetV2's
CIFAR config decays every parameter). Data: ImageNet-layout folders (the digits of
``nni-ext data digits`` too) through :func:`nni_ext.data.build_loader`, or ``cifar10:ROOT`` /
``cifar100:ROOT`` (torchvision's files, never downloaded) held in memory: random crop with 4 px
padding and flip, NSGANetV2's CIFAR mean/std, batches upsampled (bicubic) to the network's resolution.
"""
from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import torch

from ..errors import NniExtError

if TYPE_CHECKING:
    from torch import nn

    from ..trainers.train_loop import DistInfo, Recipe, RunConfig, TrainResult

logger = logging.getLogger(__name__)

#: NSGANetV2's CIFARRunConfig / evaluator defaults
DEFAULT_LR, DEFAULT_WEIGHT_DECAY, DEFAULT_BATCH_SIZE, DEFAULT_DROPOUT = 0.01, 4e-5, 96, 0.2
#: ``nni-ext ofa finetune`` length without --steps/--epochs (NSGANetV2's train_cifar.py)
DEFAULT_FINETUNE_EPOCHS = 150
#: checkpoint kind of ``nni-ext ofa finetune``
KIND = "ofa_subnet"
FINETUNED_FILE = "net.finetuned"
RESET_MODES = ("always", "auto", "never")
#: NSGANetV2's train_cifar.py normalisation (CIFAR-10 statistics, used for CIFAR-100 too)
CIFAR_MEAN, CIFAR_STD = (0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)


# -------------------------------------------------------------------------------------------- classifier
def reset_classifier(model: nn.Module, num_classes: int, *, dropout: float = DEFAULT_DROPOUT) -> nn.Module:
    """Replace the classifier by a new OFA ``LinearLayer`` (in features -> ``num_classes``, dropout), as NSGANetV2."""
    from ofa.utils.layers import LinearLayer

    model.classifier = LinearLayer(model.classifier.in_features, num_classes, dropout_rate=dropout)
    return model


def prepare_classifier(model: nn.Module, num_classes: int, mode: str = "auto", *,
                       dropout: float = DEFAULT_DROPOUT) -> bool:
    """Reset the classifier for ``num_classes``: ``always``, ``auto`` (when the class count differs) or ``never``.

    Returns whether it was reset. ``never`` with another class count is an error.
    """
    if mode not in RESET_MODES:
        raise NniExtError(f"reset-classifier {mode!r}: choose {', '.join(RESET_MODES)}")
    current = int(model.classifier.out_features)
    if mode == "always" or (mode == "auto" and current != num_classes):
        reset_classifier(model, num_classes, dropout=dropout)
        return True
    if current != num_classes:
        raise NniExtError(f"the network classifies {current} classes, the data has {num_classes}; let the "
                          "classifier be reset (--reset-classifier auto)")
    return False


# ---------------------------------------------------------------------------------------------- recipe
def finetune_recipe(*, lr: float = DEFAULT_LR, weight_decay: float = DEFAULT_WEIGHT_DECAY, momentum: float = 0.9,
                    nesterov: bool = True, batch_size: int = DEFAULT_BATCH_SIZE, label_smoothing: float = 0.0,
                    **options: Any) -> Recipe:
    """A :class:`~nni_ext.trainers.train_loop.Recipe` with NSGANetV2's fine-tuning defaults (cosine schedule)."""
    from ..trainers.train_loop import Recipe

    recipe = Recipe(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov, batch_size=batch_size,
                    label_smoothing=label_smoothing, schedule="cosine", **options)
    recipe.check()
    return recipe


def cifar_kind(data: str | os.PathLike) -> str | None:
    """``"cifar10"``/``"cifar100"`` for a ``cifar10:ROOT``/``cifar100:ROOT`` data spec, else ``None``."""
    from ..data.in_memory import TORCHVISION_SETS

    kind, sep, _ = str(data).partition(":")
    return kind.lower() if sep and kind.lower() in TORCHVISION_SETS else None


def dataset_classes(data: str | os.PathLike) -> int:
    """Number of classes of a data spec: 10/100 for CIFAR, the ``train/`` class folders otherwise."""
    from ..data import index_split

    kind = cifar_kind(data)
    if kind is not None:
        return 100 if kind == "cifar100" else 10
    return len(index_split(data, "train").classes)


# ------------------------------------------------------------------------------- the trial's fine-tuning
def finetune_epochs(model: nn.Module, loader: Any, *, epochs: int, recipe: Recipe,
                    device: torch.device) -> list[dict[str, float]]:
    """Train ``model`` for ``epochs`` passes over ``loader`` with the shared trainer; returns per-epoch rows.

    No evaluation and no checkpoint (the evaluation trial's short schedule); the model ends in eval mode
    on ``device``. Rows: ``{"epoch", "loss", "top1", "lr"}`` (training loss/accuracy of the epoch).
    """
    from ..trainers.train_loop import Trainer, epoch_batches

    if epochs < 1:
        raise NniExtError(f"--epochs {epochs} must be >= 1 to fine-tune")
    per_epoch = len(loader)
    if per_epoch == 0:
        raise NniExtError("the training split holds fewer images than one batch; lower --train-batch-size")
    trainer = Trainer(model, replace(recipe, steps=None, epochs=epochs), total_steps=epochs * per_epoch,
                      device=device)
    rows = []
    model.train()
    for epoch in range(epochs):
        loss_sum, correct, images = torch.zeros((), device=device), torch.zeros((), device=device), 0
        for x, y in epoch_batches(loader, epoch):
            loss, hits = trainer.train_step(x, y)
            loss_sum, correct, images = loss_sum + loss * len(y), correct + hits, images + len(y)
        rows.append({"epoch": epoch + 1, "loss": float(loss_sum) / max(images, 1),
                     "top1": float(correct) / max(images, 1), "lr": trainer.lr})
        logger.info("fine-tune epoch %d/%d: train loss %.4f, top-1 %.4f", epoch + 1, epochs, rows[-1]["loss"],
                    rows[-1]["top1"])
    return rows


# --------------------------------------------------------------------------------------- CIFAR in memory
class InMemoryLoader:
    """An in-memory split as a training-loop loader: per-rank shard, seeded per epoch, upsampled to ``resolution``.

    ``set_epoch(e)`` reseeds the shuffling and augmentation, so an epoch's batches depend only on the seed
    and ``e`` (what resuming mid-epoch needs).
    """

    backend = "in-memory"

    def __init__(self, data: Any, *, batch_size: int, train: bool, resolution: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, device: torch.device | str = "cpu", mean: tuple[float, ...] = CIFAR_MEAN,
                 std: tuple[float, ...] = CIFAR_STD) -> None:
        import numpy as np

        from ..data.in_memory import Augment, TensorBatches

        if world_size > 1:
            data = data.subset(np.arange(rank, len(data), world_size))
        self.resolution, self.seed = resolution, seed + 7919 * rank
        self.batches = TensorBatches(data, batch_size=batch_size, mean=torch.tensor(mean), std=torch.tensor(std),
                                     augment=Augment(pad=4, flip=True) if train else None, shuffle=train,
                                     drop_last=train, seed=self.seed, device=device)
        self.set_epoch(0)

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        self.batches.generator.manual_seed(self.seed * 1_000_003 + epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.batches:
            if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
                x = torch.nn.functional.interpolate(x, size=(self.resolution, self.resolution), mode="bicubic",
                                                    align_corners=False)
            yield x, y


def _first_per_class(data: Any, n: int) -> Any:
    import numpy as np

    labels = data.labels.numpy()
    keep = np.concatenate([np.flatnonzero(labels == c)[:n] for c in np.unique(labels)])
    return data.subset(np.sort(keep))


def cifar_loaders(cfg: RunConfig, recipe: Recipe, resolution: int, dist: DistInfo,
                  device: torch.device) -> tuple[InMemoryLoader, InMemoryLoader]:
    """Training and test loaders of ``cfg.data = cifar10:ROOT`` (or cifar100), the global batch split over ranks."""
    from ..data.in_memory import load_split

    if recipe.batch_size % dist.world_size:
        raise NniExtError(f"--batch-size {recipe.batch_size} is not divisible by the {dist.world_size} processes")
    train, test = load_split(cfg.data, "train"), load_split(cfg.data, cfg.val_split)
    if cfg.val_per_class:
        test = _first_per_class(test, cfg.val_per_class)
    common = dict(batch_size=recipe.batch_size // dist.world_size, resolution=resolution, seed=recipe.seed,
                  rank=dist.rank, world_size=dist.world_size, device=device)
    return InMemoryLoader(train, train=True, **common), InMemoryLoader(test, train=False, **common)


# ------------------------------------------------------------------------------------ nni-ext ofa finetune
def recalibrate(model: nn.Module, cfg: RunConfig, recipe: Recipe, resolution: int, images: int, *,
                batch_size: int = 100) -> int:
    """OFA's BN recalibration of ``model`` on ``images`` training images of ``cfg.data`` at ``resolution``.

    Train-mode forward passes without gradients on augmented training batches (the loop's own
    augmentation), on this process's device; returns the number of images used.
    """
    from ..data import Preprocessing, build_loader
    from ..data.in_memory import load_split
    from ..devices import resolve_device
    from ..trainers.evaluation import recalibrate_batchnorm

    device = resolve_device(cfg.device)
    if device.type == "cuda":  # under torchrun: this rank's GPU (set by the training loop)
        device = torch.device("cuda", torch.cuda.current_device())
    batch = max(1, min(batch_size, images))
    if cifar_kind(cfg.data):
        loader: Any = InMemoryLoader(load_split(cfg.data, "train"), batch_size=batch, train=True,
                                     resolution=resolution, seed=recipe.seed, device=device)
    else:
        loader = build_loader(cfg.data, "train", batch_size=batch, train=True, backend=cfg.backend, device=device,
                              preprocessing=replace(Preprocessing.for_crop(resolution), min_area=cfg.min_area),
                              num_workers=cfg.workers, seed=recipe.seed)
    model.to(device)
    return recalibrate_batchnorm(model, [model], loader, -(-images // batch))


def finetune(cfg: RunConfig, recipe: Recipe, *, config: str | os.PathLike, weights: str | os.PathLike,
             resolution: int | None = None, reset: str = "auto", dropout: float = DEFAULT_DROPOUT,
             calib_images: int = 2000, parameters: Mapping[str, Any] | None = None,
             sync_bn: bool = False) -> TrainResult:
    """Fine-tune the exported network ``config`` + ``weights`` on ``cfg.data``; checkpoints in ``cfg.output``.

    As NSGANetV2's evaluator: the classifier reset when asked (``reset``, see :func:`prepare_classifier`),
    BN recalibrated on ``calib_images`` training images (0: keep the inherited statistics, which OFA
    slices from the supernet's, shared by all sub-networks; skipped when resuming), then trained.
    ``resolution``: the training and evaluation input size (default: the export's, ``net.config``'s
    ``resolution`` or ``net.subnet``'s ``r``). Without ``recipe.steps``/``epochs``:
    :data:`DEFAULT_FINETUNE_EPOCHS` epochs. When the schedule is done, ``net.config`` and
    ``net.finetuned`` are written into ``cfg.output`` (rank 0).

    Under ``torchrun`` (``torchrun --nproc_per_node G -m nni_ext ofa finetune ...``): DDP, ``recipe.batch_size``
    is the global batch, each rank trains on its share of every global batch (``DistributedSampler`` shards of
    one permutation per epoch: step ``t`` of a W-process run sees exactly the images of step ``t`` of a
    single-process run, with the same per-image crops), gradients are averaged over the ranks. What is equal
    to a single-process run with the same global batch:

    * with ``sync_bn`` (BatchNorm over the global batch: :func:`nni_ext.distributed.sync_batchnorm`) and
      ``dropout=0``: the same loss, gradients and updates, so equal weights and BN statistics to float
      tolerance, not bit for bit: sums run in another order, and such differences grow with the steps as
      between any two runs that sum differently (two single-process runs with 1 and 2 threads differ as
      much). Tested with 2 gloo processes (``tests/test_torchrun.py``: after 2 steps about 3e-6 on weights
      that moved by 1e-2; after 1 step 6e-7);
    * without ``sync_bn``: each rank's BN normalises its own ``batch / W`` images (as plain DDP does), and
      dropout masks are drawn per rank: the same data and schedule, a statistically equivalent run, not
      the same numbers. The ranks' weights are identical to each other throughout (DDP).

    BN recalibration runs before ``sync_bn``'s conversion, identically on every rank (same images).
    ``net.config``/``net.finetuned`` are plain networks either way (the state-dict keys do not change).
    """
    from .._io import atomic_write, atomic_write_json
    from ..devices import resolve_device
    from ..distributed import launched_by_torchrun, sync_batchnorm
    from ..spaces.ofa_mbv3 import OfaMbv3Space
    from ..trainers.checkpoint import read_checkpoint
    from ..trainers.train_loop import run_training
    from .export import CONFIG_FILE, build_from_config, config_resolution, read_net_config, read_weights

    net_config = read_net_config(config)
    r = resolution or config_resolution(net_config, config)
    if not r:
        raise NniExtError(f"{config} names no resolution (no 'resolution' key, no net.subnet beside it); "
                          "give --resolution")
    if r < 32:
        raise NniExtError(f"--resolution {r} is below 32, the smallest input an OFA MobileNetV3 takes")
    if reset not in RESET_MODES:
        raise NniExtError(f"--reset-classifier {reset!r}: choose {', '.join(RESET_MODES)}")
    if not 0 <= dropout < 1:
        raise NniExtError(f"--dropout {dropout} must be in [0, 1)")
    if calib_images < 0:
        raise NniExtError(f"--calib-images {calib_images} must be >= 0 (0: no BN recalibration)")
    resuming = cfg.resume_path() is not None
    state = read_weights(weights)
    build_from_config(net_config, f"network config {config}")  # fail here, not in every torchrun process
    num_classes = dataset_classes(cfg.data)
    meta: dict[str, Any] = {"resolution": int(r)}  # + the config, by model_fn; read when a checkpoint is written

    def model_fn() -> nn.Module:
        from ..trainers.checkpoint import load_state_checked

        model = build_from_config(net_config, f"network config {config}")
        load_state_checked(model, state, str(weights))
        prepare_classifier(model, num_classes, reset, dropout=dropout)
        meta["net_config"] = dict(model.config, resolution=int(r))
        if calib_images and not resuming:  # a resumed run loads its trained weights and statistics
            recalibrate(model, cfg, recipe, int(r), calib_images)
        if sync_bn and launched_by_torchrun():
            model = sync_batchnorm(model, resolve_device(cfg.device))  # its type: torch's on CUDA, ours on CPU
        return model

    space = OfaMbv3Space(num_classes=num_classes, resolutions=[int(r)], dropout=dropout)
    kind = cifar_kind(cfg.data)
    loaders = (lambda dist, device: cifar_loaders(cfg, recipe, int(r), dist, device)) if kind else None
    result = run_training(model_fn, space=space, kind=KIND, recipe=recipe, cfg=replace(cfg, crop_size=int(r)),
                          default_steps=lambda per_epoch: DEFAULT_FINETUNE_EPOCHS * per_epoch,
                          meta=meta, desc="finetune",
                          report_parameters=parameters, loaders=loaders)
    if result.finished and os.environ.get("RANK", "0") == "0":
        ckpt = read_checkpoint(cfg.checkpoint, kind=KIND)
        out = Path(cfg.output)
        atomic_write_json(out / CONFIG_FILE, ckpt["net_config"], indent=4)
        atomic_write(out / FINETUNED_FILE, lambda tmp: torch.save({"state_dict": ckpt["model"]}, tmp))
    return result


def load_finetuned(path: str | os.PathLike, *, device: Any = "cpu") -> tuple[nn.Module, int, dict[str, Any]]:
    """``(model with the checkpoint's weights, resolution, checkpoint dict)`` of an ``ofa_subnet`` checkpoint."""
    from ..trainers.checkpoint import load_state_checked, read_checkpoint
    from .export import build_from_config

    ckpt = read_checkpoint(path, kind=KIND)
    model = build_from_config(ckpt["net_config"], f"checkpoint {path}")
    load_state_checked(model, ckpt["model"], str(path))
    return model.to(device), int(ckpt["resolution"]), ckpt


__all__ = ["CIFAR_MEAN", "CIFAR_STD", "DEFAULT_FINETUNE_EPOCHS", "FINETUNED_FILE", "InMemoryLoader", "KIND",
           "cifar_kind", "cifar_loaders", "dataset_classes", "finetune", "finetune_epochs", "finetune_recipe",
           "load_finetuned", "prepare_classifier", "reset_classifier"]
