"""The tuner base and metric decoding, kept under their old import path; they live in :mod:`nni_ext.core`."""
from __future__ import annotations

from ..core.metrics import decode_metric as decode_metric
from ..core.metrics import decode_report as normalize_metrics
from ..core.metrics import reported_parameters as reported_parameters
from ..core.tuner import BaseTuner as BaseTuner
from ..core.tuner import register_tuner as register_tuner
from ..core.tuner import registered_tuners as registered_tuners
from ..core.tuner import tuner_output_dir as tuner_output_dir

__all__ = ["BaseTuner", "decode_metric", "normalize_metrics", "register_tuner", "registered_tuners",
           "reported_parameters", "tuner_output_dir"]
