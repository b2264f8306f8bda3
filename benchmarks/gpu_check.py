"""The GPU check's steps (run by benchmarks/gpu_check.sh): every GPU path of issue #17 in one go, figures to a report.

    python benchmarks/gpu_check.py --work DIR --results FILE [--cpu-smoke] [--amp-batches 256,512]

1. environment: torch, CUDA, GPUs, NCCL, nni/nnictl (a missing part is named, exit 2);
2. ``torchrun`` equality: ``nni-ext ofa3 tables`` (files byte-identical to one process?) and ``nni-ext ofa
   finetune --sync-bn`` (weights' largest difference to one process with the same global batch), NCCL on
   CUDA with up to 2 GPUs (one process per GPU: NCCL refuses two ranks on one GPU), gloo on CPU;
3. the GPU configs: both load with NNI's schema; a short copy of configs/ofa2_eval_gpu.yml runs under nnictl
   (one GPU per trial) while ``nvidia-smi`` is polled for the processes on each GPU;
4. benchmarks/bench_amp.py: SPOS step throughput fp32 vs AMP vs AMP + channels-last.

``--cpu-smoke``: the same code paths on CPU with tiny sizes (2 gloo processes, no nnictl run: one trial
command run directly instead, bench_amp's --cpu-smoke). The report (markdown) is appended to ``--results``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class Report:
    """Markdown lines, printed and appended to ``files`` as they come (a run cut short keeps what it measured);
    a failed step is marked FAILED and the run continues."""

    def __init__(self, files: list[Path]) -> None:
        self.lines: list[str] = []
        self.failed = 0
        self.files = files
        for file in files:
            file.parent.mkdir(parents=True, exist_ok=True)

    def add(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)
        for file in self.files:
            with open(file, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")

    def fail(self, step: str, why: str) -> None:
        self.failed += 1
        self.add(f"- {step}: FAILED: {why}")


def run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited {proc.returncode}: {' | '.join(tail)}")
    return proc


def nni_ext(*args: str) -> str:
    """``nni-ext ARGS`` in this process (one interpreter start-up less per step); returns what it printed."""
    import contextlib
    import io

    from nni_ext.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    if rc != 0:
        raise RuntimeError(f"nni-ext {' '.join(args[:2])} exited {rc}: {err.getvalue().strip()[-300:]}")
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(nproc: int, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
                "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "nni_ext", *args], env=env)


# ---------------------------------------------------------------------------------------------- steps
def environment(report: Report, smoke: bool) -> dict[str, object]:
    import torch

    info: dict[str, object] = {"cuda": torch.cuda.is_available(), "gpus": torch.cuda.device_count()}
    names = [torch.cuda.get_device_name(i) for i in range(int(info["gpus"]))]  # type: ignore[call-overload]
    nccl = torch.distributed.is_nccl_available()
    nnictl = shutil.which("nnictl", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    smi = shutil.which("nvidia-smi")
    report.add(f"- environment: torch {torch.__version__}, CUDA {'yes' if info['cuda'] else 'no'} "
               f"({info['gpus']} GPU{'s' * (info['gpus'] != 1)}{': ' + ', '.join(names) if names else ''}), "
               f"NCCL {'yes' if nccl else 'no'}, nnictl {'yes' if nnictl else 'no'}, "
               f"nvidia-smi {'yes' if smi else 'no'}, {os.cpu_count()} CPU cores")
    import importlib.util

    absent = [m for m in ("nni", "pymoo", "ofa") if importlib.util.find_spec(m) is None]
    missing = [] if smoke or info["cuda"] else ["CUDA (torch.cuda.is_available())"]
    info.update(nnictl=nnictl, smi=smi, missing=missing, nccl=nccl, absent=absent)
    if absent:
        report.add(f"- not installed: {', '.join(absent)} (bash benchmarks/gpu_kit.sh here, carry .gpukit): the steps "
                   "that need them are skipped")
    return info


def prepare(work: Path, report: Report) -> dict[str, Path]:
    """Digits data, a random OFA supernet, a 3-member population and one exported network (all local)."""
    from nni_ext.spaces.ofa_mbv3 import OfaMbv3Space, to_ofa

    work.mkdir(parents=True, exist_ok=True)
    paths = {"digits": work / "digits", "supernet": work / "supernet.pth", "population": work / "result.json"}
    if not (paths["digits"] / "train").is_dir():
        nni_ext("data", "digits", str(paths["digits"]))
    if not (work / "search" / "val").is_dir():  # 4 images per class to predict
        nni_ext("data", "subset", str(paths["digits"]), str(work / "search"), "--per-class", "4", "--holdout")
    paths["search"] = work / "search"
    if not paths["supernet"].is_file():
        nni_ext("ofa2", "init-supernet", "--num-classes", "10", "--out", str(paths["supernet"]), "--seed", "0")
    space = OfaMbv3Space(num_classes=10, resolutions=[32])
    import numpy as np

    rng = np.random.default_rng(3)
    archs = [space.smallest(), space.sample(rng), space.sample(rng)]
    paths["population"].write_text(json.dumps({"networks": [{"ofa": to_ofa(a), "nni": a} for a in archs]}))
    (work / "arch.json").write_text(json.dumps(archs[0]))
    nni_ext("ofa", "export", str(work / "arch.json"), "--supernet", str(paths["supernet"]), "--out",
            str(work / "export"))
    paths["config"] = work / "export" / "arch" / "net.config"
    report.add(f"- data: digits (32 px), random 10-class OFA supernet, {len(archs)} members, one exported network")
    return paths


def torchrun_equality(paths: dict[str, Path], work: Path, report: Report, *, smoke: bool, gpus: int) -> None:
    import torch

    device, nproc, backend = ("cpu", 2, "gloo") if smoke or gpus == 0 else ("cuda", min(2, gpus), "nccl")
    env = dict(os.environ, OMP_NUM_THREADS="1" if smoke else "4")
    if smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""
    label = f"{nproc} process{'es' * (nproc > 1)} ({backend}, {device}) vs 1"
    if backend == "nccl" and nproc == 1:
        report.add("- NCCL with 2 processes needs 2 GPUs (NCCL refuses two ranks on one GPU); with 1 GPU the job "
                   "runs 1 NCCL process (DDP set-up, no split): the 2-process split is --cpu-smoke's (gloo)")
    calib, batch, steps = ("32", "16", "2") if smoke else ("500", "100", "20")
    tables = ["ofa3", "tables", "--population", str(paths["population"]), "--supernet", str(paths["supernet"]),
              "--data", str(paths["search" if smoke else "digits"]), "--split", "val", "--calib-images", calib,
              "--batch-size", batch,
              "--device", device, "--backend", "torchvision", "--workers", "0" if smoke else "2"]
    try:
        for folder in ("tables_1", "tables_n"):
            shutil.rmtree(work / folder, ignore_errors=True)
        t0 = time.perf_counter()
        nni_ext(*tables, "--out", str(work / "tables_1"))
        t1 = time.perf_counter()
        torchrun(nproc, *tables, "--out", str(work / "tables_n"), env=env)
        t2 = time.perf_counter()
        one = {p.name: p.read_bytes() for p in sorted((work / "tables_1").iterdir())}
        many = {p.name: p.read_bytes() for p in sorted((work / "tables_n").iterdir())}
        differ = sorted(n for n in set(one) | set(many) if one.get(n) != many.get(n))
        verdict = "byte-identical" if not differ else f"DIFFERENT in {len(differ)} file(s): {', '.join(differ[:4])}"
        report.add(f"- tables, {label}: {verdict} ({len(one)} files; {t1 - t0:.1f} s vs {t2 - t1:.1f} s with "
                   f"start-up)")
        if differ:
            report.failed += 1
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        report.fail(f"tables, {label}", str(exc))
    finetune = ["ofa", "finetune", "--config", str(paths["config"]), "--data", str(paths["digits"]), "--steps",
                steps, "--batch-size", "16" if smoke else "128", "--reset-classifier", "always", "--dropout", "0",
                "--calib-images", calib, "--val-per-class", "2" if smoke else "20", "--device", device,
                "--backend", "torchvision", "--workers", "0" if smoke else "2", "--quiet"]
    try:
        for folder in ("finetune_1", "finetune_n"):
            shutil.rmtree(work / folder, ignore_errors=True)
        nni_ext(*finetune, "--output", str(work / "finetune_1"))
        torchrun(nproc, *finetune, "--sync-bn", "--output", str(work / "finetune_n"), env=env)
        a = torch.load(work / "finetune_1" / "checkpoint.pth", weights_only=True)["model"]
        b = torch.load(work / "finetune_n" / "checkpoint.pth", weights_only=True)["model"]
        start = torch.load(paths["config"].with_name("net.inherited"), weights_only=True)["state_dict"]
        diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
        moved = max(float((a[k].double() - start[k].double()).abs().max()) for k in a
                    if a[k].is_floating_point() and k in start and "classifier" not in k and "running" not in k)
        report.add(f"- finetune --sync-bn, {label}, {steps} steps: largest weight difference {diff:.2e} "
                   f"(weights moved up to {moved:.2e}; bit-identical: {'yes' if diff == 0 else 'no'})")
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        report.fail(f"finetune {label}", str(exc))


class GpuPoll:
    """Polls ``nvidia-smi`` each second: the most compute processes seen at once on each GPU."""

    def __init__(self, smi: str | None) -> None:
        self.smi = smi
        self.most: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            proc = subprocess.run([self.smi or "nvidia-smi", "--query-compute-apps=gpu_uuid,pid",
                                   "--format=csv,noheader"], capture_output=True, text=True)
            now: dict[str, set[str]] = {}
            for line in proc.stdout.splitlines():
                if "," in line:
                    gpu, pid = (s.strip() for s in line.split(",", 1))
                    now.setdefault(gpu, set()).add(pid)
            for gpu, pids in now.items():
                self.most[gpu] = max(self.most.get(gpu, 0), len(pids))

    def __enter__(self) -> GpuPoll:
        if self.smi:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.smi:
            self._thread.join(timeout=5)


def gpu_configs(paths: dict[str, Path], work: Path, report: Report, *, smoke: bool, info: dict) -> None:
    import yaml
    from nni.experiment.config import ExperimentConfig

    for name in ("spos_search.yml", "ofa2_eval_gpu.yml"):
        raw = yaml.safe_load((REPO / "configs" / name).read_text())
        service = raw["trainingService"]
        try:
            ExperimentConfig.load(REPO / "configs" / name).json()
            report.add(f"- configs/{name}: NNI schema ok; trialGpuNumber {raw.get('trialGpuNumber')}, gpuIndices "
                       f"{service.get('gpuIndices')}, useActiveGpu {service.get('useActiveGpu')}, "
                       f"maxTrialNumberPerGpu {service.get('maxTrialNumberPerGpu')}")
        except Exception as exc:  # noqa: BLE001 - the report names whatever NNI refused
            report.fail(f"configs/{name}", f"{type(exc).__name__}: {exc}")
    command = (f"{sys.executable} -m nni_ext.trials.ofa2_eval --supernet {paths['supernet']} --data {paths['digits']} "
               "--resolutions 32,48,64 --calib-images 64 --calib-batch-size 32 --val-per-class 5 "
               "--backend torchvision --workers 0 --threads 1")
    if smoke:  # no GPU for nnictl to hand out: the trial command itself, on the device it picks (CPU here)
        import contextlib
        import io

        from nni_ext.trials.ofa2_eval import main as trial

        try:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                rc = trial([*command.split()[3:], "--arch", str(work / "arch.json"), "--device", "cpu"])
            if rc != 0:
                raise RuntimeError(f"the trial exited {rc}")
            metrics = json.loads(out.getvalue().strip().splitlines()[-1])
            report.add(f"- configs, trial command run directly (no nnictl in --cpu-smoke): top-1 "
                       f"{metrics['default']:.3f}, {metrics['flops']:.0f} MACs")
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError, IndexError) as exc:
            report.fail("configs, trial command", str(exc))
        return
    from nni_ext import experiment

    raw = yaml.safe_load((REPO / "configs" / "ofa2_eval_gpu.yml").read_text())
    gpus = int(info["gpus"])
    per_gpu = int(raw["trainingService"]["maxTrialNumberPerGpu"])
    raw.update(searchSpaceFile=str(REPO / "search_spaces" / "ofa-mbv3-digits.json"), trialCodeDirectory=str(REPO),
               trialCommand=command, experimentWorkingDirectory=str(work / "experiments"),
               maxTrialNumber=2 * gpus * per_gpu, trialConcurrency=gpus * per_gpu,
               tuner={"className": "nni_ext.tuners.NSGA2Tuner", "codeDirectory": str(REPO),
                      "classArgs": {**raw["tuner"]["classArgs"], "population_size": 2 * gpus * per_gpu}})
    raw["trainingService"]["gpuIndices"] = list(range(gpus))
    (work / "ofa2_eval_gpu_check.yml").write_text(yaml.safe_dump(raw))
    try:
        t0 = time.perf_counter()
        with GpuPoll(info.get("smi")) as poll:  # type: ignore[arg-type]
            exp = experiment.create(work / "ofa2_eval_gpu_check.yml")
            try:
                status = exp.wait(timeout=420)
                trials = exp.trials()
            finally:
                exp.stop()
        ok = sum(t.status == "SUCCEEDED" for t in trials)
        most = ", ".join(f"{n}" for n in poll.most.values()) or "none seen"
        report.add(f"- configs/ofa2_eval_gpu.yml under nnictl ({gpus} GPU, maxTrialNumberPerGpu {per_gpu}): {status}, "
                   f"{ok}/{len(trials)} trials succeeded in {time.perf_counter() - t0:.0f} s; most processes seen "
                   f"at once per GPU (nvidia-smi): {most}")
        if ok != len(trials) or not trials:
            report.failed += 1
    except Exception as exc:  # noqa: BLE001 - an experiment can fail in many ways; the report names it
        report.fail("configs/ofa2_eval_gpu.yml under nnictl", f"{type(exc).__name__}: {exc}")


def amp_bench(report: Report, *, smoke: bool, batches: str) -> None:
    import contextlib
    import io

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_amp import main as bench

    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = bench(["--cpu-smoke"] if smoke else ["--batch-sizes", batches])
        if rc != 0:
            raise RuntimeError(f"bench_amp exited {rc}")
        report.add("- bench_amp (SPOS supernet training step, synthetic batches on the device):")
        report.add("")
        report.add("```")
        for line in out.getvalue().strip().splitlines():
            report.add(line)
        report.add("```")
    except RuntimeError as exc:
        report.fail("bench_amp", str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="scratch folder (data, tables, checkpoints)")
    parser.add_argument("--results", required=True, help="markdown file the report is appended to")
    parser.add_argument("--cpu-smoke", action="store_true", help="CPU, tiny sizes, no nnictl run")
    parser.add_argument("--amp-batches", default="256,512", help="bench_amp batch sizes (default 256,512)")
    parser.add_argument("--skip", default="", help="comma-separated steps to skip: torchrun, configs, amp")
    args = parser.parse_args(argv)
    smoke, skip = args.cpu_smoke, set(filter(None, args.skip.split(",")))
    if smoke:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch starts: the CPU paths even on a GPU machine
        import torch

        torch.set_num_threads(1)
    files = [Path(args.results)]
    if os.environ.get("OUT") and Path(os.environ["OUT"]).is_dir():  # the device runner's folder: comes back
        files.append(Path(os.environ["OUT"]) / "gpu_check_results.md")
    report = Report(files)
    mode = "--cpu-smoke (CPU, tiny sizes)" if smoke else "GPU"
    now = dt.datetime.now(dt.timezone.utc)
    report.add(f"\n## GPU check (benchmarks/gpu_check.sh): {mode}, {now:%Y-%m-%d %H:%M} UTC\n")
    info = environment(report, smoke)
    absent = set(info["absent"])  # type: ignore[arg-type]
    if info["missing"]:
        report.add(f"- missing: {'; '.join(info['missing'])}; nothing else was run")  # type: ignore[arg-type]
        report.failed += 1
    else:
        if "amp" not in skip:  # first: the figure that needs nothing but torch
            amp_bench(report, smoke=smoke, batches=args.amp_batches)
        work = Path(args.work)
        paths: dict[str, Path] = {}
        if not {"torchrun", "configs"} <= skip and not absent & {"ofa", "pymoo"}:
            try:
                paths = prepare(work, report)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                report.fail("preparing data", str(exc))
        if paths and "torchrun" not in skip:
            torchrun_equality(paths, work, report, smoke=smoke, gpus=int(info["gpus"]))  # type: ignore[call-overload]
        if paths and "configs" not in skip:
            if "nni" in absent or (not smoke and not info["nnictl"]):
                report.add("- configs: skipped (no nni/nnictl)")
            else:
                gpu_configs(paths, work, report, smoke=smoke, info=info)
    report.add(f"\n{'all steps passed' if not report.failed else f'{report.failed} step(s) FAILED'}"
               f"{'; skipped for want of ' + ', '.join(sorted(absent)) if absent else ''}\n")
    return 0 if not report.failed else 1


if __name__ == "__main__":
    sys.exit(main())
