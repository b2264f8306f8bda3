"""Search spaces: the protocol, the registry and the built-in spaces (importing this registers them)."""
from __future__ import annotations

from .base import Architecture as Architecture
from .base import SearchSpace as SearchSpace
from .nas_bench_201 import NasBench201Space as NasBench201Space
from .ofa_mbv3 import OfaMbv3Space as OfaMbv3Space
from .ofa_mbv3_ee import OfaMbv3EeSpace as OfaMbv3EeSpace
from .registry import create_space as create_space
from .registry import list_spaces as list_spaces
from .registry import register_space as register_space
from .spos import SposShuffleNetV2Space as SposShuffleNetV2Space

__all__ = ["Architecture", "NasBench201Space", "SearchSpace", "SposShuffleNetV2Space", "create_space", "list_spaces",
           "register_space"]
