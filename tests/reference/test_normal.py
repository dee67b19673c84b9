"""The standard-normal functions npmdn carries itself (SciPy is not a dependency):
erfc/erf against the math module, Phi, log Phi and Phi^-1 against scipy.special."""

import math

import numpy as np
import pytest

from npmdn import normal

special = pytest.importorskip("scipy.special")

X = np.concatenate([
    np.linspace(-30, 30, 6001),
    np.geomspace(1e-300, 30, 400),
    -np.geomspace(1e-300, 30, 400),
    [0.0, 0.46875, -0.46875, 4.0, -4.0, np.nextafter(0.46875, 1), np.nextafter(4.0, 5)],
])


def _rel(got, want):
    return np.abs(got - want) / np.abs(want)


def test_erfc_and_erf_match_the_math_module():
    want_c = np.vectorize(math.erfc)(X)
    want = np.vectorize(math.erf)(X)
    got_c, got = normal.erfc(X), normal.erf(X)
    norm_range = want_c > 1e-300  # below, both round into subnormals
    assert _rel(got_c[norm_range], want_c[norm_range]).max() < 2e-15
    assert np.all(np.abs(got_c - want_c)[~norm_range] < 1e-307)
    nz = want != 0
    assert _rel(got[nz], want[nz]).max() < 2e-15
    assert np.array_equal(got[~nz], want[~nz])


def _tol(z):
    # Phi(z)'s condition number is about z^2: rounding z / sqrt 2 alone costs z^2 ulps
    return 2e-15 + 1e-16 * z * z


def test_norm_cdf_and_logcdf_match_scipy():
    z = np.concatenate([np.linspace(-37, 37, 20001), -np.geomspace(1, 1e4, 300)])
    want = special.ndtr(z)
    ok = want > 1e-300
    assert np.all(_rel(normal.norm_cdf(z)[ok], want[ok]) < _tol(z[ok]))
    # log Phi: finite far below where Phi underflows, accurate where Phi is near 1
    lw = special.log_ndtr(z)
    ok = lw < -1e-300
    assert np.isfinite(normal.norm_logcdf(z)).all()
    assert np.all(_rel(normal.norm_logcdf(z)[ok], lw[ok]) < _tol(z[ok]))
    lc, ls = normal.norm_log_cdf_sf(z)
    assert np.all(_rel(lc[ok], lw[ok]) < _tol(z[ok]))
    sw = special.log_ndtr(-z)
    ok = sw < -1e-300
    assert np.all(_rel(ls[ok], sw[ok]) < _tol(z[ok]))


def test_norm_ppf_matches_scipy_and_inverts_the_cdf():
    p = np.concatenate([
        np.geomspace(1e-300, 0.5, 3000),
        1 - np.geomspace(1e-16, 0.5, 3000),
        np.linspace(1e-6, 1 - 1e-6, 5001),
        0.5 + np.geomspace(1e-16, 1e-3, 200),
    ])
    got, want = normal.norm_ppf(p), special.ndtri(p)
    assert np.all(np.abs(got - want) <= 2e-15 * np.abs(want) + 1e-300)
    # round trip: an ulp in x moves Phi(x) by x^2 ulps, and Phi adds its own x^2 ulps
    lower = p <= 0.5
    assert np.all(_rel(normal.norm_cdf(got[lower]), p[lower]) < 4 * _tol(got[lower]))
    assert np.all(_rel(normal.norm_cdf(-got[~lower]), 1 - p[~lower]) < 4 * _tol(got[~lower]))
