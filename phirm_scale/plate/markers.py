"""Low-level reads of phirm-scale's markers: a group's ``zarr.json`` read as JSON.

They work before the plate metadata exists (during a conversion) and need no zarr.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from phirm_scale.outputs import ATTRS_KEY
from phirm_scale.plate.keys import FieldKey, FieldKeyLike


def _group_marker(path: Path) -> dict | None:
    """``phirm_scale`` attributes of the group at ``path`` (None: no such key)."""
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    m = meta.get("attributes", {}).get(ATTRS_KEY)
    return dict(m) if isinstance(m, Mapping) else None


def field_done(path: str | Path, key: FieldKeyLike) -> bool:
    """Tell whether field ``key`` of the store at ``path`` carries the complete marker.

    Low level: works before the plate metadata exists, i.e. during a conversion.
    """
    f = Path(path) / FieldKey(*key).path / "zarr.json"
    try:
        meta = json.loads(f.read_text())
    except (OSError, ValueError):
        return False
    return bool(meta.get("attributes", {}).get(ATTRS_KEY, {}).get("complete", False))


def read_field_marker(path: str | Path, key: FieldKeyLike) -> dict:
    """Low-level: phirm-scale's attributes of field ``key`` (empty when absent)."""
    f = Path(path) / FieldKey(*key).path / "zarr.json"
    try:
        meta = json.loads(f.read_text())
    except (OSError, ValueError):
        return {}
    return dict(meta.get("attributes", {}).get(ATTRS_KEY, {}))


def read_root_attrs(path: str | Path) -> dict | None:
    """Low-level: the root group's attributes of a Zarr v3 store, None if there is none."""
    f = Path(path) / "zarr.json"
    try:
        meta = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return dict(meta.get("attributes", {}))
