r"""Fused mixture-head kernel for full-covariance components: log-density and NLL gradient.

The math is :func:`npmdn.mixture.nll_grad` with full factors
(:mod:`npmdn.fullcov`, the reference this kernel is tested against): per
component ``z = U (y - mu)``, ``log N = -|z|^2 / 2 - sum_i s_i - D/2 log 2 pi``,
and the gradient ``d_mu = -r U^T z``, ``d_s_i = r (1 - z_i U_ii delta_i)``,
``d_U_ij = r z_i delta_j``. The layout is :mod:`npmdn._numba.head`'s: tiles of
``T`` rows transposed into structure-of-arrays scratch ``X[param, t]``, every
innermost loop over the tile's samples (so LLVM vectorises it, exp and log
included), the gradient written over the scratch and transposed back. The
loops over ``i`` and ``j`` of the factor run outside, in the reference's
order of summation.

Per sample ``K (D + 2)`` exps and 2 logs. Scratch per tile: the head's own
columns, ``z`` for every component ``[K D, T]`` and one component's
``U^T z`` ``[D, T]``. The fused training epoch (:mod:`npmdn._numba.train`) does
not run full factors: ``MDN.fit`` uses the step loop with this kernel.

Shapes: ``L [N, K]``, ``M [N, K*D]``, ``LS [N, K*S]`` (``S = D (D + 1) / 2``),
``Y [N, D]``, the gradient arrays alike, ``out [N]``; any row stride, unit
stride along rows.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .head import FASTMATH, pad8
from .memory import empty_lines
from .transpose import (
    load_rows,
    one_buffer,
    prefetch_head,
    prefetch_rows,
    rows_ahead,
    store_parts,
    store_rows,
    tr_load8,
)
from .vmath import as_type, prefer_wide_vectors, vexp, vlog

# Inputs (a head row and its target, all rows) of at least this many bytes get the
# tile loop's prefetch hints: half the development machine's last-level cache
PREFETCH_MIN_BYTES = 16 * 2**20

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@njit(inline="always")
def off_index(i, j, D):
    """Position of ``U_ij`` (``i < j``) in a packed factor (``npmdn.fullcov.off_index``)."""
    return D + i * D - i * (i + 1) // 2 + (j - i - 1)


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def full_soa(nt, K, D, grad, XA, XM, XS, XY, EA, TT, Z, G, va, vb, vc, vd):
    """The full-covariance mixture math on structure-of-arrays data, samples ``t < nt``.

    In: ``XA [K, T]`` logits, ``XM [K*D, T]`` means, ``XS [K*S, T]`` packed factors,
    ``XY [D, T]`` targets. Out: ``vd[t] = log p(y_t)``; with ``grad``, the gradient
    of ``-log p(y_t)``: ``XA`` <- ``pi - r``, ``XM`` <- ``-r U^T z``, ``XS`` <- the
    packed ``r (1 - z_i U_ii delta_i)`` and ``r z_i delta_j``, exactly 0 for the
    mean and factor of a component with ``r = 0``. On the way ``XM`` holds
    ``delta = y - mu`` and the diagonal of ``XS`` holds ``U_ii = exp(-s_i)``.
    ``EA, TT [K, T]``, ``Z [K*D, T]``, ``G [D, T]`` and ``va .. vd [T]`` are scratch.
    """
    prefer_wide_vectors()
    S = D * (D + 1) // 2
    zero = as_type(0.0, XA)
    one = as_type(1.0, XA)
    half = as_type(0.5, XA)
    inf = as_type(np.inf, XA)
    c0 = as_type(D * HALF_LOG_2PI, XA)
    # ---- log pi_k = (a_k - max a) - log sum_k exp(a_k - max a), as in head_soa
    for t in range(nt):
        va[t] = XA[0, t]
    for k in range(1, K):
        for t in range(nt):
            a = XA[k, t]
            va[t] = a if a > va[t] else va[t]
    for t in range(nt):
        m = va[t]
        va[t] = m if abs(m) < inf else zero
        vc[t] = zero
    for k in range(K):
        for t in range(nt):
            b = XA[k, t] - va[t]
            XA[k, t] = b
            e = vexp(b)
            EA[k, t] = e
            vc[t] += e
    for t in range(nt):
        vb[t] = vlog(vc[t]) + c0  # log sum exp(a - max a) + D/2 log 2 pi
        va[t] = one / vc[t]  # pi_k = EA[k] * va

    # ---- t_k = log pi_k - sum_i s_i - |z|^2 / 2, z_i = U_ii delta_i + sum_{j > i} U_ij delta_j
    for k in range(K):
        m0 = k * D
        s0 = k * S
        for t in range(nt):
            TT[k, t] = XA[k, t] - vb[t]
        for i in range(D):
            for t in range(nt):
                s = XS[s0 + i, t]
                TT[k, t] -= s
                XS[s0 + i, t] = vexp(-s)  # U_ii
                XM[m0 + i, t] = XY[i, t] - XM[m0 + i, t]  # delta_i
        for i in range(D):
            for t in range(nt):
                dy = XM[m0 + i, t]
                Z[m0 + i, t] = zero if dy == zero else dy * XS[s0 + i, t]  # 0 on the mean
            for j in range(i + 1, D):
                p = s0 + off_index(i, j, D)
                for t in range(nt):
                    Z[m0 + i, t] += XS[p, t] * XM[m0 + j, t]
            for t in range(nt):
                z = Z[m0 + i, t]
                TT[k, t] -= (half * z) * z

    # ---- log p(y) = logsumexp_k t_k (shifted by each sample's own max; -inf if all are)
    for t in range(nt):
        vd[t] = TT[0, t]
    for k in range(1, K):
        for t in range(nt):
            v = TT[k, t]
            vd[t] = v if v > vd[t] else vd[t]
    for t in range(nt):
        m = vd[t]
        vd[t] = m if abs(m) < inf else zero
        vc[t] = zero
    for k in range(K):
        for t in range(nt):
            e = vexp(TT[k, t] - vd[t])
            TT[k, t] = e
            vc[t] += e
    for t in range(nt):
        vd[t] = vd[t] + vlog(vc[t])  # log p(y)
    if not grad:
        return
    for t in range(nt):
        vc[t] = one / vc[t]

    # ---- gradient of -log p over the scratch; r = 0 gives exactly 0 for mu and U
    for k in range(K):
        m0 = k * D
        s0 = k * S
        for t in range(nt):
            r = TT[k, t] * vc[t]  # responsibility r_k
            TT[k, t] = r
            XA[k, t] = EA[k, t] * va[t] - r  # pi_k - r_k
        # (U^T z)_j = U_jj z_j + sum_{i < j} U_ij z_i, before U_ij is overwritten
        for j in range(D):
            for t in range(nt):
                z = Z[m0 + j, t]
                G[j, t] = zero if z == zero else z * XS[s0 + j, t]
            for i in range(j):
                p = s0 + off_index(i, j, D)
                for t in range(nt):
                    G[j, t] += XS[p, t] * Z[m0 + i, t]
        for i in range(D):
            # d_U_ij = r z_i delta_j
            for j in range(i + 1, D):
                p = s0 + off_index(i, j, D)
                for t in range(nt):
                    r = TT[k, t]
                    XS[p, t] = zero if r == zero else (r * Z[m0 + i, t]) * XM[m0 + j, t]
            # d_s_i = r (1 - z_i U_ii delta_i) = r - (r z_i)(U_ii delta_i)
            for t in range(nt):
                r = TT[k, t]
                dy = XM[m0 + i, t]
                w = zero if dy == zero else dy * XS[s0 + i, t]
                XS[s0 + i, t] = zero if r == zero else r - (r * Z[m0 + i, t]) * w
        for j in range(D):
            for t in range(nt):
                r = TT[k, t]
                XM[m0 + j, t] = zero if r == zero else -r * G[j, t]  # -r U^T z


@njit(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def full_kernel(L, M, LS, Y, out, GL, GM, GS, grad, tile, n_chunks, c0, c1):
    """``out[i] = log p(y_i)``; with ``grad``, ``out[i] = -log p(y_i)`` and the
    gradient of that NLL into ``GL, GM, GS`` (which are not touched otherwise).

    The tile loop of :func:`npmdn._numba.head.head_kernel` around :func:`full_soa`;
    ``tile`` must be a multiple of 8.
    """
    n, K = L.shape
    D = Y.shape[1]
    KS = LS.shape[1]
    n_tiles = (n + tile - 1) // tile
    n_chunks = max(1, min(n_tiles, n_chunks))
    P = K + K * D + KS  # values in a head row
    ahead = rows_ahead((P + D) * L.itemsize)  # the prefetch distance
    one_in = one_buffer(L, M, LS)
    # prefetch hints only for inputs too large to stay in the last-level cache
    # (held there, (65536, 4, 2) ran 1.12-1.23x slower with them)
    far = n * (P + D) * L.itemsize >= PREFETCH_MIN_BYTES
    one_out = grad and one_buffer(GL, GM, GS)
    for c in range(c0, c1):  # chunks [c0, c1) of n_chunks; the caller's threads run the rest
        prefer_wide_vectors()
        XA = empty_lines((pad8(K), tile), L.dtype)  # logits, then d_logits
        XM = empty_lines((pad8(K * D), tile), L.dtype)  # mu, then delta, then d_mu
        XS = empty_lines((pad8(KS), tile), L.dtype)  # s and U_ij, then U_ii, then d_s, d_U
        XY = empty_lines((pad8(D), tile), L.dtype)  # y
        EA = empty_lines((K, tile), L.dtype)  # exp(a_k - max a)
        TT = empty_lines((K, tile), L.dtype)  # t_k, then exp(t_k - max t), then r_k
        Z = empty_lines((K * D, tile), L.dtype)  # z of every component
        G = empty_lines((D, tile), L.dtype)  # U^T z of one component
        va = empty_lines(tile, L.dtype)
        vb = empty_lines(tile, L.dtype)
        vc = empty_lines(tile, L.dtype)
        vd = empty_lines(tile, L.dtype)
        for b in range(c * n_tiles // n_chunks, (c + 1) * n_tiles // n_chunks):
            i0 = b * tile
            nt = min(tile, n - i0)
            full = nt - nt % 8  # rows moved by 8 x 8 blocks; the rest one by one

            # ---- load: X[j, t] = A[i0 + t, j], with the prefetch hints for 8 rows further on
            for g in range(0, full, 8):
                pa = i0 + g + ahead
                if pa < n and far:
                    pe = min(n, pa + 8)
                    prefetch_head(L, M, LS, pa, pe, P, one_in, False)
                    prefetch_rows(Y, pa, pe, False)
                    if grad:
                        prefetch_head(GL, GM, GS, pa, pe, P, one_out, True)
                for j in range(0, K, 8):
                    tr_load8(L, i0 + g, j, min(8, K - j), XA, j, g)
                for j in range(0, K * D, 8):
                    tr_load8(M, i0 + g, j, min(8, K * D - j), XM, j, g)
                for j in range(0, KS, 8):
                    tr_load8(LS, i0 + g, j, min(8, KS - j), XS, j, g)
                for j in range(0, D, 8):
                    tr_load8(Y, i0 + g, j, min(8, D - j), XY, j, g)
            load_rows(L, M, LS, Y, i0, full, nt, XA, XM, XS, XY)

            full_soa(nt, K, D, grad, XA, XM, XS, XY, EA, TT, Z, G, va, vb, vc, vd)
            store_rows(out, i0, nt, vd, grad)
            if not grad:
                continue

            # ---- store: G[i0 + t, j] = X[j, t]
            store_parts(XA, XM, XS, full, nt, GL, GM, GS, i0)
