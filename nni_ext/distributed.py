"""Data parallelism over ``torchrun`` processes besides the training loop's DDP: shards, exact gathers, global BN.

Launch any ``nni-ext`` command that supports it with ``torchrun --nnodes N --nproc_per_node G -m nni_ext ...``;
:func:`nni_ext.trainers.runtime.distributed` joins the job (NCCL on CUDA, gloo on CPU).

* :func:`write_prediction_tables_distributed` (``nni-ext ofa3 tables``): the members still to write are split
  round-robin over the ranks, each rank calibrates and runs its own members (on its GPU), the tables are
  gathered on rank 0, which alone writes them and the manifest. Each member's computation does not depend
  on which process runs it or on the other members, and the gather is exact (every rank contributes zeros
  except the member's owner, and ``x + 0 == x`` in floating point), so the files are byte-identical to a
  single-process run's, given a deterministic forward pass (CPU; on CUDA the same GPU model and cuDNN
  choosing the same algorithms, its default without ``cudnn.benchmark``).
* :func:`sync_batchnorm` (``nni-ext ofa finetune --sync-bn``): BatchNorm over the global batch instead of each
  rank's share: :class:`torch.nn.SyncBatchNorm` on CUDA, :class:`GlobalBatchNorm2d` on CPU (gloo), which
  torch's does not support.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


def launched_by_torchrun() -> bool:
    """Whether this process is one of several of a ``torchrun`` job (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def shard(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """This rank's items: every ``world_size``-th, starting at ``rank`` (round-robin keeps sizes within one)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    return list(items[rank::world_size])


def reduce_to_main(array: np.ndarray | None, shape: tuple[int, ...], dtype: Any, device: torch.device) -> np.ndarray:
    """Rank 0 gets the array of the one rank that passes it; the others pass ``None`` (and get zeros back).

    Exact for any dtype: the sum adds zeros only. ``device``: the process group's (CUDA for NCCL).
    """
    import torch.distributed as tdist

    buf = torch.zeros(shape, dtype=dtype, device=device)
    if array is not None:
        buf.copy_(torch.from_numpy(np.ascontiguousarray(array)))
    tdist.reduce(buf, dst=0, op=tdist.ReduceOp.SUM)
    return buf.cpu().numpy()


# ------------------------------------------------------------------------------------ nni-ext ofa3 tables
def write_prediction_tables_distributed(population: str | os.PathLike | Sequence[Mapping[str, Any]], *,
                                        supernet_path: str | os.PathLike, data: str | os.PathLike, split: str,
                                        out: str | os.PathLike, k: int = 5, batch_size: int = 200,
                                        calib_images: int = 2000, device: str = "auto", backend: str = "auto",
                                        resolutions: Sequence[int] | None = None, progress: bool = True,
                                        calib_batch_size: int = 100, num_workers: int = 2, seed: int = 0,
                                        space: str = "auto") -> dict[str, Any]:
    """:func:`~nni_ext.ensemble.predict.write_prediction_tables` over the processes of a ``torchrun`` job.

    Outside ``torchrun`` (or with one process) it is that function. Otherwise: rank 0 decides which members
    are still to write (its view of ``out``, so a resumed multi-node job needs ``out`` on rank 0 only),
    member ``todo[i]`` runs on rank ``i % world_size``, and rank 0 writes every file. Every rank returns the
    summary; ``written`` names the members written by the job.
    """
    import torch.distributed as tdist

    from .ensemble.predict import MemberRunner, check_member_images, plan_tables, predict_member
    from .ensemble.tables import write_model
    from .trainers.runtime import distributed

    args = dict(supernet_path=supernet_path, data=data, split=split, out=out, k=k, batch_size=batch_size,
                calib_images=calib_images, device=device, backend=backend, resolutions=resolutions,
                progress=progress, calib_batch_size=calib_batch_size, num_workers=num_workers, seed=seed,
                space=space)
    if not launched_by_torchrun():
        from .ensemble.predict import write_prediction_tables

        return write_prediction_tables(population, **args)  # type: ignore[arg-type]
    plan = plan_tables(population, supernet_path=supernet_path, data=data, split=split, out=out, k=k,
                       batch_size=batch_size, calib_images=calib_images, calib_batch_size=calib_batch_size,
                       seed=seed, space=space, resolutions=resolutions)
    pop, names, root, images = plan.pop, plan.names, plan.root, plan.images
    with distributed(device) as (dist, dev):
        # rank 0's view of the folder decides; the mask travels on the process group's device
        mask = torch.zeros(len(pop), dtype=torch.int64, device=dev)
        if dist.is_main:
            for m in plan.todo():
                mask[m] = 1
            plan.write_manifest()
        tdist.broadcast(mask, src=0)
        todo = sorted(np.flatnonzero(mask.cpu().numpy()).tolist(), key=pop.resolution)  # one resolution at a time
        mine = shard(todo, dist.rank, dist.world_size)
        runner = MemberRunner(pop, data=data, split=split, device=dev, batch_size=batch_size,
                              calib_images=calib_images, calib_batch_size=calib_batch_size, seed=seed,
                              backend=backend, num_workers=num_workers)
        results: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for m in mine:
            results[m] = predict_member(runner, m, k, desc=f"{names[m]} (rank {dist.rank}, r={pop.resolution(m)})",
                                        progress=progress)
            check_member_images(names[m], len(results[m][2]), plan, data, split)
        shapes, dtypes = ((images, k), (images, k), (images,)), (torch.int64, torch.float32, torch.int64)
        for m in todo:  # the same order on every rank: one reduce per member, rank 0 writes it
            own = results.pop(m, None)
            parts = [reduce_to_main(None if own is None else own[i], shapes[i], dtypes[i], dev) for i in range(3)]
            if dist.is_main:
                write_model(root, names[m], parts[0].astype(np.int32), parts[1], parts[2])
        tdist.barrier()
    skipped = [names[m] for m in range(len(pop)) if m not in todo]
    return {"out": root, "images": images, "written": sorted(names[m] for m in todo), "skipped": skipped,
            "space": pop.kind, "world_size": dist.world_size}


# ------------------------------------------------------------------------------------------ global BatchNorm
class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: every rank's loss reaches every input."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        import torch.distributed as tdist

        out = tensor.clone()
        tdist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        import torch.distributed as tdist

        grad = grad.clone()
        tdist.all_reduce(grad)
        return grad


def _sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    return _SumOverRanks.apply(tensor)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch of all ranks (any backend, gloo too).

    Two differentiable all-reduces per layer (the sum, then the centred sum of squares, so the variance has
    the precision of a two-pass one); gradients flow to every rank's images as in a single process holding
    the whole batch. Computed in float64 (then cast back): built from elementary ops, float32 autograd lost
    about 0.3 % of the gradient of an OFA network's first layers against float64, where torch's fused float32
    kernel stays within 1e-5. Meant for CPU (gloo) runs; on CUDA :func:`sync_batchnorm` uses torch's. In eval
    mode, or without a process group of several ranks, it is ``nn.BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as tdist

        if not (self.training and tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xf = x.double()  # float32 sums of the decomposed BN lose ~1e-3 of its gradient; torch's fused kernel does not
        count = torch.tensor([x.numel() // c], dtype=xf.dtype, device=x.device)
        total = _sum_over_ranks(torch.cat([xf.sum(dim=(0, 2, 3)), count]))
        n = total[c]
        mean = total[:c] / n
        centred = xf - mean[None, :, None, None]
        var = _sum_over_ranks((centred * centred).sum(dim=(0, 2, 3))) / n
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                self.running_var.mul_(1 - f).add_(var.detach() * (n / (n - 1).clamp_min(1)), alpha=f)
        return y.to(x.dtype)


def sync_batchnorm(model: nn.Module, device: torch.device | str) -> nn.Module:
    """``model`` with every BatchNorm2d normalising over the global batch: torch's SyncBatchNorm on CUDA, else ours.

    Keeps the weights, buffers and train/eval mode; the state-dict keys stay those of ``nn.BatchNorm2d``.
    """
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm2d):
            new = GlobalBatchNorm2d(module.num_features, eps=module.eps, momentum=module.momentum,
                                    affine=module.affine, track_running_stats=module.track_running_stats)
            new.load_state_dict(module.state_dict())
            new.to(next(module.buffers(), torch.empty(0)).device)
            new.train(module.training)
            return new
        for name, child in module.named_children():
            setattr(module, name, convert(child))
        return module

    return convert(model)


__all__ = ["GlobalBatchNorm2d", "launched_by_torchrun", "reduce_to_main", "shard",
           "sync_batchnorm", "write_prediction_tables_distributed"]
