"""The model's standardization: column statistics without overflow, and the checks
that a model of a given dtype can represent the data and its own outputs.

:class:`npmdn.MDN` trains on ``x' = (x - x_shift) / x_scale`` and
``y' = (y - y_shift) / y_scale`` and answers in user units through
``mu = y_shift + y_scale * mu'`` and ``sigma = y_scale * sigma'``
(``docs/derivation.md``, section 10). Data whose spread does not fit is
refused here, with a ValueError naming the column, before any work: a
standard deviation that overflowed to ``inf`` or underflowed to 0 used to
leave a model that predicted NaN, ignored x, or could not be loaded.
Shapes: ``x [N, in_dim]``, ``y [N, out_dim]``, statistics per column.
"""

from __future__ import annotations

import numpy as np

# A model's outputs in user units are y_shift + y_scale * mu' and y_scale * sigma',
# with the standardized mu' and sigma' ranging over a few orders of magnitude:
# the y statistics must leave this factor of room on both sides of the dtype's range.
HEADROOM = 2.0**20


def column_stats(a):
    """Mean and (population) standard deviation of each column of ``a`` [N, W], float64.

    Each column is first divided by a power of two above its largest magnitude
    (exact), so neither the sum nor the squares overflow or underflow: the
    results are those of ``a.mean(0)`` and ``a.std(0)`` wherever those are
    finite, and right where they were not (``y * 1e160``, ``y * 1e-200``).
    """
    a = np.asarray(a, dtype=np.float64)
    _, e = np.frexp(np.abs(a).max(axis=0))  # max |a| < 2^e (e = 0 for a zero column)
    s = np.ldexp(a, -e)
    return np.ldexp(s.mean(axis=0), e), np.ldexp(s.std(axis=0), e)


def rms(v):
    """``sqrt(mean(v^2))`` of a 1-D array without overflow or underflow in the squares."""
    c = np.max(np.abs(v))
    return 0.0 if c == 0 else float(c * np.sqrt(np.mean((v / c) ** 2)))


def fit(x, y, dtype, isotropic: bool):
    """``(x_shift, x_scale, y_shift, y_scale)`` of training data (float64 arrays).

    A constant column gets scale 1. Raises ValueError, naming the first column,
    where x's spread is below float64's normal range (its standardized values
    would lose their precision), or where y's shift or scale leaves less than
    ``HEADROOM`` inside the range of ``dtype`` (a float32 model cannot answer
    in units of 1e160 or 1e-200; a float64 one can). With ``isotropic`` every y
    column shares one scale, the RMS of their standard deviations.
    """
    x_shift, sx = column_stats(x)
    y_shift, sy = column_stats(y)
    return from_moments(x_shift, sx, y_shift, sy, dtype, isotropic)


def from_moments(x_shift, sx, y_shift, sy, dtype, isotropic: bool):
    """:func:`fit` from column means and (population) standard deviations computed
    elsewhere (a streaming pass over blocks, :mod:`npmdn.dask`): the same scales,
    the same checks."""
    dtype = np.dtype(dtype)
    x_shift, sx, y_shift, sy = (np.asarray(v, dtype=np.float64) for v in (x_shift, sx, y_shift,
                                                                           sy))
    if not (np.isfinite(sx).all() and np.isfinite(sy).all()):
        raise ValueError("the standard deviation of a column overflowed: rescale x or y")
    if isotropic:
        sy = np.full(sy.shape, rms(sy))
    tiny = np.finfo(np.float64).tiny
    for j, s in enumerate(sx):
        if 0 < s < tiny:
            raise ValueError(
                f"x column {j}: its standard deviation {s:.3g} is below the smallest normal "
                f"float64 ({tiny:.3g}), too small to standardize; rescale x")
    fi = np.finfo(dtype)
    lo, hi = float(fi.tiny) * HEADROOM, float(fi.max) / HEADROOM
    for j, (m, s) in enumerate(zip(y_shift, sy, strict=True)):
        if (0 < s < lo) or s > hi or abs(m) > hi:
            wider = dtype != np.float64 and float(np.finfo(np.float64).tiny) * HEADROOM <= s \
                <= float(np.finfo(np.float64).max) / HEADROOM
            raise ValueError(
                f"y column {j}: mean {m:.3g} and standard deviation {s:.3g} are beyond what "
                f"a {dtype.name} model can represent (both within [{lo:.2g}, {hi:.2g}]); "
                f"rescale y" + (" or use dtype float64" if wider else ""))
    return x_shift, np.where(sx > 0, sx, 1.0), y_shift, np.where(sy > 0, sy, 1.0)


def apply(a, shift, scale, dtype, name: str):
    """``(a - shift) / scale`` [N, W] in ``dtype``; ValueError naming the first column
    with a value that does not fit the dtype there (a value far beyond the training
    data: a float32 network fed ``inf`` answers NaN)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = ((a - shift) / scale).astype(dtype)
    if not np.isfinite(out).all():
        i, j = np.argwhere(~np.isfinite(out))[0]
        raise ValueError(
            f"{name} column {j}: {a[i, j]:.3g} (row {i}) is too far from the training "
            f"data (mean {shift[j]:.3g}, standard deviation {scale[j]:.3g}) for a "
            f"{np.dtype(dtype).name} model")
    return out
