"""The input checks every array-taking function shares: 2-D, non-empty, dtype, finite, shape.

One place for the checks so that every function refuses bad input with the same kind of
message (``<name>: expected a 2-D image, got shape (3, 4, 5)``) and the same exception
(:class:`~phirm_scale.errors.InputError`, or the class the caller passes). Pure numpy, so the
maths modules (metric, masks, inpaint) can use it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from phirm_scale.errors import InputError

__all__ = ["check_image", "check_same_shape"]


def check_image(
    image: ArrayLike,
    name: str = "image",
    *,
    what: str = "image",
    allow_empty: bool = False,
    kinds: str | None = "uifb",
    finite: bool = True,
    error: type[Exception] = InputError,
) -> np.ndarray:
    """Return ``image`` as an ndarray after checking that it is a usable 2-D image.

    Parameters
    ----------
    image : array_like
        The array to check.
    name : str
        What the message names first (a file, a field key, an argument).
    what : str
        What the array is, in the message ("image", "mask", "field", ...).
    allow_empty : bool
        Accept an array with no pixels.
    kinds : str
        Accepted :attr:`numpy.dtype.kind` letters (default: unsigned, signed, float, bool);
        None accepts any dtype (the caller checks it).
    finite : bool
        Refuse NaN and infinite values in a float array.
    error : type
        Exception class raised (default :class:`~phirm_scale.errors.InputError`).

    Returns
    -------
    ndarray
        ``np.asarray(image)`` (no copy).

    Raises
    ------
    InputError
        (or ``error``) naming ``name`` and what is wrong: not 2-D, empty, unsupported dtype,
        NaN or infinite values.

    Examples
    --------
    >>> check_image(np.zeros((2, 3))).shape
    (2, 3)
    >>> check_image(np.zeros(3), "a.tif")
    Traceback (most recent call last):
    ...
    phirm_scale.errors.InputError: a.tif: expected a 2-D image, got shape (3,)
    """
    a = np.asarray(image)
    if a.ndim != 2:
        raise error(f"{name}: expected a 2-D {what}, got shape {a.shape}")
    if not allow_empty and a.size == 0:
        raise error(f"{name}: empty {what} of shape {a.shape}")
    if kinds is not None and a.dtype.kind not in kinds:
        raise error(f"{name}: unsupported {what} dtype {a.dtype}")
    if finite and a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        raise error(f"{name}: {what} contains NaN or infinite values")
    return a


def check_same_shape(
    a: np.ndarray,
    b: np.ndarray,
    name: str = "image",
    *,
    what: tuple[str, str] = ("image", "mask"),
    error: type[Exception] = InputError,
) -> None:
    """Refuse two arrays of different shapes, naming both.

    Parameters
    ----------
    a, b : ndarray
        The arrays.
    name : str
        What the message names first.
    what : (str, str)
        What ``a`` and ``b`` are, in the message.
    error : type
        Exception class raised (default :class:`~phirm_scale.errors.InputError`).

    Raises
    ------
    InputError
        (or ``error``) ``<name>: <what[1]> shape (Y, X) differs from <what[0]> shape ...``.
    """
    if np.shape(a) != np.shape(b):
        raise error(
            f"{name}: {what[1]} shape {np.shape(b)} differs from {what[0]} shape {np.shape(a)}"
        )
