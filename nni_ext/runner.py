"""Running a command or a trial: guarded execution, shared option parsing, and where a trial runs.

What both entry points (:mod:`nni_ext.cli` and :mod:`nni_ext.trials`) share lives here, in the library,
so neither imports the other; trainers use :func:`in_nni_trial` and :func:`load_architecture` too.
Light on purpose: nothing here imports torch or NNI.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import NniExtError


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
    """``["num_classes=10", "dropout=0.2"]`` -> ``{"num_classes": 10, "dropout": 0.2}`` (JSON values, else strings)."""
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


def number_list(convert: Callable[[str], Any], example: str) -> Callable[[str], list[Any]]:
    """An argparse ``type`` for ``"1,2,3"`` -> ``[convert("1"), ...]``; ``example`` goes into its error message."""
    kind = "integers" if convert is int else "numbers"

    def parse(text: str) -> list[Any]:
        try:
            values = [convert(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values:
            raise argparse.ArgumentTypeError(f"{text!r} must be comma-separated {kind}, e.g. {example}")
        return values

    return parse


def int_list(example: str) -> Callable[[str], list[int]]:
    """An argparse ``type`` for ``"1,2,3"`` -> ``[1, 2, 3]``."""
    return number_list(int, example)


#: ``"160,192,224"`` -> ``[160, 192, 224]`` (an argparse ``type``)
parse_resolutions = int_list("160,192,224")


def check_output_path(path: str | os.PathLike, option: str, *, directory: bool = False,
                      example_name: str | None = None) -> Path:
    """Check that ``path`` (given as ``option``) can be written before any work is done; returns it as a Path.

    A file path must not be an existing directory, a directory path must not be an existing file,
    and the nearest existing ancestor of either must be a directory. Bad paths raise
    :class:`NniExtError` naming the option, the path and the fix.
    """
    out = Path(path)
    if directory and out.exists() and not out.is_dir():
        raise NniExtError(f"{path} is an existing file, not a folder; give {option} as a new or existing folder")
    if not directory and out.is_dir():
        hint = f", e.g. {out / example_name}" if example_name else ""
        raise NniExtError(f"{path} is a directory; give {option} as a file path{hint}")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NniExtError(f"{path}: {parent} is a file, not a folder, so nothing can be written under it; "
                                  f"give {option} as a path inside a folder")
            break
    return out


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


def in_nni_trial() -> bool:
    """True inside a trial launched by nnictl."""
    return os.environ.get("NNI_PLATFORM") not in (None, "", "unittest", "standalone")


def load_architecture(path: str | os.PathLike) -> dict[str, Any]:
    """Read an architecture JSON file (``{"label": value, ...}``)."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise NniExtError(f"cannot read architecture file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise NniExtError(f"architecture file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise NniExtError(f"architecture file {path} must hold a JSON object of label -> value")
    return data


__all__ = ["check_output_path", "in_nni_trial", "load_architecture", "parse_resolutions", "parse_space_args",
           "run_guarded", "trial_main"]
