"""Evaluation training of a DARTS genotype (the network a search found), DARTS/PC-DARTS's CIFAR recipe.

:class:`TrainConfig` defaults: 20 cells, 36 channels, batch 96, SGD 0.025 momentum 0.9 weight decay
3e-4 with cosine decay over 600 epochs, Cutout 16, auxiliary head weight 0.4, drop path 0.3
(raised linearly from 0 over the epochs), gradient clip 5. ``train_portion`` < 1 keeps part of the
training set out as a held-out split (accuracy logged only; its logits feed the ensemble weights).

After training, the logits of the held-out and test splits are saved (``predictions.pt``) so
``nni-ext pcdarts ensemble`` can combine models without re-running them. A state file is written
atomically after every epoch and a rerun with the same configuration resumes from it.

The batch size may come from :class:`nni_ext.pcdarts.memory.BatchSizeEstimator` (see
:func:`train_many`): on CUDA each run's peak memory is measured and fed back to the estimator,
and an out-of-memory error halves the batch and retries.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .._io import atomic_write, atomic_write_json
from ..data.in_memory import Augment, ImageTensors, TensorBatches, load_split, split_in_two
from ..devices import resolve_device
from ..errors import NniExtError
from .evaluation import evaluate
from .pcdarts_config import TrainConfig as TrainConfig
from .runtime import EpochStateFile, seed_everything

log = logging.getLogger(__name__)

STATE_FILE = "train_state.pt"
PREDICTIONS_FILE = "predictions.pt"


@dataclass
class TrainOutcome:
    """A finished (or resumed-and-finished) evaluation training."""

    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    out_dir: Path


def _predict(model: nn.Module, batches: TensorBatches) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for x, y in batches:
            logits.append(model(x)[0].float().cpu())
            labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)


def train_genotype(cfg: TrainConfig, *, on_epoch: Callable[[dict[str, Any]], None] | None = None,
                   train_data: ImageTensors | None = None, test_data: ImageTensors | None = None) -> TrainOutcome:
    """Train ``cfg.genotype`` from scratch (or resume), evaluate on the test split, save logits; returns metrics."""
    from tqdm.auto import tqdm

    from ..pcdarts import EvalNetwork
    from ..pcdarts.eval_model import eval_network_cost
    from ..pcdarts.genotypes import genotype_to_dict, load_genotype

    cfg.check()
    genotype = load_genotype(cfg.genotype)
    device = resolve_device(cfg.device)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    full = train_data if train_data is not None else load_split(cfg.data, "train", image_size=cfg.image_size)
    test = test_data if test_data is not None else load_split(cfg.data, cfg.test_split, image_size=cfg.image_size)
    held_out = None
    train_part = full
    if cfg.train_portion < 1:
        train_part, held_out = split_in_two(full, cfg.train_portion, seed=cfg.seed)
    mean, std = full.channel_stats()
    batches = TensorBatches(train_part, batch_size=cfg.batch_size, mean=mean, std=std,
                            augment=Augment(flip=cfg.flip, cutout=cfg.cutout), seed=cfg.seed, device=device)
    ordered = {name: TensorBatches(part, batch_size=max(cfg.batch_size, 256), mean=mean, std=std, shuffle=False,
                                   device=device)
               for name, part in (("held_out", held_out), ("test", test)) if part is not None}

    in_channels, size = int(full.images.shape[1]), int(full.images.shape[-1])
    model = EvalNetwork(genotype, C=cfg.init_channels, num_classes=full.num_classes, layers=cfg.layers,
                        auxiliary=cfg.auxiliary, drop_path_prob=0.0, in_channels=in_channels)
    cost = eval_network_cost(genotype, num_classes=full.num_classes, channels=cfg.init_channels, layers=cfg.layers,
                             image_size=size, in_channels=in_channels)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs)
    criterion = nn.CrossEntropyLoss()

    state_file = EpochStateFile(out / STATE_FILE, fingerprint=cfg.fingerprint(), what="training")
    stateful = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    generators = {"gen": batches.generator}
    start_epoch, history = state_file.load(stateful, generators, device=device)
    if start_epoch:
        log.info("resuming the training from epoch %d of %d", start_epoch, cfg.epochs)

    steps = 0
    for epoch in range(start_epoch, cfg.epochs):
        started = time.perf_counter()
        model.train()
        model.drop_path_prob = cfg.drop_path_prob * epoch / cfg.epochs
        loss_sum = correct = images = 0.0
        lr = scheduler.get_last_lr()[0]
        for x, y in tqdm(batches, desc=f"train epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
                         dynamic_ncols=True, mininterval=2.0):
            optimizer.zero_grad(set_to_none=True)
            logits, logits_aux = model(x)
            loss = criterion(logits, y)
            if logits_aux is not None:
                loss = loss + cfg.auxiliary_weight * criterion(logits_aux, y)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            images += len(y)
            steps += 1
            if cfg.max_steps is not None and steps >= cfg.max_steps:
                break
        scheduler.step()
        model.eval()
        test_metrics = evaluate(lambda t: model(t)[0], ordered["test"])
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / max(images, 1),
                  "train_acc": correct / max(images, 1), "test_acc": test_metrics["top1"],
                  "test_loss": test_metrics["loss"], "seconds": time.perf_counter() - started}
        if "held_out" in ordered:
            record["held_out_acc"] = evaluate(lambda t: model(t)[0], ordered["held_out"])["top1"]
        history.append(record)
        print(f"epoch {epoch + 1}/{cfg.epochs}  loss {record['train_loss']:.4f}  train {record['train_acc']:.4f}  "
              f"test {record['test_acc']:.4f}  ({record['seconds']:.1f} s)", flush=True)
        state_file.save(epoch + 1, history, stateful, generators)
        if on_epoch is not None:
            on_epoch(record)
        if cfg.max_steps is not None and steps >= cfg.max_steps:
            break
    if not history:
        raise NniExtError(f"no epoch ran (epochs={cfg.epochs})")

    predictions = {name: dict(zip(("logits", "labels"), _predict(model, b))) for name, b in ordered.items()}
    atomic_write(out / PREDICTIONS_FILE, lambda tmp: torch.save(predictions, tmp))
    metrics = {"default": history[-1]["test_acc"], "params": cost["params"], "flops": cost["flops"],
               "train_acc": history[-1]["train_acc"], "epochs": history[-1]["epoch"], "batch_size": cfg.batch_size,
               "genotype": str(genotype)}
    if "held_out_acc" in history[-1]:
        metrics["held_out_acc"] = history[-1]["held_out_acc"]
    atomic_write_json(out / "result.json", {**metrics, "genotype_name": cfg.genotype,
                                            "genotype_dict": genotype_to_dict(genotype),
                                            "config": cfg.fingerprint(), "history": history})
    return TrainOutcome(metrics, history, out)


def train_many(base: TrainConfig, genotypes: Sequence[str], *, out_root: str | Path,
               estimator: Any | None = None, memory_margin_mb: float = 500.0, names: Sequence[str] | None = None,
               on_epoch: Callable[[dict[str, Any]], None] | None = None) -> list[TrainOutcome]:
    """Train several genotypes one after another under ``out_root/<name>``, choosing each batch size.

    On CUDA, each genotype's batch size is the estimator's proposal for its parameter count under the
    device's free memory (never above it, minus the estimator's margin); the measured peak memory is
    recorded in ``out_root/memory.csv`` and refits the estimator; an out-of-memory error halves the
    batch and retries. On CPU the configured batch size is used. ``names`` name the sub-folders
    (default: from the genotype specs).
    """
    from ..pcdarts.memory import BatchSizeEstimator

    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    memory_csv = root / "memory.csv"
    if estimator is None:
        estimator = (BatchSizeEstimator.from_csv(memory_csv) if memory_csv.exists()
                     else BatchSizeEstimator(margin_mb=memory_margin_mb))
    device = resolve_device(base.device)
    outcomes = []  # a finished genotype resumes at its last epoch: only its predictions are recomputed
    for i, name in enumerate(genotypes):
        folder = root / (names[i] if names else _safe_name(name, i))
        cfg = replace(base, genotype=name, out_dir=str(folder))
        if device.type == "cuda":
            outcomes.append(_train_on_cuda(cfg, estimator, device, memory_csv, on_epoch))
        else:
            outcomes.append(train_genotype(cfg, on_epoch=on_epoch))
        print(f"[{i + 1}/{len(genotypes)}] {name}: test acc {outcomes[-1].metrics['default']:.4f}, "
              f"{outcomes[-1].metrics['params'] / 1e6:.2f} M params, batch {outcomes[-1].metrics['batch_size']}",
              flush=True)
    return outcomes


def _train_on_cuda(cfg: TrainConfig, estimator: Any, device: torch.device, memory_csv: Path,
                   on_epoch: Callable[[dict[str, Any]], None] | None) -> TrainOutcome:
    from ..pcdarts.memory import free_memory_mb, run_with_backoff

    params_m = _params_millions(cfg)
    limit = free_memory_mb(device)
    if limit and estimator.records:
        batch = estimator.propose(params_m, limit_mb=limit, preferred=cfg.batch_size)
    else:  # nothing measured yet: the configured size, halved on out-of-memory; its peak seeds the estimator
        batch = cfg.batch_size

    def attempt(batch_size: int) -> TrainOutcome:
        torch.cuda.reset_peak_memory_stats(device)
        return train_genotype(replace(cfg, batch_size=batch_size), on_epoch=on_epoch)

    outcome, used = run_with_backoff(attempt, batch, estimator=estimator, params_m=params_m, min_batch=1)
    peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    estimator.add(params_m, used, peak_mb)
    estimator.to_csv(memory_csv)
    return outcome


def _params_millions(cfg: TrainConfig) -> float:
    from ..cost.counting import count_params
    from ..pcdarts import EvalNetwork
    from ..pcdarts.genotypes import load_genotype

    net = EvalNetwork(load_genotype(cfg.genotype), C=cfg.init_channels, layers=cfg.layers, auxiliary=cfg.auxiliary)
    return count_params(net) / 1e6


def _safe_name(name: str, index: int) -> str:
    """A folder name for a genotype spec: ``genotypes.py:l1_loss_2e01`` -> ``l1_loss_2e01``, ``a/b.json`` ->
    ``b.json``."""
    tail = name.replace("\\", "/").rsplit("/", 1)[-1]
    tail = tail.rsplit(":", 1)[-1] if ":" in tail else tail
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in tail.replace(":", "_"))
    return cleaned or f"genotype_{index:02d}"
