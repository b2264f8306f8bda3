"""Trial-side API: get this trial's architecture or parameters from NNI, report results to NNI.

The public helpers a trial script uses (``from nni_ext.trial import get_next_architecture, report_final``);
:func:`in_nni_trial` and :func:`load_architecture` live in :mod:`nni_ext.runner` (library code needs them)
and are re-exported here.
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Mapping

from .core.metrics import ARCH_KEY, encode_report
from .errors import NniExtError
from .runner import in_nni_trial, load_architecture
from .ss_gen import SS_GEN_ENV, write_search_space

if TYPE_CHECKING:  # importing nni_ext.spaces loads torch: trials that only report stay light
    from .spaces.base import Architecture, SearchSpace

logger = logging.getLogger(__name__)


def report_final(metrics: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
    """``nni.report_final_result`` of :func:`nni_ext.core.metrics.encode_report`: canonical keys (``latency`` ->
    ``latency_ms``) plus the trial's own parameters under :data:`ARCH_KEY`.

    NNI 3.0's local service can start a trial with another trial's parameters and then exports
    (for ``nnictl resume``) the parameters it *recorded* beside the metric (microsoft/nni#5726);
    :meth:`nni_ext.tuners.BaseTuner.import_data` trusts this key over the recorded parameters.
    """
    import nni

    nni.report_final_result(encode_report(metrics, parameters))


def report_intermediate(metrics: Mapping[str, Any]) -> None:
    """``nni.report_intermediate_result`` of ``metrics`` with canonical keys; nothing outside nnictl."""
    if in_nni_trial():
        import nni

        nni.report_intermediate_result(encode_report(metrics))


def next_parameters() -> dict[str, Any] | None:
    """This trial's parameters from ``nni.get_next_parameter()`` under nnictl (``None`` outside nnictl or if none)."""
    if not in_nni_trial():
        return None
    import nni

    params = nni.get_next_parameter()
    return dict(params) if params else None


def get_next_architecture(space: SearchSpace, *, fallback: Mapping[str, Any] | None = None) -> Architecture:
    """This trial's architecture, validated against ``space``.

    * With ``NNI_GEN_SEARCH_SPACE`` set (``nni-ext ss_gen -t CMD``): write the space there and exit.
    * Under nnictl: the parameters from ``nni.get_next_parameter()``.
    * Standalone: ``fallback`` (e.g. from ``--arch``); an error if there is none.
    """
    target = os.environ.get(SS_GEN_ENV)
    if target:
        write_search_space(space, target)
        logger.info("wrote search space of %s to %s", space.name, target)
        raise SystemExit(0)
    params: Any = next_parameters()
    if not params:
        if fallback is None:
            raise NniExtError("no architecture: not running under nnictl and no --arch file given")
        params = fallback
    return space.validate(params)


__all__ = ["ARCH_KEY", "get_next_architecture", "in_nni_trial", "load_architecture", "next_parameters",
           "report_final", "report_intermediate"]
