"""Properties of the numerics that must hold for every input, checked with Hypothesis
(issue 11): results depend on the logits only through their differences; the CPU
backends (numpy, numba, and the CUDA header's host build) give the same values and
the same non-finite results; the CDF is a probability, monotone in y; the quantile
inverts the CDF to its documented accuracy; quantiles are monotone in q and
intervals nested and ordered.

The strategies mix ordinary values with the extreme regimes the issue names:
logit offsets of 1e16 (float32 1e5) and spreads of 300; log sigma from -800 to 800
(float32 -100 to 100: 1 / sigma and sigma overflow), collapsed components far from
y (z^2 and z / sigma overflow, responsibility 0), y on a mean or far beyond every
component; for the distribution, means up to 1e80 apart, sigmas from 1e-12 of the
means to 1e61. Bounded for CI: at most 300 examples per property, derandomized (the
same examples every run), no deadline; the file takes about 30 s here.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from npmdn import distribution, functional, mixture

numba_kernels = pytest.importorskip("npmdn._numba.kernels")

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FAST = settings(max_examples=300, **SETTINGS)
SLOWER = settings(max_examples=200, **SETTINGS)
EPS = np.finfo(np.float64).eps


# ----------------------------------------------------------------- strategies


def _values(draw, shape, ordinary, extremes):
    """An array of ``shape``: each entry ordinary (uniform in ``ordinary``) or, with
    probability about 1/4, one of ``extremes``."""
    n = int(np.prod(shape))
    lo, hi = ordinary
    plain = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    pick = st.one_of(plain, plain, plain, st.sampled_from(extremes)) if extremes else plain
    return np.array(draw(st.lists(pick, min_size=n, max_size=n)), dtype=np.float64).reshape(shape)


@st.composite
def heads(draw, dtype=None):
    """``(logits [N,K], mu [N,K,D], log_sigma [N,K,S], y [N,D])`` of one dtype."""
    dtype = draw(st.sampled_from([np.float64, np.float32])) if dtype is None else dtype
    f32 = dtype == np.float32
    n = draw(st.integers(1, 5))
    k = draw(st.integers(1, 5))
    d = draw(st.integers(1, 3))
    s = draw(st.sampled_from([1, d]))
    spread = draw(st.sampled_from([0.5, 3.0, 30.0, 300.0]))
    logits = _values(draw, (n, k), (-spread, spread), [])
    far_ls = [-50.0, -100.0, 100.0] if f32 else [-50.0, -400.0, -800.0, 800.0]
    log_sigma = _values(draw, (n, k, s), (-4.0, 4.0), far_ls)
    mu = _values(draw, (n, k, d), (-10.0, 10.0), [1e15, -3e19] if f32 else [1e15, -1e160])
    y = _values(draw, (n, d), (-10.0, 10.0), [2e19, 1e25] if f32 else [1.5e154, 1e200])
    on_mean = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    for i, flag in enumerate(on_mean):  # y exactly on a mean: z = 0 however small sigma is
        if flag:
            y[i] = mu[i, draw(st.integers(0, k - 1))]
    return tuple(a.astype(dtype) for a in (logits, mu, log_sigma, y))


def exact_offset(logits, power):
    """``(a + c, a + c - c)`` for ``c = +-2^power``: the same differences, exactly
    (``|a| < c / 2``, Sterbenz)."""
    c = logits.dtype.type(math.ldexp(1.0, power))
    far = logits + c
    return far, far - c


OFFSET_POWERS = {np.float64: st.sampled_from([12, 30, 53, 60, 200]),  # 2^53 ~ 9e15
                 np.float32: st.sampled_from([12, 17, 24])}  # 2^17 ~ 1.3e5


# ------------------------------------------------------------------ backends


def _cuda_host():
    try:
        from backends import cuda_host
    except ImportError:
        return None
    if cuda_host.compiler() is None:
        return None
    return cuda_host


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    """name -> (nll_grad, log_prob, sample) for every CPU backend that runs here."""
    out = {"numpy": (mixture.nll_grad, mixture.log_prob, mixture.sample),
           "numba": (numba_kernels.nll_grad, numba_kernels.log_prob, numba_kernels.sample)}
    host = _cuda_host()
    if host is not None:
        from npmdn._cuda import plan

        lib = host.build(tmp_path_factory.mktemp("cuda_host"))
        out["cuda-host"] = (
            lambda *a: host.run(lib, plan.plan_nll_grad(np, *a)),
            lambda *a: host.run(lib, plan.plan_log_prob(np, *a)),
            lambda *a: host.run(lib, plan.plan_sample(np, *a)),
        )
    return out


def same_non_finite(got, want, what):
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(got), test(want), err_msg=f"{what}: {test.__name__}")


def close(got, want, args, what):
    """Finite entries agree to the rounding of the exponents: with T the row's largest
    finite |t_k| (t_k = log pi_k + log N_k, float64), every backend's error is a few
    ulps of (1 + T) relative to the entry's scale, so two backends differ by at most
    ``16 eps (1 + T)`` of it (float64: and never by more than 1e-9). The scale is 1
    for ``pi - r`` (weights of 1 carry absolute errors), ``|value| + 1`` for the NLL,
    the row's largest entry for ``d_mu`` and ``d_log_sigma``."""
    got, want64 = got.astype(np.float64), want.astype(np.float64)
    fin = np.isfinite(want64)
    with np.errstate(all="ignore"):
        a64 = [a.astype(np.float64) for a in args]
        t = mixture.log_softmax(a64[0]) + mixture.component_log_density(*a64[1:])[0]
    t_max = np.where(np.isfinite(t), np.abs(t), 0).max(axis=1)
    shape = (-1,) + (1,) * (want.ndim - 1)
    if what == "d_logits":
        scale = np.ones(len(want))
    elif what in ("nll", "log_prob"):
        scale = np.abs(np.where(fin, want64, 0)) + 1
    else:
        scale = np.where(fin, np.abs(want64), 0).reshape(len(want), -1).max(axis=1) + 1e-300
    eps = np.finfo(want.dtype).eps
    allowed = 16 * eps * (1 + t_max)
    if want.dtype == np.float64:
        allowed = np.maximum(allowed, 1e-9)
    err = np.where(fin, np.abs(got - want64), 0) / scale.reshape(shape)
    assert np.all(err <= allowed.reshape(shape)), (what, err.max(), allowed)


# ------------------------------------------------------- shift invariance (item 4)


@FAST
@given(data=st.data())
def test_every_result_ignores_a_common_logit_offset(backends, data):
    args = data.draw(heads())
    logits, mu, ls, y = args
    far, near = exact_offset(logits, data.draw(OFFSET_POWERS[logits.dtype.type]))
    with np.errstate(all="ignore"):
        for name, (nll_grad, log_prob, sample) in backends.items():
            for g, w in zip(nll_grad(far, mu, ls, y), nll_grad(near, mu, ls, y), strict=True):
                np.testing.assert_array_equal(g, w, err_msg=name)
            np.testing.assert_array_equal(log_prob(far, mu, ls, y), log_prob(near, mu, ls, y))
            for method in mixture.SAMPLE_METHODS:
                for t, scale in [(1.0, 0.0), (0.6, 1.0)]:
                    np.testing.assert_array_equal(
                        sample(far, mu, ls, 4, 9, 0, method, t, scale),
                        sample(near, mu, ls, 4, 9, 0, method, t, scale), err_msg=name)
        for fn in (lambda a: mixture.params(a, mu, ls)[0], lambda a: mixture.mean(a, mu),
                   lambda a: mixture.variance(a, mu, ls), lambda a: mixture.std(a, mu, ls),
                   lambda a: mixture.covariance(a, mu, ls),
                   lambda a: distribution.cdf(a, mu, ls, y)):
            np.testing.assert_array_equal(fn(far), fn(near))


@SLOWER
@given(data=st.data())
def test_quantiles_ignore_a_common_logit_offset(data):
    logits, mu, ls, _ = data.draw(heads())
    ls = np.clip(ls, -30, 30)  # quantiles of finite sigmas (overflowing ones: item 8 below)
    far, near = exact_offset(logits, data.draw(OFFSET_POWERS[logits.dtype.type]))
    q = [1e-6, 0.3, 0.5, 0.9]
    np.testing.assert_array_equal(functional.mixture_quantile(far, mu, ls, q),
                                  functional.mixture_quantile(near, mu, ls, q))


# --------------------------------------------- backend agreement (items 4 and 7)


@FAST
@given(args=heads())
def test_backends_agree_values_and_non_finite_results(backends, args):
    with np.errstate(all="ignore"):
        want = mixture.nll_grad(*args)
        want_lp = mixture.log_prob(*args)
        for name, (nll_grad, log_prob, _) in backends.items():
            if name == "numpy":
                continue
            got = nll_grad(*args)
            for what, g, w in zip(("nll", "d_logits", "d_mu", "d_log_sigma"), got, want,
                                  strict=True):
                assert g.dtype == w.dtype and g.shape == w.shape
                same_non_finite(g, w, f"{name} {what}")
                close(g, w, args, what)
            lp = log_prob(*args)
            same_non_finite(lp, want_lp, f"{name} log_prob")
            close(lp, want_lp, args, "log_prob")


@FAST
@given(args=heads(), method=st.sampled_from(mixture.SAMPLE_METHODS),
       temperature=st.sampled_from([0.0, 0.5, 1.0, 3.0]))
def test_backends_draw_the_same_components_and_means(backends, args, method, temperature):
    """sigma_scale = 0 returns the chosen means exactly, even where sigma overflows."""
    logits, mu, ls, _ = args
    want = mixture.sample(logits, mu, ls, 6, 17, 3, method, temperature, 0.0)
    assert np.isfinite(want).all()
    chosen = (want[:, :, None, :] == mu[:, None, :, :]).all(axis=-1).any(axis=-1)
    assert chosen.all()  # every draw is one of its row's means
    for name, (_, _, sample) in backends.items():
        np.testing.assert_array_equal(sample(logits, mu, ls, 6, 17, 3, method, temperature, 0.0),
                                      want, err_msg=name)


# ------------------------------------------------------------- the distribution


@st.composite
def mixtures_1d(draw):
    """1-D float64 mixtures: means O(1) to 1e80 apart, sigmas 1e-12 of the means to 1e61."""
    k = draw(st.integers(1, 4))
    logits = _values(draw, (1, k), (-5.0, 5.0), [-40.0, 40.0])
    centre = draw(st.sampled_from([0.0, 1.0, 1e6, -1e12]))
    mu = centre + _values(draw, (1, k, 1), (-5.0, 5.0), [1e80, -1e30, 1e-9])
    scale = np.maximum(np.abs(mu), 1.0)
    rel = _values(draw, (1, k, 1), (-3.0, 1.0), [-12.0, -14.0, 61.0])  # log10 sigma / scale
    ls = np.log(scale) + rel * math.log(10.0)
    return logits, mu, ls


@FAST
@given(mix=mixtures_1d(), t=st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=12))
def test_cdf_is_a_probability_monotone_in_y(mix, t):
    logits, mu, ls = mix
    sigma = np.exp(ls[0, :, 0])
    # points around every component, in its own units, and far beyond all of them
    ys = np.concatenate([mu[0, :, 0] + sigma * v for v in t] + [[-1e300, 1e300]])
    ys = np.sort(ys[np.isfinite(ys)])
    f = distribution.cdf(np.repeat(logits, ys.size, 0), np.repeat(mu, ys.size, 0),
                         np.repeat(ls, ys.size, 0), ys[:, None])[:, 0]
    assert np.all((f >= 0) & (f <= 1)), f
    assert np.all(np.diff(f) >= -4 * EPS * f[1:]), f  # monotone (to a few ulps of F)


@SLOWER
@given(mix=mixtures_1d(), v=st.floats(-8.0, 8.0), k=st.integers(0, 3))
def test_quantile_inverts_the_cdf(mix, v, k):
    """y -> q = F(y) -> Q(q): F(Q(q)) = q to a relative 1e-11 (1 - F against 1 - q
    above the median), or Q(q) within 8 ulps of y where F moves more than that in
    one ulp (a needle)."""
    logits, mu, ls = mix
    k = min(k, mu.shape[1] - 1)
    y = mu[:, k, :] + np.exp(ls[:, k, :]) * v
    assume(np.isfinite(y).all())
    q = float(distribution.cdf(logits, mu, ls, y)[0, 0])
    s = float(distribution.sf(logits, mu, ls, y)[0, 0])
    assume(1e-300 < q and s > 1e-12 and q < 1.0)
    got = functional.mixture_quantile(logits, mu, ls, q)[:1, None]
    if q <= 0.5:
        back = float(distribution.cdf(logits, mu, ls, got)[0, 0])
        rel = abs(back / q - 1.0)
    else:
        back = float(distribution.sf(logits, mu, ls, got)[0, 0])
        rel = abs(back / (1.0 - q) - 1.0)
    ulps = abs(got[0, 0] - y[0, 0]) / np.spacing(abs(y[0, 0]))
    assert rel <= 1e-11 or ulps <= 8, (q, y, got, rel, ulps)


@SLOWER
@given(mix=mixtures_1d(), q=st.lists(st.floats(1e-12, 1 - 1e-9), min_size=2, max_size=8),
       c=st.lists(st.floats(1e-9, 1 - 1e-9), min_size=1, max_size=6))
def test_quantiles_monotone_intervals_nested_and_ordered(mix, q, c):
    logits, mu, ls = mix
    qs = np.array(q)
    got = functional.mixture_quantile(logits, mu, ls, qs)[0]
    order = np.argsort(qs, kind="stable")
    assert np.all(np.diff(got[order]) >= 0), (qs[order], got[order])
    assert np.all(np.isfinite(got))
    lo, hi = functional.mixture_interval(logits, mu, ls, np.array(c))
    assert np.all(lo <= hi), (c, lo, hi)
    by_c = np.argsort(c, kind="stable")
    assert np.all(np.diff(lo[0, by_c]) <= 0) and np.all(np.diff(hi[0, by_c]) >= 0)  # nested
