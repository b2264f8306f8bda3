"""``nni-ext quickstart``: the whole SPOS chain on the embedded digits data, on a CPU, in minutes.

1. writes the digits dataset (its ``dataset.json`` turns horizontal flips off: a mirrored digit is no
digit), 2. trains a narrow SPOS supernet for 32-pixel inputs (identity-initialised candidates, see
:mod:`nni_ext.spaces.spos_supernet`), or reuses the one in WORKDIR when it was trained with the same
settings, 3. runs a real nnictl experiment on localhost with EvolutionWithFlops and BN-recalibrating
tester trials, 4. prints the best architecture, its accuracy, FLOPs and params beside random
architectures under the same FLOPs limit (the evolution's first generation), the experiment id,
the web UI address and where the files are, and draws the search (``WORKDIR/search.png``).

Running it again in the same WORKDIR reuses the data and the finished supernet (when its settings
match; an interrupted one is resumed); ``--overwrite`` retrains it, ``--resume`` continues the
checkpoint whatever the settings.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

SPACE = "spos-digits"
#: supernet recipe of the quickstart (batch 64 on a CPU; measured on 2 cores, see benchmarks/RESULTS.md)
DEFAULT_STEPS, DEFAULT_LR, DEFAULT_MIN_AREA = 450, 0.05, 0.8


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="SPOS end to end on the embedded digits data (CPU, minutes)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="runs/quickstart", help="where data, checkpoint and experiment go")
    p.add_argument("--port", type=int, default=8080, help="web UI port (default 8080)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"supernet training steps (default {DEFAULT_STEPS}; more gives a better supernet)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=DEFAULT_LR,
                   help=f"supernet learning rate, decayed linearly to 0 (default {DEFAULT_LR} at batch 64)")
    p.add_argument("--min-area", type=float, default=DEFAULT_MIN_AREA,
                   help=f"smallest random-resized-crop area of the training images (default {DEFAULT_MIN_AREA}: "
                        "a digit fills its image, smaller crops cut it)")
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
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the supernet checkpoint in WORKDIR (an interrupted run), even if its "
                            "settings differ from these")
    again.add_argument("--overwrite", action="store_true",
                       help="retrain the supernet from scratch even if WORKDIR holds one (default: reuse a "
                            "finished one trained with the same settings, resume an interrupted one)")
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


# ------------------------------------------------------------------ the supernet, once per settings
def supernet_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What decides the quickstart's supernet: an existing checkpoint is reused only if it has the same."""
    from ..spaces import create_space

    return {"space_config": create_space(SPACE).config, "steps": args.steps, "batch_size": args.batch_size,
            "lr": args.lr, "min_area": args.min_area, "seed": args.seed, "crop_size": 32, "sampling": "flops-uniform"}


def checkpoint_settings(ckpt: dict[str, Any]) -> dict[str, Any]:
    """:func:`supernet_settings` as recorded in a supernet checkpoint."""
    recipe, run_args = ckpt.get("args", {}).get("recipe", {}), ckpt.get("args", {}).get("run", {})
    return {"space_config": ckpt.get("space_config"), "steps": recipe.get("steps"),
            "batch_size": recipe.get("batch_size"), "lr": recipe.get("lr"), "min_area": run_args.get("min_area"),
            "seed": recipe.get("seed"), "crop_size": ckpt.get("args", {}).get("crop_size"),
            "sampling": (ckpt.get("sampling") or {}).get("kind")}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for key in new:
        if old.get(key) == new[key]:
            continue
        if isinstance(new[key], dict) and isinstance(old.get(key), dict):
            keys = sorted(k for k in set(new[key]) | set(old[key]) if new[key].get(k) != old[key].get(k))
            out.append(f"space ({', '.join(f'{k} {old[key].get(k)} -> {new[key].get(k)}' for k in keys)})")
        else:
            out.append(f"{key.replace('_', '-')} {old.get(key)} -> {new[key]}")
    return out


def supernet_plan(args: argparse.Namespace, checkpoint: Path) -> tuple[str, str]:
    """``(action, why)``: ``train`` (from scratch), ``resume`` or ``reuse`` the checkpoint in WORKDIR.

    Default: no checkpoint -> train; same settings and finished -> reuse; same settings, interrupted
    -> resume; other settings -> :class:`NniExtError` naming them (``--overwrite`` retrains,
    ``--resume`` continues it under the new settings).
    """
    from ..errors import NniExtError
    from ..trainers.checkpoint import read_checkpoint

    if args.overwrite:
        return "train", "--overwrite: training from scratch" + (" (replacing the checkpoint)" if checkpoint.exists()
                                                                 else "")
    if not checkpoint.exists():
        return "train", "training from scratch"
    try:
        ckpt = read_checkpoint(checkpoint, kind="spos_supernet")
    except NniExtError as exc:
        if args.resume:
            raise
        raise NniExtError(f"{exc}; pass --overwrite to train a new supernet in its place") from None
    step, total = int(ckpt.get("step", 0)), int(ckpt.get("total_steps") or 0)
    finished = total > 0 and step >= total
    diff = _differences(checkpoint_settings(ckpt), supernet_settings(args))
    if args.resume:
        if finished and not diff:
            return "reuse", f"--resume: {checkpoint} is finished ({step}/{total} steps, same settings); reusing it"
        return "resume", f"--resume: continuing {checkpoint} from step {step}" + (
            f" under the new settings ({'; '.join(diff)})" if diff else "")
    if diff:
        raise NniExtError(f"{checkpoint} was trained with other settings ({'; '.join(diff)}): pass --overwrite to "
                          "retrain it with these, --resume to continue it with these, or use another --workdir")
    if finished:
        return "reuse", (f"reusing {checkpoint}: trained {step}/{total} steps with the same settings "
                         "(--overwrite retrains it)")
    return "resume", f"resuming {checkpoint}: interrupted at step {step}/{total} (--overwrite starts over)"


# ------------------------------------------------------------------ results: generations, baseline, picture
def trial_generations(directory: Path, trials: list[Any], population: int) -> dict[str, int]:
    """``parameter_id -> generation`` from the tuner's ``spos/history.csv`` (else population-sized blocks)."""
    out: dict[str, int] = {}
    history = directory / "spos" / "history.csv"
    if history.is_file():
        with history.open(newline="") as f:
            for row in csv.DictReader(f):
                if row.get("generation") not in (None, ""):
                    out[str(row["parameter_id"])] = int(float(row["generation"]))
    for t in trials:
        if t.parameter_id is not None and str(t.parameter_id) not in out:
            out[str(t.parameter_id)] = int(t.parameter_id) // max(1, population)
    return out


def plot_search(points: list[dict[str, Any]], limit: float, best: dict[str, Any], path: Path) -> Path:
    """Top-1 vs FLOPs of every evaluated architecture, coloured by generation, limit and winner marked (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    generations = sorted({p["generation"] for p in points})
    cmap = plt.get_cmap("viridis", max(2, len(generations)))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for i, g in enumerate(generations):
        members = [p for p in points if p["generation"] == g]
        label = f"generation {g}" + (" (random)" if g == 0 else "")
        ax.scatter([p["flops"] / 1e6 for p in members], [p["top1"] * 100 for p in members], s=28, color=cmap(i),
                   label=label, alpha=0.85, edgecolors="none")
    ax.axvline(limit / 1e6, color="tab:red", linestyle="--", linewidth=1, label=f"FLOPs limit {limit / 1e6:.3g}M")
    ax.scatter([best["flops"] / 1e6], [best["top1"] * 100], marker="*", s=260, facecolors="none",
               edgecolors="tab:red", linewidths=1.5, label=f"best: {best['top1'] * 100:.1f} %", zorder=5)
    ax.set_xlabel("FLOPs (M multiply-accumulates at 32 px)")
    ax.set_ylabel("top-1 on the digits val split (%)")
    ax.set_title(f"nni-ext quickstart: SPOS evolution, {len(points)} architectures")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


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
    elif not (data / "dataset.json").is_file():  # written by an older nni-ext: add the no-flip setting
        write_digits(data)
        _say("1/4 data", f"using {data} (rewritten with its dataset.json: no horizontal flips for digits)")
    else:
        _say("1/4 data", f"using {data}")

    checkpoint = workdir / "supernet" / "checkpoint.pth"
    action, why = supernet_plan(args, checkpoint)
    if action == "reuse":
        _say("2/4 supernet", why)
    else:
        _say("2/4 supernet", f"{why}: the {SPACE} supernet, {args.steps} steps (FLOPs-uniform paths)")
        code = cli_main(["spos", "train-supernet", "--data", str(data), "--space", SPACE, "--output",
                         str(checkpoint.parent), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                         "--crop-size", "32", "--min-area", str(args.min_area), "--lr", str(args.lr), "--workers",
                         "0", "--backend", "torchvision", "--seed", str(args.seed),
                         *(["--resume"] if action == "resume" else ["--overwrite"])])
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
    generation = trial_generations(directory, trials, args.population)
    points = [{"top1": t.metrics["default"], "flops": t.metrics["flops"],
               "generation": generation.get(str(t.parameter_id), 0)} for t in trials]
    randoms = [p["top1"] for p in points if p["generation"] == 0]
    picture = plot_search(points, args.flops_limit, {"top1": m["default"], "flops": m["flops"]},
                          workdir / "search.png")
    _say("4/4 result", f"best of {len(trials)} architectures (FLOPs limit {args.flops_limit:g}):")
    print(f"  top-1 {m['default']:.3f} (top-5 {m['top5']:.3f}) on {int(m['val_images'])} val images after BN "
          f"recalibration (before: {m['top1_before_recalibration']:.3f})")
    print(f"  FLOPs {m['flops'] / 1e6:.3f}M multiply-accumulates at 32 px, params {m['params'] / 1e6:.3f}M")
    if randoms:
        mean = sum(randoms) / len(randoms)
        print(f"  random architectures under the same limit (generation 0, {len(randoms)}): top-1 mean {mean:.3f}, "
              f"worst {min(randoms):.3f}, best {max(randoms):.3f}; the search's best is "
              f"{(m['default'] - mean) * 100:+.1f} points over their mean")
    print(f"  architecture: {workdir / 'best_architecture.json'}")
    print(f"  picture: {picture} (top-1 vs FLOPs of every evaluated architecture, by generation)")
    print(f"  experiment {exp.id}: " + (f"web UI {exp.url}" if args.keep_running else
                                        f"stopped; view it with `nnictl view {exp.id} --port {args.port}`"))
    print(f"  files: supernet {checkpoint}; experiment {directory} (tuner output in {directory / 'spos'})")
    print(f"  took {time.perf_counter() - start:.0f} s")
    return 0
