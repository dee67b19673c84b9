"""The NumPy reference of the mixture math: against loops, finite differences,
PyTorch's logsumexp formulation (float64, hard inputs) and sampling statistics."""


import numpy as np
import pytest
from cases import hard_inputs as _hard_inputs
from cases import random_mixture
from naive import nll_grad as naive_nll_grad

from npmdn import mixture

SHAPES = [(1, 1, 1, 1), (7, 3, 1, 1), (6, 4, 3, 3), (6, 4, 3, 1), (5, 1, 2, 2), (3, 64, 8, 8)]


@pytest.mark.parametrize("n,k,d,s", SHAPES)
def test_nll_grad_matches_loops(rng, n, k, d, s):
    args = random_mixture(rng, n, k, d, s)
    got = mixture.nll_grad(*args)
    want = naive_nll_grad(*args)
    for name, g, w in zip(("nll", "d_logits", "d_mu", "d_log_sigma"), got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(mixture.log_prob(*args), -want[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n,k,d,s", SHAPES[1:5])
def test_gradient_finite_differences(rng, n, k, d, s):
    args = [a.copy() for a in random_mixture(rng, n, k, d, s)]
    _, *grads = mixture.nll_grad(*args)
    h = 1e-6
    for which in range(3):
        p = args[which]
        fd = np.empty_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            up = mixture.log_prob(*args)
            p[idx] = old - h
            dn = mixture.log_prob(*args)
            p[idx] = old
            fd[idx] = -(up - dn)[idx[0]] / (2 * h)
        np.testing.assert_allclose(grads[which], fd, rtol=1e-6, atol=1e-8)


def test_isotropic_equals_diagonal_with_tied_scales(rng):
    logits, mu, ls, y = random_mixture(rng, 9, 4, 3, 1)
    nll_i, dl_i, dm_i, ds_i = mixture.nll_grad(logits, mu, ls, y)
    nll_d, dl_d, dm_d, ds_d = mixture.nll_grad(logits, mu, np.repeat(ls, 3, axis=2), y)
    np.testing.assert_allclose(nll_i, nll_d, rtol=1e-13)
    np.testing.assert_allclose(dm_i, dm_d, rtol=1e-12)
    # the tied scale's gradient is the sum of the untied ones (chain rule)
    np.testing.assert_allclose(ds_i[..., 0], ds_d.sum(-1), rtol=1e-12, atol=1e-14)


def _torch_reference(logits, mu, log_sigma, y):
    torch = pytest.importorskip("torch")
    t = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (logits, mu, log_sigma)]
    yt = torch.tensor(y, dtype=torch.float64)
    a, m, s = t
    sigma = torch.exp(s).expand_as(m)
    log_n = torch.distributions.Normal(m, sigma).log_prob(yt[:, None, :]).sum(-1)
    nll = -torch.logsumexp(torch.log_softmax(a, -1) + log_n, dim=-1)
    nll.sum().backward()
    return [nll.detach().numpy()] + [v.grad.numpy() for v in t]


@pytest.mark.parametrize("cov", ["diagonal", "isotropic"])
def test_hard_inputs_match_torch_without_nan(rng, cov):
    args = _hard_inputs(rng, cov)
    got = mixture.nll_grad(*args)
    want = _torch_reference(*args)
    for name, g, w in zip(("nll", "d_logits", "d_mu", "d_log_sigma"), got, want):
        assert np.isfinite(g).all(), name
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-300, err_msg=name)
    # the naive exp-then-log formulation underflows on these rows: ours must not
    assert np.all(got[0] > 1e4)


@pytest.mark.parametrize("cov", ["diagonal", "isotropic"])
def test_random_inputs_match_torch(rng, cov):
    args = random_mixture(rng, 50, 6, 3, 3 if cov == "diagonal" else 1)
    for g, w in zip(mixture.nll_grad(*args), _torch_reference(*args)):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-13)


def test_float32_stays_float32_and_close(rng):
    args = random_mixture(rng, 40, 5, 2, 2)
    got32 = mixture.nll_grad(*(a.astype(np.float32) for a in args))
    got64 = mixture.nll_grad(*args)
    for g32, g64 in zip(got32, got64):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=2e-5, atol=2e-5)


def test_out_buffers_are_written_through_views(rng):
    logits, mu, ls, y = random_mixture(rng, 8, 3, 2, 2)
    head = np.concatenate([logits, mu.reshape(8, -1), ls.reshape(8, -1)], axis=1)
    grad = np.zeros_like(head)
    nll = np.zeros(8)
    views = (grad[:, :3], grad[:, 3:9].reshape(8, 3, 2), grad[:, 9:].reshape(8, 3, 2))
    mixture.nll_grad(head[:, :3], head[:, 3:9].reshape(8, 3, 2),
                     head[:, 9:].reshape(8, 3, 2), y, out=(nll, *views))
    want = mixture.nll_grad(logits, mu, ls, y)
    np.testing.assert_array_equal(nll, want[0])
    for v, w in zip(views, want[1:]):
        np.testing.assert_array_equal(v, w)


def test_moments_law_of_total_variance(rng):
    logits, mu, ls, _ = random_mixture(rng, 5, 4, 3, 3)
    pi = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = np.einsum("nk,nkd->nd", pi, mu)
    np.testing.assert_allclose(mixture.mean(logits, mu), m, rtol=1e-12)
    second = np.einsum("nk,nkd->nd", pi, mu**2 + np.exp(2 * ls))
    np.testing.assert_allclose(mixture.variance(logits, mu, ls), second - m**2, rtol=1e-10)
    cov = mixture.covariance(logits, mu, ls)
    np.testing.assert_allclose(np.diagonal(cov, axis1=1, axis2=2), second - m**2, rtol=1e-10)
    cross = np.einsum("nk,nkd,nke->nde", pi, mu, mu) - m[:, :, None] * m[:, None, :]
    off = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose(cov[:, off], cross[:, off], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype,c", [(np.float64, 1e16), (np.float32, 1e5), (np.float64, -1e300)])
def test_weights_and_moments_ignore_a_common_logit_offset(dtype, c):
    """The issue's row: logits [c, c] are equal weights, whatever c (item 4)."""
    logits = np.array([[c, c]], dtype)
    mu = np.array([[[0.0], [1.0]]], dtype)
    ls = np.zeros((1, 2, 1), dtype)
    pi, _, _ = mixture.params(logits, mu, ls)
    np.testing.assert_array_equal(pi, [[0.5, 0.5]])
    np.testing.assert_array_equal(mixture.weights(logits), [[0.5, 0.5]])
    np.testing.assert_array_equal(np.exp(mixture.log_softmax(logits)), [[0.5, 0.5]])
    np.testing.assert_allclose(mixture.mean(logits, mu), [[0.5]], rtol=1e-7)
    np.testing.assert_allclose(mixture.variance(logits, mu, ls), [[1.25]], rtol=1e-6)


@pytest.mark.parametrize("dtype,scale", [(np.float32, 1e20), (np.float32, 1e-25)] + [
    (np.float64, s) for s in (1e20, 1e-25, 1e200, 1e-200, 1e300)])
def test_moments_are_returned_wherever_they_are_representable(rng, scale, dtype):
    """Every moment of a mixture scaled by ``scale`` is the unscaled moment times
    ``scale`` (``scale^2`` for the second moments), computed in float64: finite
    wherever that fits (item 6: a float32 std of 7.7e19 came back inf)."""
    logits, mu, ls, _ = random_mixture(rng, 6, 4, 3, 3)
    mu_s, ls_s = (mu * scale).astype(dtype), (ls + np.log(scale)).astype(dtype)
    logits = logits.astype(dtype)
    mu, ls = mu_s.astype(np.float64) / scale, ls_s.astype(np.float64) - np.log(scale)
    m, v, c = (mixture.mean(logits, mu), mixture.variance(logits, mu, ls),
               mixture.covariance(logits, mu, ls))
    got_m, got_s = mixture.mean(logits, mu_s), mixture.std(logits, mu_s, ls_s)
    assert got_m.dtype == got_s.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(got_m, m * scale, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(got_s, np.sqrt(v) * scale, rtol=tol)
    for got, want in [(mixture.variance(logits, mu_s, ls_s), v),
                      (mixture.covariance(logits, mu_s, ls_s), c)]:
        assert got.dtype == np.float64
        if scale > 1e150:
            assert np.all(np.isinf(got[want > 1e-8])), "beyond float64: inf"
            continue
        if scale < 1e-150:
            continue  # below float64's range: 0 or subnormal
        np.testing.assert_allclose(got, want * scale**2, rtol=1e-12, atol=1e-12 * scale**2)
    covs = mixture.component_covariances(mu_s, ls_s)
    assert covs.dtype == np.float64 and covs.shape == (6, 4, 3, 3)
    if scale < 1e150:
        np.testing.assert_allclose(np.diagonal(covs, axis1=2, axis2=3),
                                   np.exp(2 * ls_s.astype(np.float64)), rtol=1e-14)


def test_equal_means_far_from_zero_have_the_components_variance():
    """Deviations are taken from the heaviest component's mean, so equal means of 1e300
    give exactly the within-component variance, not the mean's rounding error."""
    logits = np.array([[0.3, -1.0, 2.0]])
    mu = np.full((1, 3, 2), 1e300)
    ls = np.full((1, 3, 2), np.log(1e-200))
    np.testing.assert_array_equal(mixture.mean(logits, mu), 1e300)
    np.testing.assert_allclose(mixture.std(logits, mu, ls), np.exp(ls[:, 0]), rtol=1e-15)
    np.testing.assert_array_equal(mixture.covariance(logits, mu, ls), 0.0)  # 1e-400: 0


# ---------------------------------------------------------------- sampling


def _mixture_cdf_1d(pi, mu, sigma):
    from scipy.special import ndtr

    return lambda t: np.sum(pi * ndtr((np.asarray(t)[:, None] - mu) / sigma), axis=1)


@pytest.mark.parametrize("method", ["gumbel", "cumulative"])
def test_sampling_ks_against_mixture_cdf(method):
    stats = pytest.importorskip("scipy.stats")
    logits = np.log(np.array([[0.5, 0.3, 0.2]]))
    mu = np.array([[[-3.0], [0.5], [4.0]]])
    ls = np.log(np.array([[[0.7], [1.5], [0.4]]]))
    draws = mixture.sample(logits, mu, ls, 200_000, seed=11, method=method)[0, :, 0]
    cdf = _mixture_cdf_1d(np.exp(logits[0]), mu[0, :, 0], np.exp(ls[0, :, 0]))
    res = stats.kstest(draws, cdf)
    assert res.pvalue > 1e-3, res
    # and a wrong mixture is rejected, so the test has power
    wrong = _mixture_cdf_1d(np.array([0.45, 0.35, 0.2]), mu[0, :, 0], np.exp(ls[0, :, 0]))
    assert stats.kstest(draws, wrong).pvalue < 1e-6


@pytest.mark.parametrize("s", [3, 1])
@pytest.mark.parametrize("method", ["gumbel", "cumulative"])
def test_sampling_moments_multivariate(rng, method, s):
    logits, mu, ls, _ = random_mixture(rng, 3, 4, 3, s)
    x = mixture.sample(logits, mu, ls, 100_000, seed=5, method=method)
    assert x.shape == (3, 100_000, 3)
    m = mixture.mean(logits, mu)
    cov = mixture.covariance(logits, mu, ls)
    for i in range(3):
        se = np.sqrt(np.diag(cov[i]) / x.shape[1])
        assert np.all(np.abs(x[i].mean(0) - m[i]) < 5 * se)
        np.testing.assert_allclose(np.cov(x[i].T), cov[i], rtol=0.05, atol=0.05 * cov[i].max())


def test_component_frequencies_agree_between_methods(rng):
    logits = rng.normal(0, 1, (1, 6))
    pi = np.exp(logits[0]) / np.exp(logits[0]).sum()
    n = 100_000
    from npmdn import philox

    for method, words in (("gumbel", 6), ("cumulative", 1)):
        u = philox.choice_uniforms(3, np.arange(1), np.arange(n), words)
        k = mixture.choose_components(logits, u, method)[0]
        freq = np.bincount(k, minlength=6) / n
        assert np.all(np.abs(freq - pi) < 5 * np.sqrt(pi * (1 - pi) / n))


def test_sampling_independent_of_batch_split(rng):
    logits, mu, ls, _ = random_mixture(rng, 50, 5, 2, 2)
    whole = mixture.sample(logits, mu, ls, 4, seed=99)
    parts = [mixture.sample(logits[a:a + 7], mu[a:a + 7], ls[a:a + 7], 4, seed=99, row_offset=a)
             for a in range(0, 50, 7)]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
    # fewer draws are a prefix of more draws
    np.testing.assert_array_equal(mixture.sample(logits, mu, ls, 2, seed=99), whole[:, :2])
    assert not np.array_equal(mixture.sample(logits, mu, ls, 4, seed=98), whole)


def test_temperature_and_sigma_scale(rng):
    logits, mu, ls, _ = random_mixture(rng, 20, 5, 2, 2)
    top = np.argmax(logits, axis=1)
    for method in ("gumbel", "cumulative"):
        x = mixture.sample(logits, mu, ls, 3, seed=1, method=method, temperature=0.0,
                           sigma_scale=0.0)
        np.testing.assert_array_equal(x, np.repeat(mu[np.arange(20), top][:, None], 3, 1))
    # sigma_scale scales the noise around the same chosen components
    a = mixture.sample(logits, mu, ls, 3, seed=1, sigma_scale=1.0)
    b = mixture.sample(logits, mu, ls, 3, seed=1, sigma_scale=2.0)
    c = mixture.sample(logits, mu, ls, 3, seed=1, sigma_scale=0.0)
    np.testing.assert_allclose(b - c, 2 * (a - c), rtol=1e-12, atol=1e-12)
    # a high temperature flattens the weights
    w = mixture.weights(logits, 1e6)
    np.testing.assert_allclose(w, 0.2, atol=1e-5)


def test_float32_sampling_dtype(rng):
    args = [a.astype(np.float32) for a in random_mixture(rng, 4, 3, 2, 1)[:3]]
    assert mixture.sample(*args, 5, seed=0).dtype == np.float32
