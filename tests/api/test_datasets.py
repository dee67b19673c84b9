"""The seed problems: shapes, seeding, and true densities that are densities."""

import numpy as np
import pytest

from npmdn import datasets


@pytest.mark.parametrize("name", list(datasets.PROBLEMS))
def test_shapes_and_seeding(name):
    a = datasets.load(name, 300, seed=5)
    b = datasets.load(name, 300, seed=5)
    c = datasets.load(name, 300, seed=6)
    width = 2 if name == "correlated" else 1
    assert a.x.shape == (300, 1) and a.y.shape == (300, width) and len(a) == 300
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    x, y = a
    assert x is a.x and y is a.y


@pytest.mark.parametrize("name", ["sinusoid", "inverted", "heteroscedastic"])
def test_true_density_integrates_to_one(name):
    from scipy.integrate import simpson

    d = datasets.load(name, 10, seed=0)
    # the inverted problem's density is cut off at the edges of its support
    lo, hi = (-10.5, 10.5) if name == "inverted" else (-40, 40)
    grid = np.linspace(lo, hi, 20_001)
    for x0 in d.x[:4, 0]:
        dens = np.exp(d.true_log_prob(np.full_like(grid, x0), grid))
        assert abs(simpson(dens, x=grid) - 1) < 1e-6


def test_known_values():
    sin = datasets.sinusoid(20_000, seed=0)
    # Gaussian noise of unit variance: 0.5 log(2 pi e)
    assert abs(sin.true_nll() - 0.5 * np.log(2 * np.pi * np.e)) < 0.02
    inv = datasets.inverted_sinusoid(20_000, seed=0)
    assert abs(inv.true_nll() - 1.291) < 0.01
    q = datasets.heteroscedastic(5, seed=0)
    x = np.array([2.0])
    np.testing.assert_allclose(
        q.true_log_prob(x, np.array([1.0])), -np.log(0.2) - 0.5 * np.log(2 * np.pi))
    assert q.x.min() >= 1 and q.x.max() <= 5.2


def test_inverted_support_and_spiral():
    inv = datasets.inverted_sinusoid(10, seed=0)
    assert inv.true_log_prob(np.array([0.0]), np.array([11.0]))[0] == -np.inf
    sp = datasets.spiral(500, seed=0)
    assert not sp.has_true_density
    with pytest.raises(ValueError, match="no closed-form"):
        sp.true_log_prob()
    r = np.hypot(sp.x, sp.y)
    assert r.max() <= 5 * np.pi + 1.5


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown problem"):
        datasets.load("moons")
    with pytest.raises(ValueError, match="n must be >= 1"):
        datasets.sinusoid(0)
    with pytest.raises(ValueError, match="x_range"):
        datasets.heteroscedastic(10, x_range=(3, 2))


def test_correlated_outputs():
    """The correlated problem's density integrates to 1 over y in R^2, its draws have the
    mixture's moments, and its components' correlations turn with x (strongly negative
    and positive at the ends)."""
    d = datasets.correlated(200_000, seed=0)
    g = np.linspace(-6, 6, 601)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    for x0 in (-0.9, 0.0, 0.7):
        dens = np.exp(d.true_log_prob(np.full(len(grid), x0), grid))
        assert abs(dens.sum() * (g[1] - g[0]) ** 2 - 1) < 1e-5
    w, m, c = datasets._correlated_params(d.x[:, 0])
    mean = np.einsum("nk,nkd->nd", w, m)
    dev = m - mean[:, None]
    cov = np.einsum("nk,nkde->nde", w, c) + np.einsum("nk,nkd,nke->nde", w, dev, dev)
    # standardized by the true law, the draws are white
    z = np.linalg.solve(np.linalg.cholesky(cov), (d.y - mean)[..., None])[..., 0]
    np.testing.assert_allclose(z.mean(0), 0, atol=0.01)
    np.testing.assert_allclose(np.cov(z.T), np.eye(2), atol=0.01)
    corr = c[:, :, 0, 1] / np.sqrt(c[:, :, 0, 0] * c[:, :, 1, 1])
    assert corr.min() < -0.9 and corr.max() > 0.9
    assert abs(d.true_nll() - 1.82) < 0.01
