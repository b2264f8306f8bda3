"""PC-DARTS search trial: one regularisation strength nu of a MOOD-NAS sweep, run by nnictl.

Takes ``nu`` from ``nni.get_next_parameter()`` (the ``RegularizationSweep`` tuner chooses it), runs
:func:`nni_ext.trainers.pcdarts_search.run_search` with the command-line options, reports each
epoch as an intermediate result and at the end::

    {"default": search-validation top-1, "criterion_loss": CE (mean over the last epoch),
     "reg_loss": R (same), "params": ..., "flops": ... (the derived evaluation network),
     "train_acc": ..., "nu": ..., "genotype": "Genotype(...)"}

Standalone (``--nu``) it prints the same dict. ``configs/pcdarts_sweep_digits.yml`` runs a small
sweep on the embedded digits; ``configs/pcdarts_sweep_cifar10.yml`` the published setting.
"""
from __future__ import annotations

import argparse
from typing import Any, Sequence

from ..trainers.pcdarts_options import add_search_options, apply_threads, search_config
from ._runner import trial_main

PARAMETER = "nu"


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nni_ext.trials.pcdarts_search_trial",
                                description=__doc__.splitlines()[0])
    add_search_options(p)
    return p


def trial_parameters(fallback: float | None) -> tuple[float | None, dict[str, Any]]:
    """``(nu, parameters)`` from NNI inside an nnictl trial, else ``(fallback, {"nu": fallback})``."""
    from ..errors import NniExtError
    from ._runner import in_nni_trial, next_parameters

    if not in_nni_trial():
        return fallback, {PARAMETER: fallback}
    params = next_parameters() or {}
    if PARAMETER not in params:
        raise NniExtError(f"the trial's parameters {params} have no {PARAMETER!r}; the search space must declare it "
                          f"(e.g. {{\"nu\": {{\"_type\": \"uniform\", \"_value\": [0, 1]}}}})")
    return float(params[PARAMETER]), dict(params)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..trainers.pcdarts_search import run_search
    from ._runner import in_nni_trial, report_final, report_intermediate

    apply_threads(args)
    nu, params = trial_parameters(args.nu)
    cfg = search_config(args, nu=nu)

    def on_epoch(record: dict[str, Any]) -> None:
        report_intermediate({"default": record["valid_acc"], "criterion_loss": record["criterion_loss"],
                             "reg_loss": record["reg_loss"]})

    result = run_search(cfg, on_epoch=on_epoch)
    if in_nni_trial():
        report_final(result.metrics, params)
    return result.metrics


def main(argv: Sequence[str] | None = None) -> int:
    return trial_main(build_arg_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
