"""The numba backend's kernels against the NumPy reference (npmdn.mixture,
npmdn.philox) and the loop versions in naive.py: random and hard inputs, both
dtypes, both covariance types, strided head views, every tile boundary; the
sampler's choices exactly, its normals to rounding; the vector math
underneath; and that importing npmdn compiles nothing while a second process
loads the kernels from the disk cache.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import random_mixture
from naive import nll_grad as naive_nll_grad
from numba import njit
from test_mixture import _hard_inputs

from npmdn import _nb_transpose as tr
from npmdn import _nb_vmath as vm
from npmdn import _numba_kernels as nk
from npmdn import mixture, philox
from npmdn.backend import get_backend

DTYPES = [np.float64, np.float32]
# N around the 8-row blocks and the tiles; K and D around the 8-column blocks
SHAPES = [(1, 1, 1, 1), (7, 3, 1, 1), (8, 5, 1, 1), (65, 4, 3, 3), (65, 4, 3, 1), (5, 1, 2, 2),
          (300, 64, 8, 8), (40, 9, 5, 1), (3, 130, 9, 9), (1000, 5, 2, 2), (131, 13, 3, 3),
          (200, 30, 1, 1), (77, 8, 4, 4), (129, 2, 9, 1)]
NAMES = ("nll", "d_logits", "d_mu", "d_log_sigma")


def _row_scale(w):
    """Per-row largest magnitude, shaped to broadcast against ``w``."""
    s = np.abs(w).reshape(len(w), -1).max(axis=1)
    return s.reshape((-1,) + (1,) * (w.ndim - 1))


def _check(got, want, dtype, hard=False, args=None):
    """float64: essentially exact (1e-12; hard inputs 1e-10, as the reference
    against PyTorch). float32: the NLL within 1e-5 relative; each gradient,
    measured against the float64 evaluation of the same float32 inputs and
    relative to its row's largest entry, within 1e-5 or within twice the
    float32 reference's own error, whichever is larger: ``pi - r`` in float32
    carries an error of ``|t_k| * 2**-24`` from rounding ``t_k``, in the
    reference as here."""
    for name, g, w in zip(NAMES[:len(got)], got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape, name
        assert np.isfinite(g).all(), name
        if dtype == np.float64:
            tol = dict(rtol=1e-10, atol=1e-300) if hard else dict(rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(g, w, err_msg=name, **tol)
    if dtype == np.float64:
        return
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5, err_msg="nll")
    if len(got) == 1:
        return
    truth = mixture.nll_grad(*(a.astype(np.float64) for a in args))
    for name, g, w, t in zip(NAMES[1:], got[1:], want[1:], truth[1:], strict=True):
        scale = _row_scale(t) + 1e-300
        ours = np.max(np.abs(g - t) / scale)
        ref = np.max(np.abs(w - t) / scale)
        assert ours <= max(1e-5, 2 * ref), f"{name}: error {ours:.2e} (reference {ref:.2e})"


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


def _ulps(got, want):
    return np.abs(got.astype(np.float64) - want.astype(np.float64)) / np.spacing(
        np.abs(want).astype(want.dtype)).astype(np.float64)


@pytest.mark.parametrize("dtype,max_ulp,tiny,flush", [
    (np.float64, 2, np.finfo(np.float64).tiny, vm._FLUSH64),
    (np.float32, 4, np.finfo(np.float32).tiny, vm._FLUSH32),
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
    assert _ulps(got[normal], want[normal]).max() <= max_ulp
    # below the flush point: zero instead of a subnormal (documented in _nb_vmath)
    assert (got[~normal] == 0).all() and (want[~normal] <= np.exp(dtype(flush))).all()
    special = np.array([-np.inf, np.inf, np.nan, 1000.0, -1000.0], dtype)
    out = np.empty_like(special)
    _map_exp(special, out)
    np.testing.assert_array_equal(out, [0.0, np.inf, np.nan, np.inf, 0.0])


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
    ends (u near 0 and 1) and the branch point u = 3/4 dense."""
    b = 3 * 2**30
    words = np.concatenate([np.arange(0, 1 << 16), np.arange(2**32 - (1 << 16), 2**32),
                            np.arange(b - (1 << 16), b + (1 << 16)),
                            rng.integers(0, 2**32, 1_000_000)]).astype(np.uint32)
    got = np.empty(words.size, np.float32)
    _map_neglog(words, got)
    v = ((2**32 - 1 - words.astype(np.float64)) + 0.5) * 2.0**-32  # 1 - u, exactly
    want = -np.log1p(-v)
    assert np.max(np.abs(got / want - 1)) < vm.NEGLOG32_REL / 4


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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k,d,s", SHAPES)
def test_nll_grad_and_log_prob_match_reference(rng, dtype, n, k, d, s):
    args = random_mixture(rng, n, k, d, s, dtype)
    want = mixture.nll_grad(*args)
    _check(nk.nll_grad(*args), want, dtype, args=args)
    lp = nk.log_prob(*args)
    assert lp.dtype == dtype and lp.shape == (n,)
    _check([-lp], want[:1], dtype)


@pytest.mark.parametrize("n,k,d,s", [(9, 3, 2, 2), (9, 3, 2, 1), (17, 9, 1, 1), (4, 2, 5, 5)])
def test_nll_grad_matches_loops(rng, n, k, d, s):
    args = random_mixture(rng, n, k, d, s)
    for name, g, w in zip(NAMES, nk.nll_grad(*args), naive_nll_grad(*args), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("cov", ["diagonal", "isotropic"])
def test_hard_inputs_float64(rng, cov):
    """y hundreds of sigmas from every mean, sigma near 1e-30 and 1e30, K=64, D=8."""
    args = _hard_inputs(rng, cov)
    got = nk.nll_grad(*args)
    _check(got, mixture.nll_grad(*args), np.float64, hard=True)
    assert np.all(got[0] > 1e4)  # far in the tail, and still finite
    np.testing.assert_allclose(nk.log_prob(*args), -got[0], rtol=1e-13)


@pytest.mark.parametrize("cov", ["diagonal", "isotropic"])
def test_hard_inputs_float32(rng, cov):
    args = [a.astype(np.float32) for a in _hard_inputs(rng, cov)]
    _check(nk.nll_grad(*args), mixture.nll_grad(*args), np.float32, hard=True, args=args)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("s", [3, 1])
def test_head_views_written_in_place(rng, dtype, s):
    """The model's layout: row-strided views of one head output and one gradient
    buffer, with columns on either side that the kernel must not touch."""
    n, k, d = 203, 4, 3
    logits, mu, ls, y = random_mixture(rng, n, k, d, s, dtype)
    p = k * (1 + d + s)
    head = np.zeros((n, p + 3), dtype)
    head[:, 1:p + 1] = np.concatenate([logits, mu.reshape(n, -1), ls.reshape(n, -1)], axis=1)
    grad = np.full((n, p + 3), np.nan, dtype)
    nll = np.full(n, np.nan, dtype)

    def split(h):
        h = h[:, 1:p + 1]
        return h[:, :k], h[:, k:k + k * d].reshape(n, k, d), h[:, k + k * d:].reshape(n, k, s)

    gviews = split(grad)
    res = nk.nll_grad(*split(head), y, out=(nll, *gviews))
    assert res[0] is nll and all(r is v for r, v in zip(res[1:], gviews, strict=True))
    _check([nll, *gviews], mixture.nll_grad(logits, mu, ls, y), dtype,
           args=(logits, mu, ls, y))
    assert np.isnan(grad[:, 0]).all() and np.isnan(grad[:, p + 1:]).all()
    np.testing.assert_allclose(nk.log_prob(*split(head), y), -nll, rtol=1e-6)


def test_other_layouts(rng):
    """Inputs and outputs that cannot be viewed as [N, width] rows are copied, not misread."""
    logits, mu, ls, y = random_mixture(rng, 50, 3, 2, 2)
    want = mixture.nll_grad(logits, mu, ls, y)
    f_order = [np.asfortranarray(a) for a in (logits, mu, ls, y)]
    _check(nk.nll_grad(*f_order), want, np.float64)
    ywide = np.zeros((50, 5))
    ywide[:, 1:4:2] = y  # column stride 2
    _check(nk.nll_grad(logits, mu, ls, ywide[:, 1:4:2]), want, np.float64)
    out = (np.empty(100)[::2], np.empty((3, 50)).T, np.asfortranarray(np.empty((50, 3, 2))),
           np.empty((50, 3, 4))[:, :, ::2])
    res = nk.nll_grad(logits, mu, ls, y, out=out)
    assert all(r is o for r, o in zip(res, out, strict=True))
    _check(out, want, np.float64)


@pytest.mark.parametrize("tile", [8, 16, 64])
def test_tile_sizes_agree(rng, monkeypatch, tile):
    args = random_mixture(rng, 333, 6, 2, 2, np.float32)
    want = nk.nll_grad(*args)
    monkeypatch.setattr(nk, "TILE", tile)
    for g, w in zip(nk.nll_grad(*args), want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_inputs_give_non_finite_nll(rng, dtype):
    """A diverging model's head output must show up in the loss (fit stops on it)."""
    n = 24
    logits, mu, ls, y = random_mixture(rng, n, 3, 2, 2, dtype)
    logits[0, 1] = np.inf
    logits[1, 0] = np.nan
    mu[2, 0, 0] = np.inf
    mu[3, 2, 1] = np.nan
    ls[4, 1, 0] = np.inf
    ls[5, 0, 1] = -np.inf
    ls[6, 2, 0] = np.nan
    y[7, 1] = np.inf
    with np.errstate(all="ignore"):
        ref_nll = mixture.nll_grad(logits, mu, ls, y)[0]
    nll = nk.nll_grad(logits, mu, ls, y)[0]
    lp = nk.log_prob(logits, mu, ls, y)
    bad = ~np.isfinite(ref_nll)
    assert bad.sum() >= 5  # the rest lose one component to -inf and stay finite
    assert not np.isfinite(nll[bad]).any() and not np.isfinite(lp[bad]).any()
    np.testing.assert_allclose(nll[~bad], ref_nll[~bad], rtol=1e-5)


# ------------------------------------------------------------------ sampling


SAMPLE_SHAPES = [(13, 1, 1, 1), (11, 3, 2, 2), (9, 4, 3, 1), (7, 5, 1, 1), (6, 8, 4, 4),
                 (5, 9, 5, 5), (4, 17, 2, 1), (3, 30, 1, 1)]


def _distinct_means(rng, n, k, d, s, dtype):
    """Mixtures whose components have distinct means, so that the drawn value
    with sigma_scale = 0 names the chosen component."""
    logits, mu, ls, _ = random_mixture(rng, n, k, d, s, dtype)
    mu = mu + np.arange(k, dtype=dtype)[None, :, None] * dtype(10.0)
    return logits, mu, ls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["gumbel", "cumulative"])
@pytest.mark.parametrize("temperature", [1.0, 0.4, 3.0, 0.0])
@pytest.mark.parametrize("n,k,d,s", SAMPLE_SHAPES)
def test_sample_choices_identical(rng, dtype, method, temperature, n, k, d, s):
    logits, mu, ls = _distinct_means(rng, n, k, d, s, dtype)
    got = nk.sample(logits, mu, ls, 40, 2024, 5, method, temperature, 0.0)
    want = mixture.sample(logits, mu, ls, 40, 2024, 5, method, temperature, 0.0)
    assert got.dtype == dtype and got.shape == (n, 40, d)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["gumbel", "cumulative"])
@pytest.mark.parametrize("n,k,d,s", SAMPLE_SHAPES)
def test_sample_values_match_reference(rng, dtype, method, n, k, d, s):
    logits, mu, ls, _ = random_mixture(rng, n, k, d, s, dtype)
    got = nk.sample(logits, mu, ls, 30, 7, 0, method, 0.8, 1.7)
    want = mixture.sample(logits, mu, ls, 30, 7, 0, method, 0.8, 1.7)
    if dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 9])
def test_sample_normals_are_the_stream(rng, dtype, d):
    """mu = 0, sigma = 1: each draw is the stream's normal vector, cast to the dtype."""
    n, j, seed = 37, 11, 2**40 + 3  # a seed with both key halves non-zero
    logits = rng.normal(size=(n, 3)).astype(dtype)
    zeros = np.zeros((n, 3, d), dtype)
    got = nk.sample(logits, zeros, zeros, j, seed, 2**33 + 1, "gumbel", 1.0, 1.0)
    rows = 2**33 + 1 + np.arange(n, dtype=np.uint64)
    first = philox.normal_offset(3)  # after the K = 3 Gumbel choice words
    eps = philox.normals(seed, rows, np.arange(j, dtype=np.uint64), d, first).astype(dtype)
    if dtype == np.float64:
        np.testing.assert_allclose(got, eps, rtol=1e-13, atol=1e-14)
    else:
        np.testing.assert_allclose(got, eps, rtol=2e-7, atol=1e-7)


def test_sample_large_seed_and_row_offset(rng):
    """Counters past 2**32 rows and seeds past 2**32 use both halves of each word."""
    logits, mu, ls = _distinct_means(rng, 20, 6, 2, 2, np.float64)
    for seed, off in [(2**64 - 1, 2**63), (2**32, 2**32 - 7), (0, 0)]:
        for method in ("gumbel", "cumulative"):
            np.testing.assert_array_equal(
                nk.sample(logits, mu, ls, 9, seed, off, method, 1.0, 0.0),
                mixture.sample(logits, mu, ls, 9, seed, off, method, 1.0, 0.0))


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
        monkeypatch.setattr(nk, "SAMPLE_TILE", tile)
        np.testing.assert_array_equal(nk.sample(logits, mu, ls, 21, 99, 0, method, 1.0, 1.0),
                                      whole)


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
        "from npmdn import _numba_kernels as nk, _nb_head, _nb_sample\n"
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
        "from npmdn import _numba_kernels as nk, _nb_head\n"
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
    """The flush points sit just above the smallest normal, as _nb_vmath says."""
    assert math.exp(vm._FLUSH64) > np.finfo(np.float64).tiny
    assert math.exp(vm._FLUSH32) > np.finfo(np.float32).tiny
    assert math.exp(vm._FLUSH64) < 1.01 * np.finfo(np.float64).tiny
    assert math.exp(vm._FLUSH32) < 1.05 * np.finfo(np.float32).tiny
