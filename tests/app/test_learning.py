"""The learning targets of the core issue (about 10 s per problem on 2 cores).

Trained on 20,000 points and scored on 20,000 fresh ones, held-out NLL comes
within 0.02 nats of the true conditional NLL on the heteroscedastic quadratic
and within 0.1 nats on the inverted sinusoid; the predicted sigma(x) on the
quadratic tracks 0.1 x within 5%. On the correlated problem (2-D y, two
tilted ellipses), a full-covariance model with K = 2 comes within 0.02 nats of
the true NLL, and a diagonal one with the same K stays more than 0.1 nats
behind it. python -m bench.learning shows the same over several seeds.
"""

import pytest

from bench import learning as _learning

pytestmark = pytest.mark.slow


def test_heteroscedastic_quadratic():
    r = _learning.run("heteroscedastic", seed=0)
    assert r["gap"] < 0.02, r
    assert r["sigma_err_central_max"] < 0.05, r
    assert r["sigma_err_full_mean"] < 0.05, r


def test_inverted_sinusoid():
    r = _learning.run("inverted", seed=0)
    # the true NLL of 20,000 rows has a standard error of about 0.006 nats
    assert abs(r["true_nll"] - 1.291) < 0.03, r
    assert r["gap"] < 0.1, r


def test_correlated_outputs_need_full_covariance():
    full = _learning.run("correlated", seed=0)
    diag = _learning.run("correlated-diagonal", seed=0)
    assert full["gap"] < 0.02, full
    assert diag["gap"] > full["gap"] + 0.1, (full, diag)
