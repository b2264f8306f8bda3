"""ImageNet-layout data: DALI (GPU or CPU) and torchvision loaders, subsets, the embedded digits dataset."""
from __future__ import annotations

from .dali_loader import dali_available as dali_available
from .digits import write_digits as write_digits
from .folder import FolderIndex as FolderIndex
from .folder import index_folder as index_folder
from .folder import index_split as index_split
from .loader import ImageLoader as ImageLoader
from .loader import build_loader as build_loader
from .subset import make_subset as make_subset
from .transforms import Preprocessing as Preprocessing

__all__ = ["FolderIndex", "ImageLoader", "Preprocessing", "build_loader", "dali_available", "index_folder",
           "index_split", "make_subset", "write_digits"]
