"""Exceptions shared by the whole package.

Every error a user can cause by bad input derives from :class:`PhirmError`; the CLI prints
its message as one line (``error: <message>``) and exits with status 2.  Messages name the
file or field at fault and what is wrong with it.
"""

from __future__ import annotations

__all__ = ["PhirmError", "InputError", "PlateError", "CheckpointError", "OutputError"]


class PhirmError(Exception):
    """Base class of the errors phirm-scale reports to users."""


class InputError(PhirmError, ValueError):
    """An input array or file is unusable (wrong shape, NaN, unreadable, ...)."""


class PlateError(PhirmError, ValueError):
    """A plate store or a source folder is unusable or inconsistent."""


class CheckpointError(PhirmError, ValueError):
    """A checkpoint is unreadable or belongs to another architecture."""


class OutputError(PlateError):
    """An output cannot be written.

    It exists, is an input, is another command's or a foreign store, or another run holds
    its lock.
    """
