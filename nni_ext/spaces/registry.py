"""Registry of search spaces by name (timm style): ``@register_space``, ``create_space``, ``list_spaces``."""
from __future__ import annotations

import importlib
import inspect
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
        _check_arguments(ref, _SPACES[ref], kwargs)
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
        if isinstance(obj, SearchSpace):
            if kwargs:
                raise NniExtError(f"{ref!r} is a ready-made search space and takes no arguments (got "
                                  f"{', '.join(sorted(kwargs))}); drop them or point at its class or a factory")
            space = obj
        else:
            if not callable(obj):
                kind = "module" if inspect.ismodule(obj) else type(obj).__name__
                raise NniExtError(f"{ref!r} is a {kind}, not a search space; give `module:attr` of a SearchSpace "
                                  "instance, subclass or factory returning one (e.g. "
                                  "nni_ext.spaces:SposShuffleNetV2Space)")
            _check_arguments(ref, obj, kwargs)
            space = obj(**kwargs)
        if not isinstance(space, SearchSpace):
            raise NniExtError(f"{ref!r} is a {type(space).__name__}, not a nni_ext SearchSpace")
        return space
    known = ", ".join(list_spaces()) or "none"
    raise NniExtError(f"unknown search space {ref!r}; registered spaces: {known} (or give module:attr)")


def space_arguments(factory: Callable[..., Any]) -> list[str] | None:
    """Keyword arguments a space class or factory accepts; ``None`` when it takes any (``**kwargs``).

    A factory taking ``**overrides`` whose return annotation is a :class:`SearchSpace` subclass
    accepts that class's arguments as well (e.g. ``spos-digits`` forwards to the ``spos`` class).
    """
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return None
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        returned: Any = None if isinstance(factory, type) else inspect.signature(factory).return_annotation
        if isinstance(returned, str):  # postponed annotation: resolve a plain name in the factory's module
            returned = getattr(factory, "__globals__", {}).get(returned)
        if not (isinstance(returned, type) and issubclass(returned, SearchSpace) and returned is not factory):
            return None
        more = space_arguments(returned)
        if more is None:
            return None
        names += [n for n in more if n not in names]
    return names


def _check_arguments(ref: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Raise a one-line error for keyword arguments ``factory`` does not accept, naming the accepted ones."""
    accepted = space_arguments(factory)
    unknown = [key for key in kwargs if accepted is not None and key not in accepted]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise NniExtError(f"search space {ref!r} has no argument{plural} {', '.join(map(repr, unknown))}; its "
                          f"arguments are: {', '.join(accepted or []) or 'none'}")
    try:
        inspect.signature(factory).bind(**kwargs)
    except ValueError:  # no signature to check against
        pass
    except TypeError as exc:  # e.g. a required argument is missing
        raise NniExtError(f"cannot build search space {ref!r}: {exc}; give `module:attr` of a SearchSpace "
                          "subclass or factory whose arguments all have defaults (or pass them)") from None
