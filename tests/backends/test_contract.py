"""The backend contract, once for every backend (numpy, numba, cuda-host, cupy).

Every backend's ``nll_grad``, ``log_prob`` and ``sample`` give the NumPy
reference's answers (npmdn.mixture, npmdn.philox): values and gradients on
random and hard inputs, both dtypes, every covariance type (diagonal,
isotropic, full: S = D, 1, D (D + 1) / 2; random values are valid packed
factors), strided head views written in place, other layouts copied; the same component choices and,
to rounding, the same draws for a seed, whatever the batch split. Tests that
compare with the reference itself run on the accelerated backends (``fast``);
tests against something independent (the loop versions in naive.py, the
stream's normals, moments) run on all four (``be``).

What only one backend has is tested beside it: test_numba_internals.py,
test_cuda_host_build.py, test_gpu.py.
"""

import math

import numpy as np
import pytest
from cases import hard_inputs, random_full, random_mixture
from naive import nll_grad as naive_nll_grad

from npmdn import mixture, philox

DTYPES = [np.float64, np.float32]
COVS = ["diagonal", "isotropic", "full"]
# N around the 8-row blocks and the tiles; K and D around the 8-column blocks and the
# CUDA code's 128-element summation blocks; full factors S = D (D + 1) / 2 last
SHAPES = [(1, 1, 1, 1), (7, 3, 1, 1), (8, 5, 1, 1), (65, 4, 3, 3), (65, 4, 3, 1), (5, 1, 2, 2),
          (300, 64, 8, 8), (40, 9, 5, 1), (3, 130, 9, 9), (1000, 5, 2, 2), (131, 13, 3, 3),
          (200, 30, 1, 1), (77, 8, 4, 4), (129, 2, 9, 1),
          (7, 3, 2, 3), (65, 4, 3, 6), (300, 8, 8, 36), (131, 13, 5, 15), (3, 20, 9, 45)]
NAMES = ("nll", "d_logits", "d_mu", "d_log_sigma")


def _row_scale(w):
    """Per-row largest magnitude, shaped to broadcast against ``w``."""
    s = np.abs(w).reshape(len(w), -1).max(axis=1)
    return s.reshape((-1,) + (1,) * (w.ndim - 1))


def check(got, want, dtype, hard=False, args=None):
    """float64: essentially exact (1e-12; hard inputs 1e-10, as the reference
    against PyTorch). float32: the NLL within 1e-5 relative; each gradient,
    measured against the float64 evaluation of the same float32 inputs and
    relative to its row's largest entry, within 1e-5 or within twice the
    float32 reference's own error, whichever is larger: ``pi - r`` in float32
    carries an error of ``|t_k| * 2**-24`` from rounding ``t_k``, in the
    reference as in every kernel. ``pi - r`` may also be off by ``4 * 2**-24 (10 +
    |nll|)`` in absolute terms: the Numba kernel's vectorised float32 exp is within
    4 ulp (NumPy's within 1), and its error in 1 / sigma enters z^2 and t_k."""
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
        ref = np.max(np.abs(w - t) / scale)
        slack = 0.0
        if name == "d_logits":
            slack = 4 * 2.0**-24 * (10 + np.abs(truth[0]))[:, None] / scale
        ours = np.max(np.abs(g - t) / scale - slack)
        assert ours <= max(1e-5, 2 * ref), f"{name}: error {ours:.2e} (reference {ref:.2e})"


def _host(be, arrays):
    return [be.get(a) for a in arrays]


# --------------------------------------------------------------- NLL and gradient


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k,d,s", SHAPES)
def test_nll_grad_and_log_prob_match_reference(fast, rng, dtype, n, k, d, s):
    args = random_mixture(rng, n, k, d, s, dtype)
    want = mixture.nll_grad(*args)
    check(_host(fast, fast.nll_grad(*fast.put(args))), want, dtype, args=args)
    lp = fast.get(fast.log_prob(*fast.put(args)))
    assert lp.dtype == dtype and lp.shape == (n,)
    check([-lp], want[:1], dtype)


@pytest.mark.parametrize("n,k,d,s", [(9, 3, 2, 2), (9, 3, 2, 1), (17, 9, 1, 1), (4, 2, 5, 5),
                                     (3, 64, 8, 8), (9, 3, 2, 3), (4, 2, 5, 15), (3, 9, 8, 36)])
def test_nll_grad_matches_loops(be, rng, n, k, d, s):
    """Against scalar loops written independently of npmdn.mixture (naive.py)."""
    args = random_mixture(rng, n, k, d, s)
    got = _host(be, be.nll_grad(*be.put(args)))
    for name, g, w in zip(NAMES, got, naive_nll_grad(*args), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("cov", COVS)
def test_hard_inputs_float64(fast, rng, cov):
    """y hundreds of sigmas from every mean, sigma near 1e-30 and 1e30, K=64, D=8 (full:
    condition numbers 1e8, K=32): finite, equal to the reference (which meets PyTorch
    here, reference/test_mixture.py and test_fullcov.py)."""
    args = hard_inputs(rng, cov)
    got = _host(fast, fast.nll_grad(*fast.put(args)))
    check(got, mixture.nll_grad(*args), np.float64, hard=True)
    assert np.all(got[0] > 1e3)  # far in the tail, and still finite
    np.testing.assert_allclose(fast.get(fast.log_prob(*fast.put(args))), -got[0], rtol=1e-12)


@pytest.mark.parametrize("cov", COVS)
def test_hard_inputs_float32(fast, rng, cov):
    """The same rows in float32 (1e-30 and 1e30 are still normal floats; full: condition
    numbers 1e4)."""
    args = hard_inputs(rng, cov, np.float32)
    got = _host(fast, fast.nll_grad(*fast.put(args)))
    check(got, mixture.nll_grad(*args), np.float32, hard=True, args=args)


def test_float32_close_to_float64(be, rng):
    args = random_mixture(rng, 40, 5, 2, 2)
    got32 = _host(be, be.nll_grad(*be.put([a.astype(np.float32) for a in args])))
    got64 = _host(be, be.nll_grad(*be.put(args)))
    for g32, g64 in zip(got32, got64, strict=True):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("s", [2, 3])
def test_non_finite_inputs_give_non_finite_nll(be, rng, dtype, s):
    """A diverging model's head output must show up in the loss (fit stops on it)."""
    n = 24
    logits, mu, ls, y = random_mixture(rng, n, 3, 2, s, dtype)
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
        args = be.put((logits, mu, ls, y))
        nll = be.get(be.nll_grad(*args)[0])
        lp = be.get(be.log_prob(*args))
    bad = ~np.isfinite(ref_nll)
    assert bad.sum() >= 5  # the rest lose one component to -inf and stay finite
    assert not np.isfinite(nll[bad]).any() and not np.isfinite(lp[bad]).any()
    np.testing.assert_allclose(nll[~bad], ref_nll[~bad], rtol=1e-5)


# ---------------------------------------------------------------------- layouts


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("s", [3, 1, 6])
def test_head_views_written_in_place(be, rng, dtype, s):
    """The model's layout: row-strided views of one head output and one gradient
    buffer, with columns on either side that the kernel must not touch."""
    n, k, d = 203, 4, 3
    logits, mu, ls, y = random_mixture(rng, n, k, d, s, dtype)
    p = k * (1 + d + s)
    head = np.zeros((n, p + 3), dtype)
    head[:, 1:p + 1] = np.concatenate([logits, mu.reshape(n, -1), ls.reshape(n, -1)], axis=1)
    head, grad, nll, y_dev = be.put((head, np.full((n, p + 3), np.nan, dtype),
                                     np.full(n, np.nan, dtype), y))

    def split(h):
        h = h[:, 1:p + 1]
        return h[:, :k], h[:, k:k + k * d].reshape(n, k, d), h[:, k + k * d:].reshape(n, k, s)

    gviews = split(grad)
    res = be.nll_grad(*split(head), y_dev, out=(nll, *gviews))
    assert res[0] is nll and all(r is v for r, v in zip(res[1:], gviews, strict=True))
    want = mixture.nll_grad(logits, mu, ls, y)
    check([be.get(nll), *_host(be, gviews)], want, dtype, args=(logits, mu, ls, y))
    grad = be.get(grad)
    assert np.isnan(grad[:, 0]).all() and np.isnan(grad[:, p + 1:]).all()
    assert np.isfinite(grad[:, 1:p + 1]).all()  # every element of the views was written
    lp = be.get(be.log_prob(*split(head), y_dev))
    np.testing.assert_allclose(lp, -be.get(nll), rtol=1e-6)


def test_other_layouts(be, rng):
    """Inputs and outputs that cannot be read as [N, width] rows (Fortran order, a
    strided last axis, reversed rows) are copied, not misread; an output over an
    input (d_logits written over the logits) is written back after the kernel."""
    logits, mu, ls, y = random_mixture(rng, 50, 3, 2, 2)
    want = mixture.nll_grad(logits, mu, ls, y)
    xp = be.xp
    f_order = [xp.asfortranarray(a) for a in be.put((logits, mu, ls, y))]
    check(_host(be, be.nll_grad(*f_order)), want, np.float64)
    ywide = xp.zeros((50, 5))
    ywide[:, 1:4:2] = xp.asarray(y)  # column stride 2
    reversed_logits = xp.asarray(logits)[::-1].copy()[::-1]  # negative row stride
    dev = be.put((mu, ls))
    check(_host(be, be.nll_grad(reversed_logits, *dev, ywide[:, 1:4:2])), want, np.float64)
    lg = xp.asarray(logits).copy()
    out = (xp.empty(100)[::2], lg, xp.asfortranarray(xp.empty((50, 3, 2))),
           xp.empty((50, 3, 4))[:, :, ::2])
    res = be.nll_grad(lg, *dev, xp.asarray(y), out=out)
    assert all(r is o for r, o in zip(res, out, strict=True))
    check(_host(be, out), want, np.float64)


@pytest.mark.parametrize("s", [1, 3])
def test_empty_batch(be, s):
    z = be.put((np.zeros((0, 3)), np.zeros((0, 3, 2)), np.zeros((0, 3, s)), np.zeros((0, 2))))
    assert [tuple(r.shape) for r in be.nll_grad(*z)] == [(0,), (0, 3), (0, 3, 2), (0, 3, s)]
    assert tuple(be.log_prob(*z).shape) == (0,)
    assert tuple(be.sample(*z[:3], 4, 1).shape) == (0, 4, 2)


# --------------------------------------------------------------------- sampling


SAMPLE_SHAPES = [(13, 1, 1, 1), (11, 3, 2, 2), (9, 4, 3, 1), (7, 5, 1, 1), (6, 8, 4, 4),
                 (5, 9, 5, 5), (4, 17, 2, 1), (3, 30, 1, 1), (4, 64, 8, 8),
                 (11, 3, 2, 3), (6, 8, 4, 10), (4, 17, 5, 15)]


def distinct_means(rng, n, k, d, s, dtype):
    """Mixtures whose components have distinct means, so that the drawn value
    with sigma_scale = 0 names the chosen component."""
    logits, mu, ls, _ = random_mixture(rng, n, k, d, s, dtype)
    mu = mu + np.arange(k, dtype=dtype)[None, :, None] * dtype(10.0)
    return logits, mu, ls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", mixture.SAMPLE_METHODS)
@pytest.mark.parametrize("temperature", [1.0, 0.4, 3.0, 0.0])
@pytest.mark.parametrize("n,k,d,s", SAMPLE_SHAPES)
@pytest.mark.parametrize("j", [1, 3, 40])
def test_sample_choices_identical(fast, rng, dtype, method, temperature, n, k, d, s, j):
    """sigma_scale = 0 returns the chosen means exactly: the choices are the reference's
    (one draw a row, a few, many: the kernels lay draws out differently for each)."""
    logits, mu, ls = distinct_means(rng, n, k, d, s, dtype)
    got = fast.get(fast.sample(*fast.put((logits, mu, ls)), j, 2024, 5, method,
                               temperature, 0.0))
    want = mixture.sample(logits, mu, ls, j, 2024, 5, method, temperature, 0.0)
    assert got.dtype == dtype and got.shape == (n, j, d)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", mixture.SAMPLE_METHODS)
@pytest.mark.parametrize("n,k,d,s", SAMPLE_SHAPES)
@pytest.mark.parametrize("j", [1, 30])
def test_sample_values_match_reference(fast, rng, dtype, method, n, k, d, s, j):
    """The draws to rounding: float64 normals differ from NumPy's by a few ulps of
    the float64 log, cos and sin; float32 ones (computed in float32 or rounded) by
    ``philox.NORMALS_FLOAT32_RTOL``, and the float32 value adds a few roundings and
    the 4-ulp float32 exp of log sigma (2**-21 in all). The absolute term, 1e-6 of
    the largest draw, is for cancellation: mu + sigma eps near 0, and the full
    covariance's back substitution (measured: under 1e-7 of the largest draw)."""
    logits, mu, ls, _ = random_mixture(rng, n, k, d, s, dtype)
    for seed, offset, temperature, sigma_scale in [(7, 0, 0.8, 1.7), (2**64 - 1, 2**32 - 5,
                                                                        0.5, 2.5)]:
        got = fast.get(fast.sample(*fast.put((logits, mu, ls)), j, seed, offset, method,
                                   temperature, sigma_scale))
        want = mixture.sample(logits, mu, ls, j, seed, offset, method, temperature,
                              sigma_scale)
        assert got.dtype == want.dtype
        if dtype == np.float64:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        else:
            np.testing.assert_allclose(got, want, rtol=philox.NORMALS_FLOAT32_RTOL + 2.0**-21,
                                       atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 9])
def test_sample_normals_are_the_stream(be, rng, dtype, d):
    """mu = 0, sigma = 1: each draw is the stream's normal vector (npmdn.philox),
    cast to the dtype; float32 normals computed in float32 within the stream's
    documented ``NORMALS_FLOAT32_RTOL`` of the exact value, plus the reference's
    own rounding to float32 (2**-24) and its float64 error near a zero (theta =
    2 pi u rounded: 4.5e-16 r <= 3e-15 absolute)."""
    n, j, seed = 37, 11, 2**40 + 3  # a seed with both key halves non-zero
    logits = rng.normal(size=(n, 3)).astype(dtype)
    zeros = np.zeros((n, 3, d), dtype)
    got = be.get(be.sample(*be.put((logits, zeros, zeros)), j, seed, 2**33 + 1, "gumbel",
                           1.0, 1.0))
    rows = 2**33 + 1 + np.arange(n, dtype=np.uint64)
    first = philox.normal_offset(3)  # after the K = 3 Gumbel choice words
    eps = philox.normals(seed, rows, np.arange(j, dtype=np.uint64), d, first).astype(dtype)
    if dtype == np.float64:
        np.testing.assert_allclose(got, eps, rtol=1e-13, atol=1e-14)
    else:
        np.testing.assert_allclose(got, eps, rtol=philox.NORMALS_FLOAT32_RTOL + 2.0**-24,
                                   atol=3e-15)


def test_sample_large_seed_and_row_offset(fast, rng):
    """Counters past 2**32 rows and seeds past 2**32 use both halves of each word."""
    logits, mu, ls = distinct_means(rng, 20, 6, 2, 2, np.float64)
    for seed, off in [(2**64 - 1, 2**63), (2**32, 2**32 - 7), (0, 0)]:
        for method in mixture.SAMPLE_METHODS:
            np.testing.assert_array_equal(
                fast.get(fast.sample(*fast.put((logits, mu, ls)), 9, seed, off, method,
                                     1.0, 0.0)),
                mixture.sample(logits, mu, ls, 9, seed, off, method, 1.0, 0.0))


@pytest.mark.parametrize("method", mixture.SAMPLE_METHODS)
@pytest.mark.parametrize("s", [2, 3])
def test_sampling_independent_of_batch_split(be, rng, method, s):
    """Row i of a call at row_offset a is global row a + i; fewer draws are a prefix."""
    logits, mu, ls, _ = random_mixture(rng, 50, 5, 2, s, np.float32)
    dev = be.put((logits, mu, ls))
    whole = be.get(be.sample(*dev, 21, 99, 0, method, 1.0, 1.0))
    parts = [be.get(be.sample(*(a[r:r + 7] for a in dev), 21, 99, r, method, 1.0, 1.0))
             for r in range(0, 50, 7)]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
    np.testing.assert_array_equal(be.get(be.sample(*dev, 4, 99, 0, method, 1.0, 1.0)),
                                  whole[:, :4])


def test_sample_statistics(be):
    """Many draws from one row: the mixture's mean and variance."""
    logits = np.log(np.array([[0.5, 0.3, 0.2]]))
    mu = np.array([[[-3.0], [0.5], [4.0]]])
    ls = np.log(np.array([[[0.7], [1.5], [0.4]]]))
    x = be.get(be.sample(*be.put((logits, mu, ls)), 200_000, 11, 0, "gumbel", 1.0, 1.0))
    x = x[0, :, 0]
    m = mixture.mean(logits, mu)[0, 0]
    v = mixture.variance(logits, mu, ls)[0, 0]
    assert abs(x.mean() - m) < 5 * math.sqrt(v / x.size)
    assert abs(x.var() / v - 1) < 0.02


def test_full_sample_covariance(be, rng):
    """Many draws from one full-covariance row (D = 3, correlations near 0.9): the
    mixture's mean and covariance, each entry within 5 standard errors."""
    logits, mu, ls, _ = random_full(rng, 1, 3, 3, cond=200.0)
    x = be.get(be.sample(*be.put((logits, mu, ls)), 200_000, 13, 0, "gumbel", 1.0, 1.0))[0]
    m, cov = mixture.mean(logits, mu)[0], mixture.covariance(logits, mu, ls)[0]
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(x.mean(0) - m) < 5 * sd / math.sqrt(x.shape[0]))
    # the error of a sample covariance, in correlation units, is at most ~sqrt(2 / n)
    err = np.abs((np.cov(x.T) - cov) / np.outer(sd, sd))
    assert err.max() < 5 * math.sqrt(2 / x.shape[0]), err


# ------------------------------------------- hard cases: shifted logits, overflow
# Every backend meets these (issue 11, items 4 and 7): the results depend on the
# logits only through their differences, and an overflow in one component's z^2,
# 1 / sigma or sigma never turns a finite answer into NaN.

OFFSETS = {np.float64: 1e16, np.float32: 1e5}  # where a - logsumexp(a) lost the log-sum


def shifted(logits, c):
    """``(a + c, a + c - c)``: two logits arrays with exactly the same differences
    (``a + c - c`` is exact for ``|a| < c / 2``: Sterbenz)."""
    far = logits + logits.dtype.type(c)
    return far, far - logits.dtype.type(c)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("s", [2, 1, 3])
def test_logit_offset_changes_nothing(be, rng, dtype, s):
    logits, mu, ls, y = random_mixture(rng, 37, 5, 2, s, dtype)
    far, near = shifted(logits, OFFSETS[dtype])
    got = _host(be, be.nll_grad(*be.put((far, mu, ls, y))))
    want = _host(be, be.nll_grad(*be.put((near, mu, ls, y))))
    for name, g, w in zip(NAMES, got, want, strict=True):
        np.testing.assert_array_equal(g, w, err_msg=name)
    check(want, mixture.nll_grad(near, mu, ls, y), dtype, args=(near, mu, ls, y))
    np.testing.assert_array_equal(be.get(be.log_prob(*be.put((far, mu, ls, y)))),
                                  be.get(be.log_prob(*be.put((near, mu, ls, y)))))
    for method in mixture.SAMPLE_METHODS:
        for temperature, scale in [(1.0, 0.0), (0.7, 1.0)]:
            a = be.get(be.sample(*be.put((far, mu, ls)), 9, 5, 0, method, temperature, scale))
            b = be.get(be.sample(*be.put((near, mu, ls)), 9, 5, 0, method, temperature, scale))
            np.testing.assert_array_equal(a, b, err_msg=f"{method} T={temperature}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_equal_huge_logits_are_equal_weights(be, dtype):
    """The issue's row: logits [c, c], means 0 and 1, sigma 1, y = 1/2: NLL 1.0439."""
    c = OFFSETS[dtype]
    args = [np.array(v, dtype) for v in ([[c, c]], [[[0.0], [1.0]]], [[[0.0], [0.0]]], [[0.5]])]
    nll, dl, dm, ds = _host(be, be.nll_grad(*be.put(args)))
    want = 0.5 * math.log(2 * math.pi) + 0.125
    np.testing.assert_allclose(nll, [want], rtol=1e-6)
    np.testing.assert_allclose(dl, [[0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(dm[0, :, 0], [-0.25, 0.25], rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_z2_overflowing_gives_minus_inf_log_prob(be, dtype):
    """Zeros at y far beyond sqrt(max float): log p = -inf on every backend, never NaN."""
    y = 1e20 if dtype == np.float32 else 1e160
    args = [np.zeros((3, 2), dtype), np.zeros((3, 2, 1), dtype), np.zeros((3, 2, 1), dtype),
            np.full((3, 1), y, dtype)]
    lp = be.get(be.log_prob(*be.put(args)))
    nll = be.get(be.nll_grad(*be.put(args))[0])
    assert np.all(lp == -np.inf), lp
    assert np.all(nll == np.inf), nll


@pytest.mark.parametrize("dtype", DTYPES)
def test_half_z2_that_fits_gives_a_finite_nll(be, dtype):
    """z^2 overflows, z^2 / 2 does not: the NLL and d_mu are finite; d_s = 1 - z^2
    is beyond the dtype's range and rounds to -inf (not NaN)."""
    z = 2e19 if dtype == np.float32 else 1.5e154
    args = [np.zeros((1, 1), dtype), np.zeros((1, 1, 1), dtype), np.zeros((1, 1, 1), dtype),
            np.array([[z]], dtype)]
    nll, dl, dm, ds = _host(be, be.nll_grad(*be.put(args)))
    z = float(args[3][0, 0])
    np.testing.assert_allclose(nll, [(0.5 * z) * z + 0.5 * math.log(2 * math.pi)], rtol=1e-6)
    np.testing.assert_allclose(dm[0, :, 0], [-z], rtol=1e-6)
    np.testing.assert_array_equal(ds, -np.inf)
    np.testing.assert_array_equal(dl, 0.0)
    np.testing.assert_allclose(be.get(be.log_prob(*be.put(args))), -nll, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_responsibilities_sum_to_one_where_t_is_huge(be, dtype):
    """Two equal components with t_k ~ -1e308 (float32 -2e38): r = 1/2 each. Computed as
    exp(t - log p), the log 2 in log p rounds away and r = 1 for both; the row max
    goes first, as for the logits."""
    z = 2e19 if dtype == np.float32 else 1.5e154
    args = [np.zeros((1, 2), dtype), np.zeros((1, 2, 1), dtype), np.zeros((1, 2, 1), dtype),
            np.array([[z]], dtype)]
    _, dl, dm, _ = _host(be, be.nll_grad(*be.put(args)))
    np.testing.assert_array_equal(dl, 0.0)  # pi - r = 1/2 - 1/2
    np.testing.assert_allclose(dm[0, :, 0], [-0.5 * float(args[3][0, 0])] * 2, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("s", [1, 3, 6])
def test_sigma_below_exp_range_at_its_mean(be, dtype, s):
    """log sigma so negative that 1 / sigma overflows, with y = mu: z = 0, and the NLL,
    d_mu = 0 and d_s = r are finite (isotropic: r D; full: r for each s_i and 0 for the
    off-diagonal entries, here as negative as the s_i)."""
    ls0 = -800.0 if dtype == np.float64 else -100.0
    logits = np.array([[0.3, -0.2]], dtype)
    mu = np.array([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]], dtype)
    ls = np.zeros((1, 2, s), dtype)
    ls[0, 0] = ls0
    y = mu[:, 0, :].copy()
    nll, dl, dm, ds = _host(be, be.nll_grad(*be.put((logits, mu, ls, y))))
    assert np.isfinite(nll).all() and np.isfinite(dl).all()
    pi0 = 0.5 + 0.5 * math.tanh(0.25)  # softmax([0.3, -0.2])[0]
    np.testing.assert_allclose(nll, [3 * ls0 - math.log(pi0) + 1.5 * math.log(2 * math.pi)],
                               rtol=1e-6)
    np.testing.assert_array_equal(dm, 0.0)
    np.testing.assert_allclose(ds[0, 0], {1: [3.0], 3: [1.0] * 3, 6: [1.0] * 3 + [0.0] * 3}[s],
                               rtol=1e-6)
    np.testing.assert_array_equal(ds[0, 1], 0.0)
    np.testing.assert_allclose(dl[0], [pi0 - 1, 1 - pi0], rtol=1e-6)
    lp = be.get(be.log_prob(*be.put((logits, mu, ls, y))))
    np.testing.assert_allclose(lp, -nll, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("s", [1, 2, 3])
def test_zero_responsibility_gives_zero_gradient(be, dtype, s):
    """A collapsed component far from y (its z^2 and z / sigma overflow) has r = 0
    exactly: its gradient is 0, not 0 * inf = NaN; the rest is as without it."""
    ls_far = -50.0 if dtype == np.float32 else -400.0
    logits = np.array([[0.5, 0.1, -0.3]] * 4, dtype)
    mu = np.zeros((4, 3, 2), dtype)
    mu[:, 1] = 3.0
    ls = np.zeros((4, 3, s), dtype)
    ls[:, 1] = ls_far
    y = np.array([[0.1, -0.2], [0.3, 0.4], [-1.0, 2.0], [2.5, 1.0]], dtype)
    nll, dl, dm, ds = _host(be, be.nll_grad(*be.put((logits, mu, ls, y))))
    for name, g in zip(NAMES, (nll, dl, dm, ds), strict=True):
        assert np.isfinite(g).all(), name
    np.testing.assert_array_equal(dm[:, 1], 0.0)
    np.testing.assert_array_equal(ds[:, 1], 0.0)
    # without the collapsed component: the same NLL up to its weight's share
    keep = [0, 2]
    sub = mixture.nll_grad(logits[:, keep].astype(np.float64), mu[:, keep].astype(np.float64),
                           ls[:, keep].astype(np.float64), y.astype(np.float64))
    log_share = np.log(mixture.softmax(logits.astype(np.float64))[:, keep].sum(axis=1))
    np.testing.assert_allclose(nll, sub[0] - log_share, rtol=1e-5)
    np.testing.assert_allclose(dm[:, keep], sub[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", mixture.SAMPLE_METHODS)
@pytest.mark.parametrize("s", [2, 3])
def test_sigma_scale_zero_returns_the_means_whatever_sigma(be, rng, dtype, method, s):
    logits, mu, ls = distinct_means(rng, 6, 3, 2, s, dtype)
    ls[:, 1] = 800.0 if dtype == np.float64 else 100.0  # sigma = inf in the dtype
    got = be.get(be.sample(*be.put((logits, mu, ls)), 7, 3, 0, method, 1.0, 0.0))
    assert np.isfinite(got).all()
    idx = np.argmin(np.abs(got[:, :, None, 0] - mu[:, None, :, 0]), axis=-1)  # [N, J]
    np.testing.assert_array_equal(got, np.take_along_axis(mu, idx[..., None], axis=1))
