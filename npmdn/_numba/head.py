r"""Fused mixture-head kernel: log-density, and optionally the NLL gradient.

The math is :func:`npmdn.mixture.nll_grad` (the reference this kernel is
tested against). The layout is what makes it fast:

* rows are processed in tiles of ``T`` samples; each tile is transposed
  (8 x 8 register blocks, :mod:`npmdn._numba.transpose`) into structure-of-arrays scratch
  ``X[param, t]`` so that every innermost loop runs over the samples of the
  tile, contiguous and independent, and LLVM vectorises it, exp and log
  included (:mod:`npmdn._numba.vmath`);
* exactly ``K (S + 2)`` exps and 2 logs per sample: ``K`` for the softmax of
  the logits, ``K S`` for ``1 / sigma = exp(-s)``, ``K`` for the
  responsibilities; ``pi`` and ``r`` come from those exps and one reciprocal
  of their sums, never from further exps. The log-density alone takes the
  same exps and one log (:func:`density_soa`);
* the gradient overwrites the scratch in place and is transposed back into
  the caller's (row-strided) output arrays;
* everything sits in one function: a call to a helper that takes arrays
  costs atomic reference-count updates per array, which at ~20 helper arrays
  per tile was a third of the run time.

Shapes: ``L [N, K]``, ``M [N, K*D]``, ``LS [N, K*S]``, ``Y [N, D]``, the
gradient arrays alike, ``out [N]``; any row stride, unit stride along rows.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .memory import empty_lines
from .transpose import (
    load_rows,
    one_buffer,
    prefetch_head,
    prefetch_rows,
    rows_ahead,
    rows_c,
    store_fence,
    store_parts,
    store_rows,
    stream_out,
    tr_load8,
    tr_store8,
)
from .vmath import as_type, prefer_wide_vectors, unshifted_floor, vexp, vlog

# no "reassoc" (it would delete the rounding step in vexp), no "nnan"/"ninf"
# (the hard inputs and the divergence checks need inf and NaN to mean what
# they say); "contract" lets LLVM use FMA, "arcp" turns x / y into x * (1/y)
FASTMATH = {"contract", "arcp", "nsz"}
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# Extra elements per scratch row of the head kernel (see head_kernel)
ROW_PAD = 16
# The widest head row (P = K (1 + D + S) columns) the head kernel moves whole
SMALL_ROW = 16

# A gradient of at least this many bytes (a small head row's, one array) is written
# with streaming stores, past the caches: it cannot stay in them anyway, and a plain
# store first reads every line it writes (the read for ownership), a third more
# memory traffic for the NLL and gradient. Smaller ones stay in the caches, where
# the step that reads them next finds them.
STREAM_BYTES = 32 * 2**20


@njit
def pad8(n):
    """Scratch rows rounded up to whole 8-row blocks (tr_store8 reads 8 rows)."""
    return (n + 7) // 8 * 8


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def shift_logits(nt, K, XA, EA, va, vc, keep):
    """log pi_k = (a_k - max a) - log sum_k exp(a_k - max a), its parts: ``va[t] = max_k
    a_k`` (0 where that is not finite, as the reference), ``XA[k] -= va`` (exact
    whatever the logits' common offset), ``vc[t] = sum_k exp(XA[k, t])``, and with
    ``keep`` (a constant at each call) the exps in ``EA``."""
    zero = as_type(0.0, XA)
    inf = as_type(np.inf, XA)
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
        if keep:
            for t in range(nt):
                b = XA[k, t] - va[t]
                XA[k, t] = b
                e = vexp(b)
                EA[k, t] = e
                vc[t] += e
        else:
            for t in range(nt):
                b = XA[k, t] - va[t]
                XA[k, t] = b
                vc[t] += vexp(b)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def density_soa(nt, K, D, iso, XA, XM, XS, XY, EA, TT, va, vb, vc, vd, vq):
    """``vd[t] = log p(y_t)``: :func:`head_soa` without the gradient (the same
    arguments but ``floor``; ``XA`` and the scratch are overwritten).

    ``p = sum_k exp(u_k) / vc / (2 pi)^(D/2)`` with ``u_k = (a_k - max a) - sum_d
    (z_kd^2 / 2 + s_kd)``: one log per sample, where the gradient's path takes the
    log of the softmax normaliser, a max over the components and a log-sum-exp
    shifted by it. The sum ``sum_k exp(u_k)`` is not shifted, so it can underflow
    (or overflow, for sigma near float32's smallest normal); where it is outside
    ``[unshifted_floor, inf)`` or NaN, the sample takes the shifted log-sum-exp
    over the ``u_k`` kept in ``TT`` instead (far in a tail: log p below about -62
    in float32, -665 in float64). Above the floor the terms flushed to zero by
    ``vexp`` (below the smallest normal) are under 1e-10 of the sum.
    """
    prefer_wide_vectors()
    shift_logits(nt, K, XA, EA, va, vc, False)
    zero = as_type(0.0, XA)
    half = as_type(0.5, XA)
    inf = as_type(np.inf, XA)
    fd = as_type(D, XA)
    c0 = as_type(D * HALF_LOG_2PI, XA)
    floor = unshifted_floor(zero)
    for t in range(nt):
        vq[t] = zero
    for k in range(K):
        if iso:
            for t in range(nt):
                vb[t] = zero
                va[t] = vexp(-XS[k, t])  # 1 / sigma_k, once for its D coordinates
            for d in range(D):
                j = k * D + d
                for t in range(nt):
                    dy = XY[d, t] - XM[j, t]
                    z = zero if dy == zero else dy * va[t]
                    vb[t] += (half * z) * z
            for t in range(nt):
                u = XA[k, t] - (vb[t] + fd * XS[k, t])
                TT[k, t] = u
                vq[t] += vexp(u)
        else:
            j = k * D
            for t in range(nt):
                s = XS[j, t]
                dy = XY[0, t] - XM[j, t]
                z = zero if dy == zero else dy * vexp(-s)
                TT[k, t] = XA[k, t] - ((half * z) * z + s)
            for d in range(1, D):
                j = k * D + d
                for t in range(nt):
                    s = XS[j, t]
                    dy = XY[d, t] - XM[j, t]
                    z = zero if dy == zero else dy * vexp(-s)
                    TT[k, t] -= (half * z) * z + s
            for t in range(nt):
                vq[t] += vexp(TT[k, t])
    n_far = 0
    for t in range(nt):
        q = vq[t]
        far = not (q >= floor and q < inf)
        n_far += 1 if far else 0
        vd[t] = vlog(q / vc[t]) - c0
    if n_far > 0:
        density_far(nt, K, TT, vq, vc, vd, floor, c0)


@njit(fastmath=FASTMATH, error_model="numpy")
def density_far(nt, K, TT, vq, vc, vd, floor, c0):
    """:func:`density_soa`'s fallback: ``vd[t]`` from the shifted log-sum-exp over
    ``TT[:, t]`` where ``vq[t]`` left ``[floor, inf)`` (rare; a function of its own,
    not inlined, so that the kernels compile without it in their hot loop's body)."""
    zero = as_type(0.0, TT)
    inf = as_type(np.inf, TT)
    for t in range(nt):
        q = vq[t]
        if q >= floor and q < inf:
            continue
        m = TT[0, t]
        for k in range(1, K):
            m = max(m, TT[k, t])
        m = m if abs(m) < inf else zero  # as the reference: a non-finite max counts as 0
        e = zero
        for k in range(K):
            e += vexp(TT[k, t] - m)
        vd[t] = m + vlog(e) - vlog(vc[t]) - c0


def head_soa(nt, K, D, iso, XA, XM, XS, XY, EA, TT, va, vb, vc, vd, vq, floor):
    """The mixture math on structure-of-arrays data, samples ``t < nt`` along rows:
    ``log p`` and its gradient (:func:`density_soa`: ``log p`` alone).

    In: ``XA [K, T]`` logits, ``XM [K*D, T]`` means, ``XS [K*S, T]`` raw scales,
    ``XY [D, T]`` targets. Out: ``vd[t] = log p(y_t)`` and the gradient of
    ``-log p(y_t)`` over the inputs: ``XA`` <- ``pi - r``, ``XM``
    <- ``-r z / sigma``, ``XS`` <- ``r (1 - z^2)`` (isotropic ``r (D - sum z^2)``),
    exactly 0 for the mean and scales of a component with ``r = 0``.
    ``EA, TT [K, T]`` and ``va .. vq [T]`` are scratch.

    ``floor``: weights ``pi_k`` and responsibilities ``r_k`` below it count as
    zero in the gradient. The kernels pass 0 (the exact gradient); training
    passes a floor far below any gradient that matters (1e-30 in float32),
    because the products of such tiny values with the backward pass's factors
    land in the subnormal range, where every operation takes a ~100-cycle
    microcode assist.
    """
    prefer_wide_vectors()
    zero = as_type(0.0, XA)
    one = as_type(1.0, XA)
    half = as_type(0.5, XA)
    two = as_type(2.0, XA)
    inf = as_type(np.inf, XA)
    fd = as_type(D, XA)
    c0 = as_type(D * HALF_LOG_2PI, XA)
    shift_logits(nt, K, XA, EA, va, vc, True)
    for t in range(nt):
        vb[t] = vlog(vc[t]) + c0  # log sum exp(a - max a) + D/2 log 2 pi
        va[t] = one / vc[t]  # pi_k = EA[k] * va

    # ---- t_k = log pi_k + log N_k = (a_k - max a) - vb - sum_d z^2 / 2 - sum_d s;
    # z = 0 where y = mu (also where 1 / sigma overflows), z^2 / 2 as (z / 2) z
    for k in range(K):
        if iso:
            for t in range(nt):
                vc[t] = vexp(-XS[k, t])  # 1 / sigma_k
                vq[t] = zero
            for d in range(D):
                j = k * D + d
                for t in range(nt):
                    dy = XY[d, t] - XM[j, t]
                    inv_sigma = vc[t]
                    z = zero if dy == zero else dy * inv_sigma
                    XM[j, t] = zero if z == zero else z * inv_sigma
                    vq[t] += (half * z) * z
            for t in range(nt):
                TT[k, t] = XA[k, t] - vb[t] - vq[t] - fd * XS[k, t]
                XS[k, t] = vq[t]  # sum_d z^2 / 2, for d_s
        else:
            j = k * D
            for t in range(nt):
                s = XS[j, t]
                inv_sigma = vexp(-s)
                dy = XY[0, t] - XM[j, t]
                z = zero if dy == zero else dy * inv_sigma
                XM[j, t] = zero if z == zero else z * inv_sigma
                XS[j, t] = z
                TT[k, t] = XA[k, t] - vb[t] - ((half * z) * z + s)
            for d in range(1, D):
                j = k * D + d
                for t in range(nt):
                    s = XS[j, t]
                    inv_sigma = vexp(-s)
                    dy = XY[d, t] - XM[j, t]
                    z = zero if dy == zero else dy * inv_sigma
                    XM[j, t] = zero if z == zero else z * inv_sigma
                    XS[j, t] = z
                    TT[k, t] -= (half * z) * z + s

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
    for t in range(nt):
        vc[t] = one / vc[t]

    # ---- gradient of -log p, written over the scratch; r = 0 (or below the floor)
    # gives exactly 0 for mu and s whatever z is (a collapsed component far from y
    # has z, z / sigma = inf); NaN (a row whose density is not finite) stays NaN
    for k in range(K):
        for t in range(nt):
            r = TT[k, t] * vc[t]  # responsibility r_k
            r = zero if r < floor else r
            p = EA[k, t] * va[t]
            p = zero if p < floor else p
            TT[k, t] = r
            XA[k, t] = p - r  # pi_k - r_k
        for d in range(D):
            j = k * D + d
            for t in range(nt):
                r = TT[k, t]
                XM[j, t] = zero if r == zero else -r * XM[j, t]  # -r z / sigma
        if iso:
            for t in range(nt):
                r = TT[k, t]
                # r (D - sum z^2) = r D - 2 r (sum z^2 / 2)
                XS[k, t] = zero if r == zero else r * fd - two * (r * XS[k, t])
        else:
            for d in range(D):
                j = k * D + d
                for t in range(nt):
                    r = TT[k, t]
                    z = XS[j, t]
                    XS[j, t] = zero if r == zero else r - (r * z) * z  # r (1 - z^2)


# one compiled function for callers that make one call per large block (training),
# and the same code inlined at Numba level into the per-tile loop of head_kernel,
# where a call's reference counting of its 16 arrays would cost ~3 ns per sample;
# training compiles only the gradient's path (it never asks for the density alone)
head_soa_inline = njit(fastmath=FASTMATH, error_model="numpy", inline="always")(head_soa)
head_soa = njit(fastmath=FASTMATH, error_model="numpy")(head_soa)


def _tile_loop(GRAD):
    """The head kernel's tile loop with ``GRAD`` fixed when it compiles (a closure
    constant, so the other path is neither typed nor compiled): the NLL and its
    gradient (:data:`head_kernel`) or the log-density alone (:data:`density_kernel`).
    Each compiles in about half the time of one kernel holding both paths (a
    gradient-only 5.3-5.9 s, a density-only 3.8-4.0 s, both 7.6 s on the development
    machine), and a first fit compiles only the density's (``npmdn._numba.warm``)."""

    def tile_loop(L, M, LS, Y, out, GL, GM, GS, grad, tile, n_chunks, c0, c1):
        """``out[i] = log p(y_i)`` (``GRAD`` False); ``out[i] = -log p(y_i)`` and the
        gradient of that NLL into ``GL, GM, GS`` (``GRAD`` True; not touched
        otherwise). ``grad`` is not read: it keeps the signature of ``full_kernel``,
        which takes it at run time.

        ``tile`` must be a multiple of 8.
        """
        n, K = L.shape
        D = Y.shape[1]
        KS = LS.shape[1]
        iso = KS == K and D > 1
        P = K + K * D + KS
        # a head row of at most SMALL_ROW columns that is one array (in, and out with the
        # gradient) moves whole: 2 block transposes per 8 rows instead of 3 at K = 5, D = 1.
        # (Wider rows keep one array per part: with one scratch array for them, (65536, 30,
        # 1) and (65536, 8, 4) ran 20-45% slower.)
        small = P <= SMALL_ROW and one_buffer(L, M, LS) and (not GRAD or one_buffer(GL, GM, GS))
        # the gradient's rows back to back (one [N, P] array): a tile's rows are one span
        # (and element-aligned, as NumPy allocates: the span's lines are then whole)
        stream = (GRAD and small and GL.strides[0] == P * GL.itemsize
                  and n * P * GL.itemsize >= STREAM_BYTES
                  and GL.ctypes.data % GL.itemsize == 0)
        n_tiles = (n + tile - 1) // tile
        n_chunks = max(1, min(n_tiles, n_chunks))
        ahead = rows_ahead((P + D) * L.itemsize)  # the prefetch distance
        for c in range(c0, c1):  # chunks [c0, c1) of n_chunks; the caller's threads run the rest
            prefer_wide_vectors()
            zero = as_type(0.0, L)
            # rows of ROW_PAD more than the tile: at 256 float32s a row, rows 4 apart are
            # 4 KiB apart and share L1 sets, and the loops below touch many rows at one
            # column (with the padding (65536, 30, 1) NLL + gradient 2.33 -> 1.94-2.12 ms,
            # (65536, 8, 4) 1.43-1.76 -> 1.27-1.31 ms, interleaved processes)
            T2 = tile + ROW_PAD
            if small:  # one array (views), as in a head row: a tile is transposed straight
                # into it (8 rows to spare: a transpose out reads 8 rows from where it starts)
                XH = empty_lines((P + 8, T2), L.dtype)
                XA = XH[:K]
                XM = XH[K:K + K * D]
                XS = XH[K + K * D:P]
            else:
                XH = empty_lines((1, 1), L.dtype)  # (unused)
                XA = empty_lines((pad8(K), T2), L.dtype)  # logits, then d_logits
                XM = empty_lines((pad8(K * D), T2), L.dtype)  # mu, then z / sigma, then d_mu
                XS = empty_lines((pad8(KS), T2), L.dtype)  # s, then z or sum z^2, then d_s
            XY = empty_lines((pad8(D), T2), L.dtype)  # y
            EA = empty_lines((K, T2), L.dtype)  # exp(a_k - max a)
            TT = empty_lines((K, T2), L.dtype)  # t_k, then exp(t_k - max t), then r_k
            # stream: the tile's gradient rows as they go out, [row, P] (8 rows to spare)
            SB = empty_lines((tile + 8) * P if stream else 0, L.dtype)
            SB2 = SB.reshape(-1, P) if stream else XY[:1, :1]
            va = empty_lines(tile, L.dtype)
            vb = empty_lines(tile, L.dtype)
            vc = empty_lines(tile, L.dtype)
            vd = empty_lines(tile, L.dtype)
            vq = empty_lines(tile, L.dtype)
            for b in range(c * n_tiles // n_chunks, (c + 1) * n_tiles // n_chunks):
                i0 = b * tile
                nt = min(tile, n - i0)
                full = nt - nt % 8  # rows moved by 8 x 8 blocks; the rest one by one

                # ---- load: X[j, t] = A[i0 + t, j], 8 rows at a time, with the prefetch
                # hints for 8 rows further on; a small head row whole (columns past L's own
                # are M's and LS's: one_buffer)
                for g in range(0, full if small else 0, 8):
                    pa = i0 + g + ahead
                    if pa < n:
                        pe = min(n, pa + 8)
                        prefetch_head(L, M, LS, pa, pe, P, True, False)
                        prefetch_rows(Y, pa, pe, False)
                        if GRAD and not stream:
                            prefetch_head(GL, GM, GS, pa, pe, P, True, True)
                    for j in range(0, P, 8):
                        tr_load8(L, i0 + g, j, min(8, P - j), XH, j, g)
                for g in range(0, 0 if small else full, 8):
                    pa = i0 + g + ahead
                    if pa < n:
                        pe = min(n, pa + 8)
                        prefetch_head(L, M, LS, pa, pe, P, False, False)
                        prefetch_rows(Y, pa, pe, False)
                        if GRAD:
                            prefetch_head(GL, GM, GS, pa, pe, P, False, True)
                    for j in range(0, K, 8):
                        tr_load8(L, i0 + g, j, min(8, K - j), XA, j, g)
                    for j in range(0, K * D, 8):
                        tr_load8(M, i0 + g, j, min(8, K * D - j), XM, j, g)
                    for j in range(0, KS, 8):
                        tr_load8(LS, i0 + g, j, min(8, KS - j), XS, j, g)
                if D > 1:
                    for g in range(0, full, 8):
                        for j in range(0, D, 8):
                            tr_load8(Y, i0 + g, j, min(8, D - j), XY, j, g)
                elif Y.strides[0] == Y.itemsize:  # one contiguous column: a vector copy
                    yc = rows_c(Y, i0, full)
                    xy = XY[0]
                    for t in range(full):
                        xy[t] = yc[t]
                else:  # one column: a strided copy, not a transpose of a 1/8-full block
                    yv = Y[i0:i0 + full, 0]
                    xy = XY[0]
                    for t in range(full):
                        xy[t] = yv[t]
                load_rows(L, M, LS, Y, i0, full, nt, XA, XM, XS, XY)

                if not GRAD:
                    density_soa(nt, K, D, iso, XA, XM, XS, XY, EA, TT, va, vb, vc, vd, vq)
                    store_rows(out, i0, nt, vd, False)
                    continue
                head_soa_inline(nt, K, D, iso, XA, XM, XS, XY, EA, TT, va, vb, vc, vd, vq, zero)
                store_rows(out, i0, nt, vd, True)

                # ---- store: G[i0 + t, j] = X[j, t]
                if stream:  # into SB row by row, then out as one span
                    for g in range(0, full, 8):
                        for j in range(0, P, 8):
                            tr_store8(XH, j, g, min(8, P - j), SB2, g, j)
                    for t in range(full, nt):
                        for j in range(P):
                            SB2[t, j] = XH[j, t]
                    stream_out(GL, i0 * GL.strides[0], SB, nt * P)
                    continue
                for g in range(0, full if small else 0, 8):
                    for j in range(0, P, 8):
                        tr_store8(XH, j, g, min(8, P - j), GL, i0 + g, j)
                store_parts(XA, XM, XS, 0 if small else full, nt, GL, GM, GS, i0)
            if stream:
                store_fence()  # the streaming stores done before this chunk returns

    return tile_loop


def _named(fn, name):
    """``fn`` under the name ``name``: Numba names a kernel's disk cache files after the
    function (two kernels of one code object would otherwise share them); the cache
    key also holds the closure's ``GRAD``."""
    fn.__name__ = fn.__qualname__ = name
    return fn


_KERNEL_FLAGS = dict(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")
head_kernel = njit(**_KERNEL_FLAGS)(_named(_tile_loop(True), "head_kernel"))
density_kernel = njit(**_KERNEL_FLAGS)(_named(_tile_loop(False), "density_kernel"))
