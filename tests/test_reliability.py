"""Never lose a user's data, never report work that was not done (issue 12).

Every case runs the real CLI in a subprocess on real stores and checks the promise: one
``error:`` line and exit 2, inputs (and foreign data) byte-identical, settings recorded in a
store describing the data on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from conftest import copy_store, run_cli
from scipy.ndimage import binary_dilation
from skimage.morphology import disk

from phirm_scale.masks._artefacts import artefact_mask
from phirm_scale.plate import open_plate
from phirm_scale.synthetic import make_plate

ENV = {**os.environ, "COLUMNS": "200", "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"}


run = partial(run_cli, env=ENV)  # run(*args, check=False, env=ENV, timeout=300)


def one_error(proc, *needles: str) -> str:
    """The run failed with exactly one ``error:`` line (exit 2) holding every needle."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    errors = [ln for ln in lines if ln.startswith("error: ")]
    # one error line, last; before it at most progress lines (a run that failed mid-way;
    # stderr is a pipe: plain "<stage>: n/total (p%) t s" lines, phirm_scale.progress)
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    assert all(re.match(r"^[\w-]+: \d+/\d+ \(\d+%\) [\d.]+ s$", ln) for ln in lines[:-1]), (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def score_args(ref: Path, rec: Path, out: Path, *extra: str) -> list:
    """``phirm-scale score`` of ``rec``'s DAPI against ``ref``'s DAPI_clean into ``out``."""
    return [
        "score",
        "--reference",
        f"{ref}:DAPI_clean",
        "--reconstruction",
        f"{rec}:DAPI",
        "-o",
        out,
        *extra,
        "--cluster",
        "threads",
        "--no-progress",
    ]


def tree_hash(path: Path, *, skip_labels: bool = False) -> dict[str, str]:
    """sha256 of every file under ``path`` (relative names), optionally without labels/."""
    out = {}
    for p in sorted(Path(path).rglob("*")):
        rel = p.relative_to(path).as_posix()
        if skip_labels and ("/labels/" in f"/{rel}" or rel.endswith("/labels")):
            continue
        if p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def pixel_hash(path: Path) -> dict[str, str]:
    """sha256 of every image chunk file (not metadata, not labels) of a plate."""
    return {k: v for k, v in tree_hash(path, skip_labels=True).items() if "/c/" in f"/{k}"}


@pytest.fixture(scope="module")
def plate_template(tmp_path_factory) -> Path:
    """A small synthetic plate with artefacts, built once; tests get copies."""
    p = tmp_path_factory.mktemp("template") / "P.ome.zarr"
    make_plate(p, rows=1, columns=2, fields=2, size=64, seed=3, artefacts=0.05)
    return p


@pytest.fixture(scope="module")
def masked_template(plate_template, tmp_path_factory) -> Path:
    """The same plate with its artefact masks made by `phirm-scale masks` (once)."""
    p = copy_store(plate_template, tmp_path_factory.mktemp("masked") / "P.ome.zarr")
    run("masks", p, "--channel", "CFP", "--cluster", "threads", "--no-progress", check=True)
    return p


@pytest.fixture
def plate(plate_template, tmp_path) -> Path:
    return copy_store(plate_template, tmp_path / "P.ome.zarr")


@pytest.fixture
def masked(masked_template, tmp_path) -> Path:
    return copy_store(masked_template, tmp_path / "P.ome.zarr")


# --------------------------------------------------------------------------- 1. outputs


@pytest.mark.slow
def test_score_and_tiles_never_delete_their_input(masked, tmp_path):
    before = tree_hash(masked)
    p = run(*score_args(masked, masked, masked, "--overwrite"))
    one_error(p, str(masked), "input")
    p = run("tiles", masked, "-o", masked, "--overwrite", "--size", "32", "--channel", "DAPI")
    one_error(p, str(masked), "input")
    for out in (masked / "x.zarr", masked / "A" / "t.zarr"):  # inside the input
        one_error(
            run("tiles", masked, "-o", out, "--size", "32", "--channel", "DAPI"), "inside the input"
        )
        one_error(run("inpaint", masked, "-o", out, "--cluster", "threads"), "inside the input")
    one_error(run("inpaint", masked, "-o", tmp_path, "--cluster", "threads"), "contains the input")
    assert tree_hash(masked) == before


@pytest.mark.slow
def test_overwrite_replaces_only_outputs_of_the_same_command(masked, tmp_path):
    other = tmp_path / "Other.ome.zarr"
    make_plate(other, rows=1, columns=1, fields=1, size=64, seed=1)
    foreign = tmp_path / "foreign.zarr"
    zarr.create_array(str(foreign), shape=(4,), dtype="u1")[:] = 7
    tiffs = tmp_path / "tiffs"
    tiffs.mkdir()
    tifffile.imwrite(tiffs / "a.tif", np.arange(64, dtype=np.uint8).reshape(8, 8))
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.txt").write_text("precious")
    qc = tmp_path / "QC.zarr"
    run(
        *score_args(masked, masked, qc),
        check=True,
    )
    victims = [other, foreign, tiffs, folder, qc]
    before = {v: tree_hash(v) for v in victims}
    for v in [other, foreign, tiffs, folder]:
        one_error(
            run(*score_args(masked, masked, v, "--overwrite")),
            str(v),
            "refusing to replace",
        )
        one_error(
            run("tiles", masked, "-o", v, "--overwrite", "--size", "32", "--channel", "DAPI"),
            str(v),
            "refusing to replace",
        )
        one_error(
            run("inpaint", masked, "-o", v, "--overwrite", "--cluster", "threads"),
            str(v),
            "refusing to replace",
        )
    # another command's output is not ours to replace either
    one_error(
        run("inpaint", masked, "-o", qc, "--overwrite", "--cluster", "threads"),
        "output of `phirm-scale score`",
    )
    one_error(run("make-plate", qc, "--overwrite", "--size", "32"), "output of `phirm-scale score`")
    # the report goes neither onto a plate nor onto a QC store
    for v in (other, qc):
        one_error(run("report", qc, "-o", v), str(v))
    assert {v: tree_hash(v) for v in victims} == before
    # ... while an output of the same command is replaced
    run(
        *score_args(masked, masked, qc, "--overwrite", "--window", "field"),
        check=True,
    )
    assert zarr.open_group(str(qc), mode="r").attrs["window"] == "field"
    assert not list(tmp_path.glob("*.lock")), "lock files left behind"


# --------------------------------------------------------------------------- 2, 3


def test_metric_refuses_a_constant_reference(tmp_path):
    const = tmp_path / "const.tif"
    tifffile.imwrite(const, np.full((64, 64), 1000, np.uint16))
    img = tmp_path / "img.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(img, rng.integers(0, 4000, (64, 64)).astype(np.uint16))
    one_error(run("metric", const, const, "--json"), str(const), "constant")
    one_error(run("metric", const, img), str(const), "constant")
    c8 = tmp_path / "c8.tif"
    tifffile.imwrite(c8, np.zeros((64, 64), np.uint8))
    one_error(run("metric", c8, c8), str(c8), "constant")
    # folders: the blank pair is named
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(const, tmp_path / "a" / "x.tif")
    shutil.copy(img, tmp_path / "b" / "x.tif")
    one_error(run("metric", tmp_path / "a", tmp_path / "b"), "x.tif", "constant")


@pytest.mark.slow
def test_learned_inpainting_needs_a_checkpoint(masked, tmp_path):
    out = tmp_path / "R.ome.zarr"
    one_error(
        run("inpaint", masked, "-o", out, "--model", "context-encoder", "--cluster", "threads"),
        "context-encoder",
        "--checkpoint",
        "--allow-untrained",
    )
    assert not out.exists()
    run(
        "inpaint",
        masked,
        "-o",
        out,
        "--model",
        "context-encoder",
        "--allow-untrained",
        "--tile",
        "64",
        "--overlap",
        "0",
        "--cluster",
        "threads",
        check=True,
    )
    prov = open_plate(out).attrs["phirm_scale"]["inpaint"]
    assert prov["untrained"] is True and prov["checkpoint"] is None


# --------------------------------------------------------------------------- 4. provenance


def _labels(p: Path, name="artefacts") -> dict:
    pl = open_plate(p)
    return {k: pl.read_label(k, name) for k in pl.fields}


@pytest.mark.slow
def test_masks_rerun_with_other_settings(masked, tmp_path):
    first = _labels(masked)
    attrs = open_plate(masked).attrs["phirm_scale"]["labels_artefacts"]
    p = run(
        "masks",
        masked,
        "--channel",
        "CFP",
        "--otsu-factor",
        "0.3",
        "--radius",
        "5",
        "--cluster",
        "threads",
        "--no-progress",
    )
    one_error(p, "labels/artefacts", "not these settings", "--overwrite")
    p = run("masks", masked, "--channel", "DAPI", "--cluster", "threads", "--no-progress")
    one_error(p, "labels/artefacts", "not these settings")
    assert open_plate(masked).attrs["phirm_scale"]["labels_artefacts"] == attrs
    for k, v in _labels(masked).items():
        np.testing.assert_array_equal(v, first[k])
    # the same settings again: nothing to do
    p = run(
        "masks", masked, "--channel", "CFP", "--cluster", "threads", "--no-progress", check=True
    )
    assert "skipped 4 fields (already labelled)" in p.stdout
    # --overwrite recomputes every field with the new settings, and records them
    p = run(
        "masks",
        masked,
        "--channel",
        "CFP",
        "--otsu-factor",
        "0.3",
        "--radius",
        "5",
        "--overwrite",
        "--cluster",
        "threads",
        "--no-progress",
        check=True,
    )
    assert "written for 4 fields" in p.stdout
    pl = open_plate(masked)
    rec = pl.attrs["phirm_scale"]["labels_artefacts"]
    assert rec["otsu_factor"] == 0.3 and rec["radius"] == 5 and rec["channel"] == "CFP"
    assert rec["dilation"] == 4  # the documented default of --method otsu (issue 20)
    for k in pl.fields:
        raw = artefact_mask(
            pl.read_field(k, "CFP"), otsu_factor=0.3, radius=5, min_separability=0.9
        )
        want = binary_dilation(raw > 0, disk(4))
        np.testing.assert_array_equal(pl.read_label(k, "artefacts") > 0, want > 0)


@pytest.mark.slow
def test_inpaint_and_score_reruns_refuse_other_settings(masked, tmp_path):
    out = tmp_path / "R.ome.zarr"
    run("inpaint", masked, "-o", out, "--cluster", "threads", check=True)
    before = tree_hash(out)
    one_error(
        run("inpaint", masked, "-o", out, "--dilate", "2", "--cluster", "threads"),
        str(out),
        "--overwrite",
    )
    assert tree_hash(out) == before
    # the source's masks changed: the inpainted plate no longer describes them
    run(
        "masks",
        masked,
        "--channel",
        "CFP",
        "--radius",
        "4",
        "--overwrite",
        "--cluster",
        "threads",
        "--no-progress",
        check=True,
    )
    one_error(run("inpaint", masked, "-o", out, "--cluster", "threads"), str(out))
    run(
        "inpaint",
        masked,
        "-o",
        out,
        "--dilate",
        "2",
        "--overwrite",
        "--cluster",
        "threads",
        check=True,
    )
    prov = open_plate(out).attrs["phirm_scale"]["inpaint"]
    assert prov["dilate"] == 2 and prov["mask_settings"]["radius"] == 4
    qc = tmp_path / "QC.zarr"
    args = score_args(masked, out, qc)
    run(*args, check=True)
    one_error(run(*args, "--window", "32"), str(qc), "output exists", "--overwrite")
    tiles = tmp_path / "T.zarr"
    targs = ["tiles", masked, "-o", tiles, "--size", "32", "--channel", "DAPI"]
    run(*targs, check=True)
    one_error(run(*targs[:-2], "--channel", "CFP"), str(tiles), "output exists")


# --------------------------------------------------------------------------- 5. locks


def _hold_lock(path: Path) -> subprocess.Popen:
    code = (
        "import sys, time; from phirm_scale.outputs import output_lock\n"
        "with output_lock(sys.argv[1], command='inpaint'):\n"
        "    print('held', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True, env=ENV
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.slow
def test_a_second_writer_is_refused_and_stale_locks_are_taken_over(masked, tmp_path):
    out = tmp_path / "R.ome.zarr"
    holder = _hold_lock(out)
    try:
        line = one_error(
            run("inpaint", masked, "-o", out, "--cluster", "threads"),
            str(out),
            "in use by another run",
            f"pid {holder.pid}",
        )
        assert socket.gethostname() in line
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is stale and taken over
    lock = out.with_name(out.name + ".lock")
    assert json.loads(lock.read_text())["pid"] == holder.pid
    p = run("inpaint", masked, "-o", out, "--cluster", "threads", check=True)
    assert "stale lock" in p.stderr
    assert not lock.exists()
    assert open_plate(out).missing_fields() == []


@pytest.mark.slow
def test_masks_lock_the_plate(masked, tmp_path):
    holder = _hold_lock(masked)
    try:
        one_error(
            run(
                "masks",
                masked,
                "--channel",
                "CFP",
                "--overwrite",
                "--cluster",
                "threads",
                "--no-progress",
            ),
            "in use by another run",
        )
        # a plate being written is not read either
        one_error(
            run("inpaint", masked, "-o", tmp_path / "R.ome.zarr", "--cluster", "threads"),
            str(masked),
            "is being written by another run",
            f"pid {holder.pid}",
        )
        one_error(
            run(*score_args(masked, masked, tmp_path / "QC.zarr")),
            "is being written by another run",
        )
        one_error(
            run("tiles", masked, "-o", tmp_path / "T.zarr", "--size", "32"),
            "is being written by another run",
        )
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- 6. damage


@pytest.mark.slow
def test_missing_or_damaged_fields_are_named(masked, tmp_path):
    out = tmp_path / "R.ome.zarr"
    run("inpaint", masked, "-o", out, "--cluster", "threads", check=True)
    qc = tmp_path / "QC.zarr"
    args = score_args(masked, out, qc)
    # chunk files of a completed field deleted: zarr would read zeros
    shutil.rmtree(out / "A" / "02" / "1" / "0" / "c")
    one_error(run(*args), "field A02/1", "missing")
    # a field's whole array deleted
    shutil.rmtree(out / "A" / "01" / "0" / "0")
    one_error(run(*args), "field A01/0", "missing")
    assert not qc.exists()
    # a label's chunks deleted
    shutil.rmtree(masked / "A" / "01" / "1" / "labels" / "artefacts" / "0" / "c")
    one_error(
        run("inpaint", masked, "-o", tmp_path / "R2.ome.zarr", "--cluster", "threads"),
        "field A01/1",
        "label 'artefacts'",
        "missing",
    )


def test_an_all_zero_channel_is_data_not_damage(tmp_path):
    from phirm_scale.plate import create_plate

    p = create_plate(
        tmp_path / "Z.ome.zarr",
        rows=["A"],
        columns=["01"],
        fields=[("A", "01", 0)],
        channel_names=["DAPI", "CFP"],
        shape=(16, 16),
        dtype="uint16",
    )
    data = np.zeros((2, 16, 16), np.uint16)
    data[0] = np.arange(256).reshape(16, 16)
    p.write_field(("A", "01", 0), data)
    again = open_plate(p.path)
    np.testing.assert_array_equal(again.read_field(("A", "01", 0)), data)
    shutil.rmtree(p.path / "A" / "01" / "0" / "0" / "c" / "0" / "1")  # the zero channel
    with pytest.raises(Exception, match=r"field A01/0: image data damaged.*CFP"):
        again.read_field(("A", "01", 0), "CFP")


# --------------------------------------------------------------------------- 7. errors


def _under_a_file(tmp_path: Path) -> Path:
    f = tmp_path / "afile"
    f.write_text("x")
    return f / "out"


@pytest.mark.slow
def test_unwritable_output_is_one_line(masked, tmp_path):
    bad = _under_a_file(tmp_path)
    one_error(
        run("inpaint", masked, "-o", bad / "R.ome.zarr", "--cluster", "threads"), "cannot write"
    )
    one_error(
        run(*score_args(masked, masked, bad / "QC.zarr")),
        "cannot write",
    )
    one_error(run("tiles", masked, "-o", bad / "T.zarr", "--size", "32"), "cannot write")
    one_error(run("make-plate", bad / "S.ome.zarr", "--size", "32"), "cannot write")
    tiffs = tmp_path / "tiffs"
    tiffs.mkdir()
    for w in ("A01", "A02"):
        tifffile.imwrite(tiffs / f"P_{w}_s1_w1.tif", np.ones((16, 16), np.uint16))
    one_error(run("convert", tiffs, bad / "C.ome.zarr", "--cluster", "threads"), "cannot write")


@pytest.mark.slow
def test_bad_cluster_addresses_are_one_line(masked, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["masks", masked, "--channel", "CFP", "--overwrite", "--no-progress", "--cluster"]
    one_error(run(*args, f"tcp://127.0.0.1:{port}"))
    # a server that answers garbage
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    stop = threading.Event()

    def garbage():
        srv.settimeout(0.5)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + os.urandom(256))

    t = threading.Thread(target=garbage, daemon=True)
    t.start()
    try:
        one_error(run(*args, f"tcp://127.0.0.1:{srv.getsockname()[1]}"))
    finally:
        stop.set()
        t.join()
        srv.close()


def test_debug_shows_the_traceback(tmp_path):
    const = tmp_path / "const.tif"
    tifffile.imwrite(const, np.zeros((16, 16), np.uint8))
    p = run("--debug", "metric", const, const)
    assert p.returncode != 0 and "Traceback" in p.stderr and "constant" in p.stderr
    p = run("metric", const, const, env={**ENV, "PHIRM_SCALE_DEBUG": "1"})
    assert "Traceback" in p.stderr
    p = run("metric", const, const)
    assert "Traceback" not in p.stderr


# --------------------------------------------------------------------------- inputs intact


@pytest.mark.slow
def test_every_stage_leaves_input_pixels_byte_identical(plate, tmp_path):
    pixels = pixel_hash(plate)
    assert pixels, "no chunk files hashed"
    before = tree_hash(plate, skip_labels=True)
    run("masks", plate, "--channel", "CFP", "--cluster", "threads", "--no-progress", check=True)
    assert pixel_hash(plate) == pixels
    # masks adds labels and the record of their settings (root attributes), nothing else
    after = tree_hash(plate, skip_labels=True)
    assert set(after) == set(before)
    assert {k for k in after if after[k] != before[k]} == {"zarr.json"}
    assert len(tree_hash(plate)) > len(after)  # the labels
    everything = tree_hash(plate)
    out = tmp_path / "R.ome.zarr"
    run("inpaint", plate, "-o", out, "--cluster", "threads", check=True)
    qc = tmp_path / "QC.zarr"
    run(
        *score_args(plate, out, qc, "--mask-label", "artefacts"),
        check=True,
    )
    run(
        "tiles",
        plate,
        "-o",
        tmp_path / "T.zarr",
        "--size",
        "32",
        "--channel",
        "DAPI",
        "--label",
        "artefacts",
        check=True,
    )
    rec = tree_hash(out)
    qch = tree_hash(qc)
    run("report", qc, "-o", tmp_path / "report", check=True)
    assert tree_hash(plate) == everything and tree_hash(out) == rec and tree_hash(qc) == qch


@pytest.mark.slow
def test_folder_outputs_never_go_into_stores_or_inputs(plate, tmp_path):
    fields = tmp_path / "fields"
    fields.mkdir()
    rng = np.random.default_rng(1)
    tifffile.imwrite(fields / "f.tif", rng.integers(0, 4000, (64, 64)).astype(np.uint16))
    before = tree_hash(plate)
    one_error(run("validate-metric", fields, "-o", plate), str(plate), "HCS plate")
    one_error(run("validate-metric", fields, "-o", fields / "out"), "inside the input")
    tiles = tmp_path / "T.zarr"
    run(
        "tiles",
        plate,
        "-o",
        tiles,
        "--size",
        "32",
        "--channel",
        "DAPI",
        "--split",
        "0.5,0,0.5",
        check=True,
    )
    one_error(
        run(
            "evaluate",
            "--models",
            "telea",
            "--tiles",
            f"{tiles}:test",
            "--masks",
            "strokes",
            "-o",
            plate,
        ),
        "HCS plate",
    )
    one_error(
        run(
            "evaluate",
            "--models",
            "telea",
            "--tiles",
            f"{tiles}:test",
            "--masks",
            "strokes",
            "-o",
            tiles,
        ),
        "input",
    )
    one_error(
        run(
            "train",
            "--model",
            "context-encoder",
            "--tiles",
            tiles,
            "-o",
            plate,
            "--max-steps",
            "1",
            "--device",
            "cpu",
        ),
        "HCS plate",
    )
    assert tree_hash(plate) == before


def test_truncated_tiff_is_one_line_without_a_tifffile_log_line(tmp_path):
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    head = tmp_path / "head.tif"
    head.write_bytes(full.read_bytes()[:8])  # the header only: tifffile logs a warning
    line = one_error(run("metric", head, full), str(head), "truncated")
    assert "tifffile" not in line
    src = tmp_path / "src"
    src.mkdir()
    tifffile.imwrite(src / "P_A01_s1_w1.tif", np.ones((16, 16), np.uint16))
    (src / "P_A02_s1_w1.tif").write_bytes(head.read_bytes())
    p = run("convert", src, tmp_path / "C.ome.zarr", "--cluster", "threads", "--no-progress")
    one_error(p, "P_A02_s1_w1.tif")
    assert not (tmp_path / "C.ome.zarr").exists()


def test_quiet_tifffile_holds_until_the_last_reader_leaves():
    """Reader threads overlap: the first to leave must not unsilence tifffile for the others
    (a convert task then printed tifffile's log line before its error)."""
    import logging

    from phirm_scale.imageio import quiet_tifffile

    lg = logging.getLogger("tifffile")
    before = lg.level
    a, b = quiet_tifffile(), quiet_tifffile()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    assert lg.level > logging.CRITICAL
    b.__exit__(None, None, None)
    assert lg.level == before
