"""What the trial entry points share, all from the library (a trial never imports :mod:`nni_ext.cli`).

* parameters: :func:`get_next_architecture` (validated against a space), :func:`next_parameters` (raw),
  :func:`load_architecture` (``--arch FILE``), :func:`in_nni_trial`;
* reporting: :func:`report_intermediate`, :func:`report_final` (canonical metric keys, see
  :func:`nni_ext.core.metrics.encode_report`);
* running: :func:`trial_main` (parse, run, print the metrics as JSON, one-line errors), :func:`run_guarded`,
  and the option types :func:`parse_resolutions`, :func:`parse_space_args`.
"""
from __future__ import annotations

from ..runner import in_nni_trial, load_architecture, parse_resolutions, parse_space_args, run_guarded, trial_main
from ..trial import get_next_architecture, next_parameters, report_final, report_intermediate

__all__ = ["get_next_architecture", "in_nni_trial", "load_architecture", "next_parameters", "parse_resolutions",
           "parse_space_args", "report_final", "report_intermediate", "run_guarded", "trial_main"]
