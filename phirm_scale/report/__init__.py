"""HTML reports of a QC store: plate heatmap, PhIRM histogram, fields with pictures.

``write_report(QC.zarr, out_dir)`` (:mod:`~phirm_scale.report.plate_report`) writes into
``out_dir``:

* ``heatmap.png`` -- mean PhIRM per well on the plate grid (empty wells grey), wells holding a
  flagged field outlined in red (:func:`flagged_wells`), a colour bar as tall as the plate;
* ``histogram.png`` -- per-window PhIRM, with the summary threshold marked;
* ``worst_<row><column>_<field>.png`` -- for the ``worst`` fields of lowest mean PhIRM:
  source (the damaged input, from the restored plate's ``inpaint`` provenance) | holes
  filled | restored | reference (when it is not the source) | ``|restored - reference|`` (8
  bit as PhIRM sees it), one grey scale (the 1-99.5 percentiles of the source outside the
  holes), windows below the threshold outlined; read from the plates recorded in the QC
  attributes (skipped, with a note, when they cannot be read); alt text on every picture;
* ``index.html`` -- inputs, plate summary (PhIRM "against the damaged source" when the
  reference is the inpainting source), the pictures and the worst-field table.

:func:`write_screen_report` (:mod:`~phirm_scale.report.screen_report`) writes `run`'s report
of a screen the same way, with pictures of the flagged fields and of a sample of the others.

The modules: :mod:`~phirm_scale.report.pictures` (one field's images and picture),
:mod:`~phirm_scale.report.plots` (heatmaps, histogram, flagged wells),
:mod:`~phirm_scale.report.reasons` (why a field was flagged, in words),
:mod:`~phirm_scale.report.templates` (the HTML, as :class:`string.Template` s).

Matplotlib is used through :class:`matplotlib.figure.Figure` only (no pyplot state, no GUI
backend), so reports can be written from worker threads.
"""

from __future__ import annotations

# the private names are imported from here by other modules and tests (`x as x`: re-exported)
from phirm_scale.report.pictures import (
    FieldImages,
    field_thumbnail,
    read_field_images,
    reference_is_source,
)
from phirm_scale.report.pictures import _display as _display
from phirm_scale.report.pictures import _scored_against as _scored_against
from phirm_scale.report.plate_report import _flagged_section as _flagged_section
from phirm_scale.report.plate_report import worst_fields, write_report
from phirm_scale.report.plots import (
    OUTLINE_COLOUR,
    OUTLINE_GID,
    flagged_wells,
    heatmap_variable,
    phirm_histogram,
    plate_heatmap,
)
from phirm_scale.report.plots import _heatmap_figure as _heatmap_figure
from phirm_scale.report.reasons import flag_reason
from phirm_scale.report.reasons import recorded_hidden_threshold as recorded_hidden_threshold
from phirm_scale.report.reasons import selfcheck_reason as selfcheck_reason
from phirm_scale.report.screen_report import write_screen_report

__all__ = [
    "FieldImages",
    "OUTLINE_COLOUR",
    "OUTLINE_GID",
    "field_thumbnail",
    "heatmap_variable",
    "flagged_wells",
    "read_field_images",
    "reference_is_source",
    "phirm_histogram",
    "plate_heatmap",
    "worst_fields",
    "write_report",
    "flag_reason",
    "write_screen_report",
]
