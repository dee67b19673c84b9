r"""Sampling kernel: Philox4x32-10 inside the kernel, the npmdn stream layout.

Draw ``j`` of global row ``i`` is a pure function of (seed, i, j) exactly as
in :mod:`npmdn.philox` and :func:`npmdn.mixture.sample` (the reference this
kernel is tested against): the same 32-bit words, hence the same uniforms,
the same component choices and, to rounding, the same normals.

Draws are flattened, ``f = i * J + j``, and processed in tiles of ``T``
draws; the innermost loops run over the tile's lanes so that LLVM vectorises
the Philox rounds (32 x 32 -> 64-bit multiplies), the Gumbel screen and the
Box-Muller transform. What depends on the row only (``a / T``, the
cumulative weights, mu, sigma) is computed once per row of the tile, in
component-major tables ``[k, row]`` transposed from the inputs once, so that
those loops (exp of log sigma included) vectorise too; the race factors of
the Gumbel screen and the cumulative weights reach the lanes row by row (a
broadcast) when a row has at least 8 draws, straight from the tables with one
draw a row (lane t is row t), by a gather otherwise. The rows reach the tables
by 8 x 8 block transposes with prefetch hints (without them the copies waited
on memory). No array views are made per tile or per row: each costs two atomic
reference-count updates, which showed as 8% of the profile.

Component choices are float64, as in the reference. The normals are
computed in the output's precision (``normal_pair``): float64 output takes
the reference's float64 Box-Muller; float32 output takes a float32
Box-Muller from the same words (``neglog_word_f32``, ``cos_sin_2pi_word32``
in vmath, 16 lanes per vector), within ``philox.NORMALS_FLOAT32_RTOL``
(3e-7 relative) of the exact value, see :mod:`npmdn.philox`. The value
``mu + (sigma_scale * sigma) * eps`` is computed in the input dtype. For
full-covariance factors (:mod:`npmdn.fullcov`) it is ``mu + sigma_scale * v``
with ``U v = eps`` solved by back substitution, in the input dtype and the
reference's order.

Gumbel-max needs two logs per component and draw, the bulk of the work.
The choice is first screened in float32 through the same argmax written as
an exponential race: ``argmax_k (a_k - max a) / T - log(-log u_k)`` is
``argmin_k (-log u_k) exp((max a - a_k) / T)``, one cheap log per component
(``neglog_word32``, 16 lanes, no division) and a per-row factor. A draw
whose two smallest screened keys are within a relative ``GUMBEL_MARGIN``
(far above the screen's error) is redone in float64 with the reference's
formula, so the screen never changes a choice; about 1e-4 of the draws take
that path.

No fast-math here: the float64 Gumbel keys ``(a_k - max a) / T - log(-log u_k)``
and the cumulative weights decide discrete choices, so they follow the
reference's order of operations (``a / T`` a true division, no FMA
contraction). They can still differ from NumPy's by an ulp (NumPy's log and
exp are not ours), so a choice can differ from the reference's only when
two keys, or ``u`` and a cumulative weight, are within a few ulp of each
other: about 1e-15 per draw.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from .memory import empty_lines
from .transpose import one_buffer, prefetch_head, rows_ahead, tr_load8
from .vmath import (
    NEGLOG32_REL,
    always_inline,
    cos_sin_2pi,
    cos_sin_2pi_word32,
    exp64,
    log64,
    neglog_word32,
    neglog_word_f32,
    prefer_wide_vectors,
    vexp,
)

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_TWO_M32 = 2.0**-32
# A screened race key E_k c_k is within ~NEGLOG32_REL + 2**-22 of its exact value
# (relative: the log, the float32 factor c_k, the product); a draw is redone in
# float64 unless the runner-up exceeds the winner by GUMBEL_MARGIN (relative),
# which covers both keys' errors with a factor of four to spare.
GUMBEL_MARGIN = 8 * NEGLOG32_REL


@njit(error_model="numpy")
def _round(c0, c1, c2, c3, k0, k1):
    always_inline()
    p0 = _M0 * c0  # 32 x 32 -> 64-bit product, exact in uint64
    p1 = _M1 * c2
    return (p1 >> _S32) ^ c1 ^ k0, p1 & _MASK, (p0 >> _S32) ^ c3 ^ k1, p0 & _MASK


@njit(error_model="numpy")
def philox10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of one counter; uint64 values holding 32-bit words."""
    always_inline()
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    for _ in range(9):
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    return c0, c1, c2, c3


@njit(error_model="numpy")
def uniform(x):
    """A 32-bit word -> (x + 0.5) 2**-32, exact in float64, strictly inside (0, 1)."""
    always_inline()
    return (np.float64(x) + 0.5) * _TWO_M32


def normal_pair(x1, x2, like):
    """Box-Muller of the words ``x1, x2`` in the precision of ``like`` (jitted code only)."""
    raise NotImplementedError


@overload(normal_pair)
def _normal_pair_ol(x1, x2, like):
    if like == types.float64:  # the reference's formula, float64 throughout
        def impl(x1, x2, like):
            always_inline()
            # (the words widened first: from uint32, LLVM left this loop scalar)
            rad = np.sqrt(-2.0 * log64(uniform(np.uint64(x1))))
            cs, sn = cos_sin_2pi(uniform(np.uint64(x2)))
            return rad * cs, rad * sn
        return impl
    if like == types.float32:  # float32 throughout, from the words (see vmath)
        def impl(x1, x2, like):
            always_inline()
            rad = np.sqrt(np.float32(2.0) * neglog_word_f32(x1))
            cs, sn = cos_sin_2pi_word32(x2)
            return rad * cs, rad * sn
        return impl
    return None


@njit(error_model="numpy")
def normals_tile(W32, EPS, p, lane, D, nt):
    """``EPS[2p], EPS[2p + 1]`` (the cosine branch only where ``2p + 1 = D``) from the
    words ``W32[lane], W32[lane + 1]`` of ``nt`` lanes, in the precision of ``EPS``.

    A function of its own: compiled alone, LLVM vectorises this loop in both
    precisions; inlined into the kernel's body it left the float64 one scalar.
    """
    zero = EPS.dtype.type(0.0)
    if 2 * p + 1 < D:
        for t in range(nt):
            z0, z1 = normal_pair(W32[lane, t], W32[lane + 1, t], zero)
            EPS[2 * p, t] = z0
            EPS[2 * p + 1, t] = z1
    else:  # the last pair of an odd D: its cosine branch only
        for t in range(nt):
            z0, _ = normal_pair(W32[lane, t], W32[lane + 1, t], zero)
            EPS[2 * p, t] = z0


@njit(error_model="numpy")
def load_tables(L, M, LS, ra, nr, one_row, P, ahead, LT, MUT, SGT):
    """Rows ``ra .. ra + nr - 1`` of the head's parts into the per-row tables,
    ``LT[k, r] = L[ra + r, k]`` (and ``MUT`` from ``M``, ``SGT`` from ``LS``): 8 x 8
    block transposes, the last rows one by one, with prefetch hints for the rows
    ``ahead`` on (one span per head row of ``P`` values where its parts are one array,
    ``one_row``). A function of its own, called once per tile: inlined into the kernel,
    it made the compile-only process's compile of the kernel ~0.9 s longer."""
    n, K = L.shape
    KD = M.shape[1]
    KS = LS.shape[1]
    fr = nr - nr % 8  # rows moved by 8 x 8 block transposes; the rest one by one
    for r8 in range(0, fr, 8):
        pa = ra + r8 + ahead
        if pa < n:
            prefetch_head(L, M, LS, pa, min(n, pa + 8), P, one_row, False)
        for j in range(0, K, 8):
            tr_load8(L, ra + r8, j, min(8, K - j), LT, j, r8)
        for j in range(0, KD, 8):
            tr_load8(M, ra + r8, j, min(8, KD - j), MUT, j, r8)
        for j in range(0, KS, 8):
            tr_load8(LS, ra + r8, j, min(8, KS - j), SGT, j, r8)
    for r in range(fr, nr):
        ir = ra + r
        for k in range(K):
            LT[k, r] = L[ir, k]
        for j in range(KD):
            MUT[j, r] = M[ir, j]
        for j in range(KS):
            SGT[j, r] = LS[ir, j]


@njit(nogil=True, cache=True, error_model="numpy")
def sample_kernel(L, M, LS, J, key0, key1, row_offset, gumbel, temperature, sigma_scale,
                  out, tile, n_chunks, margin, c0, c1):
    """``out[i * J + j, :]`` = draw j of row i; ``out`` is [N * J, D] C-contiguous.

    ``key0, key1, row_offset`` are uint64 (the seed's key halves and the
    global index of row 0); ``temperature`` is a float64 >= 0; ``margin`` is
    the Gumbel screen's margin (``GUMBEL_MARGIN``; tests raise it to send
    every draw down the float64 path).
    """
    n, K = L.shape
    D = out.shape[1]
    S = LS.shape[1] // K
    full = D > 1 and S == D * (D + 1) // 2  # packed factors: U v = eps per draw
    total = n * J
    n_tiles = (total + tile - 1) // tile
    n_chunks = max(1, min(n_tiles, n_chunks))
    n_pairs = (D + 1) // 2
    # normal pair p: words first + 2p and first + 2p + 1 of the sample's word stream,
    # after the choice words (K for Gumbel-max, 1 for the cumulative method), see npmdn.philox
    n_choice = K if gumbel else 1
    first = n_choice + (n_choice & 1)
    ss = out.dtype.type(sigma_scale)
    zero = out.dtype.type(0.0)
    max_rows = min(n, tile // J + 2)  # rows a tile of draws can touch
    P = K * (1 + D + S)  # values in a head row
    one_row = one_buffer(L, M, LS)  # a head row's three parts back to back
    ahead = rows_ahead(P * L.itemsize)  # the prefetch distance
    for c in range(c0, c1):  # chunks [c0, c1) of n_chunks; the caller's threads run the rest
        prefer_wide_vectors()
        vr = empty_lines(tile, np.int64)  # row of each lane, counted from the tile's first row
        rlo = empty_lines(max_rows, np.int64)  # per row: its first lane and one past its last
        rhi = empty_lines(max_rows, np.int64)
        r0 = empty_lines(tile, np.uint64)  # counter words: global row lo, hi, draw
        r1 = empty_lines(tile, np.uint64)
        dj = empty_lines(tile, np.uint64)
        W32 = empty_lines((4, tile), np.uint32)  # one Philox block per lane
        comp32 = empty_lines(tile, np.int32)
        LT = empty_lines((K, max_rows), L.dtype)  # per row: the logits as given
        RA = empty_lines((K, max_rows), np.float64)  # per row: (a_k - max a) / T, or cum. weights
        rlast = empty_lines(max_rows, np.int64)  # per row: the last k with pi_k > 0
        AT32 = empty_lines((K, tile if J > 1 else 0), np.float32)  # race factor c_k per lane
        CT = empty_lines((K, max_rows), np.float32)  # race factor c_k per row
        AK = CT if J == 1 else AT32  # the screen's factors, by lane (J = 1: lane t is row t)
        best32 = empty_lines(tile, np.float32)
        second32 = empty_lines(tile, np.float32)
        comp = empty_lines(tile, np.int64)
        U = empty_lines(tile, np.float64)  # the cumulative method's uniform per lane
        cm = empty_lines(tile, np.int64)  # per lane: the chosen component's mu and sigma entries
        csg = empty_lines(tile, np.int64)
        EPS = empty_lines((2 * n_pairs, tile), out.dtype)
        MUT = empty_lines((K * D, max_rows), out.dtype)  # per row: mu
        SGT = empty_lines((K * S, max_rows), out.dtype)  # per row: sigma_scale * sigma (full:
        # sigma_i = exp(s_i), then U_ij as given; 0 when sigma_scale = 0)
        V = empty_lines((D if full else 0, tile), out.dtype)  # full: v with U v = eps
        RV = empty_lines(max_rows, np.float64)  # per row: max a, then 0, then the running sum c_k
        RT = empty_lines(max_rows, np.float64)  # per row: sum_k exp((a_k - max a) / T)
        # flat views of the tables, for the gathers (made once: views are reference counted)
        ra_flat = RA.reshape(-1)
        ct_flat = CT.reshape(-1)
        mu_flat = MUT.reshape(-1)
        sg_flat = SGT.reshape(-1)
        for b in range(c * n_tiles // n_chunks, (c + 1) * n_tiles // n_chunks):
            f0 = b * tile
            nt = min(tile, total - f0)
            ra = f0 // J  # first and last row of the tile
            rb = (f0 + nt - 1) // J
            if J == 1:  # a lane per row: its counter words in one vector loop
                for t in range(nt):
                    gt = row_offset + np.uint64(f0 + t)
                    vr[t] = t
                    r0[t] = gt & _MASK
                    r1[t] = gt >> _S32
                    dj[t] = np.uint64(0)
            for r in range(rb - ra + 1 if J > 1 else 0):  # (row, draw) of each lane, row by row
                i = ra + r
                t_lo = max(i * J - f0, 0)
                t_hi = min((i + 1) * J - f0, nt)
                rlo[r] = t_lo
                rhi[r] = t_hi
                g = row_offset + np.uint64(i)
                lo = g & _MASK
                hi = g >> _S32
                j0 = np.uint64(f0 + t_lo - i * J)
                # unsigned indices: no wraparound checks; and no views, whose reference
                # counts (atomic) per row cost more than these loops
                for q in range(t_hi - t_lo):
                    t = np.uint64(t_lo + q)
                    vr[t] = r
                    r0[t] = lo
                    r1[t] = hi
                    dj[t] = j0 + np.uint64(q)

            # ---- per row of the tile, component-major tables [k, row]: the rows are
            # transposed once, by 8 x 8 blocks (the last rows one by one; the logits in
            # their own dtype, then to float64 in one pass), with prefetch hints for the
            # rows ``ahead`` on, and every loop below runs over the rows (or lanes) of
            # contiguous tables, so it vectorises even when J = 1. Element by element and
            # without the hints these copies waited on memory: at (2^20, 5, 1), one draw a
            # row, they took half the kernel's time (bench/RESULTS.md, 2026-12-08)
            nr = rb - ra + 1
            load_tables(L, M, LS, ra, nr, one_row, P, ahead, LT, MUT, SGT)
            for k in range(K):  # to float64 in one vector pass
                for r in range(nr):
                    RA[k, r] = np.float64(LT[k, r])
            for j in range(K * S):
                if full and j % S >= D:  # U_ij
                    for r in range(nr):
                        SGT[j, r] = zero if ss == zero else SGT[j, r]
                elif full:  # sigma_i
                    for r in range(nr):
                        SGT[j, r] = zero if ss == zero else vexp(SGT[j, r])
                else:
                    for r in range(nr):
                        # sigma_scale * sigma, as the reference; 0 (the means) even where
                        # sigma = inf
                        SGT[j, r] = zero if ss == zero else ss * vexp(SGT[j, r])

            # which block W32 holds for every lane
            have = -1

            # ---- component choice (float64, the reference's arithmetic)
            if temperature == 0.0:
                for r in range(nr):  # argmax a, ties to the lowest k; no randomness
                    RV[r] = RA[0, r]
                    rlast[r] = 0
                for k in range(1, K):
                    for r in range(nr):
                        v = RA[k, r]
                        better = v > RV[r]
                        RV[r] = v if better else RV[r]
                        rlast[r] = k if better else rlast[r]
                for t in range(nt):
                    comp[t] = rlast[t] if J == 1 else rlast[vr[t]]
            else:
                # (a_k - max a) / T, as the reference: a common offset changes nothing
                for r in range(nr):
                    RV[r] = RA[0, r]
                for k in range(1, K):
                    for r in range(nr):
                        RV[r] = max(RV[r], RA[k, r])  # max_k a_k
                for k in range(K):
                    for r in range(nr):
                        RA[k, r] = (RA[k, r] - RV[r]) / temperature
                for r in range(nr):
                    RV[r] = 0.0  # max_k (a_k - max a) / T
            if temperature != 0.0 and gumbel:
                # the race factors c_k = exp((max a - a_k) / T) >= 1 per row (inf: never wins)
                for k in range(K):
                    for r in range(nr):
                        CT[k, r] = np.float32(exp64(RV[r] - RA[k, r]))
                if J >= 8:  # row by row: a broadcast per row, no gather
                    for r in range(nr):
                        t_lo = rlo[r]
                        t_hi = rhi[r]
                        for k in range(K):
                            ck = CT[k, r]
                            for q in range(t_hi - t_lo):
                                AT32[k, np.uint64(t_lo + q)] = ck
                elif J > 1:  # (J = 1: lane t is row t, and the screen reads CT itself)
                    for k in range(K):
                        for t in range(nt):  # unsigned index: no wraparound branch
                            AT32[k, t] = ct_flat[np.uint64(k * max_rows + vr[t])]
                for t in range(nt):
                    best32[t] = np.inf
                    second32[t] = np.inf
                    comp32[t] = 0
                # screen: the two smallest race keys (-log u_k) c_k per lane
                for blk in range((K + 3) // 4):
                    bb = np.uint64(blk)
                    for t in range(nt):
                        x0, x1, x2, x3 = philox10(r0[t], r1[t], dj[t], bb, key0, key1)
                        W32[0, t] = np.uint32(x0)
                        W32[1, t] = np.uint32(x1)
                        W32[2, t] = np.uint32(x2)
                        W32[3, t] = np.uint32(x3)
                    for w in range(min(4, K - 4 * blk)):
                        k = np.int32(4 * blk + w)
                        for t in range(nt):
                            key = neglog_word32(W32[w, t]) * AK[k, t]
                            b1 = best32[t]
                            # branch-free (keys are never NaN): the runner-up is
                            # min(max(key, best), second), the best min(key, best)
                            second32[t] = min(max(key, b1), second32[t])
                            best32[t] = min(key, b1)
                            comp32[t] = k if key < b1 else comp32[t]
                have = (K + 3) // 4 - 1
                # too close to call: the reference's float64 keys, ties to the lowest k
                # (counted in one vector pass first: about 1e-4 of the draws, most tiles none)
                n_close = 0
                for t in range(nt):
                    comp[t] = comp32[t]
                    n_close += not (second32[t] > best32[t] * (1.0 + margin))
                for t in range(nt if n_close > 0 else 0):
                    if not (second32[t] > best32[t] * (1.0 + margin)):
                        r = vr[t]
                        kbest = 0
                        kmax = -np.inf
                        for blk in range((K + 3) // 4):
                            x = philox10(r0[t], r1[t], dj[t], np.uint64(blk), key0, key1)
                            for w in range(min(4, K - 4 * blk)):
                                key = RA[4 * blk + w, r] - log64(-log64(uniform(x[w])))
                                if key > kmax:
                                    kmax = key
                                    kbest = 4 * blk + w
                        comp[t] = kbest
            elif temperature != 0.0:
                # as the reference: pi = softmax(a / T) with the max shifted out,
                # c_k = pi_0 + ... + pi_k, and the last k with pi_k > 0
                for r in range(nr):
                    RT[r] = 0.0
                for k in range(K):
                    for r in range(nr):
                        e = exp64(RA[k, r] - RV[r])
                        RA[k, r] = e
                        RT[r] += e
                for r in range(nr):
                    RV[r] = 0.0  # running sum c_k
                    rlast[r] = 0
                for k in range(K):
                    for r in range(nr):
                        p = RA[k, r] / RT[r]
                        RV[r] += p
                        RA[k, r] = RV[r]
                        rlast[r] = k if p > 0.0 else rlast[r]
                for t in range(nt):
                    x0, x1, x2, x3 = philox10(r0[t], r1[t], dj[t], np.uint64(0), key0, key1)
                    W32[0, t] = np.uint32(x0)
                    W32[1, t] = np.uint32(x1)
                    W32[2, t] = np.uint32(x2)
                    W32[3, t] = np.uint32(x3)
                have = 0
                for t in range(nt):
                    comp[t] = 0
                    U[t] = uniform(W32[0, t])
                # the first k with u < c_k = the number of c_k <= u
                if J >= 8:  # row by row: c_k broadcast over the row's lanes
                    for r in range(nr):
                        t_lo = rlo[r]
                        t_hi = rhi[r]
                        for k in range(K):
                            ck = RA[k, r]
                            for q in range(t_hi - t_lo):
                                t = np.uint64(t_lo + q)
                                comp[t] += ck <= U[t]
                elif J == 1:  # lane t is row t
                    for k in range(K):
                        for t in range(nt):
                            comp[t] += RA[k, t] <= U[t]
                else:
                    for k in range(K):
                        for t in range(nt):
                            comp[t] += ra_flat[np.uint64(k * max_rows + vr[t])] <= U[t]
                for t in range(nt):
                    comp[t] = comp[t] if comp[t] < K else (rlast[t] if J == 1 else rlast[vr[t]])

            # ---- normals: Box-Muller on the words after the choice words, in the output's
            # precision (normal_pair); a pair never straddles blocks, and the choice's last
            # block is reused
            for p in range(n_pairs):
                w0 = first + 2 * p
                blk = w0 // 4
                if blk != have:
                    bb = np.uint64(blk)
                    for t in range(nt):
                        x0, x1, x2, x3 = philox10(r0[t], r1[t], dj[t], bb, key0, key1)
                        W32[0, t] = np.uint32(x0)
                        W32[1, t] = np.uint32(x1)
                        W32[2, t] = np.uint32(x2)
                        W32[3, t] = np.uint32(x3)
                    have = blk
                normals_tile(W32, EPS, p, w0 % 4, D, nt)

            # ---- y = mu_k + (sigma_scale * sigma_k) * eps, in the input dtype
            # (no per-tile views: their atomic reference counts cost ~100 cycles each)
            uf0 = np.uint64(f0)
            if full and ss != zero:
                # U v = eps from the last coordinate: v_i = sigma_i (eps_i - sum_{j>i} U_ij v_j),
                # then y = mu_k + sigma_scale * v, in the reference's order
                for i in range(D - 1, -1, -1):
                    for t in range(nt):
                        V[i, t] = out.dtype.type(EPS[i, t])
                    for j in range(i + 1, D):
                        p = D + i * D - i * (i + 1) // 2 + (j - i - 1)
                        for t in range(nt):
                            iu = np.uint64((comp[t] * S + p) * max_rows + vr[t])
                            V[i, t] = V[i, t] - sg_flat[iu] * V[j, t]
                    for t in range(nt):
                        isg = np.uint64((comp[t] * S + i) * max_rows + vr[t])
                        V[i, t] = V[i, t] * sg_flat[isg]
                for d in range(D):
                    for t in range(nt):
                        im = np.uint64((comp[t] * D + d) * max_rows + vr[t])
                        out[uf0 + np.uint64(t), np.uint64(d)] = mu_flat[im] + ss * V[d, t]
                continue
            for t in range(nt):  # each lane's entry of component 0 in the tables
                cm[t] = comp[t] * (D * max_rows) + vr[t]
                csg[t] = comp[t] * (S * max_rows) + vr[t]
            for d in range(D):
                ds = d if S > 1 else 0
                for t in range(nt):
                    # unsigned indices: Numba adds no wraparound branch
                    im = np.uint64(cm[t] + d * max_rows)
                    isg = np.uint64(csg[t] + ds * max_rows)
                    out[uf0 + np.uint64(t), np.uint64(d)] = mu_flat[im] + sg_flat[isg] * EPS[d, t]
