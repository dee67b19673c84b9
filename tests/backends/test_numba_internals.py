"""What only the numba backend has: its vector math (exp, log, sin/cos, the
Gumbel screen's -log), the 8 x 8 register transposes, tile sizes and the
float32 Gumbel screen that never changes a choice, and that importing npmdn
compiles nothing while a second process loads the kernels from the disk cache.

The contract every backend meets (NLL, gradient, log-density, sampling
against the reference) is in test_contract.py.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from cases import random_mixture
from numba import njit

from npmdn import config, mixture, philox
from npmdn._numba import kernels as nk
from npmdn._numba import memory
from npmdn._numba import transpose as tr
from npmdn._numba import vmath as vm
from npmdn.backend import get_backend

DTYPES = [np.float64, np.float32]


# ------------------------------------------------------------------ vector math


@njit
def _map_exp(x, out):
    for i in range(x.shape[0]):
        out[i] = vm.vexp(x[i])


@njit
def _map_log(x, out):
    for i in range(x.shape[0]):
        out[i] = vm.vlog(x[i])


@njit
def _map_cos_sin(u, c, s):
    for i in range(u.shape[0]):
        c[i], s[i] = vm.cos_sin_2pi(u[i])


@njit
def _map_neglog(words, out):
    for i in range(words.shape[0]):
        out[i] = vm.neglog_word32(words[i])


@njit
def _map_box_muller32(words, s, c, sn):
    for i in range(words.shape[0]):
        s[i] = vm.neglog_word_f32(words[i])
        c[i], sn[i] = vm.cos_sin_2pi_word32(words[i])


def _ulps(got, want):
    return np.abs(got.astype(np.float64) - want.astype(np.float64)) / np.spacing(
        np.abs(want).astype(want.dtype)).astype(np.float64)


@pytest.mark.parametrize("dtype,max_ulp,tiny,flush", [
    (np.float64, 2, np.finfo(np.float64).tiny, vm._FLUSH64),
    # 0.91 ulp over every float32 in [-87.3, 88.72] (measured exhaustively once)
    (np.float32, 1, np.finfo(np.float32).tiny, vm._FLUSH32),
])
def test_exp_matches_numpy(rng, dtype, max_ulp, tiny, flush):
    hi = 709.7 if dtype == np.float64 else 88.7
    x = np.concatenate([rng.uniform(flush, hi, 200_000), rng.uniform(-2, 2, 100_000),
                        rng.uniform(2 * flush, flush, 10_000), [0.0, 1.0, -1.0, flush]])
    x = x.astype(dtype)
    got = np.empty_like(x)
    _map_exp(x, got)
    want = np.exp(x)
    normal = x >= dtype(flush)
    if dtype == np.float32:  # against the exact value (float64), in float32 ulps
        exact = np.exp(x[normal].astype(np.float64))
        err = np.abs(got[normal] - exact) / np.spacing(exact.astype(np.float32))
        assert err.max() <= max_ulp
    else:
        assert _ulps(got[normal], want[normal]).max() <= max_ulp
    # below the flush point: zero instead of a subnormal (documented in npmdn._numba.vmath)
    assert (got[~normal] == 0).all() and (want[~normal] <= np.exp(dtype(flush))).all()
    special = np.array([-np.inf, np.inf, np.nan, 1000.0, -1000.0], dtype)
    out = np.empty_like(special)
    _map_exp(special, out)
    np.testing.assert_array_equal(out, [0.0, np.inf, np.nan, np.inf, 0.0])


def test_exp32_edges_and_nan_payloads():
    # the largest float32 whose exp is finite, and the next one up
    top = np.float32(vm._EXP_MAX32)
    below = np.nextafter(top, np.float32(0))
    assert math.exp(float(below)) < float(np.finfo(np.float32).max) < math.exp(float(top))
    x = np.array([below, top, np.float32(88.5), np.float32(vm._FLUSH32),
                  np.nextafter(np.float32(vm._FLUSH32), np.float32(-100))], np.float32)
    got = np.empty_like(x)
    _map_exp(x, got)
    exact = np.exp(x.astype(np.float64))
    with np.errstate(over="ignore"):  # exact[1] is beyond float32
        err = np.abs(got - exact) / np.spacing(exact.astype(np.float32))
    assert np.isfinite(got[0]) and err[0] <= 1
    assert got[1] == np.inf
    assert err[2:4].max() <= 1  # 2**128 p(r) and 2**-126 p(r)
    assert got[4] == 0
    # NaNs whose payload bits would reach the exponent if added to it stay NaN
    words = np.array([0x7FC00000, 0x7FC001FF, 0xFFC0ABCD, 0x7F800001, 0x7FBFFFFF], np.uint32)
    nans = words.view(np.float32)
    out = np.empty_like(nans)
    _map_exp(nans, out)
    assert np.isnan(out).all()


@pytest.mark.parametrize("dtype,max_ulp", [(np.float64, 1), (np.float32, 4)])
def test_log_matches_numpy(rng, dtype, max_ulp):
    info = np.finfo(dtype)
    lo, hi = np.log(info.tiny), np.log(info.max)
    x = np.concatenate([np.exp(rng.uniform(lo, hi, 200_000)), rng.uniform(0.5, 2.0, 100_000),
                        [info.tiny, info.max, 1.0, 2.0, 0.5, info.smallest_subnormal,
                         info.tiny / 3]]).astype(dtype)
    got = np.empty_like(x)
    _map_log(x, got)
    assert _ulps(got, np.log(x)).max() <= max_ulp
    special = np.array([0.0, -1.0, np.inf, np.nan, -np.inf], dtype)
    out = np.empty_like(special)
    _map_log(special, out)
    np.testing.assert_array_equal(out, [-np.inf, np.nan, np.inf, np.nan, np.nan])


def test_cos_sin_2pi(rng):
    words = np.concatenate([rng.integers(0, 2**32, 200_000), [0, 2**30, 2**31, 3 * 2**30,
                                                               2**32 - 1, 2**29, 2**31 + 2**29]])
    u = philox.to_uniform(words.astype(np.uint32))
    c, s = np.empty_like(u), np.empty_like(u)
    _map_cos_sin(u, c, s)
    np.testing.assert_allclose(c, np.cos(2 * np.pi * u), rtol=0, atol=2e-15)
    np.testing.assert_allclose(s, np.sin(2 * np.pi * u), rtol=0, atol=2e-15)


def test_neglog_word32_error_bound(rng):
    """The Gumbel screen's relative bound over the whole word range, with the
    ends (u near 0 and 1), the branch points (u = 1/2, sqrt(2)/2) and the eighths
    of the range dense."""
    words = _extreme_words(rng, 1_000_000)
    got = np.empty(words.size, np.float32)
    _map_neglog(words, got)
    v = ((2**32 - 1 - words.astype(np.float64)) + 0.5) * 2.0**-32  # 1 - u, exactly
    want = -np.log1p(-v)
    assert np.max(np.abs(got / want - 1)) < vm.NEGLOG32_REL / 4


def _extreme_words(rng, n_random):
    """Every word within 2**16 of the ends (u near 0; u near 1, where -log u is
    down to 2**-33), of the branch points of ``neglog_word_f32`` (u = 1/2,
    sqrt(2)/2) and of every eighth of a turn (the quadrant boundaries and the
    ends of the reduced range), and ``n_random`` random words."""
    points = [0, 2**32, 2**31, vm._W_SQRT_HALF] + [e * 2**29 for e in range(1, 8)]
    near = [np.arange(max(p - 2**16, 0), min(p + 2**16, 2**32)) for p in points]
    return np.concatenate(near + [rng.integers(0, 2**32, n_random)]).astype(np.uint32)


def test_float32_box_muller_error_bound(rng):
    """The float32 normals' pieces against float64 computed independently (NumPy's
    log1p/log, and cos/sin after the same exact quarter-turn reduction), relative to
    each value: -log u, r = sqrt(-2 log u) (bounded relative error even where -log u
    is 2**-33), cos and sin (near their zeros too), and r cos, r sin within
    ``philox.NORMALS_FLOAT32_RTOL``. The bounds were measured over all 2**32 words
    (the pieces are functions of one word each); the products' bound adds their
    two bounds and one rounding."""
    words = _extreme_words(rng, 2_000_000)
    s32, c32, sn32 = (np.empty(words.size, np.float32) for _ in range(3))
    _map_box_muller32(words, s32, c32, sn32)
    x = words.astype(np.float64)
    u = (x + 0.5) * 2.0**-32
    v = (2**32 - 1 - x + 0.5) * 2.0**-32  # 1 - u, exactly
    s = np.where(u > 0.5, -np.log1p(-v), -np.log(u))
    qq = (words.astype(np.int64) + 2**29) >> 30  # nearest quarter turn, 0 to 4
    a = 2 * np.pi * ((words - qq * 2**30) + 0.5) * 2.0**-32  # |a| <= pi/4, one rounding
    q = qq % 4  # rotate by q quarter turns: exact
    c = np.choose(q, [np.cos(a), -np.sin(a), -np.cos(a), np.sin(a)])
    sn = np.choose(q, [np.sin(a), np.cos(a), -np.sin(a), -np.cos(a)])
    np.testing.assert_allclose(c, np.cos(2 * np.pi * u), rtol=0, atol=1e-14)
    np.testing.assert_allclose(sn, np.sin(2 * np.pi * u), rtol=0, atol=1e-14)
    r = np.sqrt(2 * s)
    r32 = np.sqrt(np.float32(2) * s32)

    def rel(got, want):
        return np.max(np.abs(got.astype(np.float64) - want) / np.abs(want))

    ulp = 2.0**-24
    # the maxima over all 2**32 words: 1.406, 1.651, 2.221 (cos and sin) * 2**-24
    assert rel(s32, s) <= 1.45 * ulp
    assert rel(r32, r) <= 1.7 * ulp
    assert rel(c32, c) <= 2.25 * ulp and rel(sn32, sn) <= 2.25 * ulp
    assert rel(r32 * c32, r * c) <= philox.NORMALS_FLOAT32_RTOL
    assert rel(r32 * sn32, r * sn) <= philox.NORMALS_FLOAT32_RTOL
    # u near 1: -log u ~ 1 - u down to 2**-33, r ~ 1.2e-5, still to a few ulp
    top = words >= 2**32 - 2**16
    assert s[top].min() < 2**-32 and rel(r32[top], r[top]) <= 1.7 * ulp


@njit
def _load_one(a, c, nv, x):
    tr.tr_load8(a, 0, c, nv, x, 0, 0)


@njit
def _store_one(x, nv, out, c):
    tr.tr_store8(x, 0, 0, nv, out, 0, c)


@pytest.mark.parametrize("dtype", DTYPES)
def test_block_transposes_touch_only_their_columns(rng, dtype):
    base = rng.normal(size=(8, 40)).astype(dtype)
    a = base[:, 3:23]  # row stride 40, 20 columns
    x = np.full((16, 8), np.nan, dtype)
    for nv in range(1, 9):
        for c in range(0, a.shape[1] - nv + 1):
            x[:] = np.nan
            _load_one(a, c, nv, x)
            np.testing.assert_array_equal(x[:nv], a[:, c:c + nv].T)
            assert np.isnan(x[nv:]).all()  # only the nv valid rows of X are written
            out_base = np.full((8, 40), np.inf, dtype)
            out = out_base[:, 3:23]
            _store_one(x, nv, out, c)
            np.testing.assert_array_equal(out[:, c:c + nv], a[:, c:c + nv])
            touched = np.zeros(out_base.shape, bool)
            touched[:, 3 + c:3 + c + nv] = True
            assert np.isinf(out_base[~touched]).all()  # nothing outside the nv columns


# ------------------------------------------------------------------ head kernel


def test_backend_wires_these_kernels():
    be = get_backend("numba")
    assert be.nll_grad is nk.nll_grad and be.log_prob is nk.log_prob and be.sample is nk.sample


@pytest.mark.parametrize("tile", [8, 16, 64])
def test_tile_sizes_agree(rng, monkeypatch, tile):
    args = random_mixture(rng, 333, 6, 2, 2, np.float32)
    want = nk.nll_grad(*args)
    monkeypatch.setattr(config, "HEAD_TILE", tile)
    for g, w in zip(nk.nll_grad(*args), want, strict=True):
        np.testing.assert_array_equal(g, w)


def _packed(rng, n, k, d, s, dtype, pad=(2, 3)):
    """(logits, mu, log_sigma, y) as views of one head array whose rows have ``pad``
    extra columns before and after (the layout a model's head output has), and the
    same values as separate contiguous arrays."""
    logits, mu, ls, y = random_mixture(rng, n, k, d, s, dtype)
    p = k + k * d + k * s
    base = np.full((n, pad[0] + p + pad[1]), np.nan, dtype)
    head = base[:, pad[0]:pad[0] + p]
    head[:, :k] = logits
    head[:, k:k + k * d] = mu.reshape(n, -1)
    head[:, k + k * d:] = ls.reshape(n, -1)
    views = (head[:, :k], head[:, k:k + k * d].reshape(n, k, d),
             head[:, k + k * d:].reshape(n, k, s), y)
    return views, (logits, mu, ls, y), base


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k,d,s", [(333, 5, 1, 1), (100, 6, 2, 2), (77, 3, 4, 1),
                                     (64, 9, 3, 3), (41, 1, 1, 1)])
def test_head_rows_in_one_array_or_apart_give_the_same_bits(rng, dtype, n, k, d, s):
    """Inputs and outputs that are columns of one array (a model's head output and
    its gradient) or arrays of their own: the same bits, and nothing outside the P
    columns is written."""
    views, separate, _ = _packed(rng, n, k, d, s, dtype)
    assert nk.log_prob(*views).tobytes() == nk.log_prob(*separate).tobytes()
    def apart():  # outputs as four arrays of their own
        return (np.empty(n, dtype), *(np.empty_like(a) for a in separate[:3]))

    want = nk.nll_grad(*separate, out=apart())
    for ins in (views, separate):  # inputs in one array (one part) or three
        # outputs in one array (one part, with columns either side), or three
        g_base = np.full((n, 1 + k * (1 + d + s) + 2), 7.0, dtype)
        g = g_base[:, 1:-2]
        packed_out = (np.empty(n, dtype), g[:, :k], g[:, k:k + k * d].reshape(n, k, d),
                      g[:, k + k * d:].reshape(n, k, s))
        for outs in (packed_out, apart(), None):
            got = nk.nll_grad(*ins, out=outs)
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b)
        assert (g_base[:, 0] == 7.0).all() and (g_base[:, -2:] == 7.0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [7, 333, 1000])
def test_strided_target_and_nll_column_give_the_same_bits(rng, dtype, n):
    """One target column and the per-row NLL / log-density: contiguous, they go through
    ``rows_c`` views (vector copies); strided (a column of a wider array), element by
    element. The same bits either way, and nothing beside the strided column written."""
    views, separate, _ = _packed(rng, n, 5, 1, 1, dtype)
    logits, mu, ls, y = separate
    wide = np.full((n, 3), 9.0, dtype)
    wide[:, 1] = y[:, 0]
    y_strided = wide[:, 1:2]
    assert y_strided.strides[0] != y_strided.itemsize
    want = nk.log_prob(logits, mu, ls, y)
    assert nk.log_prob(logits, mu, ls, y_strided).tobytes() == want.tobytes()
    g = nk.nll_grad(logits, mu, ls, y)
    nll_base = np.full((n, 2), 7.0, dtype)
    outs = (nll_base[:, 0], np.empty_like(logits), np.empty_like(mu), np.empty_like(ls))
    got = nk.nll_grad(logits, mu, ls, y_strided, out=outs)
    for a, b in zip(got, g, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (nll_base[:, 1] == 7.0).all() and (wide[:, [0, 2]] == 9.0).all()


@njit
def _rows_c_sum(a, i0, m):
    v = tr.rows_c(a, i0, m)
    s = 0.0
    for t in range(m):
        s += v[t]
    v[0] = -1.0
    return s


def test_prefetch_distance_is_whole_blocks_within_the_byte_budget():
    """The tile loops prefetch ``rows_ahead(row_bytes)`` rows on: whole 8-row blocks,
    PREFETCH_ROWS for narrow rows, fewer for wide ones (at most PREFETCH_BYTES
    ahead), and never less than one block."""
    cases = {4: 192, 64: 192, 128: 192, 256: 96, 364: 64, 496: 48, 1448: 16, 3072: 8,
             2**20: 8}
    for row_bytes, rows in cases.items():
        got = tr.rows_ahead(row_bytes)
        assert got == rows, (row_bytes, got)
        assert got % 8 == 0 and 8 <= got <= tr.PREFETCH_ROWS
        assert got == 8 or got * row_bytes <= tr.PREFETCH_BYTES


@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_c_is_a_view_of_the_rows(dtype):
    """``rows_c(A, i0, m)``: elements ``i0 .. i0 + m - 1`` of a contiguous vector (or of a
    one-column 2-D array) as a contiguous view: reads them, writes through."""
    for a in (np.arange(50, dtype=dtype), np.arange(50, dtype=dtype).reshape(50, 1)):
        assert _rows_c_sum(a, 7, 5) == 7 + 8 + 9 + 10 + 11
        assert a.ravel()[7] == -1.0 and a.ravel()[6] == 6.0 and a.ravel()[8] == 8.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shift", [0, 1, 3])
def test_a_large_gradient_streams_out_with_the_same_bits(rng, dtype, shift):
    """A gradient of at least ``head.STREAM_BYTES`` in one [N, P] array goes out by
    streaming stores (plain ones up to the first 64-byte boundary of each tile's span
    and after the last: ``shift`` elements off the line start): the same bits as the
    plain stores of blocks under the threshold, and nothing outside it written."""
    from npmdn._numba import head

    k, d = 5, 1
    p = k * (1 + 2 * d)
    isz = np.dtype(dtype).itemsize
    n = head.STREAM_BYTES // (p * isz) + 77  # a short last tile, rows past whole blocks
    assert n * p * isz >= head.STREAM_BYTES  # the streaming path's premise
    h = rng.normal(size=(n, p)).astype(dtype)
    y = rng.normal(size=(n, d)).astype(dtype)
    views = (h[:, :k], h[:, k:2 * k].reshape(n, k, d), h[:, 2 * k:].reshape(n, k, d), y)

    def out_in(g):
        return (np.empty(n, dtype), g[:, :k], g[:, k:2 * k].reshape(n, k, d),
                g[:, 2 * k:].reshape(n, k, d))

    big = np.full(n * p + 3 * 64 // isz, 7.0, dtype)
    flat = big[(-big.ctypes.data % 64) // isz:]  # from a line's start
    assert flat.ctypes.data % 64 == 0
    start = shift + 64 // isz  # the span starts `shift` elements past a line's start
    g = flat[start:start + n * p].reshape(n, p)
    got = nk.nll_grad(*views, out=out_in(g))

    g_plain = np.empty((n, p), dtype)
    want = out_in(g_plain)
    block = 65536  # rows under the threshold: plain stores
    assert block * p * isz < head.STREAM_BYTES
    for i in range(0, n, block):
        r = slice(i, i + block)
        nk.nll_grad(*(a[r] for a in views), out=tuple(a[r] for a in want))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (flat[:start] == 7.0).all() and (flat[start + n * p:] == 7.0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_each_head_kernel_has_one_path(rng, dtype):
    """``head_kernel`` is the NLL with its gradient and ``density_kernel`` the
    log-density alone, each compiled with its path fixed: neither reads its ``grad``
    argument (kept for the launchers' one signature)."""
    from npmdn._numba import head

    n, k = 40, 3
    logits, mu, ls, y = (a.astype(dtype) for a in random_mixture(rng, n, k, 2, 2, dtype))
    args = (logits, mu.reshape(n, -1), ls.reshape(n, -1), y)
    want = mixture.log_prob(logits, mu, ls, y)
    tol = 16 * np.finfo(dtype).eps * np.maximum(1.0, np.abs(want))
    g = [np.full((n, w), 7.0, dtype) for w in (k, 2 * k, 2 * k)]
    out = np.empty(n, dtype)
    head.density_kernel(*args, out, *g, True, 8, 1, 0, 1)  # grad=True: not read
    assert (np.abs(out - want) <= tol).all()
    assert all((a == 7.0).all() for a in g)  # no gradient written
    head.head_kernel(*args, out, *g, False, 8, 1, 0, 1)  # grad=False: not read
    assert (np.abs(-out - want) <= tol).all()
    want_g = mixture.nll_grad(logits, mu, ls, y)[1:]
    for a, b in zip(g, want_g, strict=True):
        np.testing.assert_allclose(a, b.reshape(n, -1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_density_far_in_the_tail(rng, dtype):
    """The log-density alone sums exp(u_k) unshifted and falls back to the shifted
    log-sum-exp where that sum leaves [unshifted_floor, inf): rows of both kinds in
    one tile agree with the reference and with the NLL path's shifted formula."""
    n, k = 96, 5
    logits, mu, ls, y = random_mixture(rng, n, k, 1, 1, np.float64)
    far = np.arange(n) % 3 == 0
    y[far] += 10.0 + 80.0 * np.exp(ls[far].max(axis=1))  # log p below -700: the fallback
    y[1::6] = mu[1::6, 0]  # exactly on a mean: z = 0
    ls[4::12] -= 60.0  # sigma ~ 1e-26, y near a mean: large but finite unshifted terms
    y[4::12] = mu[4::12, 2] + 0.7 * np.exp(ls[4::12, 2])
    # every component at y with sigma = 1.2e-38 (float32's smallest normal is 1.18e-38):
    # five terms exp(87.3) overflow float32's sum, the fallback again; log p = 86.4
    logits[8::12] = 0.0
    ls[8::12] = -87.3
    mu[8::12] = y[8::12, None]
    args = tuple(a.astype(dtype) for a in (logits, mu, ls, y))
    got = nk.log_prob(*args)
    want = mixture.log_prob(*(a.astype(np.float64) for a in args))
    shifted = -nk.nll_grad(*args)[0]
    eps = np.finfo(dtype).eps
    tol = 8 * eps * np.maximum(1.0, np.abs(want))
    assert (np.abs(got - want) <= tol).all()
    assert (np.abs(got - shifted) <= tol).all()
    assert (want[far] < -700).all()  # the rows that must take the fallback
    # non-finite rows keep the reference's meaning
    a2 = [v.copy() for v in args]
    a2[0][0] = -np.inf  # every logit -inf: the max counts as 0, p = 0
    a2[3][1] = np.nan
    a2[0][2, 0] = np.inf
    g2 = nk.log_prob(*a2)
    with np.errstate(all="ignore"):
        w2 = mixture.log_prob(*a2)
    np.testing.assert_array_equal(np.isnan(g2[:3]), np.isnan(w2[:3]))
    np.testing.assert_array_equal(g2[:3][~np.isnan(w2[:3])], w2[:3][~np.isnan(w2[:3])])


# ------------------------------------------------------------------ sampling


def _distinct_means(rng, n, k, d, s, dtype):
    """Mixtures whose components have distinct means, so that the drawn value
    with sigma_scale = 0 names the chosen component."""
    logits, mu, ls, _ = random_mixture(rng, n, k, d, s, dtype)
    mu = mu + np.arange(k, dtype=dtype)[None, :, None] * dtype(10.0)
    return logits, mu, ls


@pytest.mark.parametrize("method", ["gumbel", "cumulative"])
def test_sampling_independent_of_batch_split_and_tile(rng, monkeypatch, method):
    logits, mu, ls, _ = random_mixture(rng, 50, 5, 2, 2, np.float32)
    whole = nk.sample(logits, mu, ls, 21, 99, 0, method, 1.0, 1.0)
    parts = [nk.sample(logits[a:a + 7], mu[a:a + 7], ls[a:a + 7], 21, 99, a, method, 1.0, 1.0)
             for a in range(0, 50, 7)]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
    np.testing.assert_array_equal(nk.sample(logits, mu, ls, 4, 99, 0, method, 1.0, 1.0),
                                  whole[:, :4])  # fewer draws are a prefix
    for tile in (16, 48, 4096):
        monkeypatch.setattr(config, "SAMPLE_TILE", tile)
        np.testing.assert_array_equal(nk.sample(logits, mu, ls, 21, 99, 0, method, 1.0, 1.0),
                                      whole)


@pytest.mark.parametrize("method", ["gumbel", "cumulative"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,d", [(5, 1), (3, 2), (5, 2)])
def test_one_draw_a_row_in_any_tile_and_layout(rng, monkeypatch, method, dtype, k, d):
    """One draw a row (a lane per row; rows moved by 8 x 8 block transposes, one or
    several blocks wide, and the last ones one by one): the first draw of many,
    whatever the tile, the batch split, and the rows' layout (strided rows, views of
    one wider array)."""
    n = 203  # 25 blocks of 8 rows and 3 more
    logits, mu, ls, _ = random_mixture(rng, n, k, d, d, dtype)
    many = nk.sample(logits, mu, ls, 9, 5, 17, method, 0.7, 1.3)
    one = nk.sample(logits, mu, ls, 1, 5, 17, method, 0.7, 1.3)
    np.testing.assert_array_equal(one, many[:, :1])
    parts = [nk.sample(logits[a:a + 37], mu[a:a + 37], ls[a:a + 37], 1, 5, 17 + a, method,
                       0.7, 1.3) for a in range(0, n, 37)]
    np.testing.assert_array_equal(np.concatenate(parts), one)
    wide = np.zeros((2 * n, k * (1 + 2 * d) + 3), dtype)[::2]  # row stride twice a row
    wide[:, :k] = logits
    wide[:, k:k + k * d] = mu.reshape(n, -1)
    wide[:, k + k * d:k + 2 * k * d] = ls.reshape(n, -1)
    views = (wide[:, :k], wide[:, k:k + k * d].reshape(n, k, d),
             wide[:, k + k * d:k + 2 * k * d].reshape(n, k, d))
    np.testing.assert_array_equal(nk.sample(*views, 1, 5, 17, method, 0.7, 1.3), one)
    backwards = [a[::-1].copy()[::-1] for a in (logits, mu, ls)]  # negative row strides
    assert backwards[0].strides[0] < 0
    np.testing.assert_array_equal(nk.sample(*backwards, 1, 5, 17, method, 0.7, 1.3), one)
    for tile in (8, 24, 4096):
        monkeypatch.setattr(config, "SAMPLE_TILE", tile)
        np.testing.assert_array_equal(nk.sample(logits, mu, ls, 1, 5, 17, method, 0.7, 1.3),
                                      one)


def test_gumbel_exact_path_agrees_with_screen(rng, monkeypatch):
    """Every draw redone in float64 (screening margin set huge) gives the same
    choices as the screened path, and as the reference."""
    logits, mu, ls = _distinct_means(rng, 40, 9, 1, 1, np.float64)
    fast = nk.sample(logits, mu, ls, 50, 3, 0, "gumbel", 1.0, 0.0)
    monkeypatch.setattr(nk, "GUMBEL_MARGIN", 1e300)
    exact = nk.sample(logits, mu, ls, 50, 3, 0, "gumbel", 1.0, 0.0)
    np.testing.assert_array_equal(fast, exact)
    np.testing.assert_array_equal(exact, mixture.sample(logits, mu, ls, 50, 3, 0, "gumbel",
                                                        1.0, 0.0))


def test_gumbel_near_ties_resolved_exactly(rng):
    """Logits built against the stream so that draw 0 of every row has all its
    Gumbel keys within 1e-8 of each other: far inside the float32 screen's
    error, so the choice is made by the float64 path, as the reference makes it."""
    n, k = 64, 12
    g = -np.log(-np.log(philox.choice_uniforms(11, np.arange(n), np.arange(1), k)[:, 0, :]))
    logits = -g + rng.uniform(-1e-8, 1e-8, (n, k))  # keys a_k + g_k all within 1e-8
    gaps = np.sort(logits + g, axis=-1)
    assert (gaps[:, -1] - gaps[:, -2] < 1e-8).all()
    mu = np.broadcast_to(np.arange(k, dtype=float)[None, :, None], (n, k, 1)).copy()
    ls = np.zeros((n, k, 1))
    got = nk.sample(logits, mu, ls, 3, 11, 0, "gumbel", 1.0, 0.0)
    want = mixture.sample(logits, mu, ls, 3, 11, 0, "gumbel", 1.0, 0.0)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got[:, 0, 0])) > 3  # the near-ties go different ways


# ------------------------------------------------------------------ import and cache


def _run(code, env=None):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_compiles_nothing():
    code = (
        "import sys, json, npmdn\n"
        "before = 'numba' in sys.modules\n"
        "be = npmdn.get_backend('numba')\n"
        "from npmdn._numba import kernels as nk, head as _nb_head, sample as _nb_sample\n"
        "print(json.dumps([before, be.name, len(nk._entries),\n"
        "                  len(_nb_head.head_kernel.signatures),\n"
        "                  len(_nb_sample.sample_kernel.signatures)]))\n"
    )
    before, name, entries, n_head, n_sample = json.loads(_run(code))
    assert before is False  # import npmdn does not import numba
    assert name == "numba" and entries == 0 and n_head == 0 and n_sample == 0


def test_second_process_loads_from_disk_cache(tmp_path):
    code = (
        "import json, numpy as np\n"
        "from npmdn._numba import kernels as nk, head as _nb_head\n"
        "rng = np.random.default_rng(0)\n"
        "args = [rng.normal(size=s) for s in [(9, 2), (9, 2, 1), (9, 2, 1), (9, 1)]]\n"
        "nk.nll_grad(*args)\n"
        "st = _nb_head.head_kernel.stats\n"
        "print(json.dumps([sum(st.cache_hits.values()), sum(st.cache_misses.values())]))\n"
    )
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    hits1, misses1 = json.loads(_run(code, env))
    hits2, misses2 = json.loads(_run(code, env))
    assert misses1 >= 1 and hits1 == 0  # the first process compiles and writes the cache
    assert hits2 >= 1 and misses2 == 0  # the second one only loads
    assert any(p.suffix == ".nbi" for p in tmp_path.rglob("*"))


def test_math_constants_documented():
    """The flush points sit just above the smallest normal, as npmdn._numba.vmath says."""
    assert math.exp(vm._FLUSH64) > np.finfo(np.float64).tiny
    assert math.exp(vm._FLUSH32) > np.finfo(np.float32).tiny
    assert math.exp(vm._FLUSH64) < 1.01 * np.finfo(np.float64).tiny
    assert math.exp(vm._FLUSH32) < 1.05 * np.finfo(np.float32).tiny


# ------------------------------------------------------------------ minibatch order


@pytest.mark.parametrize("seed", [0, 1, 12345])
@pytest.mark.parametrize("skip", [0, 1])
def test_permutation_is_numpys_bit_for_bit(seed, skip):
    """The compiled permutation draws NumPy's ``Generator.permutation`` and leaves the
    generator where NumPy leaves it (``skip``: a 32-bit half already buffered), over
    sizes at and around the rejection masks' edges and one large one, in sequence."""
    from npmdn._numba import permute

    ours, theirs = np.random.default_rng(seed), np.random.default_rng(seed)
    ours.integers(0, 2**32, size=skip, dtype=np.uint32)
    theirs.integers(0, 2**32, size=skip, dtype=np.uint32)
    for n in (2, 3, 4, 5, 255, 256, 257, 65535, 65536, 65537, 1_000_003):
        got = permute.permutation(ours, n)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, theirs.permutation(n))
        assert ours.bit_generator.state == theirs.bit_generator.state
    assert ours.random() == theirs.random()
    assert permute._agrees == [True]  # drawn here, not handed to NumPy


def test_permutation_leaves_other_generators_to_numpy(monkeypatch):
    """Another bit generator, a RandomState, n < 2, or a NumPy that draws otherwise
    (the self-check failed) or a background compile still under way: NumPy draws."""
    from npmdn._numba import permute

    def never(*args):
        raise AssertionError("drawn here")

    monkeypatch.setattr(permute, "_draw", never)
    np.testing.assert_array_equal(
        permute.permutation(np.random.Generator(np.random.MT19937(0)), 50),
        np.random.Generator(np.random.MT19937(0)).permutation(50))
    np.testing.assert_array_equal(permute.permutation(np.random.RandomState(0), 50),
                                  np.random.RandomState(0).permutation(50))
    assert list(permute.permutation(np.random.default_rng(0), 1)) == [0]
    monkeypatch.setattr(permute, "_agrees", [False])
    np.testing.assert_array_equal(permute.permutation(np.random.default_rng(3), 50),
                                  np.random.default_rng(3).permutation(50))
    monkeypatch.setattr(permute, "_agrees", [])
    monkeypatch.setattr(permute, "compiled", lambda: False)
    monkeypatch.setattr(permute, "busy", lambda name: name == "shuffle_arange")
    np.testing.assert_array_equal(permute.permutation(np.random.default_rng(4), 50),
                                  np.random.default_rng(4).permutation(50))
    assert permute._agrees == []  # undecided until the background process is done


def test_self_check_catches_a_different_draw(monkeypatch):
    """Were this module and NumPy to draw differently (another NumPy), or to leave the
    generator differently, the once-per-process check says so."""
    from npmdn._numba import permute

    assert permute._self_check() is True
    draw = permute._draw
    monkeypatch.setattr(permute, "_draw", lambda rng, n: draw(rng, n)[::-1].copy())
    assert permute._self_check() is False

    def one_more(rng, n):
        out = draw(rng, n)
        rng.random()
        return out

    monkeypatch.setattr(permute, "_draw", one_more)
    assert permute._self_check() is False


# ------------------------------------------------------------------ scratch on cache lines


@njit
def _scratch(n, like):
    a = memory.empty_lines((3, n), like.dtype)
    b = memory.empty_lines(n, np.int64)
    a[:] = 1
    b[:] = 2
    return a, b


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_scratch_starts_on_a_cache_line(dtype):
    """``memory.empty_lines``: ``np.empty`` in C order, whatever the size, starting on a
    64-byte line (Numba's own ``np.empty`` asks for 32: half its buffers start half-way
    into a line), the compiling context's alignment restored after the lowering."""
    from numba.core import base

    assert memory.HAVE_LINES  # this Numba's internals are the ones memory.py uses
    for n in (1, 7, 16, 33, 1000):
        a, b = _scratch(n, np.zeros(1, dtype))
        assert a.shape == (3, n) and a.dtype == dtype and a.flags.c_contiguous
        assert b.shape == (n,) and b.dtype == np.int64
        assert (a == 1).all() and (b == 2).all()
        assert a.ctypes.data % 64 == 0 and b.ctypes.data % 64 == 0
    from numba.core.registry import cpu_target

    ctx = cpu_target.target_context
    assert "get_preferred_array_alignment" not in vars(ctx)
    assert ctx.get_preferred_array_alignment(None) == 32  # Numba's, for everyone else
    assert base.BaseContext.get_preferred_array_alignment(ctx, None) == 32
