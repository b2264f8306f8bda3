"""Search-space export the NNI way: write a space as NNI JSON, or run a trial in "declare your space" mode.

``nnictl ss_gen -t CMD`` (removed in NNI 2.9) ran the trial command with the environment
variable ``NNI_GEN_SEARCH_SPACE`` set to the output path; the trial wrote its space there and
exited. :func:`run_trial_command` keeps that contract, and
:func:`nni_ext.trial.get_next_architecture` honours it on the trial side.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from ._io import atomic_write_text
from .errors import NniExtError

if TYPE_CHECKING:  # importing nni_ext.spaces loads torch: trials that only report stay light
    from .spaces.base import SearchSpace

SS_GEN_ENV = "NNI_GEN_SEARCH_SPACE"
DEFAULT_FILE = "nni_auto_gen_search_space.json"


def search_space_json(space: SearchSpace) -> str:
    """The NNI search-space JSON text of ``space`` (stable formatting, as checked in under search_spaces/)."""
    return json.dumps(space.to_nni(), indent=2) + "\n"


def write_search_space(space: SearchSpace, path: str | os.PathLike = DEFAULT_FILE) -> Path:
    """Write ``space`` as NNI search-space JSON to ``path`` (atomically)."""
    return atomic_write_text(path, search_space_json(space))


def run_trial_command(command: str, path: str | os.PathLike = DEFAULT_FILE, *, timeout: float = 600) -> Path:
    """Run ``command`` with ``NNI_GEN_SEARCH_SPACE=path``; the trial writes its space there and exits."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise NniExtError(f"trial command {command!r} cannot be split into arguments ({exc}); it is split like a "
                          "shell line: close every quote, e.g. \"python3 trial.py --note 'a b'\"") from None
    if not argv:
        raise NniExtError("the trial command is empty; give one, e.g. \"python3 trial.py\"")
    out = Path(path).resolve()
    if out.is_dir():
        raise NniExtError(f"search-space output {path} is a directory; give a file path, e.g. {out / DEFAULT_FILE}")
    if out.exists():
        out.unlink()
    env = dict(os.environ, **{SS_GEN_ENV: str(out)})
    try:
        proc = subprocess.run(argv, env=env, timeout=timeout, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise NniExtError(f"cannot run trial command {command!r}: {exc.strerror}: {exc.filename}") from None
    except subprocess.TimeoutExpired:
        raise NniExtError(f"trial command {command!r} did not finish within {timeout:g}s in search-space "
                          "mode") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise NniExtError(f"trial command {command!r} exited with code {proc.returncode}: {last}")
    if not out.exists():
        raise NniExtError(f"trial command {command!r} wrote no search space; the trial must call "
                          "nni_ext.trial.get_next_architecture(space) (which writes it when "
                          f"{SS_GEN_ENV} is set)")
    try:
        json.loads(out.read_text())
    except ValueError as exc:
        raise NniExtError(f"trial command wrote an invalid search space to {out}: {exc}") from None
    return out
