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


def hard_inputs(rng, s_kind):
    """K = 64, D = 8: sigmas near 1e-30 and 1e30, logits of spread 30, and targets
    hundreds of sigmas from every mean (float64)."""
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
