import numpy as np
import pytest


def random_mixture(rng, n, k, d, s, dtype=np.float64, spread=1.0):
    """Random head output and targets, away from symmetric points."""
    logits = rng.normal(0, 1.5, (n, k))
    mu = rng.normal(0, 2 * spread, (n, k, d))
    log_sigma = rng.normal(0, 0.5, (n, k, s))
    y = rng.normal(0, 2 * spread, (n, d))
    return tuple(a.astype(dtype) for a in (logits, mu, log_sigma, y))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
