"""Benchmark: SPOS supernet training-step throughput, float32 vs AMP (float16) vs AMP + channels-last, on CUDA.

    python benchmarks/bench_amp.py [--batch-sizes 256,512] [--warmup 30] [--steps 30] [--crop 224]
    python benchmarks/bench_amp.py --cpu-smoke          # the same code path, tiny sizes, on CPU

What :class:`nni_ext.trainers.train_loop.Trainer` does per step (forward on a sampled path, label-smoothed
cross-entropy, backward, SGD with momentum, GradScaler under AMP), on batches already on the device (the
loader is benchmarks/bench_supernet.py's subject): the model's compute alone. ``cudnn.benchmark`` is on and
the first ``--warmup`` steps are untimed, so cuDNN has autotuned every path's convolutions (each of the 20
layers' 4 blocks appears within a few dozen uniform samples). "fp32" is torch's default float32 (convolutions
may use TF32 on Ampere and later, as torch allows by default; the flags are printed). Goal (issue #17):
AMP + channels-last at least 2x fp32 at batch 256. Prints one row per (batch, precision) and the ratio.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_supernet import machine_info  # noqa: E402

from nni_ext.spaces import create_space  # noqa: E402
from nni_ext.spaces.spos_supernet import ShuffleNetV2Supernet  # noqa: E402
from nni_ext.trainers.sampling import UniformSampler  # noqa: E402
from nni_ext.trainers.train_loop import Recipe, Trainer  # noqa: E402

PRECISIONS = {"fp32": (False, False), "amp": (True, False), "amp+channels-last": (True, True)}


def step_throughput(space_name: str, *, crop: int, batch: int, warmup: int, steps: int, device: torch.device,
                    amp: bool, channels_last: bool) -> float:
    """Images/s of ``steps`` timed training steps after ``warmup`` untimed ones (same paths for every precision)."""
    torch.manual_seed(0)
    space = create_space(space_name)
    trainer = Trainer(ShuffleNetV2Supernet(space), Recipe(batch_size=batch, amp=amp, channels_last=channels_last),
                      total_steps=warmup + steps + 1, device=device)
    classes = int(space.config["num_classes"])
    g = torch.Generator(device="cpu").manual_seed(0)
    images = torch.randn(batch, 3, crop, crop, generator=g).to(device)
    labels = torch.randint(0, classes, (batch,), generator=g).to(device)
    sampler = UniformSampler(len(space.labels), seed=0)
    for _ in range(warmup):
        trainer.train_step(images, labels, sampler.sample())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss, _ = trainer.train_step(images, labels, sampler.sample())
    if not torch.isfinite(loss):
        raise RuntimeError(f"{space_name} batch {batch}: the loss is {float(loss)}")  # also waits for the device
    seconds = time.perf_counter() - start
    del trainer, images, labels
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return steps * batch / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="spos", help="SPOS space (default spos: ImageNet width, 1000 classes)")
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--batch-sizes", default="256,512", help="comma-separated (default 256,512)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps (cuDNN autotuning; default 30)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (default 30)")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="on CPU: spos-digits at 32 px, batch 4, 1 + 2 steps (float32 and the AMP code path)")
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        device = torch.device("cpu")
        args.space, args.crop, args.batch_sizes, args.warmup, args.steps = "spos-digits", 32, "4", 1, 2
    elif not torch.cuda.is_available():
        print("bench_amp: no CUDA device (torch.cuda.is_available() is False); run with --cpu-smoke on CPU",
              file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
    print(machine_info(device, 0))
    if device.type == "cuda":
        print(f"cudnn.benchmark on, cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
              f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}; warm-up {args.warmup}, timed {args.steps}")
    batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    print(f"{'space':<12} {'crop':>4} {'batch':>5}  {'precision':<30} {'img/s':>9}  ratio")
    for batch in batches:
        base = None
        for name, (amp, cl) in PRECISIONS.items():
            if amp and device.type != "cuda":  # autocast float16 is CUDA's: the CPU row runs float32
                amp, name = False, f"{name} (fp32: CPU)"
            ips = step_throughput(args.space, crop=args.crop, batch=batch, warmup=args.warmup, steps=args.steps,
                                  device=device, amp=amp, channels_last=cl)
            base = base or ips
            print(f"{args.space:<12} {args.crop:>4} {batch:>5}  {name:<30} {ips:>9.1f}  {ips / base:.2f}x vs fp32",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
