"""``nni-ext ofa2 init-supernet``: write a randomly initialised OFA MobileNetV3 supernet checkpoint (tests, demos).

Example::

    nni-ext ofa2 init-supernet --num-classes 10 --out runs/ofa2-digits/supernet.pth --seed 0

The file is ``{"state_dict": ...}``, the layout of OFA's published weights, so
``python -m nni_ext.trials.ofa2_eval --supernet FILE`` reads either.
"""
from __future__ import annotations

import argparse


def add_subcommands(ofa2: argparse._SubParsersAction) -> None:
    """Add the extra ``nni-ext ofa2`` subcommands to its subparsers."""
    p = ofa2.add_parser("init-supernet", help="write a randomly initialised OFA MobileNetV3 w1.2 supernet checkpoint",
                        description=__doc__.splitlines()[0])
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    p.add_argument("--out", required=True, help="output checkpoint (.pth)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation (default 0)")
    p.set_defaults(func=run_init_supernet_cmd)


def run_init_supernet_cmd(args: argparse.Namespace) -> int:
    import torch

    from .._io import atomic_write
    from ..errors import NniExtError
    from ..spaces.ofa_mbv3 import build_supernet

    if args.num_classes < 1:
        raise NniExtError(f"--num-classes {args.num_classes} must be a positive integer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        supernet = build_supernet(num_classes=args.num_classes)
    state = {k: v.detach().cpu() for k, v in supernet.state_dict().items()}
    path = atomic_write(args.out, lambda tmp: torch.save({"state_dict": state}, tmp))
    params = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var",
                                                                         "num_batches_tracked")))
    print(f"randomly initialised supernet ({args.num_classes} classes, {params / 1e6:.2f} M parameters, seed "
          f"{args.seed}) written to {path}")
    return 0
