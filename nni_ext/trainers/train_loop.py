"""The training loop shared by SPOS supernet training and training a fixed architecture from scratch.

:class:`Trainer` holds the optimizer, LR schedule, AMP and DDP and runs one step; :func:`fit` runs
steps with a resumable data position, evaluation, atomic checkpoints, a progress bar and NNI
reports; :func:`run_training` sets up devices, DDP (``torchrun``), loaders and resuming around
them. The supernet passes ``path_fn(step)`` sampling a path per step; a fixed network passes
``None``. Defaults are the official SPOS recipe: label-smoothing 0.1 cross-entropy, SGD momentum
0.9, LR 0.5 at batch 1024 (scaled linearly for other batch sizes) decaying linearly to 0 per
iteration, weight decay 4e-5 on parameters with ``dim > 1`` only.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..core.metrics import encode_report
from ..errors import NniExtError
from .evaluation import evaluate, recalibrate_batchnorm
from .runtime import DistInfo, capture_rng, distributed, epoch_batches, resolve_device, restore_rng, seed_everything

__all__ = ["DistInfo", "Job", "Recipe", "RunConfig", "TrainResult", "Trainer", "capture_rng", "cosine_decay",
           "distributed", "epoch_batches", "fit", "linear_decay", "param_groups", "resolve_device", "restore_rng",
           "run_training", "seed_everything"]

logger = logging.getLogger(__name__)

#: the official SPOS batch size and the learning rate that goes with it
OFFICIAL_BATCH_SIZE, OFFICIAL_LR = 1024, 0.5

PathT = Optional[Sequence[int]]
PathFn = Callable[[int], PathT]


@dataclass
class Recipe:
    """Optimisation and schedule (official SPOS values by default).

    ``batch_size`` is global (split over DDP ranks): the official 1024 needs several GPUs, the
    default 256 fits one. ``lr=None`` means ``0.5 * batch_size / 1024``. ``steps`` or ``epochs``
    set the length (else the caller's default); ``eval_every=None`` evaluates after each epoch;
    ``stop_at`` ends this run early at that step of the schedule, so a later resume finishes it.
    ``amp``/``channels_last`` ``None`` mean: on with CUDA.
    """

    batch_size: int = 256
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    steps: int | None = None
    epochs: int | None = None
    save_every: int = 1000
    eval_every: int | None = None
    stop_at: int | None = None
    amp: bool | None = None
    channels_last: bool | None = None
    seed: int = 0
    quiet: bool = False
    log_every: int = 10
    #: ``"linear"`` (SPOS: to 0 per iteration) or ``"cosine"`` (OFA: ``0.5 (1 + cos(pi t / T))`` per iteration)
    schedule: str = "linear"
    #: Nesterov momentum (OFA's SGD default; SPOS uses plain momentum)
    nesterov: bool = False
    #: sharpness-aware minimisation around the SGD step (:class:`nni_ext.robustness.SAM`, adaptive, FlatNAS's
    #: rho 2.0): the neighbourhood radius, or ``None`` for plain SGD. Two forward-backward passes per step.
    sam_rho: float | None = None

    @property
    def base_lr(self) -> float:
        return OFFICIAL_LR * self.batch_size / OFFICIAL_BATCH_SIZE if self.lr is None else self.lr

    def check(self) -> None:
        """Raise :class:`NniExtError` naming the first bad value."""
        for name in ("batch_size", "steps", "epochs", "save_every", "eval_every", "stop_at", "log_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise NniExtError(f"--{name.replace('_', '-')} {value} must be >= 1")
        if self.steps is not None and self.epochs is not None:
            raise NniExtError("give --steps or --epochs, not both")
        if self.base_lr <= 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise NniExtError(f"need lr > 0, weight decay >= 0 and 0 <= momentum < 1 (got {self.base_lr}, "
                              f"{self.weight_decay}, {self.momentum})")
        if not 0 <= self.label_smoothing < 1:
            raise NniExtError(f"--label-smoothing {self.label_smoothing} must be in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise NniExtError(f"schedule {self.schedule!r}: choose {' or '.join(SCHEDULES)}")
        if self.sam_rho is not None and not self.sam_rho > 0:
            raise NniExtError(f"--sam-rho {self.sam_rho} must be > 0 (FlatNAS uses 2.0, adaptive)")
        if self.nesterov and self.momentum <= 0:
            raise NniExtError("Nesterov momentum needs --momentum > 0")

    def total_steps(self, steps_per_epoch: int, default_steps: int) -> int:
        return self.steps or (self.epochs * steps_per_epoch if self.epochs else default_steps)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on parameters with ``dim > 1`` (conv/linear weights); none on BN affine and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() > 1], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def linear_decay(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LR factor ``1 - step / total_steps`` per iteration, 0 afterwards (the official SPOS schedule)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total_steps))


def cosine_decay(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LR factor ``0.5 (1 + cos(pi step / total_steps))`` per iteration, 0 afterwards (OFA's ``cosine``)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)))


#: ``Recipe.schedule`` -> LR scheduler factory
SCHEDULES: dict[str, Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LambdaLR]] = {
    "linear": linear_decay, "cosine": cosine_decay}


class Trainer:
    """Model, optimizer, schedule and mixed precision; :meth:`train_step` runs one SGD step.

    With a ``path`` the model is a supernet (``model(x, path)``); after ``backward()`` the gradients
    of ``model.unused_parameters(path)`` are set to ``None``, so the blocks the path skips get no
    momentum or weight-decay update (under DDP they would otherwise get zero gradients).
    """

    def __init__(self, model: nn.Module, recipe: Recipe, *, total_steps: int, device: torch.device,
                 dist: DistInfo | None = None, find_unused_parameters: bool = False) -> None:
        self.device, self.recipe, self.total_steps, self.dist = device, recipe, total_steps, dist or DistInfo()
        self.amp = device.type == "cuda" if recipe.amp is None else recipe.amp
        if self.amp and device.type != "cuda":
            logger.warning("--amp needs CUDA; training in float32 on %s", device)
            self.amp = False
        if self.amp and recipe.sam_rho is not None:
            logger.warning("SAM takes two gradient steps per update; training in float32 (no AMP)")
            self.amp = False
        self.channels_last = device.type == "cuda" if recipe.channels_last is None else recipe.channels_last
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.module = self.model = model.to(device, memory_format=fmt)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = DDP(self.module, device_ids=[device.index] if device.type == "cuda" else None,
                             find_unused_parameters=find_unused_parameters)
        sgd = dict(lr=recipe.base_lr, momentum=recipe.momentum, nesterov=recipe.nesterov)
        if recipe.sam_rho is None:
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(param_groups(self.module, recipe.weight_decay),
                                                                    **sgd)
        else:
            from ..robustness.sam import SAM

            self.optimizer = SAM(param_groups(self.module, recipe.weight_decay), torch.optim.SGD,
                                 rho=recipe.sam_rho, adaptive=True, **sgd)
        self.scheduler = SCHEDULES[recipe.schedule](self.optimizer, total_steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        self.step = 0

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def forward(self, model: nn.Module, images: torch.Tensor, path: PathT) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            return model(images) if path is None else model(images, path)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor,
                   path: PathT = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns the detached loss and the number of correct top-1 predictions."""
        logits = self.forward(self.model, images, path)
        loss = self.criterion(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self._drop_unused(path)
        if self.recipe.sam_rho is not None:  # SAM: step to the worst nearby weights, take the gradient there
            self.optimizer.first_step(zero_grad=True)  # type: ignore[attr-defined]
            self.criterion(self.forward(self.model, images, path).float(), labels).backward()
            self._drop_unused(path)
            self.optimizer.second_step(zero_grad=False)  # type: ignore[attr-defined]
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return loss.detach(), (logits.detach().argmax(1) == labels).sum()

    def _drop_unused(self, path: PathT) -> None:
        if path is not None:
            for p in self.module.unused_parameters(path):
                p.grad = None

    def evaluate(self, loader: Any, paths: Sequence[PathT] = (None,), *, batch_stats: bool = False) -> dict[str, float]:
        """Top-1/top-5/loss (fractions) averaged over ``paths``, and over DDP ranks by image count.

        ``batch_stats``: BatchNorm normalises with statistics of the evaluated images themselves, per
        path (a supernet's running statistics mix all paths, so they are poor for any one): a first
        pass over ``loader`` in train mode without gradients accumulates them (equal weight per batch,
        as the tester's recalibration), the second pass evaluates. Not each batch's own statistics:
        validation batches come class by class, and a batch of one or two classes normalises the
        class away (the spos-digits supernet then read 37 % where the recalibrated paths had 88 %).
        The running statistics and momenta are restored afterwards.
        """
        self.module.eval()
        bns = [m for m in self.module.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats] if batch_stats else []
        saved = [[b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked)] for m in bns]

        def run(path: PathT) -> dict[str, float]:
            forward = lambda x: self.forward(self.module, x, path)  # noqa: E731
            if bns:  # one pass over every batch of 2+ images (BN in train mode needs 2+)
                recalibrate_batchnorm(forward, [self.module], ((x, y) for x, y in loader if len(y) > 1), sys.maxsize)
            return evaluate(forward, loader)

        try:
            runs = [run(p) for p in paths]
        finally:
            for m, state in zip(bns, saved):
                for buffer, value in zip((m.running_mean, m.running_var, m.num_batches_tracked), state):
                    buffer.copy_(value)
            self.module.train()
        n = runs[0]["images"]
        sums = torch.tensor([float(np.mean([r[k] for r in runs])) * n for k in ("top1", "top5", "loss")] + [n],
                            dtype=torch.float64, device=self.device)
        if self.dist.enabled:
            import torch.distributed as tdist

            tdist.all_reduce(sums)
        total = max(float(sums[3]), 1.0)
        return {"top1": float(sums[0]) / total, "top5": float(sums[1]) / total, "loss": float(sums[2]) / total,
                "images": int(sums[3])}

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])


@dataclass
class TrainResult:
    """What a run reached; accuracies are fractions, ``val`` is the last evaluation (``None``: none ran)."""

    step: int
    total_steps: int
    finished: bool
    val: dict[str, float] | None
    train_log: list[dict[str, float]] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    images_per_second: float = 0.0


@dataclass
class Job:
    """What :func:`fit` needs besides the :class:`Trainer`.

    ``path_fn(step)``: the path of each step (``None``: fixed network); ``eval_paths``: the paths
    evaluated (``[None]`` for a fixed network); ``stateful``: objects with ``state_dict()`` /
    ``load_state_dict()`` (the path sampler) saved in checkpoints under their key; ``save(state)``
    writes a checkpoint (called on rank 0 only); ``eval_batch_stats``: see :meth:`Trainer.evaluate`.
    """

    train_loader: Any
    val_loader: Any
    path_fn: PathFn = lambda step: None  # noqa: E731
    eval_paths: Sequence[PathT] = (None,)
    save: Callable[[dict[str, Any]], Any] | None = None
    stateful: Mapping[str, Any] = field(default_factory=dict)
    report_nni: bool = False
    eval_batch_stats: bool = False
    desc: str = "train"
    #: reported with the final result under ``architecture`` (:func:`nni_ext.core.metrics.encode_report`)
    parameters: Mapping[str, Any] | None = None


class _Window:
    """Training loss, top-1 and images/s since the last log line (one device sync per read)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss: Any = 0.0
        self.correct: Any = 0
        self.images = self.steps = 0
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor, correct: torch.Tensor, images: int) -> None:
        self.loss, self.correct = self.loss + loss, self.correct + correct
        self.images, self.steps = self.images + images, self.steps + 1

    def read(self, world_size: int) -> dict[str, float]:
        """The window's averages; starts a new window."""
        seconds = max(time.perf_counter() - self.start, 1e-9)
        out = {"loss": float(self.loss) / self.steps, "top1": int(self.correct) / self.images,
               "img_s": self.images * world_size / seconds}
        self.reset()
        return out


def fit(trainer: Trainer, job: Job, *, resume_state: Mapping[str, Any] | None = None) -> TrainResult:
    """Train from ``trainer.step`` to ``trainer.total_steps`` (or ``recipe.stop_at``), evaluating and saving.

    ``resume_state``: the checkpoint the trainer and ``job.stateful`` were restored from; its RNG
    states are restored once the epoch's data position is recovered, so the run continues the random
    stream of an uninterrupted one (bit-exact on CPU with the torchvision back-end).
    """
    recipe, dist = trainer.recipe, trainer.dist
    per_epoch = len(job.train_loader)
    if per_epoch == 0:
        raise NniExtError("the training split holds fewer images per rank than one batch; lower --batch-size")
    end = min(trainer.total_steps, recipe.stop_at or trainer.total_steps)
    history: list[dict[str, float]] = list((resume_state or {}).get("history", []))
    train_log: list[dict[str, float]] = []
    val, rng = (history[-1] if history else None), (resume_state or {}).get("rng")
    from tqdm.auto import tqdm

    bar = tqdm(total=trainer.total_steps, initial=trainer.step, desc=job.desc, dynamic_ncols=True,
               disable=recipe.quiet or not dist.is_main or job.report_nni)  # nnictl logs: evaluation lines only
    window, started, seen_total = _Window(), time.perf_counter(), 0

    def save() -> None:
        if job.save is not None and dist.is_main:
            job.save({**trainer.state_dict(), **{k: obj.state_dict() for k, obj in job.stateful.items()},
                      "rng": capture_rng(), "history": history, "epoch": trainer.step // per_epoch,
                      "total_steps": trainer.total_steps})

    trainer.module.train()
    while trainer.step < end:
        batches = epoch_batches(job.train_loader, *divmod(trainer.step, per_epoch))
        if rng is not None:  # after the skip, which may have drawn random crops
            if dist.world_size == 1:
                restore_rng(rng)
            else:  # only rank 0's states are saved
                seed_everything(recipe.seed + dist.rank + trainer.step)
            rng = None
        for images, labels in batches:
            loss, hits = trainer.train_step(images, labels, job.path_fn(trainer.step))
            window.add(loss, hits, len(labels))
            step, seen_total = trainer.step, seen_total + len(labels)
            bar.update(1)
            if step % recipe.log_every == 0 or step == end:
                row = {"step": step, **window.read(dist.world_size), "lr": trainer.lr}
                train_log.append(row)
                bar.set_postfix(loss=f"{row['loss']:.3f}", top1=f"{row['top1']:.3f}", img_s=f"{row['img_s']:.0f}",
                                lr=f"{row['lr']:.4g}")
            if (step % recipe.eval_every == 0 if recipe.eval_every else step % per_epoch == 0) \
                    or step == trainer.total_steps:
                val = _evaluate(trainer, job, step, per_epoch, history, train_log, bar)
            if step % recipe.save_every == 0 or step == end:
                save()
            if step >= end:
                break
    bar.close()
    finished = trainer.step >= trainer.total_steps
    if finished and (val is None or val["step"] != trainer.step):  # resumed after the end
        val = _evaluate(trainer, job, trainer.step, per_epoch, history, train_log, None)
    if finished and job.report_nni and dist.is_main and val is not None:
        import nni

        nni.report_final_result(encode_report({"default": val["top1"], **{k: v for k, v in val.items() if k != "top1"}},
                                              job.parameters))
    return TrainResult(step=trainer.step, total_steps=trainer.total_steps, finished=finished, val=val,
                       train_log=train_log, history=history,
                       images_per_second=seen_total * dist.world_size / max(time.perf_counter() - started, 1e-9))


def _evaluate(trainer: Trainer, job: Job, step: int, per_epoch: int, history: list[dict[str, float]],
              train_log: list[dict[str, float]], bar: Any) -> dict[str, float]:
    """Evaluate, print, append to ``history`` and report an intermediate result under nnictl."""
    result = trainer.evaluate(job.val_loader, job.eval_paths, batch_stats=job.eval_batch_stats)
    row = {"step": step, "epoch": step / per_epoch, "top1": result["top1"], "top5": result["top5"],
           "val_loss": result["loss"]}
    if train_log:
        row.update(train_loss=train_log[-1]["loss"], train_top1=train_log[-1]["top1"])
    history.append(row)
    if trainer.dist.is_main:
        if bar is not None and not trainer.recipe.quiet:
            bar.write(f"step {step} (epoch {row['epoch']:.2f}): val top-1 {row['top1']:.4f}, "
                      f"top-5 {row['top5']:.4f}, loss {row['val_loss']:.4f}")
        if job.report_nni and step < trainer.total_steps and not math.isnan(row["top1"]):
            import nni

            nni.report_intermediate_result(encode_report({"default": row["top1"],
                                                          **{k: v for k, v in row.items() if k != "top1"}}))
    return row


# ------------------------------------------------------------------ a whole run
@dataclass
class RunConfig:
    """Data, device and files of a run: ``output/checkpoint.pth`` is written (atomically, replaced).

    ``resume``: ``True`` continues ``output/checkpoint.pth``, a path continues that file. Without it
    an existing checkpoint in ``output`` is an error unless ``overwrite``. ``crop_size=None``: the
    space's input size; ``min_area``: smallest random-resized-crop area (official 0.08);
    ``val_per_class``: evaluate on the first N images of each class (a fixed, balanced subset).
    """

    data: str | os.PathLike
    output: str | os.PathLike
    backend: str = "auto"
    workers: int = 4
    crop_size: int | None = None
    spos_preprocessing: bool = False
    min_area: float = 0.08
    device: str = "auto"
    resume: bool | str | os.PathLike = False
    overwrite: bool = False
    val_split: str = "val"
    val_per_class: int | None = None

    @property
    def checkpoint(self) -> Path:
        return Path(self.output) / "checkpoint.pth"

    def resume_path(self) -> Path | None:
        if self.resume is True or self.resume == "":
            return self.checkpoint
        if self.resume:
            return Path(self.resume)
        if self.checkpoint.exists() and not self.overwrite:
            raise NniExtError(f"{self.checkpoint} exists: pass --resume to continue it or --overwrite to start over")
        return None


def build_loaders(cfg: RunConfig, recipe: Recipe, dist: DistInfo, device: torch.device, crop: int) -> tuple[Any, Any]:
    """Training (shuffled, augmented, sharded) and validation loaders; the global batch split over ranks."""
    from dataclasses import replace

    from ..data import Preprocessing, build_loader

    if recipe.batch_size % dist.world_size:
        raise NniExtError(f"--batch-size {recipe.batch_size} is not divisible by the {dist.world_size} processes")
    common = dict(batch_size=recipe.batch_size // dist.world_size, backend=cfg.backend, device=device,
                  preprocessing=replace(Preprocessing.for_crop(crop, spos=cfg.spos_preprocessing),
                                        min_area=cfg.min_area),
                  num_workers=cfg.workers, rank=dist.rank, world_size=dist.world_size, seed=recipe.seed)
    return (build_loader(cfg.data, "train", train=True, drop_last=True, **common),
            build_loader(cfg.data, cfg.val_split, train=False, max_per_class=cfg.val_per_class, **common))


def _load_resumable(ckpt: Mapping[str, Any], space: Any, model: nn.Module, source: Path) -> None:
    """Load the weights; refuse (one line) a checkpoint of another space, width or BN setting."""
    from .checkpoint import load_state_checked

    load_state_checked(model, ckpt["model"], str(source))
    if ckpt["space"] != space.name or ckpt["space_config"] != space.config:
        diff = sorted(k for k in set(space.config) | set(ckpt["space_config"])
                      if space.config.get(k) != ckpt["space_config"].get(k))
        raise NniExtError(f"checkpoint {source} was trained for space {ckpt['space']!r} with another configuration "
                          f"(differs in {', '.join(diff) or 'name'}); resume with the same --space/--space-arg")


def run_training(model_fn: Callable[[], nn.Module], *, space: Any, kind: str, recipe: Recipe, cfg: RunConfig,
                 default_steps: Callable[[int], int], path_fn: PathFn = lambda step: None,
                 eval_paths: Sequence[PathT] = (None,), stateful: Mapping[str, Any] | None = None,
                 find_unused_parameters: bool = False, eval_batch_stats: bool = False,
                 meta: Mapping[str, Any] | None = None, desc: str = "train",
                 report_parameters: Mapping[str, Any] | None = None,
                 loaders: Callable[[DistInfo, torch.device], tuple[Any, Any]] | None = None) -> TrainResult:
    """Set up devices, DDP, loaders and resuming, then :func:`fit`; the shared body of supernet and retrain.

    ``model_fn`` builds the network after seeding; ``default_steps(steps_per_epoch)`` is the length
    when the recipe gives neither steps nor epochs; ``meta`` is stored in every checkpoint;
    ``report_parameters`` (the trial's architecture) is reported with the final result under nnictl;
    ``loaders(dist, device)`` builds ``(train, val)`` loaders (``len``, iteration, ``set_epoch``) instead
    of the ImageNet-layout folders of ``cfg.data`` (e.g. CIFAR held in memory).
    """
    from ..runner import in_nni_trial
    from .checkpoint import read_checkpoint, save_checkpoint

    recipe.check()
    resume = cfg.resume_path()
    stateful = dict(stateful or {})
    with distributed(cfg.device) as (dist, device):
        seed_everything(recipe.seed + dist.rank)
        model = model_fn()
        train_loader, val_loader = (loaders(dist, device) if loaders is not None else
                                    build_loaders(cfg, recipe, dist, device, cfg.crop_size or space.default_input_size))
        total = recipe.total_steps(len(train_loader), default_steps(len(train_loader)))
        ckpt = None
        if resume is not None:
            ckpt = read_checkpoint(resume, kind=kind)
            _load_resumable(ckpt, space, model, resume)
        trainer = Trainer(model, recipe, total_steps=total, device=device, dist=dist,
                          find_unused_parameters=find_unused_parameters)
        if ckpt is not None:
            if ckpt.get("total_steps") != total:
                logger.warning("resuming a %s-step schedule as a %s-step one", ckpt.get("total_steps"), total)
            trainer.load_state_dict(ckpt)
            for key, obj in stateful.items():
                obj.load_state_dict(ckpt[key])
        args = {"recipe": {**asdict(recipe), "base_lr": recipe.base_lr},
                "run": {k: str(v) if isinstance(v, os.PathLike) else v for k, v in asdict(cfg).items()},
                "crop_size": cfg.crop_size or space.default_input_size}

        def save(state: dict[str, Any]) -> Path:
            return save_checkpoint(cfg.checkpoint, model=trainer.module, space=space, kind=kind, args=args,
                                   **dict(meta or {}), **state)

        job = Job(train_loader, val_loader, path_fn=path_fn, eval_paths=eval_paths, save=save, stateful=stateful,
                  report_nni=in_nni_trial(), eval_batch_stats=eval_batch_stats, desc=desc,
                  parameters=report_parameters)
        result = fit(trainer, job, resume_state=ckpt)
    result.checkpoint = cfg.checkpoint
    return result
