"""OME-Zarr HCS plates: open, read, create and write fields and labels.

This is the only module of phirm-scale that knows OME-Zarr paths. A plate is an NGFF 0.5
(Zarr v3) HCS store::

    <plate>.ome.zarr/                 ome.plate (rows, columns, wells, field_count, name)
        <row>/<col>/                  ome.well (images: fields)
            <field>/                  ome.multiscales (axes t c z y x) + ome.omero (channels)
                0, 1, ...             levels, arrays (1, C, 1, Y, X); one chunk per channel
                labels/<name>/0       NGFF labels, (1, 1, 1, Y, X) unsigned integers

Every array chunk holds one whole field of one channel (``(1, 1, 1, Y, X)``, blosc lz4 +
shuffle), so a field is written by exactly one writer: one task per field never races another.
A field group carries ``phirm_scale.complete = true`` once all its levels were written; stages
use it to resume where a killed run stopped.

Examples
--------
>>> p = open_plate("plate.ome.zarr")                                # doctest: +SKIP
>>> img = p.read_field(p.fields[0], "DAPI")                         # doctest: +SKIP
>>> out = create_plate_like(p, "plate_inpainted.ome.zarr")           # doctest: +SKIP
>>> out.write_field(p.fields[0], p.read_field(p.fields[0]))         # doctest: +SKIP

The package, by seam: :mod:`~phirm_scale.plate.keys` (:class:`FieldKey`, row names),
:mod:`~phirm_scale.plate.ngff` (NGFF constants and metadata blocks, :func:`downsample2`),
:mod:`~phirm_scale.plate.markers` (the ``complete`` marker and root attributes read as JSON),
:mod:`~phirm_scale.plate.fields` (one field's arrays created, written, read checked),
:mod:`~phirm_scale.plate.store` (:class:`Plate`, :func:`open_plate`),
:mod:`~phirm_scale.plate.create` (:func:`create_plate`, :func:`create_plate_like`) and
:mod:`~phirm_scale.plate.viewer` (contrast windows, pixel size); every name is importable
from ``phirm_scale.plate``.
"""

from __future__ import annotations

from phirm_scale.errors import OutputError, PlateError
from phirm_scale.outputs import ATTRS_KEY
from phirm_scale.plate.create import (
    _check_layout,
    _create_layout,
    _prepare_output,
    _write_plate_metadata,
    create_plate,
    create_plate_like,
    remove_store,
)
from phirm_scale.plate.fields import (
    _checked_array,
    _create_field_group,
    _missing_chunk,
    _read_one,
    _write_field_data,
)
from phirm_scale.plate.keys import FieldKey, FieldKeyLike, row_index, row_name
from phirm_scale.plate.markers import (
    _group_marker,
    field_done,
    read_field_marker,
    read_root_attrs,
)
from phirm_scale.plate.ngff import (
    _ALL_CHUNKS,
    _AXES,
    _COLORS,
    _DIMS,
    _LABEL_COLORS,
    _LABEL_TITLES,
    _OTHER_LABEL_COLORS,
    NGFF_VERSION,
    RANGE_KEY,
    _compressor,
    _field_attrs,
    _level_shape,
    _multiscales,
    _omero,
    _zarr,
    downsample2,
    label_color,
)
from phirm_scale.plate.store import Plate, display_metadata, open_field_view, open_plate
from phirm_scale.plate.viewer import (
    _scale_multiscales,
    data_windows,
    intensity_range,
    set_display_metadata,
    write_viewer_metadata,
)

__all__ = [
    "FieldKey",
    "FieldKeyLike",
    "Plate",
    "open_plate",
    "create_plate",
    "create_plate_like",
    "row_name",
    "row_index",
    "NGFF_VERSION",
    "ATTRS_KEY",
    "open_field_view",
    "field_done",
    "read_field_marker",
    "read_root_attrs",
    "remove_store",
    "downsample2",
    "intensity_range",
    "set_display_metadata",
    "display_metadata",
]

#: Every name of the single module ``plate.py`` was, importable from here as before (the
#: public ones are in ``__all__``).
_MOVED = (
    OutputError,
    PlateError,
    RANGE_KEY,
    label_color,
    data_windows,
    write_viewer_metadata,
    _ALL_CHUNKS,
    _AXES,
    _COLORS,
    _DIMS,
    _LABEL_COLORS,
    _LABEL_TITLES,
    _OTHER_LABEL_COLORS,
    _check_layout,
    _checked_array,
    _compressor,
    _create_field_group,
    _create_layout,
    _field_attrs,
    _group_marker,
    _level_shape,
    _missing_chunk,
    _multiscales,
    _omero,
    _prepare_output,
    _read_one,
    _scale_multiscales,
    _write_field_data,
    _write_plate_metadata,
    _zarr,
)
