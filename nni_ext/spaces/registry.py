"""Registry of search spaces by name (timm style): ``@register_space``, ``create_space``, ``list_spaces``."""
from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable, TypeVar

from ..errors import NniExtError
from .base import SearchSpace

_SPACES: dict[str, Callable[..., SearchSpace]] = {}
T = TypeVar("T", bound=Callable[..., SearchSpace])


def register_space(name: str | None = None) -> Callable[[T], T]:
    """Class or factory decorator that makes a space available by ``name`` (default: its ``name`` attribute)."""

    def decorator(factory: T) -> T:
        key = name or getattr(factory, "name", "") or factory.__name__
        if key in _SPACES and _SPACES[key] is not factory:
            warnings.warn(f"search space {key!r} registered twice; the later one wins", stacklevel=2)
        _SPACES[key] = factory
        return factory

    return decorator


def list_spaces() -> list[str]:
    """Names of the registered search spaces, sorted."""
    return sorted(_SPACES)


def create_space(ref: str | SearchSpace, **kwargs: Any) -> SearchSpace:
    """Build a space from a registered name or a ``module:attr`` reference.

    ``attr`` may be a :class:`SearchSpace` instance, a subclass or a factory returning one.

    Example:
        >>> space = create_space("spos")
        >>> len(space.labels)
        20
    """
    if isinstance(ref, SearchSpace):
        return ref
    if ref in _SPACES:
        return _SPACES[ref](**kwargs)
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise NniExtError(f"cannot load search space {ref!r}: {exc}; give `module:attr` of an importable "
                              "SearchSpace (or a class/factory returning one)") from None
        space = obj if isinstance(obj, SearchSpace) else obj(**kwargs)
        if not isinstance(space, SearchSpace):
            raise NniExtError(f"{ref!r} is a {type(space).__name__}, not a nni_ext SearchSpace")
        return space
    known = ", ".join(list_spaces()) or "none"
    raise NniExtError(f"unknown search space {ref!r}; registered spaces: {known} (or give module:attr)")
