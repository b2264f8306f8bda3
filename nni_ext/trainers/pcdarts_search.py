"""PC-DARTS search with a complexity penalty: the weight step minimises (1 - nu) * CE + nu * R (MOOD-NAS).

First-order bilevel search on a 50/50 split of the training data, PC-DARTS's published recipe as
the defaults (:class:`SearchConfig`). Per step: once the architecture is unfrozen (epoch >=
``arch_warmup``), one Adam step on the architecture parameters (alphas and edge-normalisation
betas) with the cross-entropy of a batch from the search half; then one SGD step on the weights
with ``(1 - nu) * CE + nu * R`` on a batch from the weight half, gradients clipped to ``grad_clip``.

R, the regulariser (MOOD-NAS's ``-o l1`` / ``-o l2``), is computed on the network weights (not the
architecture parameters):

* ``l1``: the sum of absolute values of every weight;
* ``l2``: the sum of squares (MOOD-NAS's ``MSELoss(reduction='sum')`` against zero);
* ``flops`` / ``params`` (an extension): the expected multiply-accumulates / parameters, in millions,
  of the mixed operations under the current architecture distribution (differentiable in alpha
  and beta only; see :meth:`nni_ext.pcdarts.SearchNetwork.expected_cost`);
* ``none``: plain PC-DARTS.

SGD weight decay stays a separate option (MOOD-NAS's "L1 with fixed L2" runs use 3e-4).

Reported losses are averages over the last epoch (MOOD-NAS logged last-batch values), together
with the search-validation accuracy, the derived genotype and the parameters and FLOPs of its
evaluation network (``eval_channels`` x ``eval_layers``, no auxiliary head, as MOOD-NAS counts).
A state file in ``out_dir`` is written atomically after each epoch, and a rerun with the same
configuration resumes from it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .._io import atomic_write_json
from ..data.in_memory import Augment, ImageTensors, TensorBatches, load_split, split_in_two
from ..devices import resolve_device
from ..errors import NniExtError
from .evaluation import evaluate
from .pcdarts_config import REGULARIZERS as REGULARIZERS
from .pcdarts_config import SearchConfig as SearchConfig
from .runtime import EpochStateFile, seed_everything

log = logging.getLogger(__name__)

STATE_FILE = "search_state.pt"


def regularization(model: Any, kind: str, weights: list[nn.Parameter]) -> torch.Tensor:
    """R of the current network: ``l1`` / ``l2`` of ``weights``, or the expected ``flops`` / ``params`` in millions."""
    if kind == "l1":
        return torch.stack([p.abs().sum() for p in weights]).sum()
    if kind == "l2":
        return torch.stack([p.pow(2).sum() for p in weights]).sum()
    if kind in ("flops", "params"):
        return model.expected_cost(kind) / 1e6
    return torch.zeros((), device=weights[0].device)


@dataclass
class SearchResult:
    """What a search reports: the metric dict (NNI's final result) and the per-epoch history."""

    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    genotype: Any
    out_dir: Path


def run_search(cfg: SearchConfig, *, on_epoch: Callable[[dict[str, Any]], None] | None = None,
               train_data: ImageTensors | None = None) -> SearchResult:
    """Run (or resume) one search; ``on_epoch`` gets each epoch's record (e.g. an NNI intermediate report)."""
    from tqdm.auto import tqdm

    from ..pcdarts import SearchNetwork
    from ..pcdarts.genotypes import genotype_to_dict

    cfg.check()
    device = resolve_device(cfg.device)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    data = train_data if train_data is not None else load_split(cfg.data, "train", image_size=cfg.image_size)
    if cfg.subsample < 1:
        data, _ = split_in_two(data, cfg.subsample, seed=cfg.seed + 7)
    weight_half, search_half = split_in_two(data, cfg.train_portion, seed=cfg.seed)
    mean, std = data.channel_stats()
    augment = Augment(flip=cfg.flip, cutout=cfg.cutout)
    train_batches = TensorBatches(weight_half, batch_size=cfg.batch_size, mean=mean, std=std, augment=augment,
                                  seed=cfg.seed, device=device)
    search_batches = TensorBatches(search_half, batch_size=cfg.batch_size, mean=mean, std=std, augment=augment,
                                   seed=cfg.seed + 1, device=device)
    valid_batches = TensorBatches(search_half, batch_size=cfg.batch_size, mean=mean, std=std, shuffle=False,
                                  device=device)
    image_size = int(data.images.shape[-1])

    model = SearchNetwork(C=cfg.init_channels, num_classes=data.num_classes, layers=cfg.layers,
                          partial_k=cfg.partial_k, in_channels=int(data.images.shape[1])).to(device)
    weights = model.weight_parameters()
    optimizer = torch.optim.SGD(weights, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs, eta_min=cfg.lr_min)
    arch_optimizer = torch.optim.Adam(model.arch_parameters(), lr=cfg.arch_lr, betas=cfg.arch_betas,
                                      weight_decay=cfg.arch_weight_decay)
    criterion = nn.CrossEntropyLoss()

    state_file = EpochStateFile(out / STATE_FILE, fingerprint=cfg.fingerprint(), what="search")
    stateful = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "arch_optimizer": arch_optimizer}
    generators = {"train_gen": train_batches.generator, "search_gen": search_batches.generator}
    start_epoch, history = state_file.load(stateful, generators, device=device)
    if start_epoch:
        log.info("resuming the search from epoch %d of %d (%s)", start_epoch, cfg.epochs, state_file.path)

    search_iter = search_batches.cycle()
    steps_done = 0
    for epoch in range(start_epoch, cfg.epochs):
        started = time.perf_counter()
        model.train()
        sums = {"criterion_loss": 0.0, "reg_loss": 0.0, "loss": 0.0, "correct": 0.0, "images": 0}
        lr = scheduler.get_last_lr()[0]
        bar = tqdm(train_batches, desc=f"search nu={cfg.nu:g} epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   leave=False, dynamic_ncols=True, mininterval=2.0)
        for images, labels in bar:
            if epoch >= cfg.arch_warmup:
                x_search, y_search = next(search_iter)
                arch_optimizer.zero_grad(set_to_none=True)
                criterion(model(x_search), y_search).backward()
                arch_optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            logits = model(images)
            ce = criterion(logits, labels)
            reg = regularization(model, cfg.regularizer, weights)
            loss = (1.0 - cfg.nu) * ce + cfg.nu * reg
            loss.backward()
            nn.utils.clip_grad_norm_(weights, cfg.grad_clip)
            optimizer.step()
            n = len(labels)
            sums["criterion_loss"] += ce.item() * n
            sums["reg_loss"] += reg.item() * n
            sums["loss"] += loss.item() * n
            sums["correct"] += (logits.argmax(1) == labels).sum().item()
            sums["images"] += n
            steps_done += 1
            if cfg.max_steps is not None and steps_done >= cfg.max_steps:
                break
        bar.close()
        scheduler.step()
        model.eval()
        valid = evaluate(model, valid_batches)
        n = max(sums["images"], 1)
        record = {"epoch": epoch + 1, "lr": lr, "criterion_loss": sums["criterion_loss"] / n,
                  "reg_loss": sums["reg_loss"] / n, "loss": sums["loss"] / n, "train_acc": sums["correct"] / n,
                  "valid_acc": valid["top1"], "valid_loss": valid["loss"], "seconds": time.perf_counter() - started,
                  "genotype": str(model.genotype())}
        history.append(record)
        log.info("epoch %d/%d: CE %.4f, R %.4g, train acc %.4f, search-valid acc %.4f (%.1f s)", epoch + 1,
                 cfg.epochs, record["criterion_loss"], record["reg_loss"], record["train_acc"], record["valid_acc"],
                 record["seconds"])
        print(f"epoch {epoch + 1}/{cfg.epochs}  nu={cfg.nu:g}  CE {record['criterion_loss']:.4f}  "
              f"{cfg.regularizer} {record['reg_loss']:.4g}  train {record['train_acc']:.4f}  "
              f"valid {record['valid_acc']:.4f}  ({record['seconds']:.1f} s)", flush=True)
        state_file.save(epoch + 1, history, stateful, generators)
        if on_epoch is not None:
            on_epoch(record)
        if cfg.max_steps is not None and steps_done >= cfg.max_steps:
            break

    if not history:
        raise NniExtError(f"no epoch ran (epochs={cfg.epochs}); nothing to report")
    genotype = model.genotype()
    last = history[-1]
    from ..pcdarts.eval_model import eval_network_cost

    cost = eval_network_cost(genotype, num_classes=data.num_classes, channels=cfg.eval_channels,
                             layers=cfg.eval_layers, image_size=image_size, in_channels=int(data.images.shape[1]))
    metrics = {"default": last["valid_acc"], "criterion_loss": last["criterion_loss"], "reg_loss": last["reg_loss"],
               "train_acc": last["train_acc"], "params": cost["params"], "flops": cost["flops"], "nu": cfg.nu,
               "regularizer": cfg.regularizer, "genotype": str(genotype)}
    atomic_write_json(out / "result.json", {**metrics, "genotype_dict": genotype_to_dict(genotype),
                                            "config": cfg.fingerprint(), "history": history})
    return SearchResult(metrics, history, genotype, out)
