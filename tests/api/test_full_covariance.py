"""covariance="full" through the public surface: the model (user units, training on
every backend, save and load, the estimator), npmdn.Mixture (its covariances,
marginals and conditionals against SciPy), and the raw-parameter functions."""

import numpy as np
import pytest
from cases import random_full, random_mixture

import npmdn
from npmdn import fullcov, mixture

stats = pytest.importorskip("scipy.stats")
special = pytest.importorskip("scipy.special")


def correlated(n=300, seed=0):
    """x [n, 2] and y [n, 3] with correlated outputs on very different scales."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    e = rng.normal(size=(n, 3))
    y = np.c_[x[:, 0] + e[:, 0], 0.8 * e[:, 0] + 0.3 * e[:, 1], x[:, 1] * e[:, 2]]
    return x, y * np.array([1e3, 1.0, 1e-2]) + np.array([5.0, -2.0, 0.0])


def full_model(backend="numpy", dtype="float64", seed=0, k=3):
    return npmdn.MDN(2, 3, k, hidden=(8,), covariance="full", backend=backend, dtype=dtype,
                     seed=seed)


# --------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------


def test_head_layout_and_config():
    m = full_model()
    assert m.scale_dim == 6 and m.head_size == 3 * (1 + 3 + 6)
    assert m.config["covariance"] == "full"
    assert npmdn.model.count_params(2, 3, 3, (8,), "full") == m.n_params
    logits, mu, ls = m._split(np.zeros((4, m.head_size)))
    assert logits.shape == (4, 3) and mu.shape == (4, 3, 3) and ls.shape == (4, 3, 6)


def test_zero_off_diagonal_weights_make_the_diagonal_model():
    """A full model whose off-diagonal outputs are 0 is the diagonal model with the same
    weights, in user units too (y_scale from 1e-2 to 1e3): densities, draws' law,
    moments and mixtures agree."""
    x, y = correlated()
    diag = npmdn.MDN(2, 3, 3, hidden=(8,), backend="numpy", dtype="float64", seed=0)
    diag.fit(x, y, epochs=2, verbose=False)
    full = full_model()
    for name in ("x_shift", "x_scale", "y_shift", "y_scale"):
        setattr(full, name, getattr(diag, name))
    k, d = 3, 3
    off, rows, width_d = diag.net.shapes[-1]
    params = np.zeros(full.n_params)
    params[:off] = diag.params[:off]  # the same trunk
    w_d = diag.params[off:off + rows * width_d].reshape(rows, width_d)
    b_d = diag.params[off + rows * width_d:]
    _, _, width_f = full.net.shapes[-1]
    cols = np.r_[np.arange(k + k * d), [k + k * d + c * 6 + i for c in range(k) for i in range(d)]]
    w_f = np.zeros((rows, width_f))
    b_f = np.zeros(width_f)
    w_f[:, cols], b_f[cols] = w_d, b_d
    params[off:] = np.r_[w_f.ravel(), b_f]
    full.set_params(params)
    np.testing.assert_allclose(full.log_prob(x, y), diag.log_prob(x, y), rtol=1e-13)
    lf, mf, sf = full.mixture_raw(x)
    ld, md, sd = diag.mixture_raw(x)
    np.testing.assert_array_equal(lf, ld)
    np.testing.assert_array_equal(mf, md)
    np.testing.assert_allclose(sf[..., :3], sd, rtol=1e-15)
    np.testing.assert_array_equal(sf[..., 3:], 0.0)
    np.testing.assert_allclose(full.predict_covariance(x), diag.predict_covariance(x), rtol=1e-12)
    np.testing.assert_allclose(full.predict_std(x), diag.predict_std(x), rtol=1e-13)
    np.testing.assert_allclose(full.cdf(x, y), diag.cdf(x, y), rtol=1e-12)


def test_log_prob_in_user_units_is_the_raw_mixture():
    """MDN.log_prob (standardized density minus the log-Jacobian) equals the density of
    mixture_raw's user-unit factors (U = U' diag(1 / y_scale)) at y."""
    x, y = correlated()
    m = full_model()
    m.fit(x, y, epochs=3, verbose=False)
    np.testing.assert_allclose(m.log_prob(x, y), npmdn.mixture_log_prob(*m.mixture_raw(x), y),
                               rtol=1e-12)
    assert np.isfinite(m.nll(x, y))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_fit_reduces_nll_on_every_cpu_backend(backend):
    x, y = correlated(600)
    m = full_model(backend, dtype="float32")
    before = m.nll(x, y)
    h = m.fit(x, y, epochs=8, verbose=False)
    assert h.train_nll[-1] < h.train_nll[0] and m.nll(x, y) < before


def test_numba_trains_full_factors_in_the_step_loop_like_numpy():
    """No fused epoch for full factors: the numba backend's step loop with its head kernel
    gives numpy's weights to rounding."""
    from npmdn._numba import train as nt

    x, y = correlated(256)
    a, b = full_model("numpy"), full_model("numba")
    assert nt.plan(b.net, (3, 3, 6), None, None, None, 1, 1, None) is None
    a.fit(x, y, epochs=3, batch_size=64, verbose=False)
    b.fit(x, y, epochs=3, batch_size=64, verbose=False)
    np.testing.assert_allclose(b.params, a.params, rtol=1e-9, atol=1e-11)


def test_save_load_and_pickle(tmp_path):
    import pickle

    x, y = correlated()
    m = full_model()
    m.fit(x, y, epochs=2, verbose=False)
    m.save(tmp_path / "m.npz")
    back = npmdn.load(tmp_path / "m.npz", backend="numba")
    assert back.covariance == "full" and back.scale_dim == 6
    np.testing.assert_allclose(back.log_prob(x, y), m.log_prob(x, y), rtol=1e-12)
    again = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(again.log_prob(x, y), m.log_prob(x, y))


def test_predictions_and_draws():
    x, y = correlated()
    m = full_model()
    m.fit(x, y, epochs=3, verbose=False)
    dist = m.distribution(x[:5])
    assert dist.covariance_type == "full" and dist.covariances.shape == (5, 3, 3, 3)
    pi, mu, cov = m.mixture(x[:5])
    np.testing.assert_array_equal(cov, dist.covariances)
    assert m.predict(x[:5], kind="mode").shape == (5, 3)
    draws = m.sample(x[:1], 60_000, seed=2)[0]
    want = m.predict_covariance(x[:1])[0]
    sd = np.sqrt(np.diag(want))
    assert np.abs((np.cov(draws.T) - want) / np.outer(sd, sd)).max() < 5 * np.sqrt(2 / 60_000)


def test_estimator_takes_full():
    from npmdn.sklearn import MDNRegressor

    x, y = correlated()
    est = MDNRegressor(n_components=2, hidden=(8,), covariance="full", epochs=2,
                       backend="numpy").fit(x, y)
    assert est.predict_distribution(x[:4]).covariance_type == "full"
    assert np.isfinite(est.score(x, y))


# --------------------------------------------------------------------------
# npmdn.Mixture and the raw-parameter functions
# --------------------------------------------------------------------------


def test_mixture_against_scipy(rng):
    """log_prob against scipy's multivariate_normal with Sigma = (U^T U)^-1; the marginal
    CDF against 1-D normals with sd sqrt(Sigma_dd); moments by the law of total covariance."""
    logits, mu, ls, y = random_full(rng, 4, 3, 3, cond=40.0)
    dist = npmdn.Mixture(logits, mu, ls)
    assert dist.covariance_type == "full"
    u = fullcov.factor(ls, 3)
    covs = np.linalg.inv(np.swapaxes(u, -1, -2) @ u)
    np.testing.assert_allclose(dist.covariances, covs, rtol=1e-11)
    w = dist.weights
    want = [special.logsumexp([np.log(w[n, k]) + stats.multivariate_normal.logpdf(
        y[n], mu[n, k], covs[n, k]) for k in range(3)]) for n in range(4)]
    np.testing.assert_allclose(dist.log_prob(y), want, rtol=1e-12)
    sd = np.sqrt(np.diagonal(covs, axis1=2, axis2=3))
    cdf = (w[..., None] * stats.norm.cdf(y[:, None, :], mu, sd)).sum(axis=1)
    np.testing.assert_allclose(dist.cdf(y), cdf, rtol=1e-12)
    q = dist.quantile(0.3)
    np.testing.assert_allclose(dist.cdf(q), 0.3, rtol=1e-10)
    assert dist.crps(y).shape == (4, 3) and np.all(dist.crps(y) > 0)


def test_marginal_against_the_covariance(rng):
    logits, mu, ls, _ = random_full(rng, 5, 3, 4, cond=100.0)
    dist = npmdn.Mixture(logits, mu, ls, backend="numba")
    for dims in ([3, 1], [0], [2, 0, 3], [0, 1, 2, 3]):
        part = dist.marginal(dims)
        assert part.covariance_type == "full" and part.dim == len(dims)
        assert part.backend == "numba"
        np.testing.assert_array_equal(part.params[0], logits)
        np.testing.assert_array_equal(part.means, mu[..., dims])
        np.testing.assert_allclose(part.covariances, dist.covariances[..., dims, :][..., dims],
                                   rtol=1e-11, atol=1e-14)
    y = rng.normal(size=(5, 4))
    # the marginal density integrates the others out: its CDF is the mixture's marginal CDF
    np.testing.assert_allclose(dist.marginal(2).cdf(y[:, 2]), dist.cdf(y)[:, 2], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_condition_against_the_gaussian_formulas(rng, dtype):
    """Each component's conditional N(mu_B + S_BA S_AA^-1 (a - mu_A), S_BB - S_BA S_AA^-1 S_AB)
    and weights pi_k N(a; mu_A, S_AA) normalised, from scipy and numpy.linalg."""
    logits, mu, ls, _ = random_full(rng, 4, 3, 4, dtype, cond=30.0)
    dims, rest = [2, 0], [1, 3]
    a = rng.normal(size=(4, 2))
    part = npmdn.Mixture(logits, mu, ls).condition(dims, a)
    assert part.dtype == dtype and part.dim == 2 and part.covariance_type == "full"
    covs = mixture.component_covariances(mu.astype(np.float64), ls.astype(np.float64))
    w = mixture.softmax(logits.astype(np.float64))
    tol = dict(rtol=1e-9) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    for n in range(4):
        log_w = []
        for k in range(3):
            s, m = covs[n, k], mu[n, k].astype(np.float64)
            s_aa, s_ba, s_bb = s[np.ix_(dims, dims)], s[np.ix_(rest, dims)], s[np.ix_(rest, rest)]
            log_w.append(np.log(w[n, k]) + stats.multivariate_normal.logpdf(a[n], m[dims], s_aa))
            np.testing.assert_allclose(part.means[n, k],
                                       m[rest] + s_ba @ np.linalg.solve(s_aa, a[n] - m[dims]),
                                       **tol)
            np.testing.assert_allclose(part.covariances[n, k],
                                       s_bb - s_ba @ np.linalg.solve(s_aa, s_ba.T), **tol)
        np.testing.assert_allclose(part.weights[n], np.exp(log_w - special.logsumexp(log_w)),
                                   **tol)


def test_condition_is_bayes_rule(rng):
    """p(y_B | y_A = a) p(y_A = a) = p(y): the conditional's density times the marginal's."""
    logits, mu, ls, y = random_full(rng, 6, 4, 3, cond=20.0)
    dist = npmdn.Mixture(logits, mu, ls)
    joint = dist.log_prob(y)
    got = dist.condition([1], y[:, 1]).log_prob(y[:, [0, 2]]) + dist.marginal([1]).log_prob(
        y[:, 1])
    np.testing.assert_allclose(got, joint, rtol=1e-12)


@pytest.mark.parametrize("d,s", [(3, 3), (3, 1)])
def test_diagonal_and_isotropic_subsets_keep_their_kind(rng, d, s):
    logits, mu, ls, y = random_mixture(rng, 5, 3, d, s)
    dist = npmdn.Mixture(logits, mu, ls)
    part = dist.marginal([2, 0])
    assert part.covariance_type == dist.covariance_type and part.params[2].shape[2] == (
        2 if s == d else 1)
    np.testing.assert_allclose(part.covariances, dist.covariances[..., [2, 0], :][..., [2, 0]])
    cond = dist.condition(1, y[:, 1])
    assert cond.covariance_type == dist.covariance_type
    np.testing.assert_array_equal(cond.means, mu[..., [0, 2]])
    got = cond.log_prob(y[:, [0, 2]]) + dist.marginal(1).log_prob(y[:, 1])
    np.testing.assert_allclose(got, dist.log_prob(y), rtol=1e-12)


def test_subset_errors(rng):
    logits, mu, ls, y = random_full(rng, 3, 2, 3)
    dist = npmdn.Mixture(logits, mu, ls)
    with pytest.raises(ValueError, match=r"dims must lie in \[0, 3\)"):
        dist.marginal([0, 3])
    with pytest.raises(ValueError, match="distinct"):
        dist.marginal([1, 1])
    with pytest.raises(ValueError, match="empty"):
        dist.marginal([])
    with pytest.raises(TypeError, match="must hold ints"):
        dist.marginal([0.5])
    with pytest.raises(ValueError, match="leave at least one"):
        dist.condition([0, 1, 2], y)
    with pytest.raises(ValueError, match=r"values must have shape \[N, D\] = \[3, 2\]"):
        dist.condition([0, 1], y)
    with pytest.raises(ValueError, match="values must be finite"):
        dist.condition([0], y[:, 0] * np.inf)


def test_min_sigma_is_refused_for_full_covariance():
    """The floor bounds a diagonal or isotropic component's scales; a full component's
    narrowest direction is not one of its packed scales, so the pair is refused."""
    with pytest.raises(ValueError, match="min_sigma .* not 'full'"):
        npmdn.MDN(2, 2, 3, covariance="full", min_sigma=0.1)
