"""``nni-ext data``: write the embedded digits dataset, make per-class subsets, check a folder's loading, corrupt it."""
from __future__ import annotations

import argparse
import time

from .common import check_output_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="datasets: digits, subset, check, corrupt")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="{digits,subset,check,corrupt}")
    d = dsub.add_parser("digits", help="write scikit-learn's digits as an ImageNet-layout JPEG folder")
    d.add_argument("dir")
    d.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    d.add_argument("--val-fraction", type=float, default=0.2)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=run_digits)
    s = dsub.add_parser("subset", help="first N files of each class (links by default)")
    s.add_argument("src", help="dataset root (reads SRC/train) or an image folder")
    s.add_argument("dst")
    s.add_argument("--per-class", type=int, required=True)
    s.add_argument("--split", default="train", help="split of SRC to draw from (default train)")
    s.add_argument("--holdout", action="store_true",
                   help="write DST/val (the subset) and DST/train (the rest) for searching without touching SRC/val")
    s.add_argument("--mode", choices=["symlink", "hardlink", "copy"], default="symlink")
    s.set_defaults(func=run_subset)
    c = dsub.add_parser("check", help="load one epoch of a split and report images/s")
    c.add_argument("root")
    c.add_argument("--split", default="val")
    c.add_argument("--backend", choices=["auto", "dali", "torchvision"], default="auto")
    c.add_argument("--device", default="auto")
    c.add_argument("--batch-size", type=int, default=64)
    c.add_argument("--crop-size", type=int, default=224)
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--spos-preprocessing", action="store_true", help="BGR, 0..255, no normalisation")
    c.set_defaults(func=run_check)
    k = dsub.add_parser("corrupt", help="the 15 ImageNet-C corruptions x severities of an image folder (OOD tests)",
                        description="Write DST/<corruption>/<severity>/<class>/<image>.png for the images of SRC "
                                    "(a dataset root's --split folder, or an image folder <class>/*), with the "
                                    "ImageNet-C / CIFAR-10-C corruptions of the imagecorruptions package.")
    k.add_argument("src", help="dataset root (reads SRC/val) or an image folder SRC/<class>/*")
    k.add_argument("dst")
    k.add_argument("--severity", default="1-5", help="severities: 3, 1-5 or 1,3,5 (default 1-5)")
    k.add_argument("--corruptions", default="all", metavar="NAME,...",
                   help="corruption types (default all 15: gaussian_noise, shot_noise, impulse_noise, defocus_blur, "
                        "glass_blur, motion_blur, zoom_blur, snow, frost, fog, brightness, contrast, "
                        "elastic_transform, pixelate, jpeg_compression)")
    k.add_argument("--split", default="val", help="split of a dataset root to corrupt (default val)")
    k.add_argument("--size", type=int, default=None, help="resize images to SIZE x SIZE first (at least 32)")
    k.add_argument("--per-class", type=int, default=None, help="only the first N images (by name) of each class")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--workers", type=int, default=1, help="processes, one corruption type each (default 1)")
    k.set_defaults(func=run_corrupt)


def run_digits(args: argparse.Namespace) -> int:
    from ..data import write_digits

    check_output_path(args.dir, "DIR", directory=True)
    counts = write_digits(args.dir, size=args.size, val_fraction=args.val_fraction, seed=args.seed)
    print(f"digits written to {args.dir}: {counts['train']} train, {counts['val']} val images, 10 classes")
    return 0


def run_subset(args: argparse.Namespace) -> int:
    from ..data import make_subset

    check_output_path(args.dst, "DST", directory=True)
    counts = make_subset(args.src, args.dst, per_class=args.per_class, split=args.split, holdout=args.holdout,
                         mode=args.mode)
    print(f"subset written to {args.dst}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ..data import Preprocessing, build_loader
    from ..errors import DataError

    # drop_last=False: a check reads every image, the last partial batch too (a split smaller than one batch
    # used to give "0 images" with torchvision and "no data in the pipeline" with DALI)
    loader = build_loader(args.root, args.split, batch_size=args.batch_size, backend=args.backend, device=args.device,
                          preprocessing=Preprocessing.for_crop(args.crop_size, spos=args.spos_preprocessing),
                          num_workers=args.workers, verify_headers=True, drop_last=False)
    start, n, shape = time.perf_counter(), 0, None
    for images, labels in loader:
        n += len(labels)
        shape = tuple(images.shape[1:])
    seconds = time.perf_counter() - start
    if n == 0:
        raise DataError(f"{args.split}: {args.root} gave no images via {loader.backend}; check that "
                        f"{args.root}/{args.split}/<class>/ holds image files")
    print(f"{args.split}: {n} images in {len(loader)} batches via {loader.backend}, image shape {shape}, "
          f"{n / max(seconds, 1e-9):.0f} images/s")
    return 0


def run_corrupt(args: argparse.Namespace) -> int:
    from ..robustness.corruptions import parse_corruptions, parse_severities, write_corruptions

    severities = parse_severities(args.severity)
    names = parse_corruptions(args.corruptions)
    check_output_path(args.dst, "DST", directory=True)
    start = time.perf_counter()
    counts = write_corruptions(args.src, args.dst, severities=severities, corruptions=names, seed=args.seed,
                               size=args.size, split=args.split, per_class=args.per_class, workers=args.workers)
    images = next(iter(counts.values()))
    print(f"corruptions written to {args.dst}: {len(counts)} types x {len(severities)} severities x {images} images "
          f"= {images * len(counts) * len(severities)} files in {time.perf_counter() - start:.1f} s")
    return 0
