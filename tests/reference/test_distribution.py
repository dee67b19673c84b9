"""The mixture as a distribution, against independent references: CDF and quantiles
against scipy.stats and brentq, CRPS against quadrature and Monte Carlo, modes
against dense-grid search (1-D and 2-D, diagonal and isotropic)."""

import math

import numpy as np
import pytest
from cases import random_mixture

import npmdn
from npmdn import distribution, mixture

stats = pytest.importorskip("scipy.stats")
optimize = pytest.importorskip("scipy.optimize")
integrate = pytest.importorskip("scipy.integrate")
special = pytest.importorskip("scipy.special")

LEVELS = np.array([1e-10, 1e-3, 0.025, 0.3, 0.5, 0.77, 0.975, 0.999, 1 - 1e-10])


def hard_mixtures(kind, n=12, k=4, seed=0):
    """1-D mixtures: random; one component with sigma 1e-8 beside sigma ~1 ones;
    components 1e6 apart."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, k))
    mu = rng.normal(0, 3, (n, k, 1))
    ls = rng.normal(0, 0.7, (n, k, 1))
    if kind == "degenerate":
        ls[:, 0, 0] = math.log(1e-8)
        mu[:, 0, 0] = mu[:, 1, 0] + rng.uniform(-1, 1, n)
    elif kind == "separated":
        mu[:, :, 0] = np.array([-1e6, 0.0, 1e6, 2e6])[:k] + rng.normal(0, 1, (n, k))
    return logits, mu, ls


def _pi(logits):
    return special.softmax(logits, axis=1)


def _scipy_logcdf(pi, mu, sigma, t):
    return special.logsumexp(np.log(pi) + stats.norm.logcdf(t, mu, sigma))


def _scipy_logsf(pi, mu, sigma, t):
    return special.logsumexp(np.log(pi) + stats.norm.logsf(t, mu, sigma))


def _brentq_quantile(pi, mu, sigma, q):
    """The reference root, by brentq on the log CDF (log survival above the median)."""
    if q <= 0.5:
        f = lambda t: _scipy_logcdf(pi, mu, sigma, t) - math.log(q)  # noqa: E731
    else:
        f = lambda t: math.log1p(-q) - _scipy_logsf(pi, mu, sigma, t)  # noqa: E731
    z = stats.norm.ppf(q)
    lo, hi = (mu + sigma * z).min(), (mu + sigma * z).max()
    width = hi - lo + sigma.max()
    while f(lo) > 0:
        lo -= width
    while f(hi) < 0:
        hi += width
    return optimize.brentq(f, lo, hi, xtol=1e-300, rtol=1e-15, maxiter=2000)


# ----------------------------------------------------------------------- CDF


@pytest.mark.parametrize("kind", ["random", "degenerate", "separated"])
def test_cdf_matches_scipy(kind):
    logits, mu, ls = hard_mixtures(kind)
    rng = np.random.default_rng(1)
    y = mu[np.arange(12), rng.integers(0, 4, 12)] + rng.normal(0, 2, (12, 1))
    pi, sigma = _pi(logits), np.exp(ls[..., 0])
    want = (pi * stats.norm.cdf(y, mu[..., 0], sigma)).sum(axis=1)
    want_sf = (pi * stats.norm.sf(y, mu[..., 0], sigma)).sum(axis=1)
    np.testing.assert_allclose(npmdn.mixture_cdf(logits, mu, ls, y), want, rtol=1e-13)
    np.testing.assert_allclose(distribution.sf(logits, mu, ls, y)[:, 0], want_sf, rtol=1e-13)
    np.testing.assert_allclose(distribution.log_cdf(logits, mu, ls, y)[:, 0], np.log(want),
                               rtol=1e-13, atol=1e-15)


def test_cdf_deep_tails_keep_relative_accuracy():
    logits = np.zeros((1, 2))
    mu = np.array([[[0.0], [1.0]]])
    ls = np.zeros((1, 2, 1))
    y = np.array([[-30.0]])
    want = 0.5 * (stats.norm.cdf(-30.0) + stats.norm.cdf(-31.0))
    np.testing.assert_allclose(npmdn.mixture_cdf(logits, mu, ls, y), [want], rtol=1e-12)
    np.testing.assert_allclose(distribution.sf(logits, mu, ls, -y)[0, 0],
                               0.5 * (stats.norm.sf(30.0) + stats.norm.sf(29.0)), rtol=1e-12)
    # far beyond where the CDF underflows, its log is still finite and right
    tails = [stats.norm.logcdf(-1e3), stats.norm.logcdf(-1001.0)]
    want_log = special.logsumexp(tails) + math.log(0.5)
    got = distribution.log_cdf(logits, mu, ls, np.array([[-1e3]]))[0, 0]
    assert math.isclose(got, want_log, rel_tol=1e-13)


def test_cdf_is_a_probability_even_when_the_weights_round_above_one():
    # softmax weights sum to 1 +- a few ulps; far right of every component F is their sum
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1, (1000, 7))
    mu = rng.normal(size=(1000, 7, 1))
    ls = np.zeros((1000, 7, 1))
    assert np.any(special.softmax(logits, axis=1).sum(axis=1) > 1)  # the case exists
    far = np.full(1000, 1e3)
    assert np.all(npmdn.mixture_cdf(logits, mu, ls, far) <= 1.0)
    assert np.all(distribution.sf(logits, mu, ls, -far[:, None]) <= 1.0)
    assert np.all(distribution.log_cdf(logits, mu, ls, far[:, None]) <= 0.0)
    assert npmdn.metrics.calibration(logits, mu, ls, far)["coverage_95"] == 0.0


# ------------------------------------------------------------------ quantiles


@pytest.mark.parametrize("kind", ["random", "degenerate", "separated"])
def test_quantile_matches_brentq(kind):
    logits, mu, ls = hard_mixtures(kind, n=10)
    got = npmdn.mixture_quantile(logits, mu, ls, LEVELS)
    assert got.shape == (10, LEVELS.size)
    pi, sigma = _pi(logits), np.exp(ls[..., 0])
    worst = 0.0
    for i in range(10):
        for j, q in enumerate(LEVELS):
            want = _brentq_quantile(pi[i], mu[i, :, 0], sigma[i], q)
            err = abs(got[i, j] - want) / max(abs(want), sigma[i].min())
            worst = max(worst, err)
    # the issue asks for 1e-6 relative; we measure about 1e-13 (see the report)
    assert worst < 1e-10, worst


@pytest.mark.parametrize("kind", ["random", "degenerate", "separated"])
def test_quantile_inverts_the_cdf(kind):
    logits, mu, ls = hard_mixtures(kind, n=40, seed=3)
    rng = np.random.default_rng(4)
    q = np.sort(rng.uniform(0.001, 0.999, 25))
    y = npmdn.mixture_quantile(logits, mu, ls, q)
    assert np.all(np.diff(y, axis=1) >= 0)  # monotone in q
    pi, sigma = _pi(logits), np.exp(ls[..., 0])
    for j in range(q.size):
        f = (pi * stats.norm.cdf(y[:, j : j + 1], mu[..., 0], sigma)).sum(axis=1)
        # backward error: where F is steep (sigma 1e-8) an rtol step in y moves F a lot
        dens = (pi * stats.norm.pdf(y[:, j : j + 1], mu[..., 0], sigma)).sum(axis=1)
        slack = 1e-11 * dens * (np.abs(y[:, j]) + sigma.min(axis=1))
        assert np.all(np.abs(f - q[j]) <= 1e-12 + slack)


def test_quantile_single_component_is_the_normal_quantile(rng):
    logits, mu, ls, _ = random_mixture(rng, 30, 1, 1, 1)
    q = np.array([1e-300, 1e-5, 0.2, 0.5, 0.9, 1 - 1e-16])
    got = npmdn.mixture_quantile(logits, mu, ls, q)
    want = mu[:, 0] + np.exp(ls[:, 0]) * special.ndtri(q)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_quantile_marginals_in_several_dimensions(rng):
    logits, mu, ls, _ = random_mixture(rng, 9, 3, 3, 3)
    q = [0.1, 0.5, 0.95]
    got = npmdn.mixture_quantile(logits, mu, ls, q)
    assert got.shape == (9, 3, 3)
    for d in range(3):
        one = npmdn.mixture_quantile(logits, mu[..., d : d + 1], ls[..., d : d + 1], q)
        np.testing.assert_array_equal(got[..., d], one)
    # isotropic scales act like the same scale repeated in every dimension
    iso = npmdn.mixture_quantile(logits, mu, ls[..., :1], q)
    tied = np.repeat(ls[..., :1], 3, -1)
    np.testing.assert_array_equal(iso, npmdn.mixture_quantile(logits, mu, tied, q))
    # a scalar level drops the level axis; cdf of the quantile gives the level back
    med = npmdn.mixture_quantile(logits, mu, ls, 0.5)
    assert med.shape == (9, 3)
    np.testing.assert_allclose(npmdn.mixture_cdf(logits, mu, ls, med), 0.5, rtol=1e-12)


def test_interval_is_the_pair_of_central_quantiles(rng):
    logits, mu, ls, _ = random_mixture(rng, 7, 4, 1, 1)
    lo, hi = npmdn.mixture_interval(logits, mu, ls, 0.9)
    q = npmdn.mixture_quantile(logits, mu, ls, [0.05, 0.95])
    np.testing.assert_allclose(lo, q[:, 0], rtol=1e-12)
    np.testing.assert_allclose(hi, q[:, 1], rtol=1e-12)
    los, his = npmdn.mixture_interval(logits, mu, ls, [0.5, 0.9])
    assert los.shape == his.shape == (7, 2)
    np.testing.assert_allclose(los[:, 1], lo, rtol=1e-12)
    f = npmdn.mixture_cdf
    np.testing.assert_allclose(f(logits, mu, ls, his[:, 0]) - f(logits, mu, ls, los[:, 0]), 0.5,
                               rtol=1e-11)


def test_float32_parameters_give_float64_results_of_the_same_mixture(rng):
    args = [a.astype(np.float32) for a in random_mixture(rng, 6, 3, 1, 1)[:3]]
    got = npmdn.mixture_quantile(*args, [0.1, 0.7])
    assert got.dtype == np.float64
    want = npmdn.mixture_quantile(*(a.astype(np.float64) for a in args), [0.1, 0.7])
    np.testing.assert_array_equal(got, want)


def _close_to_root(got, pi, mu, sigma, q):
    """The documented accuracy: F(y) = q to a relative 1e-11 (1 - F against 1 - q
    above the median) or y within 8 ulps of the root (brentq's, itself a few ulps,
    found on the problem scaled by a power of two to O(1): SciPy's (t - mu) / sigma
    loses its precision where sigma is subnormal)."""
    e = math.frexp(max(np.abs(mu).max(), sigma.max()))[1]
    want = math.ldexp(_brentq_quantile(pi, np.ldexp(mu, -e), np.ldexp(sigma, -e), q), e)
    ulps = abs(got - want) / np.spacing(max(abs(want), 1e-300))
    with np.errstate(over="ignore"):  # SciPy's pdf at subnormal sigmas
        dens = (pi * stats.norm.pdf(want, mu, sigma)).sum()
    return ulps <= 8 or abs(got - want) * dens <= 1e-11 * min(q, 1 - q), (got, want)


def test_quantile_brackets_that_span_many_binades_converge():
    """Issue 11, item 8: means 0 and 1e80 gave Q(0.25) = 1.01e19 (the answer is 0);
    sigmas 1e61 and 1.6 gave Q(0.3) = -2.81 (CDF 0.270; the answer is -2.05). Both
    ran out of iterations halving a bracket 1e80 wide."""
    logits = np.zeros((1, 2))
    q1 = npmdn.mixture_quantile(logits, np.array([[[0.0], [1e80]]]), np.zeros((1, 2, 1)), 0.25)
    assert abs(q1[0]) <= 1e-12, q1
    ls = np.log(np.array([[[1e61], [1.6]]]))
    q2 = npmdn.mixture_quantile(logits, np.zeros((1, 2, 1)), ls, 0.3)
    ok, pair = _close_to_root(q2[0], np.full(2, 0.5), np.zeros(2), np.exp(ls[0, :, 0]), 0.3)
    assert ok, pair
    np.testing.assert_allclose(npmdn.mixture_cdf(logits, np.zeros((1, 2, 1)), ls, q2), 0.3,
                               rtol=1e-12)


def _needles(n, seed=1):
    """Rows whose sigmas are 1e-16..1e-12 of their means: the old tolerance of 1e-12 |y|
    was wider than the distribution itself."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (n, 3))
    scale = 10 ** rng.uniform(0, 12, (n, 1, 1))
    mu = scale * (1 + rng.normal(0, 10 ** rng.uniform(-14, -9, (n, 1, 1)), (n, 3, 1)))
    ls = np.log(scale * 10 ** rng.uniform(-16, -12, (n, 3, 1)))
    return logits, mu, ls


def test_quantiles_of_needles_are_monotone_and_intervals_ordered():
    """Item 8: with sigma < 1e-12 |mu| the quantiles were not monotone in q and
    mixture_interval gave lower > upper (about 1 interval in 8 of these rows)."""
    logits, mu, ls = _needles(500)
    lo, hi = npmdn.mixture_interval(logits, mu, ls, [1e-3, 0.01, 0.05, 0.1])
    assert np.all(lo <= hi), int((lo > hi).sum())
    q = np.linspace(0.001, 0.999, 41)
    y = npmdn.mixture_quantile(logits, mu, ls, q[::-1])[:, ::-1]  # any order of the levels
    assert np.all(np.diff(y, axis=1) >= 0)
    pi, sigma = _pi(logits), np.exp(ls[..., 0])
    for i in range(0, 500, 25):
        for j in (0, 7, 20, 33, 40):
            ok, pair = _close_to_root(y[i, j], pi[i], mu[i, :, 0], sigma[i], q[j])
            assert ok, (i, q[j], pair)


@pytest.mark.parametrize("spread", [1e-300, 1e-8, 1e30, 1e150, 1e300])
def test_quantile_matches_brentq_at_extreme_spreads(spread):
    """Components 1e-300 to 1e300 apart, sigmas from 1e-12 to 1 of the spread."""
    rng = np.random.default_rng(7)
    n, k = 8, 3
    logits = rng.normal(0, 2, (n, k))
    mu = rng.normal(0, 1, (n, k, 1)) * spread
    ls = np.log(spread) + rng.uniform(np.log(1e-12), 0, (n, k, 1))
    got = npmdn.mixture_quantile(logits, mu, ls, LEVELS)
    pi, sigma = _pi(logits), np.exp(ls[..., 0])
    for i in range(n):
        for j, q in enumerate(LEVELS):
            ok, pair = _close_to_root(got[i, j], pi[i], mu[i, :, 0], sigma[i], q)
            assert ok, (i, q, pair)


# ----------------------------------------------------------------------- CRPS


def _crps_quad(pi, mu, sigma, y):
    """``int (F(t) - 1{t >= y})^2 dt`` by adaptive quadrature, split at y and at every
    component's mean and +-12 sigma, so each piece is smooth and resolved."""
    cdf = lambda t: float(np.sum(pi * special.ndtr((t - mu) / sigma)))  # noqa: E731
    sf = lambda t: float(np.sum(pi * special.ndtr((mu - t) / sigma)))  # noqa: E731
    cuts = np.concatenate([mu, mu - 12 * sigma, mu + 12 * sigma, [y]])
    lo, hi = cuts.min() - 30 * sigma.max(), cuts.max() + 30 * sigma.max()
    cuts = np.unique(np.concatenate([cuts, [lo, hi]]))
    total = 0.0
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        f = (lambda t: cdf(t) ** 2) if b <= y else (lambda t: sf(t) ** 2)
        total += integrate.quad(f, a, b, epsabs=0, epsrel=1e-11, limit=400)[0]
    return total


# quad flags roundoff on the flat stretches between far-apart components; the pieces
# still agree with the closed form to 1e-9, which is what is asserted
@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("kind", ["random", "degenerate", "separated"])
def test_crps_matches_quadrature(kind):
    logits, mu, ls = hard_mixtures(kind, n=8, seed=5)
    rng = np.random.default_rng(6)
    y = mu[np.arange(8), rng.integers(0, 4, 8)] + rng.normal(0, 2, (8, 1))
    got = npmdn.metrics.crps(logits, mu, ls, y)
    assert got.shape == (8,)
    pi, sigma = _pi(logits), np.exp(ls[..., 0])
    want = np.array([_crps_quad(pi[i], mu[i, :, 0], sigma[i], y[i, 0]) for i in range(8)])
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_crps_matches_monte_carlo():
    rng = np.random.default_rng(7)
    logits, mu, ls = hard_mixtures("random", n=4, seed=8)
    y = rng.normal(0, 3, (4, 1))
    got = npmdn.metrics.crps(logits, mu, ls, y)
    x = npmdn.mixture_sample(logits, mu, ls, 200_000, seed=9)[..., 0]  # [4, J]
    x2 = npmdn.mixture_sample(logits, mu, ls, 200_000, seed=10)[..., 0]
    terms = np.abs(x - y) - 0.5 * np.abs(x - x2)  # unbiased for E|X-y| - E|X-X'|/2
    mc, se = terms.mean(axis=1), terms.std(axis=1) / math.sqrt(x.shape[1])
    assert np.all(np.abs(got - mc) < 4 * se), (got, mc, se)


def test_crps_single_gaussian_closed_form_and_point_mass(rng):
    mu = rng.normal(0, 2, (20, 1, 1))
    sigma = np.exp(rng.normal(0, 1, (20, 1, 1)))
    y = rng.normal(0, 3, (20, 1))
    z = (y[:, 0] - mu[:, 0, 0]) / sigma[:, 0, 0]
    # Gneiting et al. (2005): sigma (z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi))
    want = sigma[:, 0, 0] * (z * (2 * special.ndtr(z) - 1) + 2 * stats.norm.pdf(z)
                             - 1 / math.sqrt(math.pi))
    got = npmdn.metrics.crps(np.zeros((20, 1)), mu, np.log(sigma), y)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # a point mass scores the absolute error
    got0 = npmdn.metrics.crps(np.zeros((20, 1)), mu, np.full((20, 1, 1), -400.0), y)
    np.testing.assert_allclose(got0, np.abs(y[:, 0] - mu[:, 0, 0]), rtol=1e-14)


def test_crps_marginals_in_several_dimensions(rng):
    logits, mu, ls, y = random_mixture(rng, 5, 3, 2, 1)
    got = npmdn.metrics.crps(logits, mu, ls, y)
    assert got.shape == (5, 2)
    for d in range(2):
        np.testing.assert_allclose(got[:, d], npmdn.metrics.crps(logits, mu[..., d : d + 1], ls,
                                                                 y[:, d : d + 1]), rtol=1e-14)


# ---------------------------------------------------------------------- modes


def _grid_modes_1d(pi, mu, sigma, n=100_001):
    """Local maxima of the density on a dense grid, each refined by a parabola
    through the grid maximum and its neighbours; with their prominence."""
    lo, hi = (mu - 5 * sigma).min(), (mu + 5 * sigma).max()
    t = np.linspace(lo, hi, n)
    h = t[1] - t[0]
    lp = special.logsumexp(np.log(pi) + stats.norm.logpdf(t[:, None], mu, sigma), axis=1)
    i = np.nonzero((lp[1:-1] > lp[:-2]) & (lp[1:-1] >= lp[2:]))[0] + 1
    a, b, c = lp[i - 1], lp[i], lp[i + 1]
    x = t[i] + 0.5 * h * (a - c) / (a - 2 * b + c)
    # prominence: how far the density drops before reaching higher ground, either side
    prom = []
    for j in i:
        left = lp[:j][::-1]
        right = lp[j + 1 :]
        drops = []
        for side in (left, right):
            higher = np.nonzero(side > lp[j])[0]
            seg = side[: higher[0]] if higher.size else side
            drops.append(lp[j] - seg.min() if seg.size else np.inf)
        prom.append(min(drops))
    return x, lp[i], np.array(prom), h


def test_modes_match_grid_search_1d():
    rng = np.random.default_rng(11)
    n_checked = n_multi = 0
    worst = 0.0
    for _ in range(40):
        k = int(rng.integers(2, 6))
        logits = rng.normal(0, 1, (1, k))
        mu = rng.uniform(-6, 6, (1, k, 1))
        ls = rng.normal(-0.3, 0.5, (1, k, 1))
        pi, sigma = _pi(logits)[0], np.exp(ls[0, :, 0])
        gx, glp, prom, h = _grid_modes_1d(pi, mu[0, :, 0], sigma)
        if prom.min() < 1e-3:  # a barely-there bump: a grid cannot tell it from a shoulder
            continue
        m = npmdn.mixture_modes(logits, mu, ls)
        c = int(m.count[0])
        assert c == gx.size, (gx, m.locations[0, :c, 0])
        order = np.argsort(-glp)
        err = np.abs(m.locations[0, :c, 0] - gx[order])
        worst = max(worst, err.max() / h)
        assert np.all(err < 1e-2 * h), err / h
        # the exact maximum is at least as high as the best grid point, and barely higher
        gap = m.log_density[0, :c] - glp[order]
        assert np.all(gap >= -1e-12) and np.all(gap < 1e-6), gap
        assert np.all(np.diff(m.log_density[0, :c]) <= 0)
        assert np.all(np.isnan(m.locations[0, c:])) and np.all(m.log_density[0, c:] == -np.inf)
        n_checked += 1
        n_multi += c > 1
    assert n_checked >= 25 and n_multi >= 10, (n_checked, n_multi)
    print(f'worst mode error {worst:.2e} grid steps; checked {n_checked}, multimodal {n_multi}')


def _grid_modes_2d(logits, mu, ls, n=801):
    pi = _pi(logits)[0]
    sig = np.exp(ls[0]) * np.ones_like(mu[0])
    lo = (mu[0] - 4 * sig).min(axis=0)
    hi = (mu[0] + 4 * sig).max(axis=0)
    t0, t1 = np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n)
    g = np.stack(np.meshgrid(t0, t1, indexing="ij"), axis=-1)
    comp = [stats.multivariate_normal(mu[0, k], np.diag(sig[k] ** 2)).logpdf(g)
            for k in range(len(pi))]
    lp = special.logsumexp(np.log(pi)[:, None, None] + np.array(comp), axis=0)
    inner = lp[1:-1, 1:-1]
    is_max = np.ones_like(inner, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                is_max &= inner > lp[1 + di : n - 1 + di, 1 + dj : n - 1 + dj]
    i, j = np.nonzero(is_max)
    return np.stack([t0[i + 1], t1[j + 1]], axis=1), inner[i, j], (t0[1] - t0[0], t1[1] - t1[0])


@pytest.mark.parametrize("s", [2, 1])
def test_modes_match_grid_search_2d(s):
    rng = np.random.default_rng(12 + s)
    n_multi = 0
    for _ in range(6):
        k = 4
        logits = rng.normal(0, 0.5, (1, k))
        mu = rng.uniform(-5, 5, (1, k, 2))
        ls = rng.normal(0, 0.3, (1, k, s))
        gx, glp, h = _grid_modes_2d(logits, mu, ls)
        m = npmdn.mixture_modes(logits, mu, ls)
        c = int(m.count[0])
        assert c == len(gx), (gx, m.locations[0, :c])
        for x, lp in zip(gx, glp, strict=True):
            dist = np.abs(m.locations[0, :c] - x) / h
            hit = np.nonzero(dist.max(axis=1) <= 1.0)[0]  # within one grid cell
            assert hit.size == 1, (x, m.locations[0, :c])
            assert m.log_density[0, hit[0]] >= lp - 1e-12  # the exact mode is at least as high
            assert m.log_density[0, hit[0]] - lp < 1e-3
        n_multi += c > 1
    assert n_multi >= 3


def test_modes_with_a_needle_on_a_broad_hump():
    # sigma 1e-8 next to sigma 1: the needle is a mode of its own, far higher than the hump
    logits = np.log(np.array([[0.3, 0.7]]))
    mu = np.array([[[0.5], [0.0]]])
    ls = np.log(np.array([[[1e-8], [1.0]]]))
    m = npmdn.mixture_modes(logits, mu, ls)
    assert int(m.count[0]) == 2
    # the needle's mode moves off 0.5 by sigma^2 times the hump's log-slope (~1e-16)
    assert abs(m.locations[0, 0, 0] - 0.5) < 1e-12
    # the hump's mode sits at 0, pulled toward the needle by a negligible amount
    assert abs(m.locations[0, 1, 0]) < 1e-9
    want = math.log(0.3 / (1e-8 * math.sqrt(2 * math.pi)) + 0.7 * stats.norm.pdf(0.5))
    assert math.isclose(m.log_density[0, 0], want, rel_tol=1e-12)


def test_modes_merge_and_far_apart_components():
    # two equal components 2 sigma apart make one flat-topped mode at 0
    logits = np.zeros((3, 2))
    mu = np.array([[[-1.0], [1.0]], [[-1e6], [1e6]], [[0.0], [0.0]]])
    ls = np.zeros((3, 2, 1))
    ls[2, 1] = math.log(3.0)
    m = npmdn.mixture_modes(logits, mu, ls)
    np.testing.assert_array_equal(m.count, [1, 2, 1])
    # the top is quartic: log p is flat to 1e-20 within 1e-5 of 0
    assert abs(m.locations[0, 0, 0]) < 1e-4
    np.testing.assert_allclose(np.sort(m.locations[1, :, 0]), [-1e6, 1e6], rtol=1e-15)
    assert m.locations[2, 0, 0] == 0.0


def test_modes_best_is_the_highest_and_densities_are_densities(rng):
    logits, mu, ls, _ = random_mixture(rng, 20, 5, 2, 2)
    m = npmdn.mixture_modes(logits, mu, ls)
    best = m.best()
    np.testing.assert_allclose(mixture.log_prob(logits, mu, ls, best), m.log_density[:, 0],
                               rtol=1e-12)
    np.testing.assert_allclose(m.density, np.exp(m.log_density))
    # every mode is at least as high as every component mean's own density
    at_means = np.stack([mixture.log_prob(logits, mu, ls, mu[:, k]) for k in range(5)], 1)
    assert np.all(m.log_density[:, 0] >= at_means.max(axis=1) - 1e-12)


def _assert_local_maxima(logits, mu, ls, m):
    """Every reported mode: its log density is log p there, and log p is no higher a
    thousandth of the row's smallest sigma away along each axis (a step that small
    cannot reach another component's rise)."""
    for i in range(len(m.count)):
        h = 1e-3 * math.exp(ls[i].min())
        row = (logits[i:i + 1], mu[i:i + 1], ls[i:i + 1])
        for j in range(int(m.count[i])):
            x = m.locations[i, j][None]
            lp = mixture.log_prob(*row, x)[0]
            assert math.isclose(m.log_density[i, j], lp, rel_tol=1e-12, abs_tol=1e-12), \
                (x, m.log_density[i, j], lp)
            for d in range(mu.shape[2]):
                for sign in (-1, 1):
                    y = x.copy()
                    y[0, d] += sign * h
                    assert mixture.log_prob(*row, y)[0] <= lp + 1e-13 * abs(lp), (i, x, y)


def test_modes_are_ascended_to_true_maxima():
    """Issue 11, item 9: a start whose first step was small in its own (broad) metric
    stopped one step later at 10, reported as a mode with the log density of the
    start (-32.0; the true value at 10 is -9.78, and 10 is not a mode)."""
    logits = np.zeros((1, 3))
    mu = np.array([[[10.0], [100.0], [0.0]]])
    ls = np.array([[[30.0], [43.0], [1.0]]])
    m = npmdn.mixture_modes(logits, mu, ls)
    t = np.linspace(-50, 150, 200_001)
    lp = mixture.log_prob(np.zeros((t.size, 3)), np.broadcast_to(mu, (t.size, 3, 1)),
                          np.broadcast_to(ls, (t.size, 3, 1)), t[:, None])
    # log p rises up to 0 and falls after it (to rounding, where the broad components
    # make it flat): one mode, at the narrow component
    assert np.all(np.diff(lp[t <= 0]) >= -1e-13) and np.all(np.diff(lp[t >= 0]) <= 1e-13)
    assert int(m.count[0]) == 1, m
    assert abs(m.locations[0, 0, 0]) < 1e-9
    assert math.isclose(m.log_density[0, 0], lp[t == 0][0], rel_tol=1e-12)
    _assert_local_maxima(logits, mu, ls, m)


def test_modes_of_broad_and_narrow_components_are_local_maxima():
    """Components of sigma e^-2 to e^40 mixed: every mode reported is a local maximum
    with its own density."""
    rng = np.random.default_rng(21)
    n, k = 30, 4
    logits = rng.normal(0, 1, (n, k))
    mu = rng.uniform(-100, 100, (n, k, 2))
    ls = rng.uniform(-2, 40, (n, k, 2))
    for s in (2, 1):
        m = npmdn.mixture_modes(logits, mu, ls[..., :s])
        assert np.all(m.count >= 1)
        _assert_local_maxima(logits, mu, ls[..., :s], m)


@pytest.mark.parametrize("d", [1, 3])
def test_modes_of_needles_1e250_apart(d):
    """Item 9: means 1e250 apart with sigma 1e-30 gave NaN locations (D = 1) and
    LinAlgError (D = 3): z^2 overflows for the far component, whose responsibility
    is 0 and whose terms must count as 0, not 0 * inf."""
    logits = np.zeros((1, 2))
    mu = np.zeros((1, 2, d))
    mu[0, 1] = 1e250
    ls = np.full((1, 2, d), math.log(1e-30))
    m = npmdn.mixture_modes(logits, mu, ls)
    assert int(m.count[0]) == 2
    np.testing.assert_array_equal(np.sort(m.locations[0, :, 0]), [0.0, 1e250])
    want = math.log(0.5) - d * (math.log(1e-30) + 0.5 * math.log(2 * math.pi))
    np.testing.assert_allclose(m.log_density[0], [want, want], rtol=1e-14)


def test_modes_accept_any_finite_merge_tol():
    """merge_tol = 1e300 raised OverflowError (its square)."""
    logits, mu, ls = np.zeros((2, 2)), np.array([[[0.0], [0.5]], [[0.0], [9.0]]]), \
        np.zeros((2, 2, 1))
    wide = npmdn.mixture_modes(logits, mu, ls, merge_tol=1e300)
    np.testing.assert_array_equal(wide.count, [1, 2])  # merges only within a local sigma
    for a, b in zip(wide, npmdn.mixture_modes(logits, mu, ls, merge_tol=1e3), strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- covariance


@pytest.mark.parametrize("s", [3, 1])
def test_covariance_law_of_total_covariance_loops(rng, s):
    logits, mu, ls, _ = random_mixture(rng, 4, 3, 3, s)
    got = npmdn.mixture_covariance(logits, mu, ls)
    mean = npmdn.mixture_mean(logits, mu, ls)
    pi = _pi(logits)
    for i in range(4):
        m = sum(pi[i, k] * mu[i, k] for k in range(3))
        cov = np.zeros((3, 3))
        for k in range(3):
            var = np.exp(2 * ls[i, k]) * np.ones(3)  # isotropic: one sigma for all D
            dev = mu[i, k] - m
            cov += pi[i, k] * (np.diag(var) + np.outer(dev, dev))
        np.testing.assert_allclose(mean[i], m, rtol=1e-13)
        np.testing.assert_allclose(got[i], cov, rtol=1e-12, atol=1e-14)
        assert np.all(np.linalg.eigvalsh(got[i]) > 0)
