"""NNI tuners of nni_ext, usable as ``className: nni_ext.tuners.<Class>`` or by name after ``nni-ext register``."""
from __future__ import annotations

from ._constrained_random import ConstrainedRandomTuner as ConstrainedRandomTuner
from ._moo import AGEMOEATuner as AGEMOEATuner
from ._moo import MultiObjectiveTuner as MultiObjectiveTuner
from ._moo import NSGA2Tuner as NSGA2Tuner
from ._moo import NSGA3Tuner as NSGA3Tuner
from ._moo import SMSEMOATuner as SMSEMOATuner
from ._moo import SPEA2Tuner as SPEA2Tuner
from ._msunas import MSuNASTuner as MSuNASTuner
from ._msunas import NSGANetV2Tuner as NSGANetV2Tuner
from ._ofa3_ensemble import OFA3EnsembleTuner as OFA3EnsembleTuner
from ._reg_sweep import RegularizationSweep as RegularizationSweep
from ._spos_evolution import EvolutionWithFlops as EvolutionWithFlops
from ._spos_evolution import EvolutionWithLatency as EvolutionWithLatency
from .base import BaseTuner as BaseTuner
from .base import register_tuner as register_tuner
from .base import registered_tuners as registered_tuners
from .params import ParameterSpace as ParameterSpace

__all__ = ["AGEMOEATuner", "BaseTuner", "ConstrainedRandomTuner", "EvolutionWithFlops", "EvolutionWithLatency",
           "MSuNASTuner", "MultiObjectiveTuner", "NSGA2Tuner", "NSGA3Tuner", "NSGANetV2Tuner", "OFA3EnsembleTuner",
           "ParameterSpace", "RegularizationSweep", "SMSEMOATuner", "SPEA2Tuner", "register_tuner",
           "registered_tuners"]
