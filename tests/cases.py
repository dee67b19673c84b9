"""Inputs shared by the test folders: random mixtures, hard inputs, Philox vectors.

Imported as ``from cases import ...`` (``tests/`` is on ``sys.path`` through
``tests/conftest.py``).
"""

import math

import numpy as np
import pytest


def random_mixture(rng, n, k, d, s, dtype=np.float64, spread=1.0):
    """Random head output and targets, away from symmetric points."""
    logits = rng.normal(0, 1.5, (n, k))
    mu = rng.normal(0, 2 * spread, (n, k, d))
    log_sigma = rng.normal(0, 0.5, (n, k, s))
    y = rng.normal(0, 2 * spread, (n, d))
    return tuple(a.astype(dtype) for a in (logits, mu, log_sigma, y))


def hard_inputs(rng, s_kind, dtype=np.float64):
    """K = 64, D = 8: sigmas near 1e-30 and 1e30, logits of spread 30, and targets
    hundreds of sigmas from every mean (float64, cast to ``dtype``). ``"full"``: the
    inputs of :func:`hard_full` (condition numbers 1e8, float32 1e4)."""
    if s_kind == "full":
        return hard_full(rng, dtype)
    return tuple(a.astype(dtype) for a in _hard_diagonal(rng, s_kind))


def _hard_diagonal(rng, s_kind):
    n, k, d = 32, 64, 8
    s = d if s_kind == "diagonal" else 1
    logits = rng.normal(0, 30, (n, k))
    # sigma near 1e-30 for half the rows and 1e30 for the other half
    log_sigma = np.where(
        (np.arange(n) % 2 == 0)[:, None, None],
        math.log(1e-30) + rng.normal(0, 0.5, (n, k, s)),
        math.log(1e30) + rng.normal(0, 0.5, (n, k, s)),
    )
    sigma = np.exp(log_sigma)
    mu = rng.normal(0, 1, (n, k, d)) * sigma
    # y hundreds of sigmas from every mean
    y = rng.choice([-1.0, 1.0], (n, d)) * 400 * sigma.max(axis=(1, 2))[:, None]
    return logits, mu, log_sigma, y


# Philox4x32-10 known answers (Random123 kat_vectors):
# counter (4 words), key (2 words), expected output (4 words)
PHILOX_KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def cupy_or_skip():
    """CuPy, or a skip that says why there is no usable CUDA device here."""
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, or one too old for this CuPy
        from npmdn.backend import _why_no_device

        pytest.skip(f"no CUDA device answers: {_why_no_device(exc)}")
    if n < 1:
        pytest.skip("CuPy finds no CUDA device")
    return cupy


def full_factors(rng, n, k, d, cond=10.0, log_scale_sd=0.5, dtype=np.float64):
    """Packed full factors [n, k, D (D + 1) / 2] (npmdn.fullcov's layout) of random
    precisions whose covariance has condition number ``cond``: ``Sigma = Q diag(lam) Q^T``
    with ``Q`` a random rotation and ``lam`` log-spaced over ``cond``, times a random
    scale per component; ``U`` is the transpose of the Cholesky factor of ``Sigma^-1``.
    Returns ``(log_sigma, U [n, k, D, D])`` (float64 ``U``, the packed values exactly)."""
    q, _ = np.linalg.qr(rng.normal(size=(n, k, d, d)))
    scale = np.exp(rng.normal(0, log_scale_sd, (n, k, 1)))
    lam = scale**2 * cond ** -np.linspace(0.0, 1.0, d)
    prec = np.einsum("nkij,nkj,nklj->nkil", q, 1.0 / lam, q)
    u = np.swapaxes(np.linalg.cholesky(prec), -1, -2)
    rows, cols = np.triu_indices(d, 1)
    idx = np.arange(d)
    ls = np.concatenate([-np.log(u[..., idx, idx]), u[..., rows, cols]], axis=-1).astype(dtype)
    # the factor the packed numbers stand for, exactly
    u = np.zeros((n, k, d, d))
    u[..., idx, idx] = np.exp(-ls[..., :d].astype(np.float64))
    u[..., rows, cols] = ls[..., d:]
    return ls, u


def random_full(rng, n, k, d, dtype=np.float64, cond=10.0):
    """A random full-covariance mixture and targets: (logits, mu, log_sigma, y)."""
    logits = rng.normal(0, 1.5, (n, k))
    mu = rng.normal(0, 2, (n, k, d))
    ls, _ = full_factors(rng, n, k, d, cond)
    y = rng.normal(0, 2, (n, d))
    return tuple(a.astype(dtype) for a in (logits, mu, ls, y))


def hard_full(rng, dtype=np.float64, n=24, k=32, d=8):
    """K = 32, D = 8 full components with covariances of condition number 1e8 (float64;
    1e4 for float32), scales from 1e-3 to 1e3, logits of spread 20, and targets a
    hundred sigmas out: half the rows at Mahalanobis distance 100 from one component
    along a random direction, half 100 marginal standard deviations from its mean
    (up to 100 sqrt(cond) in Mahalanobis distance)."""
    cond = 1e8 if dtype == np.float64 else 1e4
    logits = rng.normal(0, 20, (n, k))
    ls, u = full_factors(rng, n, k, d, cond, log_scale_sd=2.3, dtype=dtype)
    u_inv = np.linalg.inv(u)
    sd = np.sqrt(np.einsum("nkij,nkij->nki", u_inv, u_inv))  # marginal sds
    mu = rng.normal(0, 1, (n, k, d)) * sd
    v = rng.normal(size=(n, d))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    near = np.einsum("nij,nj->ni", u_inv[:, 0], v)  # |U (y - mu_0)| = 100
    far = v * sd[:, 0]
    y = mu[:, 0] + 100 * np.where((np.arange(n) % 2 == 0)[:, None], near, far)
    return logits.astype(dtype), mu.astype(dtype), ls, y.astype(dtype)
