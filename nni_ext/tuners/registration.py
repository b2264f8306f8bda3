"""Register the package's tuners with NNI (``nnictl algo register``'s file) and remove them again."""
from __future__ import annotations

import importlib

from ..errors import NniExtError
from .base import registered_tuners


def public_class_name(name: str) -> str:
    """The import path NNI uses for a tuner, ``nni_ext.tuners.<Class>``."""
    return f"nni_ext.tuners.{registered_tuners()[name].__name__}"


def register_with_nni(names: list[str] | None = None) -> list[str]:
    """Write every (or the given) tuner into NNI's registered-algorithms file; returns the names."""
    import nni
    from nni.tools.package_utils import config_manager
    from nni.tools.package_utils.common import AlgoMeta

    tuners = registered_tuners()
    chosen = names or sorted(tuners)
    for name in chosen:
        if name not in tuners:
            raise NniExtError(f"unknown tuner {name!r}; nni_ext tuners: {', '.join(sorted(tuners))}")
        existing = config_manager.get_algo_meta(name)
        if existing is not None and existing.is_builtin:
            raise NniExtError(f"{name!r} is an NNI built-in algorithm and cannot be overwritten")
        class_name = public_class_name(name)
        module, _, attr = class_name.rpartition(".")
        getattr(importlib.import_module(module), attr)  # the import NNI's dispatcher will do
        meta = AlgoMeta.load({"builtinName": name, "className": class_name, "nniVersion": nni.__version__}, "tuner")
        config_manager.register_algo_meta(meta)
    return chosen


def unregister_from_nni(names: list[str] | None = None) -> list[str]:
    """Remove nni_ext tuners from NNI's registered-algorithms file; returns the names removed."""
    from nni.tools.package_utils import config_manager

    removed = []
    for name in names or sorted(registered_tuners()):
        meta = config_manager.get_algo_meta(name)
        if meta is not None and not meta.is_builtin and (meta.class_name or "").startswith("nni_ext."):
            config_manager.unregister_algo_meta(meta.name)
            removed.append(name)
    return removed
