"""npmdn.Mixture: every method is its raw-parameter function, bit for bit on the same
backend; against scipy.stats on hand-made mixtures; rows, slices, shapes, draws, errors."""

import math
import pickle

import numpy as np
import pytest
from cases import cupy_or_skip, random_mixture

import npmdn
from npmdn import metrics

stats = pytest.importorskip("scipy.stats")
integrate = pytest.importorskip("scipy.integrate")
special = pytest.importorskip("scipy.special")

BACKENDS = ["numpy", "numba"]  # cupy: test_gpu_mixture below
LEVELS = np.array([0.01, 0.3, 0.5, 0.9])


def same(a, b):
    """Bit for bit: same dtype, shape and bytes (NaN slots included)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
    assert a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------
# the raw-parameter functions, bit for bit
# --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d,s", [(1, 1), (3, 3), (3, 1)])
def test_methods_are_the_raw_functions(rng, backend, dtype, d, s):
    logits, mu, ls, y = random_mixture(rng, 9, 4, d, s, dtype)
    raw = (logits, mu, ls)
    dist = npmdn.Mixture(*raw, backend=backend)
    assert dist.covariance_type == ("diagonal" if s == d else "isotropic")
    same(dist.log_prob(y), npmdn.mixture_log_prob(*raw, y, backend=backend))
    same(dist.pdf(y), np.exp(npmdn.mixture_log_prob(*raw, y, backend=backend)))
    same(dist.sample(5, seed=3), npmdn.mixture_sample(*raw, 5, 3, backend=backend))
    same(dist.sample(2, seed=3, method="cumulative", temperature=0.5, sigma_scale=2.0,
                     row_offset=11),
         npmdn.mixture_sample(*raw, 2, 3, method="cumulative", temperature=0.5,
                              sigma_scale=2.0, row_offset=11, backend=backend))
    same(dist.cdf(y), npmdn.mixture_cdf(*raw, y))
    same(dist.quantile(LEVELS), npmdn.mixture_quantile(*raw, LEVELS))
    same(dist.quantile(0.3), npmdn.mixture_quantile(*raw, 0.3))
    for got, want in zip(dist.interval(0.8), npmdn.mixture_interval(*raw, 0.8)):
        same(got, want)
    same(dist.mean(), npmdn.mixture_mean(*raw))
    same(dist.covariance(), npmdn.mixture_covariance(*raw))
    same(dist.crps(y), metrics.crps(*raw, y))
    for got, want in zip(dist.modes(), npmdn.mixture_modes(*raw)):
        same(got, want)
    same(dist.weights, npmdn.mixture_params(*raw)[0])
    assert dist.means is mu
    # the per-component covariances are diag(sigma^2), whatever S, in float64 (a float32
    # sigma above 1.8e19 has a square beyond float32)
    sigma2 = np.exp(2.0 * ls.astype(np.float64)) * np.ones(mu.shape)
    cov = dist.covariances
    assert cov.shape == (9, 4, d, d) and cov.dtype == np.float64
    np.testing.assert_array_equal(np.diagonal(cov, axis1=2, axis2=3), sigma2)
    np.testing.assert_array_equal(cov * (1 - np.eye(d)), 0)
    # the std is the root of the covariance's diagonal (law of total variance)
    np.testing.assert_allclose(dist.std() ** 2, np.diagonal(dist.covariance(), axis1=1, axis2=2),
                               rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_prob_accepts_1d_and_int_targets(rng, backend):
    logits, mu, ls, y = random_mixture(rng, 6, 3, 1, 1, np.float32)
    dist = npmdn.Mixture(logits, mu, ls, backend=backend)
    same(dist.log_prob(y[:, 0]), dist.log_prob(y))
    yi = np.arange(6)
    same(dist.log_prob(yi), npmdn.mixture_log_prob(logits, mu, ls, yi[:, None].astype(np.float32),
                                                   backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("covariance", ["diagonal", "isotropic"])
def test_model_distribution_is_its_mixture(backend, covariance):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) * [1.0, 5.0] + 3.0
    m = npmdn.MDN(2, 2, 3, hidden=(8,), covariance=covariance, backend=backend, seed=0)
    m.fit(x, y, epochs=3, verbose=False)
    dist = m.distribution(x)
    raw = m.mixture_raw(x)
    assert dist.backend == backend and dist.covariance_type == covariance and len(dist) == 40
    for a, b in zip(dist.params, raw):
        same(a, b)
    same(dist.log_prob(y), npmdn.mixture_log_prob(*raw, y.astype(np.float32), backend=backend))
    same(dist.mean(), m.predict(x))
    same(dist.std(), m.predict_std(x))
    same(dist.covariance(), m.predict_covariance(x))
    same(dist.cdf(y), m.cdf(x, y))
    same(dist.quantile(LEVELS), m.quantile(x, LEVELS))
    same(dist.crps(y), m.crps(x, y))
    same(dist.sample(4, seed=9), m.sample(x, 4, seed=9))
    # the model's own log_prob works in standardized units: the same density to rounding
    np.testing.assert_allclose(dist.log_prob(y), m.log_prob(x, y), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------
# against SciPy on hand-made mixtures
# --------------------------------------------------------------------------


def hand_made_1d():
    """Two rows: a three-component mixture with separated modes, and a single Gaussian."""
    w = np.array([[0.2, 0.5, 0.3], [1.0, 1e-300, 1e-300]])
    m = np.array([[-3.0, 0.5, 4.0], [1.5, 0.0, 0.0]])
    s = np.array([[0.7, 1.2, 0.4], [2.0, 1.0, 1.0]])
    return w, m, s, npmdn.Mixture(np.log(w), m[..., None], np.log(s)[..., None])


def scipy_cdf_1d(w, m, s, t):
    return float(np.sum(w * stats.norm.cdf(t, m, s)))


def test_one_dimension_against_scipy_norm():
    w, m, s, dist = hand_made_1d()
    y = np.array([0.3, -2.0])
    want = [special.logsumexp(np.log(w[i]) + stats.norm.logpdf(y[i], m[i], s[i])) for i in range(2)]
    np.testing.assert_allclose(dist.log_prob(y), want, rtol=1e-13)
    np.testing.assert_allclose(dist.pdf(y), np.exp(want), rtol=1e-13)
    np.testing.assert_allclose(dist.cdf(y), [scipy_cdf_1d(w[i], m[i], s[i], y[i])
                                             for i in range(2)], rtol=1e-13)
    mean = (w * m).sum(1)
    var = (w * (s**2 + m**2)).sum(1) - mean**2
    np.testing.assert_allclose(dist.mean()[:, 0], mean, rtol=1e-13)
    np.testing.assert_allclose(dist.std()[:, 0], np.sqrt(var), rtol=1e-13)
    np.testing.assert_allclose(dist.covariance()[:, 0, 0], var, rtol=1e-13)
    # row 1 is N(1.5, 2^2): its quantiles and interval are scipy's
    np.testing.assert_allclose(dist[1].quantile(LEVELS)[0], stats.norm.ppf(LEVELS, 1.5, 2.0),
                               rtol=1e-11)
    lo, hi = dist[1].interval(0.9)
    np.testing.assert_allclose([lo[0], hi[0]], stats.norm.interval(0.9, 1.5, 2.0), rtol=1e-11)
    # row 0's quantiles solve scipy's CDF
    for q, t in zip(LEVELS, dist[0].quantile(LEVELS)[0]):
        assert abs(scipy_cdf_1d(w[0], m[0], s[0], t) - q) < 1e-12
    # three separated components: three modes, near the means
    modes = dist[0].modes()
    assert modes.count[0] == 3
    np.testing.assert_allclose(np.sort(modes.locations[0, :, 0]), m[0], atol=0.05)


def test_crps_against_quadrature():
    w, m, s, dist = hand_made_1d()
    y = np.array([0.3, -2.0])
    for i in range(2):
        def sq(t, i=i):
            return (scipy_cdf_1d(w[i], m[i], s[i], t) - (t >= y[i])) ** 2

        want = integrate.quad(sq, -40, y[i], limit=200)[0] + integrate.quad(
            sq, y[i], 40, limit=200)[0]
        assert dist.crps(y)[i] == pytest.approx(want, rel=1e-8)


def test_samples_follow_the_mixture():
    w, m, s, dist = hand_made_1d()
    draws = dist[0].sample(20_000, seed=5)[0, :, 0]
    ks = stats.kstest(draws, lambda t: np.sum(w[0] * stats.norm.cdf(t[:, None], m[0], s[0]),
                                              axis=1))
    assert ks.pvalue > 1e-3, ks


@pytest.mark.parametrize("covariance", ["diagonal", "isotropic"])
def test_several_dimensions_against_scipy_multivariate_normal(covariance):
    w = np.array([[0.6, 0.4], [0.1, 0.9]])
    mu = np.array([[[0.0, 1.0, -1.0], [2.0, -1.0, 0.5]], [[1.0, 1.0, 1.0], [-1.0, 0.0, 3.0]]])
    if covariance == "diagonal":
        sigma = np.array([[[1.0, 0.5, 2.0], [0.3, 1.5, 1.0]], [[0.8, 0.8, 0.2], [1.1, 2.0, 0.6]]])
    else:
        sigma = np.array([[[1.3], [0.4]], [[0.7], [2.2]]])
    dist = npmdn.Mixture(np.log(w), mu, np.log(sigma), covariance_type=covariance)
    y = np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 2.0]])
    covs = [[np.diag(np.broadcast_to(sigma[n, k] ** 2, (3,))) for k in range(2)] for n in range(2)]
    want = [special.logsumexp([np.log(w[n, k]) + stats.multivariate_normal.logpdf(
        y[n], mu[n, k], covs[n][k]) for k in range(2)]) for n in range(2)]
    np.testing.assert_allclose(dist.log_prob(y), want, rtol=1e-13)
    np.testing.assert_allclose(dist.covariances, np.array(covs), rtol=1e-15)
    mean = np.einsum("nk,nkd->nd", w, mu)
    cov = np.einsum("nk,nkde->nde", w, np.array(covs)) + np.einsum(
        "nk,nkd,nke->nde", w, mu - mean[:, None], mu - mean[:, None])
    np.testing.assert_allclose(dist.mean(), mean, rtol=1e-13)
    np.testing.assert_allclose(dist.covariance(), cov, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dist.std(), np.sqrt(np.diagonal(cov, axis1=1, axis2=2)),
                               rtol=1e-13)
    # CDF and quantiles are per-dimension marginals: 1-D mixtures of scipy normals
    sig = np.broadcast_to(sigma, mu.shape)
    marg = [[scipy_cdf_1d(w[n], mu[n, :, j], sig[n, :, j], y[n, j]) for j in range(3)]
            for n in range(2)]
    np.testing.assert_allclose(dist.cdf(y), marg, rtol=1e-13)
    assert dist.quantile(LEVELS).shape == (2, 4, 3)


# --------------------------------------------------------------------------
# rows, shapes, draws
# --------------------------------------------------------------------------


@pytest.mark.parametrize("d,s", [(1, 1), (2, 2), (2, 1)])
def test_shapes(rng, d, s):
    logits, mu, ls, y = random_mixture(rng, 7, 3, d, s)
    dist = npmdn.Mixture(logits, mu, ls)
    assert len(dist) == 7 and dist.n_components == 3 and dist.dim == d
    assert dist.weights.shape == (7, 3) and dist.means.shape == (7, 3, d)
    assert dist.covariances.shape == (7, 3, d, d)
    assert dist.mean().shape == dist.std().shape == (7, d)
    assert dist.covariance().shape == (7, d, d)
    assert dist.log_prob(y).shape == dist.pdf(y).shape == (7,)
    tail = () if d == 1 else (d,)
    assert dist.cdf(y).shape == dist.crps(y).shape == (7, *tail)
    assert dist.quantile(LEVELS).shape == (7, 4, *tail)
    assert dist.quantile(0.5).shape == (7, *tail)
    lo, hi = dist.interval(0.9)
    assert lo.shape == hi.shape == (7, *tail) and np.all(lo < hi)
    assert dist.sample(5, seed=0).shape == (7, 5, d)
    assert dist.modes().locations.shape == (7, 3, d)
    assert "n=7" in repr(dist) and "n_components=3" in repr(dist)


def test_rows_and_slices(rng):
    logits, mu, ls, y = random_mixture(rng, 10, 3, 2, 2)
    dist = npmdn.Mixture(logits, mu, ls, backend="numpy")
    lp = dist.log_prob(y)
    for key in [slice(2, 6), slice(None, None, 3), np.array([7, 1, 1]), lp > np.median(lp),
                [0, -1]]:
        part = dist[key]
        rows = np.arange(10)[key]
        assert len(part) == len(rows) and part.backend == "numpy"
        same(part.log_prob(y[rows]), lp[rows])
        same(part.mean(), dist.mean()[rows])
    one = dist[3]
    assert len(one) == 1 and one.weights.shape == (1, 3)
    same(dist[-1].log_prob(y[-1:]), lp[-1:])
    same(dist[-2].mean(), dist.mean()[-2:-1])
    assert [len(r) for r in dist] == [1] * 10  # iteration: one row at a time


def test_sample_is_reproducible_and_rows_keep_their_stream(rng):
    logits, mu, ls, _ = random_mixture(rng, 8, 3, 2, 2, np.float32)
    dist = npmdn.Mixture(logits, mu, ls)
    a = dist.sample(6, seed=42)
    same(a, dist.sample(6, seed=42))
    assert not np.array_equal(a, dist.sample(6, seed=43))
    same(dist[3:7].sample(6, seed=42, row_offset=3), a[3:7])
    assert a.dtype == np.float32


def test_pickles(rng):
    dist = npmdn.Mixture(*random_mixture(rng, 4, 2, 1, 1)[:3], backend="numpy")
    back = pickle.loads(pickle.dumps(dist))
    assert back.backend == "numpy" and back.covariance_type == dist.covariance_type
    for a, b in zip(back.params, dist.params):
        same(a, b)


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


def test_errors(rng):
    logits, mu, ls, y = random_mixture(rng, 5, 3, 2, 2)
    with pytest.raises(ValueError, match="mu must have shape"):
        npmdn.Mixture(logits, mu[:4], ls)
    with pytest.raises(TypeError, match="share one float dtype"):
        npmdn.Mixture(logits.astype(np.float32), mu, ls)
    with pytest.raises(ValueError, match="must be finite"):
        npmdn.Mixture(logits, mu, ls * np.nan)
    with pytest.raises(ValueError, match=r"needs log_sigma \[N, K, 1\]"):
        npmdn.Mixture(logits, mu, ls, covariance_type="isotropic")
    with pytest.raises(ValueError, match=r"covariance_type='full' needs log_sigma \[N, K, 3\]"):
        npmdn.Mixture(logits, mu, ls, covariance_type="full")
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        npmdn.Mixture(logits, mu, ls, covariance_type="tied")
    with pytest.raises(ValueError, match="backend must be one of"):
        npmdn.Mixture(logits, mu, ls, backend="jax")
    dist = npmdn.Mixture(logits, mu, ls)
    with pytest.raises(ValueError, match=r"y must have shape \[N, D\] = \[5, 2\]"):
        dist.log_prob(y[:, 0])
    with pytest.raises(ValueError, match="must be finite"):
        dist.log_prob(y * np.inf)
    with pytest.raises(TypeError, match="real numbers"):
        dist.cdf(y.astype(str))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        dist.quantile(1.0)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        dist.interval(0.0)
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        dist.sample(0)
    with pytest.raises(IndexError, match="out of range"):
        dist[5]
    with pytest.raises(IndexError, match="no rows"):
        dist[3:3]
    with pytest.raises(IndexError, match="rows only"):
        dist[0, 1]
    with pytest.raises(IndexError, match="does not select rows"):
        dist[None]


def test_isotropic_needs_one_scale_for_d_above_1(rng):
    logits, mu, ls, _ = random_mixture(rng, 3, 2, 1, 1)
    assert npmdn.Mixture(logits, mu, ls, covariance_type="isotropic").covariance_type == "isotropic"
    assert npmdn.Mixture(logits, mu, ls).covariance_type == "diagonal"  # D = 1: the same law
    assert math.isfinite(float(npmdn.Mixture(logits, mu, ls).log_prob(np.zeros(3))[0]))


# --------------------------------------------------------------------------
# the cupy backend (pytest -m gpu; skipped without CuPy and a CUDA device)
# --------------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_mixture(rng):
    cupy = cupy_or_skip()
    logits, mu, ls, y = random_mixture(rng, 50, 4, 2, 2, np.float32)
    raw = (logits, mu, ls)
    host = npmdn.Mixture(*raw, backend="cupy")  # host arrays, the kernels on the device
    same(host.log_prob(y), npmdn.mixture_log_prob(*raw, y, backend="cupy"))
    same(host.sample(3, seed=1), npmdn.mixture_sample(*raw, 3, 1, backend="cupy"))
    dev_raw = [cupy.asarray(a) for a in raw]
    dev = npmdn.Mixture(*dev_raw)  # CuPy arrays in, CuPy arrays out
    lp = dev.log_prob(cupy.asarray(y))
    assert isinstance(lp, cupy.ndarray)
    same(lp.get(), host.log_prob(y))
    same(dev.quantile(LEVELS).get(), npmdn.mixture_quantile(*dev_raw, LEVELS).get())
    same(dev.covariances.get(), npmdn.Mixture(*raw).covariances)
    assert len(dev[3:7]) == 4 and isinstance(dev[3:7].params[0], cupy.ndarray)
