"""Helpers shared by the CLI commands: guarded execution and option parsing (they live in :mod:`nni_ext.runner`)."""
from __future__ import annotations

from ..runner import check_output_path, parse_resolutions, parse_space_args, run_guarded, trial_main

__all__ = ["check_output_path", "parse_resolutions", "parse_space_args", "run_guarded", "trial_main"]
