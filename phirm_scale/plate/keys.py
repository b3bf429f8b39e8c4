"""Field addresses and plate row names: :class:`FieldKey` and ``'A'`` <-> 0."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeAlias


class FieldKey(NamedTuple):
    """Address of one field of view: ``row`` ('A'), ``column`` ('01'), ``field`` (0, 1, ...)."""

    row: str
    column: str
    field: int

    @property
    def path(self) -> str:
        """Path of the field group inside the plate (``'A/01/0'``)."""
        return f"{self.row}/{self.column}/{self.field}"

    def __str__(self) -> str:  # used in error messages
        return f"{self.row}{self.column}/{self.field}"


#: A field address as callers pass it: a :class:`FieldKey` or any ``(row, column, field)``
#: sequence (converted with ``FieldKey(str(row), str(column), int(field))``).
FieldKeyLike: TypeAlias = FieldKey | Sequence[Any]


def row_name(index: int) -> str:
    """Plate row name of a 0-based row index: 0 -> 'A', 25 -> 'Z', 26 -> 'AA'."""
    if index < 0:
        raise ValueError(f"row index must be >= 0, got {index}")
    name = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        name = chr(ord("A") + rem) + name
    return name


def row_index(name: str) -> int:
    """0-based index of a plate row name ('A' -> 0, 'AA' -> 26)."""
    if not re.fullmatch(r"[A-Z]+", name):
        raise ValueError(f"not a plate row name: {name!r}")
    idx = 0
    for ch in name:
        idx = idx * 26 + (ord(ch) - ord("A") + 1)
    return idx - 1
