"""``nni-ext quickstart``: the whole SPOS chain on the embedded digits data, on a CPU, in minutes.

1. writes the digits dataset, 2. trains a narrow SPOS supernet for 32-pixel inputs, 3. runs a real
nnictl experiment on localhost with EvolutionWithFlops and BN-recalibrating tester trials,
4. prints the best architecture, its accuracy, FLOPs and params, the experiment id, the web UI
address and where the files are.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

SPACE = "spos-digits"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="SPOS end to end on the embedded digits data (CPU, minutes)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="runs/quickstart", help="where data, checkpoint and experiment go")
    p.add_argument("--port", type=int, default=8080, help="web UI port (default 8080)")
    p.add_argument("--steps", type=int, default=300,
                   help="supernet training steps (default 300; more gives a better supernet)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.2, help="supernet learning rate (default 0.2)")
    p.add_argument("--population", type=int, default=8, help="evolution population (default 8)")
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--flops-limit", type=float, default=480_000, help="MACs at 32 px (default 480000)")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--recal-batches", type=int, default=20)
    p.add_argument("--backend", choices=["auto", "dali", "torchvision"], default="torchvision",
                   help="loader of the tester trials (default torchvision: fastest start for tiny data)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep-running", action="store_true", help="leave the experiment (and its web UI) running")
    p.set_defaults(func=run)


def _say(step: str, text: str) -> None:
    print(f"[{step}] {text}", flush=True)


def experiment_config(args: argparse.Namespace, workdir: Path, checkpoint: Path, data: Path) -> dict:
    """The nnictl config of the quickstart search (also written to WORKDIR/experiment.yml)."""
    # each generation: `population` candidates (half crossover, half mutation children after the first);
    # the tuner proposes exactly population x generations, and NNI ends the experiment DONE at that count
    half = max(1, args.population // 2)
    trials = args.population * args.generations
    tester = (f"{sys.executable} -m nni_ext.trials.spos_tester --checkpoint {checkpoint} --data {data} "
              f"--recal-batches {args.recal_batches} --recal-batch-size 64 --backend {args.backend} --workers 0 "
              f"--threads {max(1, (os.cpu_count() or 1) // args.concurrency)}")
    return {
        "experimentName": "nni-ext-quickstart",
        "searchSpaceFile": str(workdir / "search_space.json"),
        "trialCommand": tester,
        "trialCodeDirectory": str(workdir),
        "trialConcurrency": args.concurrency,
        "maxTrialNumber": trials,
        "experimentWorkingDirectory": str(workdir / "nni-experiments"),
        "tuner": {"className": "nni_ext.tuners.EvolutionWithFlops", "codeDirectory": str(workdir),
                  "classArgs": {"space": SPACE, "flops_limit": args.flops_limit, "population_size": args.population,
                                "topk": args.topk, "num_crossover": half, "num_mutation": half,
                                "num_generations": args.generations, "seed": args.seed}},
        "trainingService": {"platform": "local"},
    }


def run(args: argparse.Namespace) -> int:
    from .. import experiment
    from ..data import write_digits
    from ..errors import NniExtError
    from ..spaces import create_space
    from ..ss_gen import write_search_space
    from . import main as cli_main

    start = time.perf_counter()
    workdir = Path(args.workdir).resolve()
    data = workdir / "data" / "digits"
    if not (data / "train").is_dir():
        counts = write_digits(data)
        _say("1/4 data", f"digits written to {data} ({counts['train']} train / {counts['val']} val JPEGs)")
    else:
        _say("1/4 data", f"using {data}")

    checkpoint = workdir / "supernet" / "checkpoint.pth"
    _say("2/4 supernet", f"training the {SPACE} supernet for {args.steps} steps (FLOPs-uniform paths)")
    code = cli_main(["spos", "train-supernet", "--data", str(data), "--space", SPACE, "--output",
                     str(checkpoint.parent), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                     "--crop-size", "32", "--min-area", "0.5", "--lr", str(args.lr), "--workers", "0", "--backend",
                     "torchvision", "--seed", str(args.seed)])
    if code != 0 or not checkpoint.exists():
        raise NniExtError("supernet training failed (see above)")

    write_search_space(create_space(SPACE), workdir / "search_space.json")
    config = experiment_config(args, workdir, checkpoint, data)
    (workdir / "experiment.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    exp = experiment.create(workdir / "experiment.yml", port=args.port)
    _say("3/4 search", f"experiment {exp.id}: {config['maxTrialNumber']} tester trials, web UI {exp.url}")
    last = [""]

    def progress(e: experiment.Experiment, status: dict) -> None:
        trials = e.trials()
        done = [t for t in trials if t.metrics]
        best = max((t.metrics["default"] for t in done), default=float("nan"))
        line = f"{len(done)}/{config['maxTrialNumber']} trials done, best top-1 {best:.3f}"
        if line != last[0]:
            _say("3/4 search", line)
            last[0] = line

    try:
        status = exp.wait(timeout=3600, poll=3, progress=progress)
        trials = [t for t in exp.trials() if t.metrics and t.parameters]
        directory = exp.directory
    finally:
        if not args.keep_running:
            exp.stop()
    if status != "DONE" or not trials:
        raise NniExtError(f"experiment {exp.id} ended {status} with {len(trials)} results; "
                          f"see {directory}/log/nnimanager.log")
    best = max(trials, key=lambda t: t.metrics["default"])
    (workdir / "best_architecture.json").write_text(json.dumps(best.parameters, indent=2) + "\n")
    m = best.metrics
    _say("4/4 result", f"best of {len(trials)} architectures (FLOPs limit {args.flops_limit:g}):")
    print(f"  top-1 {m['default']:.3f} (top-5 {m['top5']:.3f}) on {int(m['val_images'])} val images after BN "
          f"recalibration (before: {m['top1_before_recalibration']:.3f})")
    print(f"  FLOPs {m['flops'] / 1e6:.3f}M multiply-accumulates at 32 px, params {m['params'] / 1e6:.3f}M")
    print(f"  architecture: {workdir / 'best_architecture.json'}")
    print(f"  experiment {exp.id}: " + (f"web UI {exp.url}" if args.keep_running else
                                        f"stopped; view it with `nnictl view {exp.id} --port {args.port}`"))
    print(f"  files: supernet {checkpoint}; experiment {directory} (tuner output in {directory / 'spos'})")
    print(f"  took {time.perf_counter() - start:.0f} s")
    return 0
