"""OFA³ ensemble trial: build the members of one ensemble, run real soft voting on the validation data, time it.

The members are population indices (``model_07`` of the tables is member 7): under nnictl they come
from the OFA3Ensemble tuner as ``{"members": "[0, 3, 7]"}``; standalone from ``--members 0,3,7``.
Each member is built exactly as ``nni-ext ofa3 tables`` builds it (one code path,
:class:`nni_ext.ensemble.predict.MemberRunner`): an OFA sub-network with inherited weights at its own
resolution, or a SPOS path of a SPOS supernet checkpoint (``--space auto`` tells them apart); its
BatchNorm statistics are re-estimated on ``--calib-images`` training images (the same images, batches
and ``--seed`` for every member). Every member then runs over ``--data/--split`` in folder order (no
shuffling); the ensemble's prediction is the arg-max of the members' softmax averaged (soft voting).
With the tables' ``--calib-images``/``--calib-batch-size``/``--seed``/``--batch-size``/``--threads`` and
the same split, the members are the very networks of the tables: written with ``--top-k`` equal to the
number of classes, the tables' soft-voting accuracy of the members equals the trial's ``default``
(with ``--top-k 5`` the tables keep the top 5 only, an estimate that can differ slightly).
Latency is measured per member on ``--device`` (batch 1, :func:`nni_ext.cost.measure_latency`, median
ms) and combined as the ensemble latency of parallel members (``latency_max``) and of members run one
after another (``latency_sum``).
Reported (``nni_ext.trial.report_final``)::

    {"default": ensemble top-1, "latency_max": ms, "latency_sum": ms, "members": "[0, 3, 7]",
     "n_members": k, "best_member_accuracy": ..., "val_images": n, "seconds": ...}

Standalone on the digits (see ``configs/ofa3_ensemble_digits.yml`` for the population)::

    python -m nni_ext.trials.ofa3_ensemble_trial --population runs/ofa2-digits/result.json \\
        --supernet runs/ofa2-digits/supernet.pth --data data/digits --members 0,2 --calib-images 256
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Sequence

from ..ensemble.members import PARAM, parse_members
from ..errors import NniExtError
from ._runner import parse_resolutions, trial_main


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nni_ext.trials.ofa3_ensemble_trial",
                                description=__doc__.splitlines()[0])
    p.add_argument("--population", required=True, help="OFA²'s result.json or a JSON list of architectures "
                                                       "(the population the tables were written from)")
    p.add_argument("--supernet", required=True, help="OFA MobileNetV3 w1.2 supernet weights, or a SPOS supernet "
                                                     "checkpoint for a SPOS population (see --space)")
    p.add_argument("--space", choices=["auto", "ofa", "spos"], default="auto",
                   help="kind of population (auto: a SPOS supernet checkpoint means SPOS, anything else OFA)")
    p.add_argument("--data", required=True, help="dataset root with train/ and the evaluation split")
    p.add_argument("--split", default="val", help="split to evaluate the ensemble on (default val)")
    p.add_argument("--members", help="population indices for a standalone run, e.g. 0,3,7 (under nnictl: the tuner's)")
    p.add_argument("--resolutions", type=parse_resolutions, default=None,
                   help="comma-separated resolutions of the space (default: the population's)")
    p.add_argument("--calib-images", type=int, default=2000, help="training images for BN recalibration (OFA: 2000)")
    p.add_argument("--calib-batch-size", type=int, default=100, help="images per recalibration batch (OFA: 100)")
    p.add_argument("--batch-size", type=int, default=200, help="evaluation batch size")
    p.add_argument("--val-per-class", type=int, default=None,
                   help="evaluate on the first N images of each class (a fixed, class-balanced subset)")
    p.add_argument("--latency-warmup", type=int, default=10, help="warm-up passes before timing each member")
    p.add_argument("--latency-repeats", type=int, default=50, help="timed passes per member (median reported)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--backend", choices=["auto", "dali", "torchvision"], default="auto")
    p.add_argument("--workers", type=int, default=2, help="loader worker processes/threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the recalibration images (as `ofa3 tables --seed`)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (use 1 when several trials share a CPU)")
    return p


def trial_members(fallback: str | None) -> tuple[list[int], dict[str, Any]]:
    """``(indices, parameters)``: from the tuner under nnictl, else from ``--members``."""
    from ._runner import next_parameters

    params: Any = next_parameters()
    if not params:
        if not fallback:
            raise NniExtError("no ensemble: not running under nnictl and no --members given (e.g. --members 0,3)")
        params = {PARAM: fallback}
    if not isinstance(params, dict) or PARAM not in params:
        raise NniExtError(f"trial parameters {params!r} name no {PARAM!r}; use the OFA3Ensemble tuner")
    try:
        members = parse_members(params[PARAM])
    except ValueError as exc:
        raise NniExtError(str(exc)) from None
    return members, {PARAM: json.dumps(members)}


def member_outputs(model: Any, loader: Any) -> tuple[Any, Any]:
    """``(softmax probabilities (N, C) float64, labels (N,))`` of one member over a loader, in order."""
    import torch

    probs, labels = [], []
    with torch.no_grad():
        for x, y in loader:
            probs.append(model(x).double().softmax(dim=1).cpu())
            labels.append(y.cpu())
    return torch.cat(probs), torch.cat(labels)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate and time this trial's ensemble; reports the metrics under nnictl and returns them."""
    import torch

    from ..cost import measure_latency
    from ..devices import resolve_device
    from ..ensemble.predict import MemberRunner, open_population, read_population
    from ._runner import in_nni_trial, report_final

    if args.calib_images < 0 or args.calib_batch_size < 1 or args.batch_size < 1:
        raise NniExtError(f"--calib-images {args.calib_images} must be >= 0 and --calib-batch-size "
                          f"{args.calib_batch_size} and --batch-size {args.batch_size} >= 1")
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    members, params = trial_members(args.members)
    start = time.perf_counter()
    raw = read_population(args.population)
    bad = [m for m in members if m >= len(raw)]
    if bad:
        raise NniExtError(f"members {bad} are not in the population of {len(raw)} networks ({args.population})")
    pop = open_population(raw, args.supernet, space=args.space, resolutions=args.resolutions)
    device = resolve_device(args.device)
    # the same members, calibration and evaluation order as `nni-ext ofa3 tables` (one code path)
    runner = MemberRunner(pop, data=args.data, split=args.split, device=device, batch_size=args.batch_size,
                          calib_images=args.calib_images, calib_batch_size=args.calib_batch_size, seed=args.seed,
                          backend=args.backend, num_workers=args.workers, max_per_class=args.val_per_class)
    total, labels, latencies, accuracies, images = None, None, [], [], 0
    for m in sorted(members, key=lambda m: (pop.resolution(m), m)):
        model = runner.model(m)
        probs, y = member_outputs(model, runner.val_loader(m))
        if labels is None:
            labels, total, images = y, probs.clone(), len(y)
        elif len(y) != images or not torch.equal(y, labels):
            raise NniExtError(f"member {m} saw other images than the first member ({len(y)} vs {images}); "
                              "the split must be read in the same order at every resolution")
        else:
            total += probs
        accuracies.append(float((probs.argmax(dim=1) == y).double().mean()))
        latencies.append(measure_latency(model, pop.resolution(m), device=device, warmup=args.latency_warmup,
                                         repeats=args.latency_repeats).median_ms)
        del model
    assert total is not None and labels is not None
    if images == 0:
        raise NniExtError(f"{args.data}/{args.split} holds no images")
    accuracy = float(((total / len(members)).argmax(dim=1) == labels).double().mean())
    metrics: dict[str, Any] = {"default": accuracy, "latency_max": max(latencies), "latency_sum": sum(latencies),
                               PARAM: params[PARAM], "n_members": len(members),
                               "best_member_accuracy": max(accuracies), "val_images": images,
                               "seconds": time.perf_counter() - start}
    if in_nni_trial():
        report_final(metrics, params)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return trial_main(build_arg_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
