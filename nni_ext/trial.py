"""Trial-side helpers: get this trial's architecture from NNI (or declare the space for ``ss_gen -t``)."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .errors import NniExtError
from .ss_gen import SS_GEN_ENV, write_search_space

if TYPE_CHECKING:  # importing nni_ext.spaces loads torch: trials that only report stay light
    from .spaces.base import Architecture, SearchSpace

logger = logging.getLogger(__name__)


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


#: metric key under which trials report the parameters they really ran (a JSON string); see :func:`report_final`
ARCH_KEY = "architecture"


def report_final(metrics: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
    """``nni.report_final_result`` plus the trial's own parameters under :data:`ARCH_KEY`.

    NNI 3.0's local service can start a trial with another trial's parameters and then exports
    (for ``nnictl resume``) the parameters it *recorded* beside the metric (microsoft/nni#5726);
    :meth:`nni_ext.tuners.BaseTuner.import_data` trusts this key over the recorded parameters.
    """
    import nni

    nni.report_final_result({**metrics, ARCH_KEY: json.dumps(dict(parameters), sort_keys=True)})


def in_nni_trial() -> bool:
    """True inside a trial launched by nnictl."""
    return os.environ.get("NNI_PLATFORM") not in (None, "", "unittest", "standalone")


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
    params: Any = None
    if in_nni_trial():
        import nni

        params = nni.get_next_parameter()
    if not params:
        if fallback is None:
            raise NniExtError("no architecture: not running under nnictl and no --arch file given")
        params = fallback
    return space.validate(params)
