"""Robustness of networks (FlatNAS / CNAS): weight-noise robustness, SAM training, corruption (OOD) benchmarks.

* :func:`weight_noise_robustness` -- the trial-side ``robustness`` metric (multiplicative Gaussian weight
  noise); :func:`top1_robust` -- FlatNAS's combined objective (from :mod:`nni_ext.core.derived`).
* :class:`SAM` -- (adaptive) sharpness-aware minimisation wrapping any torch optimizer.
* :func:`write_corruptions` -- the 15 ImageNet-C corruptions x 5 severities of an image folder;
  :func:`evaluate_corruptions` -- per-corruption error and the unnormalised mCE of a network.
"""
from __future__ import annotations

from ..core.derived import top1_robust as top1_robust
from .corruptions import CORRUPTIONS as CORRUPTIONS
from .corruptions import SEVERITIES as SEVERITIES
from .corruptions import corrupt_image as corrupt_image
from .corruptions import parse_corruptions as parse_corruptions
from .corruptions import parse_severities as parse_severities
from .corruptions import write_corruptions as write_corruptions
from .network import LoadedNetwork as LoadedNetwork
from .network import load_network as load_network
from .ood import CorruptionReport as CorruptionReport
from .ood import evaluate_corruptions as evaluate_corruptions
from .ood import write_report as write_report
from .sam import SAM as SAM
from .weight_noise import RobustnessResult as RobustnessResult
from .weight_noise import weight_noise_robustness as weight_noise_robustness

__all__ = ["CORRUPTIONS", "SAM", "SEVERITIES", "CorruptionReport", "LoadedNetwork", "RobustnessResult",
           "corrupt_image", "evaluate_corruptions", "load_network", "parse_corruptions",
           "parse_severities", "top1_robust", "weight_noise_robustness", "write_corruptions", "write_report"]
