"""``nni-ext robustness``: corruption error (mCE) and weight-noise robustness of a trained network (FlatNAS / CNAS).

Name the network as the other commands write it: ``--checkpoint`` (``nni-ext spos retrain`` or
``nni-ext ofa finetune``), ``--config net.config --weights FILE`` (``nni-ext ofa export``), or
``--space NAME --arch ARCH.json --weights FILE``::

    nni-ext data corrupt data/digits runs/digits-c --severity 1-5
    nni-ext robustness evaluate --checkpoint runs/retrain/checkpoint.pth --data runs/digits-c --out runs/ood
    nni-ext robustness noise --checkpoint runs/retrain/checkpoint.pth --data data/digits
"""
from __future__ import annotations

import argparse
from typing import Any


def _network_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network (one of: --checkpoint; --config + --weights; --space + --arch + --weights)")
    g.add_argument("--checkpoint", default=None,
                   help="checkpoint.pth of `nni-ext spos retrain` or `nni-ext ofa finetune`")
    g.add_argument("--config", default=None, help="net.config of `nni-ext ofa export`")
    g.add_argument("--space", default=None, help="registered search space name (or module:attr)")
    g.add_argument("--space-arg", action="append", default=[], metavar="K=V", help="space keyword argument (JSON)")
    g.add_argument("--arch", default=None, metavar="ARCH.json", help="architecture of --space")
    g.add_argument("--weights", default=None, help="state dict (plain, {'state_dict': ...} or an nni-ext checkpoint)")
    g.add_argument("--resolution", type=int, default=None, help="input size (default: the network's own)")
    g.add_argument("--spos-preprocessing", action="store_true",
                   help="BGR 0..255 input, as the official SPOS checkpoints (a retrain checkpoint says it itself)")
    o = p.add_argument_group("run")
    o.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    o.add_argument("--batch-size", type=int, default=64)
    o.add_argument("--workers", type=int, default=2, help="loader worker processes (default 2)")
    o.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("robustness", help="corruption error (mCE) and weight-noise robustness of a trained network",
                       description=__doc__.splitlines()[0])
    rsub = p.add_subparsers(dest="robustness_command", required=True, metavar="{evaluate,noise}")
    e = rsub.add_parser("evaluate", help="per-corruption error and mCE on a `nni-ext data corrupt` folder",
                        description="Top-1 error per corruption and severity, CE per corruption (mean over "
                                    "severities) and the unnormalised mCE (mean CE), as CNAS's compute_mCE; writes "
                                    "OUT/corruption_errors.{csv,json,png}.")
    e.add_argument("--data", required=True, help="folder written by `nni-ext data corrupt` (<corruption>/<severity>/)")
    e.add_argument("--out", default="runs/robustness", help="output folder (default runs/robustness)")
    e.add_argument("--no-clean", action="store_true", help="skip the error on the uncorrupted source images")
    _network_options(e)
    e.set_defaults(func=run_evaluate)
    n = rsub.add_parser("noise", help="FlatNAS's robustness: accuracy change under multiplicative weight noise",
                        description="mean over DRAWS of |acc(w) - acc(w + sigma*w*z)|, z ~ N(0, I), on a split.")
    n.add_argument("--data", required=True, help="ImageNet-layout root (reads --split)")
    n.add_argument("--split", default="val")
    n.add_argument("--sigma", type=float, default=0.05, help="noise scale (default 0.05, FlatNAS)")
    n.add_argument("--draws", type=int, default=20, help="noise draws (default 20, FlatNAS)")
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--per-class", type=int, default=None, help="only the first N images of each class")
    _network_options(n)
    n.set_defaults(func=run_noise)


def _network(args: argparse.Namespace) -> Any:
    from ..robustness import load_network
    from .common import parse_space_args

    return load_network(checkpoint=args.checkpoint, config=args.config, space=args.space,
                        space_args=parse_space_args(args.space_arg), arch=args.arch, weights=args.weights)


def _setup(args: argparse.Namespace) -> None:
    import torch

    from ..errors import NniExtError

    if args.batch_size < 1:
        raise NniExtError(f"--batch-size {args.batch_size} must be at least 1")
    if args.threads is not None:
        if args.threads < 1:
            raise NniExtError(f"--threads {args.threads} must be at least 1")
        torch.set_num_threads(args.threads)


def _resolution(args: argparse.Namespace, net: Any, fallback: Any = None) -> int:
    from ..errors import NniExtError

    size = args.resolution or net.input_size or fallback
    if not isinstance(size, int) or size < 1:
        raise NniExtError(f"cannot tell the input size of {net.description}; give --resolution")
    return size


def run_evaluate(args: argparse.Namespace) -> int:
    from ..robustness import evaluate_corruptions, write_report
    from ..robustness.corruptions import read_manifest
    from ..robustness.ood import corruption_folders
    from .common import check_output_path

    _setup(args)
    check_output_path(args.out, "--out", directory=True)
    corruption_folders(args.data)  # a wrong folder fails before the network is loaded
    net = _network(args)
    size = _resolution(args, net, read_manifest(args.data).get("size"))
    report = evaluate_corruptions(net.model, args.data, resolution=size, device=args.device,
                                  batch_size=args.batch_size, workers=args.workers,
                                  spos_preprocessing=args.spos_preprocessing or net.spos_preprocessing,
                                  clean=not args.no_clean)
    paths = write_report(report, args.out, title=f"{net.description} @ {size} px")
    print(report.table())
    print(f"mCE (unnormalised) {report.mce:.2f} % over {len(report.errors)} corruptions, {report.images} images")
    print(f"table {paths['csv']}\nplot {paths['png']}\nsummary {paths['json']}")
    return 0


def run_noise(args: argparse.Namespace) -> int:
    from ..data import Preprocessing, build_loader
    from ..devices import resolve_device
    from ..robustness import weight_noise_robustness

    _setup(args)
    net = _network(args)
    size = _resolution(args, net)
    device = resolve_device(args.device)
    loader = build_loader(args.data, args.split, batch_size=args.batch_size, train=False, backend="torchvision",
                          device=device, preprocessing=Preprocessing.for_crop(
                              size, spos=args.spos_preprocessing or net.spos_preprocessing),
                          num_workers=args.workers, drop_last=False, max_per_class=args.per_class)
    # decode once when the split fits in memory (up to 1 GiB of float tensors): the draws reuse the same tensors;
    # larger splits are read again for every draw (validation preprocessing, no shuffling: the same batches)
    batches: Any = loader
    if len(loader) * args.batch_size * 3 * size * size * 4 <= 2**30:
        batches = [(x.to(device), y.to(device)) for x, y in loader]
    result = weight_noise_robustness(net.model.to(device), batches, sigma=args.sigma, draws=args.draws,
                                     seed=args.seed, device=device)
    noisy = sum(result.draw_accuracies) / len(result.draw_accuracies)
    print(f"robustness {result.robustness:.6f} (sigma {args.sigma}, {args.draws} draws, seed {args.seed}): "
          f"top-1 {result.accuracy:.4f} clean, {noisy:.4f} mean with noise, {result.images} images")
    return 0
