"""Benchmark: PC-DARTS search cost per regularisation strength, and PC-DARTS vs plain DARTS memory on the same cell.

Two measurements, each run in a fresh child process so peak memory is its own:

1. **PC-DARTS (partial channels, K=4) vs DARTS (K=1)** on the same search network (8 cells, 16 channels,
   CIFAR-size 32 px input, batch ``--batch``): one forward + backward step's time, the bytes autograd
   saves for the backward pass (the activation memory that partial channels cut), the process's peak
   RSS, and on CUDA ``max_memory_allocated``. Prints the DARTS / PC-DARTS ratios (the reason PC-DARTS exists).
2. **Search epoch time and peak memory per nu** (``--nus``, L1 regulariser): one epoch of
   :func:`nni_ext.trainers.pcdarts_search.run_search` on the embedded digits (written to a temp folder),
   architecture unfrozen, as each sweep trial runs it (a smaller network by default on a CPU:
   ``--search-channels 16 --search-cells 8 --search-subsample 1`` is PC-DARTS's own, 4+ GB RSS on a CPU).

    python benchmarks/bench_pcdarts.py [--device cpu|cuda] [--batch 32] [--nus 0,1e-4,0.2]
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_step(partial_k: int, batch: int, device: str, repeats: int) -> dict:
    import torch

    from nni_ext.pcdarts import SearchNetwork

    torch.manual_seed(0)
    dev = torch.device(device)
    model = SearchNetwork(C=16, num_classes=10, layers=8, partial_k=partial_k).to(dev)
    x = torch.randn(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        sync()
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    out = {"partial_k": partial_k, "step_s": min(times), "saved_mib": saved[0] / 2**20, "rss_mib": peak_rss_mib()}
    if dev.type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def child_search(nu: float, data: str, device: str, batch: int, channels: int, cells: int, subsample: float) -> dict:
    import torch

    from nni_ext.trainers.pcdarts_search import SearchConfig, run_search

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        cfg = SearchConfig(data=data, out_dir=out, nu=nu, regularizer="l1", weight_decay=0.0, epochs=1, arch_warmup=0,
                           batch_size=batch, init_channels=channels, layers=cells, subsample=subsample, flip=False,
                           device=device, eval_layers=8, eval_channels=16)
        start = time.perf_counter()
        result = run_search(cfg)
        seconds = time.perf_counter() - start
    out = {"nu": nu, "epoch_s": result.history[-1]["seconds"], "total_s": seconds, "rss_mib": peak_rss_mib(),
           "criterion_loss": result.metrics["criterion_loss"], "reg_loss": result.metrics["reg_loss"]}
    if device == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32, help="batch of the PC-DARTS vs DARTS step (default 32)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nus", default="0,1e-4,0.2")
    parser.add_argument("--search-batch", type=int, default=32)
    parser.add_argument("--search-channels", type=int, default=8, help="search network channels (default 8; "
                                                                       "PC-DARTS uses 16, heavy on a CPU)")
    parser.add_argument("--search-cells", type=int, default=5, help="search network cells (default 5; PC-DARTS 8)")
    parser.add_argument("--search-subsample", type=float, default=0.25, help="share of the digits (default 0.25)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--child-step", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-search", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.child_step is not None:
        print(json.dumps(child_step(args.child_step, args.batch, args.device, args.repeats)))
        return
    if args.child_search is not None:
        print(json.dumps(child_search(args.child_search, args.data, args.device, args.search_batch,
                                      args.search_channels, args.search_cells, args.search_subsample)))
        return

    import torch

    threads = ["--threads", str(args.threads)] if args.threads else []
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}, {time.strftime('%Y-%m-%d')}")
    common = ["--device", args.device, "--batch", str(args.batch), "--repeats", str(args.repeats), *threads]
    darts = run_child("--child-step", "1", *common)
    pc = run_child("--child-step", "4", *common)
    print(f"one search step, 8 cells x 16 channels, batch {args.batch} at 32 px:")
    for r in (darts, pc):
        name = "DARTS    (K=1)" if r["partial_k"] == 1 else "PC-DARTS (K=4)"
        cuda = f", CUDA peak {r['cuda_peak_mib']:.0f} MiB" if "cuda_peak_mib" in r else ""
        print(f"  {name}: {r['step_s']:.3f} s/step, autograd saves {r['saved_mib']:.0f} MiB, "
              f"peak RSS {r['rss_mib']:.0f} MiB{cuda}")
    ratio = (f"saved activations {darts['saved_mib'] / pc['saved_mib']:.2f}x, "
             f"RSS {darts['rss_mib'] / pc['rss_mib']:.2f}x")
    if "cuda_peak_mib" in pc:
        ratio += f", CUDA peak {darts['cuda_peak_mib'] / pc['cuda_peak_mib']:.2f}x"
    print(f"  DARTS / PC-DARTS: {ratio}, time {darts['step_s'] / pc['step_s']:.2f}x")

    from nni_ext.data import write_digits

    with tempfile.TemporaryDirectory() as tmp:
        write_digits(Path(tmp) / "digits", size=32)
        size = ["--search-batch", str(args.search_batch), "--search-channels", str(args.search_channels),
                "--search-cells", str(args.search_cells), "--search-subsample", str(args.search_subsample)]
        print(f"one search epoch on {args.search_subsample:g} of the digits (32 px, split 50/50), {args.search_cells} "
              f"cells x {args.search_channels} channels, batch {args.search_batch}, L1, architecture unfrozen:")
        for nu in [float(v) for v in args.nus.split(",")]:
            r = run_child("--child-search", str(nu), "--data", str(Path(tmp) / "digits"), "--device", args.device,
                          *size, *threads)
            cuda = f", CUDA peak {r['cuda_peak_mib']:.0f} MiB" if "cuda_peak_mib" in r else ""
            print(f"  nu={nu:<8g} epoch {r['epoch_s']:.1f} s (run {r['total_s']:.1f} s), "
                  f"peak RSS {r['rss_mib']:.0f} MiB{cuda}; CE {r['criterion_loss']:.3f}, L1 {r['reg_loss']:.0f}")


if __name__ == "__main__":
    main()
