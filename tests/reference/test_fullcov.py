"""The full-covariance reference (npmdn.fullcov through npmdn.mixture) against
independent truths: PyTorch's MultivariateNormal in float64 (values and every
gradient), central finite differences, the diagonal model it extends, and
moments of its own draws.

PyTorch is given the same factor two ways. ``precision_matrix = U^T U`` is
the direct route; on ill-conditioned covariances it squares the condition
number before torch's Cholesky, so the hard inputs use ``scale_tril``: with
``J`` the reversal of the coordinates, ``Sigma = U^-1 U^-T`` is
``J L L^T J`` for the lower-triangular ``L = J U^-1 J``, so
``MultivariateNormal(J mu, scale_tril=L).log_prob(J y)`` is the same density
with nothing squared (``U^-1`` by torch's triangular solve, differentiated by
autograd).
"""

import math

import numpy as np
import pytest
from cases import hard_full, random_full

from npmdn import fullcov, mixture

torch = pytest.importorskip("torch")
TD = torch.distributions


def torch_factor(ls, d):
    """U [N, K, D, D] from packed factors, differentiably."""
    n, k, _ = ls.shape
    rows, cols = np.triu_indices(d, 1)
    flat = torch.zeros(n, k, d * d, dtype=ls.dtype).index_add(
        -1, torch.tensor(rows * d + cols), ls[..., d:])
    return torch.diag_embed(torch.exp(-ls[..., :d])) + flat.reshape(n, k, d, d)


def torch_nll_grad(logits, mu, ls, y, route="scale_tril"):
    """PyTorch float64: NLL per row and the gradients of its sum."""
    d = mu.shape[-1]
    ta, tm, tl = (torch.tensor(np.asarray(v, np.float64), requires_grad=True)
                  for v in (logits, mu, ls))
    ty = torch.tensor(np.asarray(y, np.float64))
    u = torch_factor(tl, d)
    if route == "precision":
        comp = TD.MultivariateNormal(tm, precision_matrix=u.transpose(-1, -2) @ u)
        log_n = comp.log_prob(ty[:, None, :])
    else:
        eye = torch.eye(d, dtype=torch.float64).expand_as(u)
        u_inv = torch.linalg.solve_triangular(u, eye, upper=True)
        lower = u_inv.flip(-1, -2)  # J U^-1 J
        comp = TD.MultivariateNormal(tm.flip(-1), scale_tril=lower)
        log_n = comp.log_prob(ty.flip(-1)[:, None, :])
    nll = -torch.logsumexp(torch.log_softmax(ta, -1) + log_n, -1)
    nll.sum().backward()
    return nll.detach().numpy(), ta.grad.numpy(), tm.grad.numpy(), tl.grad.numpy()


def rel_err(got, want):
    """Largest difference relative to the largest entry of each row."""
    scale = np.abs(want).reshape(len(want), -1).max(axis=1)
    scale = scale.reshape((-1,) + (1,) * (want.ndim - 1)) + 1e-300
    return float(np.max(np.abs(got - want) / scale))


NAMES = ("nll", "d_logits", "d_mu", "d_log_sigma")


@pytest.mark.parametrize("route", ["precision", "scale_tril"])
@pytest.mark.parametrize("n,k,d", [(9, 1, 1), (9, 3, 2), (7, 4, 3), (6, 5, 5), (5, 3, 8),
                                   (4, 32, 8)])
def test_random_inputs_match_torch(rng, route, n, k, d):
    args = random_full(rng, n, k, d, cond=30.0)
    got = mixture.nll_grad(*args)
    want = torch_nll_grad(*args, route=route)
    for name, g, w in zip(NAMES, got, want, strict=True):
        assert rel_err(g, w) < 1e-11, (name, rel_err(g, w))


@pytest.mark.parametrize("d", [1, 2, 3, 5, 8])
def test_gradient_finite_differences(rng, d):
    """Central differences (h = 1e-6) of log_prob for every logit, mean and factor entry:
    within 1e-6 relative, or 1e-7 of the largest entry."""
    a, mu, ls, y = random_full(rng, 3, 3, d, cond=5.0)
    _, d_a, d_mu, d_ls = mixture.nll_grad(a, mu, ls, y)
    h = 1e-6
    for got, x, which in ((d_a, a, 0), (d_mu, mu, 1), (d_ls, ls, 2)):
        fd = np.empty_like(x)
        for idx in np.ndindex(x.shape):
            e = np.zeros_like(x)
            e[idx] = h
            up = [a, mu, ls]
            dn = [a, mu, ls]
            up[which], dn[which] = x + e, x - e
            fd[idx] = (mixture.log_prob(*dn, y).sum() - mixture.log_prob(*up, y).sum()) / (2 * h)
        # the rounding of the loss (~1e2) over 2h is ~1e-8: judged against the largest entry
        np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(fd).max()),
                                   err_msg=NAMES[which + 1])


def test_hard_inputs_match_torch_float64(rng):
    """Covariances of condition number 1e8, scales 1e-3 to 1e3, K = 32, D = 8, targets a
    hundred sigmas out: finite, and PyTorch's values and gradients to 1e-10."""
    args = hard_full(rng)
    got = mixture.nll_grad(*args)
    want = torch_nll_grad(*args)
    for name, g, w in zip(NAMES, got, want, strict=True):
        assert np.isfinite(g).all(), name
        assert rel_err(g, w) < 1e-10, (name, rel_err(g, w))
    assert np.all(got[0] > 1e3)  # far out, and finite
    np.testing.assert_allclose(mixture.log_prob(*args), -got[0], rtol=1e-14)


def test_hard_inputs_float32(rng):
    """The same in float32 with condition numbers up to 1e4: finite, and the NLL within
    1e-5 relative of PyTorch float64 on the same (float32) numbers; each gradient within
    2e-4 of its row's largest entry (float32 rounds t_k ~ 5e3 to ~3e-4 absolute, which
    can move a responsibility by as much; measured: 1e-5)."""
    args = hard_full(rng, np.float32)
    got = mixture.nll_grad(*args)
    want = torch_nll_grad(*(a.astype(np.float64) for a in args))
    for name, g in zip(NAMES, got, strict=True):
        assert g.dtype == np.float32 and np.isfinite(g).all(), name
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    for name, g, w in zip(NAMES[1:], got[1:], want[1:], strict=True):
        assert rel_err(g, w) < 2e-4, (name, rel_err(g, w))


def test_zero_off_diagonal_is_the_diagonal_model(rng):
    """U = diag(exp(-s)): the same NLL, mean and s gradients as the diagonal model with
    the same s; the off-diagonal gradient is r z_i z_j sigma_j."""
    a, mu, ls_d, y = (rng.normal(size=(6, 3)), rng.normal(size=(6, 3, 4)),
                      rng.normal(0, 0.5, (6, 3, 4)), rng.normal(size=(6, 4)))
    ls_f = np.concatenate([ls_d, np.zeros((6, 3, 6))], axis=-1)
    nll_f, da_f, dm_f, ds_f = mixture.nll_grad(a, mu, ls_f, y)
    nll_d, da_d, dm_d, ds_d = mixture.nll_grad(a, mu, ls_d, y)
    np.testing.assert_allclose(nll_f, nll_d, rtol=1e-14)
    np.testing.assert_allclose(da_f, da_d, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dm_f, dm_d, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(ds_f[..., :4], ds_d, rtol=1e-13, atol=1e-15)
    r = mixture.responsibilities(a, mu, ls_d, y)
    z = (y[:, None, :] - mu) * np.exp(-ls_d)
    rows, cols = np.triu_indices(4, 1)
    want = r[..., None] * z[..., rows] * z[..., cols] * np.exp(ls_d[..., cols])
    np.testing.assert_allclose(ds_f[..., 4:], want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mixture.covariance(a, mu, ls_f), mixture.covariance(a, mu, ls_d),
                               rtol=1e-14)


def test_packed_layout():
    """s first, then U_ij for i < j row by row; factor and pack undo each other."""
    d = 4
    want = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert [fullcov.off_index(i, j, d) for i, j in want] == list(range(4, 10))
    assert list(zip(*fullcov.pairs(d), strict=True)) == want
    ls = np.arange(10.0).reshape(1, 1, 10) / 10
    u = fullcov.factor(ls, d)[0, 0]
    assert u[1, 3] == ls[0, 0, fullcov.off_index(1, 3, d)] and u[3, 1] == 0
    np.testing.assert_allclose(np.diag(u), np.exp(-ls[0, 0, :4]))
    np.testing.assert_allclose(fullcov.pack(fullcov.factor(ls, d)), ls, rtol=1e-15)
    assert [fullcov.n_scales(v) for v in (1, 2, 3, 8)] == [1, 3, 6, 36]
    assert [mixture.covariance_kind(d, s) for d, s in ((1, 1), (2, 1), (2, 2), (2, 3))] == \
        ["diagonal", "isotropic", "diagonal", "full"]
    with pytest.raises(ValueError, match=r"1 \(isotropic\), D=3 \(diagonal\) or D\(D\+1\)/2=6"):
        mixture.covariance_kind(3, 4)


def test_zero_responsibility_gives_zero_gradient():
    """A collapsed full component far from y: r = 0 exactly, its gradient 0, not NaN."""
    a = np.array([[0.5, 0.1]])
    mu = np.array([[[0.0, 0.0], [30.0, -30.0]]])
    ls = np.array([[[0.0, 0.0, 0.3], [-400.0, -400.0, 1e200]]])
    y = np.array([[0.2, -0.1]])
    nll, da, dm, ds = mixture.nll_grad(a, mu, ls, y)
    for g in (nll, da, dm, ds):
        assert np.isfinite(g).all()
    np.testing.assert_array_equal(dm[0, 1], 0.0)
    np.testing.assert_array_equal(ds[0, 1], 0.0)


@pytest.mark.parametrize("d", [2, 3, 5])
def test_component_covariances_and_moments(rng, d):
    """Sigma_k = (U^T U)^-1; the mixture's covariance by the law of total covariance;
    variance and std its diagonal; scales near float64's limits stay finite."""
    a, mu, ls, _ = random_full(rng, 5, 4, d, cond=100.0)
    covs = mixture.component_covariances(mu, ls)
    u = fullcov.factor(ls, d)
    np.testing.assert_allclose(covs, np.linalg.inv(np.swapaxes(u, -1, -2) @ u), rtol=1e-11,
                               atol=1e-14)
    pi, m = mixture.softmax(a), mixture.mean(a, mu)
    dev = mu - m[:, None]
    want = np.einsum("nk,nkde->nde", pi, covs) + np.einsum("nk,nkd,nke->nde", pi, dev, dev)
    np.testing.assert_allclose(mixture.covariance(a, mu, ls), want, rtol=1e-12)
    np.testing.assert_allclose(mixture.variance(a, mu, ls), np.diagonal(want, 0, 1, 2),
                               rtol=1e-12)
    np.testing.assert_allclose(mixture.std(a, mu, ls), np.sqrt(np.diagonal(want, 0, 1, 2)),
                               rtol=1e-12)
    # sigma ~ 1e150: Sigma ~ 1e300 fits float64, U^-1 U^-T formed literally would not
    big = ls.copy()
    big[..., :d] += math.log(1e150)
    big[..., d:] *= 1e-150
    c = mixture.covariance(a, mu * 1e150, big)
    assert np.isfinite(c).all()
    np.testing.assert_allclose(c, want * 1e300, rtol=1e-11)


def test_sample_covariance_matches_the_model():
    """200,000 draws of one row: mean and covariance within a few standard errors of the
    model's, and the standardized draws U (y - mu) of a single component are white."""
    rng = np.random.default_rng(5)
    a, mu, ls, _ = random_full(rng, 1, 3, 3, cond=50.0)
    x = mixture.sample(a, mu, ls, 200_000, seed=11)[0]
    m, cov = mixture.mean(a, mu)[0], mixture.covariance(a, mu, ls)[0]
    se = np.sqrt(np.diag(cov) / x.shape[0])
    assert np.all(np.abs(x.mean(0) - m) < 5 * se)
    sd = np.sqrt(np.diag(cov))
    # sample covariance: relative error of each entry ~ sqrt(2 / n) in correlation units
    assert np.abs((np.cov(x.T) - cov) / np.outer(sd, sd)).max() < 5 * math.sqrt(2 / x.shape[0])
    one = mixture.sample(a[:, :1], mu[:, :1], ls[:, :1], 100_000, seed=3)[0]
    z = (one - mu[0, 0]) @ fullcov.factor(ls, 3)[0, 0].T
    np.testing.assert_allclose(np.cov(z.T), np.eye(3), atol=0.02)


@pytest.mark.skipif(np.finfo(np.longdouble).eps > 1e-18,
                    reason="needs an extended-precision long double (x86)")
def test_ill_conditioned_factor_matches_long_double(rng):
    """Random D = 8 factors (U_ij ~ N(0, 3^2), s ~ N(0, 2^2)) have condition numbers up
    to ~1e10: the NLL is still within 1e-14 relative of a long-double evaluation of the
    same density, since nothing is solved, inverted or squared (a route through U^-1,
    as PyTorch's scale_tril takes, loses ~1e-8 on such factors: test_gradients.py)."""
    n, k, d = 40, 3, 8
    a, mu, y = rng.normal(size=(n, k)), rng.normal(size=(n, k, d)), rng.normal(size=(n, d))
    ls = np.concatenate([rng.normal(0, 2, (n, k, d)), rng.normal(0, 3, (n, k, 28))], axis=-1)
    assert np.linalg.cond(fullcov.factor(ls, d)).max() > 1e9
    ld = np.longdouble
    u = fullcov.factor(ls.astype(ld), d)
    z = np.einsum("nkij,nkj->nki", u, y.astype(ld)[:, None, :] - mu.astype(ld))
    t = (a.astype(ld) - np.log(np.exp(a.astype(ld)).sum(1, keepdims=True))
         - 0.5 * (z * z).sum(-1) - ls[..., :d].astype(ld).sum(-1) - 4 * np.log(2 * ld(np.pi)))
    m = t.max(axis=1)
    want = m + np.log(np.exp(t - m[:, None]).sum(axis=1))
    got = mixture.log_prob(a, mu, ls, y)
    assert float(np.max(np.abs(got - want) / np.abs(want))) < 1e-14
