"""Benchmark: SPOS supernet training images/s (load + forward + backward + SGD step) per loader and precision.

    python benchmarks/bench_supernet.py [--root data/digits] [--steps 20] [--workers 2] [--skip-224]

Rows: ``spos-digits`` at 32 px and ``spos`` (ImageNet width) at 224 px with a small batch, each with
the torchvision loader and DALI (when installed); on CUDA also AMP + channels-last vs float32.
The digits folder is written first if missing (224 px crops upsample the 32 px digits; the image
content does not change the cost). Every configuration trains the same uniform path sequence.
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
from pathlib import Path
from typing import Iterator

import torch

from nni_ext.data import Preprocessing, build_loader, dali_available, write_digits
from nni_ext.spaces import create_space
from nni_ext.spaces.spos_supernet import ShuffleNetV2Supernet
from nni_ext.trainers.sampling import UniformSampler
from nni_ext.trainers.train_loop import Recipe, Trainer


def endless(loader: object) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of consecutive epochs."""
    for epoch in itertools.count():
        loader.set_epoch(epoch)  # type: ignore[attr-defined]
        yield from loader  # type: ignore[misc]


def images_per_second(space_name: str, root: Path, *, backend: str, crop: int, batch: int, steps: int, warmup: int,
                      workers: int, device: torch.device, amp: bool, channels_last: bool) -> float:
    """Timed training steps after ``warmup`` untimed ones (kernel selection, worker start-up)."""
    torch.manual_seed(0)
    space = create_space(space_name)
    loader = build_loader(root, "train", batch_size=batch, backend=backend, device=device, num_workers=workers,
                          preprocessing=Preprocessing.for_crop(crop), drop_last=True)
    recipe = Recipe(batch_size=batch, amp=amp, channels_last=channels_last)
    trainer = Trainer(ShuffleNetV2Supernet(space), recipe, total_steps=warmup + steps, device=device)
    sampler = UniformSampler(len(space.labels), seed=0)
    batches = endless(loader)
    for _ in range(warmup):
        trainer.train_step(*next(batches), sampler.sample())
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        loss, _ = trainer.train_step(*next(batches), sampler.sample())
    loss.item()  # waits for the device
    return steps * batch / (time.perf_counter() - start)


def machine_info(device: torch.device, workers: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"machine: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {workers} loader "
            f"workers, torch {torch.__version__}{gpu}, DALI {'yes' if dali_available() else 'no'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/digits")
    parser.add_argument("--steps", type=int, default=20, help="timed steps at 32 px")
    parser.add_argument("--batch-size", type=int, default=64, help="batch at 32 px")
    parser.add_argument("--steps-224", type=int, default=5, help="timed steps at 224 px")
    parser.add_argument("--batch-size-224", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-224", action="store_true")
    args = parser.parse_args()
    root = Path(args.root)
    if not (root / "train").is_dir():
        write_digits(root)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(machine_info(device, args.workers))
    backends = ["torchvision", *(["dali"] if dali_available() else [])]
    precisions = [(False, False), *([(True, True)] if device.type == "cuda" else [])]
    rows = [("spos-digits", 32, args.batch_size, args.steps)]
    if not args.skip_224:
        rows.append(("spos", 224, args.batch_size_224, args.steps_224))
    print(f"{'space':<12} {'crop':>4} {'batch':>5}  {'loader':<11} {'precision':<18} {'img/s':>8}  ratio")
    for space_name, crop, batch, steps in rows:
        base = None
        for backend, (amp, cl) in itertools.product(backends, precisions):
            ips = images_per_second(space_name, root, backend=backend, crop=crop, batch=batch, steps=steps,
                                    warmup=args.warmup, workers=args.workers, device=device, amp=amp,
                                    channels_last=cl)
            base = base or ips
            precision = "amp+channels-last" if amp else "fp32"
            print(f"{space_name:<12} {crop:>4} {batch:>5}  {backend:<11} {precision:<18} {ips:>8.1f}  "
                  f"{ips / base:.2f}x vs torchvision fp32")


if __name__ == "__main__":
    main()
