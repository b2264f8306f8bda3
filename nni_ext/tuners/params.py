"""NNI search-space parameters (decoded, sampled, encoded); they live in :mod:`nni_ext.core.params`."""
from ..core.params import SUPPORTED_TYPES as SUPPORTED_TYPES
from ..core.params import Parameter as Parameter
from ..core.params import ParameterSpace as ParameterSpace

__all__ = ["SUPPORTED_TYPES", "Parameter", "ParameterSpace"]
