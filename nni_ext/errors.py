"""User-facing errors: raised for bad input, printed by the CLI as one line without a traceback."""
from __future__ import annotations


class NniExtError(Exception):
    """A problem with the user's input or environment; the message names it and the fix."""


class ArchitectureError(NniExtError, ValueError):
    """An architecture dict does not fit its search space."""


class DataError(NniExtError):
    """A dataset folder is missing, empty or holds a file that cannot be read."""


class TableError(NniExtError, KeyError):
    """A cost or latency lookup table lacks a needed entry or is malformed."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
