"""``torchrun -m nni_ext``: OFA³ tables and OFA fine-tuning over 2 gloo processes against one process.

Real torchrun launches (2 CPU processes, gloo), a randomly initialised OFA supernet, the embedded digits at
32 px; sizes are tiny (3 members on 40 images, 2 fine-tuning steps of 16 images). The tables must be
byte-identical; the fine-tuned weights (with --sync-bn, no dropout) equal to float tolerance, as
nni_ext.ofa2.finetune.finetune documents. Also the BN of nni_ext.distributed and the GPU check's CPU mode.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nni_ext.cli import main

from .conftest import REPO, venv_env
from .ofa3_fixtures import ofa_population

pytestmark = pytest.mark.slow  # each torchrun launch starts 2 interpreters that import torch and nni


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(*args: str, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node NPROC -m nni_ext ARGS`` on this machine, one thread per process."""
    env = dict(venv_env(), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "nni_ext", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_tables_over_two_processes_are_byte_identical(ofa_supernet: Path, digits_search_root: Path,
                                                      tmp_path: Path) -> None:
    pop = tmp_path / "result.json"
    ofa_population(pop, 3, largest=False)
    common = ["ofa3", "tables", "--population", str(pop), "--supernet", str(ofa_supernet), "--data",
              str(digits_search_root), "--split", "val", "--calib-images", "32", "--batch-size", "16",
              "--device", "cpu", "--backend", "torchvision", "--workers", "0", "--threads", "1"]
    torch.set_num_threads(1)
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    proc = torchrun(*common, "--out", str(tmp_path / "two"))
    assert "3 OFA model(s) written, 0 skipped, 40 images on 2 processes" in proc.stdout
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert sorted(one) == sorted(two) == sorted(["tables.json", *(f"model_0{i}_{s}.csv" for i in range(3)
                                                                  for s in ("class", "prob"))])
    for name in one:
        assert one[name] == two[name], name
    # resumable under torchrun too: a deleted member is the only one recomputed, to the same bytes
    (tmp_path / "two" / "model_01_prob.csv").unlink()
    proc = torchrun(*common, "--out", str(tmp_path / "two"))
    assert "1 OFA model(s) written, 2 skipped" in proc.stdout
    assert _files(tmp_path / "two") == one


def _export(ofa_supernet: Path, out: Path) -> Path:
    from nni_ext.spaces.ofa_mbv3 import OfaMbv3Space

    arch = OfaMbv3Space(num_classes=10, resolutions=[32]).smallest()
    src = out / "arch.json"
    out.mkdir(parents=True, exist_ok=True)
    src.write_text(json.dumps(arch))
    assert main(["ofa", "export", str(src), "--supernet", str(ofa_supernet), "--out", str(out / "export")]) == 0
    return out / "export" / "arch" / "net.config"


def test_finetune_over_two_processes_equals_one_with_the_same_global_batch(ofa_supernet: Path, digits_root: Path,
                                                                             tmp_path: Path) -> None:
    config = _export(ofa_supernet, tmp_path)
    common = ["ofa", "finetune", "--config", str(config), "--data", str(digits_root), "--steps", "2",
              "--batch-size", "16", "--reset-classifier", "always", "--dropout", "0",
              "--calib-images", "32", "--val-per-class", "2", "--device", "cpu", "--backend", "torchvision",
              "--workers", "0", "--quiet"]
    torch.set_num_threads(1)
    assert main([*common, "--output", str(tmp_path / "one")]) == 0
    torchrun(*common, "--sync-bn", "--output", str(tmp_path / "two"))
    one = torch.load(tmp_path / "one" / "checkpoint.pth", weights_only=True)
    two = torch.load(tmp_path / "two" / "checkpoint.pth", weights_only=True)
    assert one["step"] == two["step"] == 2
    assert one["model"].keys() == two["model"].keys()  # plain BatchNorm keys after --sync-bn
    start = torch.load(config.with_name("net.inherited"), weights_only=True)["state_dict"]
    moved = worst = 0.0
    for key, a in one["model"].items():
        if not a.is_floating_point():
            assert torch.equal(a, two["model"][key]), key
            continue
        b = two["model"][key]
        # float differences (summation order) grow with the steps, as between two single-process runs with
        # other thread counts: after 2 steps about 3e-6 on weights that moved 1e-2
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5), (key, (a - b).abs().max())
        worst = max(worst, float((a - b).abs().max()))
        if key in start and "classifier" not in key and "running" not in key:
            moved = max(moved, float((a - start[key]).abs().max()))
    assert moved > 100 * max(worst, 1e-7), (moved, worst)  # the steps changed the weights far beyond the tolerance
    assert (tmp_path / "two" / "net.finetuned").is_file()


def _bn_step(rank: int, world: int, port: int, x: torch.Tensor, out: Path) -> None:
    import torch.distributed as tdist

    from nni_ext.distributed import sync_batchnorm

    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    net = sync_batchnorm(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)), "cpu")
    part = x.chunk(world)[rank].clone().requires_grad_(True)
    y = net(part)
    (y ** 3).mean().backward()  # a per-rank mean: as DDP, average the gradients over the ranks
    grads = [p.grad / world for p in net.parameters()]
    for g in grads:
        tdist.all_reduce(g)
    torch.save({"y": y.detach(), "dx": part.grad / world, "grads": grads,
                "mean": net[1].running_mean, "var": net[1].running_var}, out / f"rank{rank}.pt")
    tdist.destroy_process_group()


def test_global_batchnorm_matches_one_process_batchnorm(tmp_path: Path) -> None:
    """GlobalBatchNorm2d over 2 gloo processes: outputs, input and weight gradients, running statistics."""
    import torch.multiprocessing as mp

    x = torch.randn(6, 3, 7, 7, generator=torch.Generator().manual_seed(1)) * 3 + 1
    mp.spawn(_bn_step, args=(2, _free_port(), x, tmp_path), nprocs=2, join=True)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    whole = x.clone().requires_grad_(True)
    y = net(whole)
    (y ** 3).mean().backward()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    close = dict(rtol=1e-4, atol=1e-5)
    assert torch.allclose(torch.cat([r["y"] for r in ranks]), y.detach(), **close)
    assert torch.allclose(torch.cat([r["dx"] for r in ranks]), whole.grad, **close)
    for g, p in zip(ranks[0]["grads"], net.parameters()):
        assert torch.allclose(g, p.grad, **close)
    assert torch.allclose(ranks[0]["mean"], net[1].running_mean, **close)
    assert torch.allclose(ranks[1]["var"], net[1].running_var, **close)


def test_gpu_check_cpu_smoke(tmp_path: Path) -> None:
    """benchmarks/gpu_check.sh --cpu-smoke: the GPU paths at tiny sizes on CPU, its figures in a results file.

    Its torchrun step is skipped here: it runs the commands of the two torchrun tests above, which check them
    more closely (the whole mode takes about 75 s on the 2-core machine, 45 s of it the torchrun start-ups).
    """
    results = tmp_path / "RESULTS.md"
    env = dict(venv_env(), GPU_CHECK_RESULTS=str(results), GPU_CHECK_WORK=str(tmp_path / "work"),
               GPU_CHECK_SKIP="torchrun")
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu-smoke"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = results.read_text()
    for part in ("--cpu-smoke (CPU, tiny sizes)", "- data: digits", "configs/ofa2_eval_gpu.yml: NNI schema ok",
                 "configs/spos_search.yml: NNI schema ok",
                 "trial command run directly", "amp+channels-last", "all steps passed"):
        assert part in text, (part, text)
    assert "FAILED" not in text and "tables, 2 processes" not in text, text
    assert text.count("spos-digits    32     4") == 3  # fp32, amp, amp+channels-last rows of bench_amp
