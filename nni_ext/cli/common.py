"""Helpers shared by the CLI commands: guarded execution and option parsing."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Callable, Sequence

from ..errors import NniExtError


def run_guarded(func: Callable[[], int]) -> int:
    """Run a command; user errors print one line ``nni-ext: error: ...`` and return 2 (no traceback)."""
    try:
        return func()
    except NniExtError as exc:
        print(f"nni-ext: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        print(f"nni-ext: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nni-ext: interrupted", file=sys.stderr)
        return 130


def parse_space_args(items: Sequence[str]) -> dict[str, Any]:
    """``["num_classes=10", "dropout=0.2"]`` -> ``{"num_classes": 10, "dropout": 0.2}`` (values as JSON, else strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise NniExtError(f"--space-arg {item!r} must look like KEY=VALUE, e.g. num_classes=10")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def parse_resolutions(text: str) -> list[int]:
    """``"160,192,224"`` -> ``[160, 192, 224]`` (an argparse ``type``)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} must be comma-separated integers, e.g. 160,192,224")
    return values


def trial_main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], Any],
               argv: Sequence[str] | None = None) -> int:
    """Entry point of a trial module: parse ``argv``, call ``run(args)``, print its metrics as JSON.

    Bad input ends as one line and exit code 2 (:func:`run_guarded`).
    """
    args = parser.parse_args(argv)

    def go() -> int:
        print(json.dumps(run(args)))
        return 0

    return run_guarded(go)
