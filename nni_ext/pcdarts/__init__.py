"""DARTS cell space: PC-DARTS search network (partial channels, edge normalisation), DARTS eval network, genotypes."""
from __future__ import annotations

from .eval_model import AuxiliaryHeadCIFAR as AuxiliaryHeadCIFAR
from .eval_model import EvalCell as EvalCell
from .eval_model import EvalNetwork as EvalNetwork
from .genotypes import GENOTYPES as GENOTYPES
from .genotypes import Genotype as Genotype
from .genotypes import derive_genotype as derive_genotype
from .genotypes import genotype_from_dict as genotype_from_dict
from .genotypes import genotype_name as genotype_name
from .genotypes import genotype_to_dict as genotype_to_dict
from .genotypes import load_genotype as load_genotype
from .genotypes import parse_genotype as parse_genotype
from .genotypes import validate_genotype as validate_genotype
from .genotypes import write_genotypes_py as write_genotypes_py
from .operations import PRIMITIVES as PRIMITIVES
from .operations import build_op as build_op
from .operations import drop_path as drop_path
from .search_model import MixedOp as MixedOp
from .search_model import SearchCell as SearchCell
from .search_model import SearchNetwork as SearchNetwork
from .search_model import channel_shuffle as channel_shuffle
from .search_model import normalise_edges as normalise_edges

__all__ = ["GENOTYPES", "PRIMITIVES", "AuxiliaryHeadCIFAR", "EvalCell", "EvalNetwork", "Genotype", "MixedOp",
           "SearchCell", "SearchNetwork", "build_op", "channel_shuffle", "derive_genotype", "drop_path",
           "genotype_from_dict", "genotype_name", "genotype_to_dict", "load_genotype", "normalise_edges",
           "parse_genotype", "validate_genotype", "write_genotypes_py"]
