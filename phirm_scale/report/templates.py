"""The HTML of the reports, as :class:`string.Template` s (``${name}`` is filled in).

The values put in are text already formatted and, where they come from the data, escaped by
the caller (:func:`html.escape`); the templates themselves hold no logic. ``PLATE_*`` are the
single-plate report (:func:`phirm_scale.report.write_report`), ``SCREEN_*`` and ``HOW_*`` the
screen report (:func:`phirm_scale.report.write_screen_report`).
"""

from __future__ import annotations

from string import Template

# ============================================================================ both reports
#: One ``key | value`` row of a two-column table.
TABLE_ROW = Template("<tr><th>${key}</th><td>${value}</td></tr>")

# ============================================================================ single plate
PLATE_PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PhIRM QC report</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1000px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left}img{max-width:100%;height:auto}</style></head><body>
<h1>PhIRM QC report</h1>
<h2>Inputs</h2><table>${inputs}</table>
<h2>Plate summary</h2><table>${summary}</table>
<h2>Plate heatmap</h2><img src="heatmap.png" alt="mean PhIRM per well">
<h2>PhIRM per window</h2><img src="histogram.png" alt="histogram of PhIRM per window">
${flagged}
<h2>Worst fields</h2>
<p>${note}</p>
<p>${panels}.</p>
<table><tr><th>well</th><th>field</th><th>mean PhIRM</th><th>min PhIRM</th>
<th>nuclei ref / rec</th><th>artefact area ref / rec</th></tr>
${worst}</table>
</body></html>
""")

#: One worst field: its numbers, then its picture across the table.
PLATE_WORST_ROW = Template(
    "<tr><td>${well}</td><td>${field}</td><td>${mean}</td><td>${min}</td>"
    "<td>${nuclei_ref} / ${nuclei_rec}</td><td>${artefact_ref} / ${artefact_rec}</td></tr>"
    "<tr><td colspan=6>${picture}</td></tr>"
)

PLATE_WORST_PICTURE = Template(
    '<img src="${src}" width="900" alt="well ${well} field ${field}, panels: ${panels} '
    "(grey scale: the 1-99.5 percentiles of the source outside the holes); windows with "
    'PhIRM below ${threshold} outlined in red; mean PhIRM${against} ${mean}">'
)

PLATE_PICTURE_UNAVAILABLE = "<em>thumbnail unavailable</em>"

#: Why the worst fields have no pictures.
PLATE_NO_PICTURES = Template(
    "Thumbnails need the plates recorded in the QC attributes (${reference}, "
    "${reconstruction}): ${error_type}: ${error}"
)

#: The reference-free QC's flagged fields (``flag``, `score --self-check`).
PLATE_FLAGGED = Template(
    "<h2>Flagged fields, reference-free QC (${flagged} of ${fields})</h2>"
    "<p>Every field flagged by the self-check or the residual artefact (${rule}).</p>"
    "<table><tr><th>well</th><th>field</th><th>why</th></tr>${rows}</table>"
)

PLATE_FLAGGED_ROW = Template("<tr><td>${well}</td><td>${field}</td><td>${why}</td></tr>")

PLATE_FLAGGED_NONE = "<tr><td colspan=3>none</td></tr>"

# ============================================================================ screen
SCREEN_PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PhIRM QC report of the screen</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1100px;line-height:1.4}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;vertical-align:top}img{max-width:100%;height:auto}
.warn{background:#fde2e2;border:2px solid #c00;padding:.6em 1em}</style></head><body>
<h1>PhIRM QC report of the screen</h1>
${warnings}
<h2>What was done and what was found</h2>
${summary}
<p>Data: ${links}</p>
<h2>Plates</h2>
<table><tr><th>plate</th><th>fields</th><th>flagged</th><th>PhIRM mean${against}</th>
<th>PhIRM min</th>
<th>windows &lt; ${threshold}</th><th>masked fraction</th>${extra_heads}<th>plate store</th></tr>
${plate_rows}</table>
<h2>Heatmaps</h2>
${heatmaps}
<h2>Flagged fields (${n_flagged})</h2>
<p>Every flagged field (${rule}), worst first${pictured}.</p>
<table><tr><th>plate</th><th>well</th><th>field</th><th>${score_head}</th><th>why</th></tr>
${flagged_rows}</table>
<h2>Sample fields (${n_sample})</h2>
<p>Fields not pictured above with the most pixels restored, to show what was done: ${panels}.
</p>
${samples}
<h2>How to read this</h2>
${how}
<p>software: phirm-scale ${version}, mode
${mode}</p>
</body></html>
""")

SCREEN_WARNING = Template('<p class="warn"><b>Warning:</b> ${text}</p>')

#: "What was done and what was found": ``${reasons}`` ends the sentence (": ..." or ".").
SCREEN_SUMMARY = Template(
    "<p>${plates} plate(s), ${wells} wells and <b>${fields} fields</b> were "
    "processed: artefact masks, inpainting of the masked pixels "
    "and PhIRM scoring of the restored image ${scored_against}.</p>"
    "<p>Area restored (pixels inside the masks the inpainting filled, each pixel "
    "counted once): ${area}.</p>"
    "<p><b>${flagged} of ${fields} fields are flagged</b> (${rule})${reasons}</p>"
)

SCREEN_LINK = Template('<a href="${href}">${text}</a>')

SCREEN_LINK_SEPARATOR = " · "

#: One plate's row; ``${extra_cells}`` are the self-check / estimate columns where shown.
SCREEN_PLATE_ROW = Template(
    "<tr><td>${plate}</td><td>${fields}</td><td>${flagged}</td>"
    "<td>${phirm_mean}</td><td>${phirm_min}</td><td>${frac_below}</td>"
    "<td>${masked_fraction}</td>${extra_cells}<td>${store}</td></tr>"
)

SCREEN_CELL = Template("<td>${value}</td>")

SCREEN_HEAD = Template("<th>${name}</th>")

SCREEN_HEATMAP = Template(
    '<h3>${plate}</h3><img src="${src}" alt="plate ${plate}: mean '
    "${what} per well as a heatmap, wells with a flagged field outlined in red, "
    'threshold ${threshold} marked on the colour bar; grey wells were not imaged">'
)

#: One flagged field; ``${picture}`` is empty or ``<br>`` and its picture.
SCREEN_FLAGGED_ROW = Template(
    "<tr><td>${plate}</td><td>${well}</td><td>${field}</td>"
    "<td>${score}</td><td>${why}${picture}</td></tr>"
)

SCREEN_FLAGGED_NONE = "<tr><td colspan=5>none</td></tr>"

SCREEN_PICTURE = Template(
    '<img src="${src}" width="1000" alt="plate ${plate} well ${well} '
    "field ${field}, panels: ${panels} (grey scale: the 1-99.5 "
    'percentiles of the source outside the holes)">'
)

SCREEN_PICTURE_UNAVAILABLE = Template("<em>thumbnail unavailable (${error_type})</em>")

SCREEN_SAMPLE = Template("<h3>plate ${plate}, well ${well}, field ${field}</h3>${picture}")

SCREEN_SAMPLE_NONE = "<p>none left to show</p>"

HOW_TO_READ = Template("""
<p><b>PhIRM</b> (phenotype-preserving image reconstruction metric) asks whether an analysis
pipeline would measure the same nuclei on the restored image as on the reference. In every
${window} window both images are normalised to 8 bit with the reference's range, nuclei are
segmented (Otsu threshold, connected components of at least 50 px; saturated bright objects
count as artefacts), and three penalties are added:</p>
<ul>
<li><b>NCD</b>, nuclei count difference: a nuclei lost costs <code>1.1<sup>a</sup>&middot;a</code>,
nuclei invented cost <code>2<sup>|a|</sup></code>;</li>
<li><b>NAD</b>, nuclei area difference: 0.0002 per pixel of nuclear area gained or lost;</li>
<li><b>AAD</b>, artefact area difference: 0.001 per pixel of artefact area changed.</li>
</ul>
<p><code>PhIRM = max(0, 10 - (NCD + NAD + AAD)) / 10</code>: 1 means the phenotype was kept,
0 that it was lost. ${flagging} the heatmaps colour each well by its mean ${what} on a scale
fitted to the data, with the threshold marked on the colour bar, and outline in red the wells
holding a flagged field. "ref" is the reference (${ref}), "rec" the restored image (${rec});
counts and areas of a field are summed over its windows.</p>
""")

HOW_SELFCHECK = Template("""
<p><b>Without a reference</b> (no <code>--reference-channel</code>) PhIRM above compares the
restored image with the damaged source, so every artefact removed counts as damage (AAD) and
says little. Fields are then judged by the <b>self-check</b>: pseudo-holes shaped like the
plate's real artefact masks are placed on clean pixels of each field, filled with the same
model and settings, and scored with PhIRM against the true pixels there (the heatmaps show
its mean per well). A field is flagged when its mean self-check PhIRM is below ${thr}, or
when more than ${res} px of artefact are left in the restored field (the masks missed part
of an artefact). The self-check estimates a plate's quality well but ranks single fields
only weakly (docs/qc-without-ground-truth.md). It cannot see what the masks missed: the
<b>estimated PhIRM</b> adds to the self-check's deficit what PhIRM would charge for the
artefact left in each restored window and the nuclei it covers (section 8 there).</p>
""")
