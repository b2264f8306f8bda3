"""``nni-ext register`` / ``nni-ext unregister``: make the package's tuners usable by name in nnictl YAML."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("register", help="register nni_ext tuners with NNI (tuner: {name: ...} in YAML)")
    r.add_argument("names", nargs="*", help="tuners to register (default: all)")
    r.set_defaults(func=run_register)
    u = sub.add_parser("unregister", help="remove nni_ext tuners from NNI's registered algorithms")
    u.add_argument("names", nargs="*")
    u.set_defaults(func=run_unregister)


def run_register(args: argparse.Namespace) -> int:
    from ..tuners.registration import public_class_name, register_with_nni

    for name in register_with_nni(args.names or None):
        print(f"registered tuner {name} ({public_class_name(name)})")
    return 0


def run_unregister(args: argparse.Namespace) -> int:
    from ..tuners.registration import unregister_from_nni

    removed = unregister_from_nni(args.names or None)
    print("unregistered: " + (", ".join(removed) if removed else "nothing (no nni_ext tuner was registered)"))
    return 0
