"""The ``nni-ext`` command: a thin layer over the library, one module per command group."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .. import __version__
from . import (
    cost_cmd,
    data_cmd,
    ofa2_cmd,
    ofa3_cmd,
    ofa_cmd,
    pcdarts_cmd,
    quickstart_cmd,
    register_cmd,
    report_cmd,
    robustness_cmd,
    spos_cmd,
    ss_gen_cmd,
)
from .common import run_guarded

#: ``nni-ext cost <sub>`` commands that sit beside ``nni-ext cost SPACE``
COST_SUBCOMMANDS = ("build-table", "build-latency-table")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nni-ext", description="Multi-objective NAS extensions for Microsoft NNI.")
    parser.add_argument("--version", action="version", version=f"nni-ext {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (and show tracebacks)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (ss_gen_cmd, cost_cmd, data_cmd, register_cmd, spos_cmd, report_cmd, ofa2_cmd, ofa3_cmd, ofa_cmd,
                   pcdarts_cmd, quickstart_cmd, robustness_cmd):
        module.add_parser(sub)
    return parser


def build_cost_table_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nni-ext cost")
    parser.add_argument("-v", "--verbose", action="store_true")
    cost_cmd.add_table_parsers(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nni-ext``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and argv[0] == "cost" and argv[1] in COST_SUBCOMMANDS:
        args = build_cost_table_parser().parse_args(argv[1:])
    else:
        args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    return run_guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
