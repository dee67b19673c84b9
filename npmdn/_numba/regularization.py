r"""The fused training epoch's noise regularisation and sigma floor (numba backend).

:func:`add_noise` draws the Philox noise stream of :mod:`npmdn.philox`
(:func:`npmdn.philox.noise_normals`) inside the kernel and adds it to the
standardized x and y of a chunk's rows; :func:`floor_scales` applies the
sigma floor :func:`npmdn.mixture.floor_log_sigma` to the head's raw scales and
keeps its chain-rule factor (:func:`npmdn.mixture.floor_log_sigma_grad`).
``train._chunk`` calls both; they are tested against the NumPy reference in
``tests/backends/test_training_backends.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .. import philox
from .sample import philox10, uniform
from .vmath import (
    always_inline,
    as_type,
    cos_sin_2pi,
    log64,
    prefer_wide_vectors,
    vexp,
    vlog1p,
)

# train.FASTMATH (train imports this module): LLVM may reassociate the rows' loops
FASTMATH = {"contract", "reassoc", "nsz", "arcp"}

_MASK = np.uint64(0xFFFFFFFF)
_DOMAIN = np.uint64(philox.NOISE_DOMAIN)


@njit(error_model="numpy")
def _perturb(X0, XY, c, E, nc, n_in, n_cols, nsx, nsy):
    """Column ``c`` of the rows' noise (x columns first, then y) onto the chunk:
    ``scale * E[i]`` rounded to the dtype, added in it."""
    always_inline()
    if c < n_in:
        dst = X0[c]
        for i in range(nc):
            dst[i] += as_type(nsx * E[i], X0)
    elif c < n_cols:
        dst = XY[c - n_in]
        for i in range(nc):
            dst[i] += as_type(nsy * E[i], XY)


@njit(error_model="numpy")
def add_noise(X0, XY, nc, order, rows, r0, nsx, nsy, key0, key1, epoch):
    """Chunk rows ``i < nc`` (training rows ``order[r0 + i]``, or ``r0 + i``) get the
    noise of their rows of the stream (``rows[row]``, or ``row``) at ``epoch``, as
    :func:`npmdn.philox.noise_normals` and :meth:`npmdn.regularization.Noise.add`:
    ``scale * eps`` rounded to the dtype, added in it. Two Box-Muller pairs per
    Philox block: pair ``p`` is lanes ``2 (p % 2)`` and ``2 (p % 2) + 1`` of block
    ``p // 2``. The loops run over the rows, so that the Philox rounds, the logs
    and the sines vectorise (as in ``sample.sample_kernel``)."""
    prefer_wide_vectors()
    n_in = X0.shape[0]
    n_cols = n_in + XY.shape[0]
    n_pairs = (n_cols + 1) // 2
    shuffled = order.shape[0] > 0
    mapped = rows.shape[0] > 0
    ep = np.uint64(epoch) & _MASK
    lo = np.empty(nc, np.uint64)
    hi = np.empty(nc, np.uint64)
    W = np.empty((4, nc), np.uint64)
    E0 = np.empty(nc, np.float64)
    E1 = np.empty(nc, np.float64)
    for i in range(nc):
        row = order[r0 + i] if shuffled else r0 + i
        g = np.uint64(rows[row]) if mapped else np.uint64(row)
        lo[i] = g & _MASK
        hi[i] = g >> np.uint64(32)
    for blk in range((n_pairs + 1) // 2):
        bb = _DOMAIN | np.uint64(blk)
        for i in range(nc):
            W[0, i], W[1, i], W[2, i], W[3, i] = philox10(lo[i], hi[i], ep, bb, key0, key1)
        for half in range(min(2, n_pairs - 2 * blk)):
            wa = W[2 * half]
            wb = W[2 * half + 1]
            for i in range(nc):
                rad = np.sqrt(-2.0 * log64(uniform(wa[i])))
                cs, sn = cos_sin_2pi(uniform(wb[i]))
                E0[i] = rad * cs
                E1[i] = rad * sn
            c = 2 * (2 * blk + half)
            _perturb(X0, XY, c, E0, nc, n_in, n_cols, nsx, nsy)
            _perturb(X0, XY, c + 1, E1, nc, n_in, n_cols, nsx, nsy)


@njit(fastmath=FASTMATH, error_model="numpy")
def floor_scales(XS, F, log_floor, S, nc):
    """``XS <- logaddexp(XS, log f)`` row by row (``log_floor[j % S]`` for scale row
    ``j``), and ``F <- exp(XS_before - XS_after)``, the chain-rule factor."""
    for j in range(XS.shape[0]):
        lf = log_floor[j % S]
        x = XS[j]
        f = F[j]
        for i in range(nc):
            s = x[i]
            hi = max(s, lf)
            t = hi + vlog1p(vexp(-abs(s - lf)))  # logaddexp(s, lf), as np.logaddexp
            f[i] = vexp(s - t)  # ds'/ds = exp(s) / (exp(s) + f)
            x[i] = t
