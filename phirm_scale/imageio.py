"""Reading single images (TIFF, PNG, ...) for the file-level commands.

The plate commands read plates through :mod:`phirm_scale.plate`; this module only serves
``phirm-scale metric`` and friends.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from phirm_scale.errors import InputError
from phirm_scale.validation import check_image

__all__ = ["read_image", "IMAGE_SUFFIXES", "quiet_tifffile"]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


_QUIET_LOCK = threading.Lock()
_QUIET_DEPTH = 0
_QUIET_OLD_LEVEL = logging.NOTSET


@contextlib.contextmanager
def quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's own log lines while reading.

    A broken file becomes one ``error:`` line of ours naming it, not a stray log line before
    it.
    """
    global _QUIET_DEPTH, _QUIET_OLD_LEVEL
    logger = logging.getLogger("tifffile")
    with _QUIET_LOCK:  # reader threads overlap: silenced from the first entry to the last exit
        if _QUIET_DEPTH == 0:
            _QUIET_OLD_LEVEL = logger.level
            logger.setLevel(logging.CRITICAL + 1)
        _QUIET_DEPTH += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET_DEPTH -= 1
            if _QUIET_DEPTH == 0:
                logger.setLevel(_QUIET_OLD_LEVEL)


def read_image(path: str | Path) -> np.ndarray:
    """Read a 2-D grey image.

    RGB(A) images with equal colour channels give one channel, other colour images are
    converted to grey like OpenCV's ``COLOR_BGR2GRAY``.

    Raises :class:`~phirm_scale.errors.InputError` naming the file when it is missing,
    unreadable, truncated or not 2-D.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with quiet_tifffile():
                image = tifffile.imread(path)
        else:
            import cv2

            decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if decoded is None:
                raise ValueError("not a readable image")
            image = decoded
            if image.ndim == 3:
                image = image[..., ::-1][..., :3] if image.shape[-1] >= 3 else image
    except InputError:
        raise
    except Exception as exc:  # any reader failure is a bad file
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: unreadable image ({msg})") from exc
    image = np.asarray(image)
    if image.size == 0:
        raise InputError(f"{path}: no image data (truncated or empty file)")
    image = np.squeeze(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        rgb = image[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            image = rgb[..., 0]
        else:
            import cv2

            image = cv2.cvtColor(np.ascontiguousarray(rgb[..., ::-1]), cv2.COLOR_BGR2GRAY)
    return check_image(image, str(path), what="grey image", kinds=None, finite=False)
