"""Scores of predicted densities against observed targets.

Every function takes the raw mixture parameters ``(logits, mu, log_sigma)`` in
the shapes of :func:`npmdn.mixture_nll` and the targets ``y`` [N, D] (or [N]
when D = 1, any real dtype). For a model, ``model.mixture_raw(x)`` gives
those parameters in the units of y::

    params = model.mixture_raw(x)
    npmdn.metrics.crps(*params, y)        # per row
    npmdn.metrics.summary(*params, y)     # what model.score(x, y) reports

For D > 1 the one-dimensional scores (CRPS, PIT, coverage) are taken per
output dimension on the marginals: per-row results keep a trailing D axis,
and the summaries average (CRPS) or pool (coverage, PIT) over dimensions.
All arithmetic is float64.
"""

from __future__ import annotations

import numpy as np

from . import _checks as C
from . import distribution, mixture

DEFAULT_LEVELS = (0.5, 0.8, 0.9, 0.95)


def _args(logits, mu, log_sigma, y):
    n, _, d, _ = C.mixture_args(logits, mu, log_sigma)
    return C.mixture_targets(y, n, d, C.is_device_array(logits)), d


def _host(a) -> np.ndarray:
    return a.get() if C.is_device_array(a) else np.asarray(a)


def _drop_d(a, d):
    return a[..., 0] if d == 1 else a


def log_score(logits, mu, log_sigma, y):
    """``log p(y)`` per row [N] (float64): the joint density of all D dimensions."""
    y, _ = _args(logits, mu, log_sigma, y)
    f = distribution.f64(logits, mu, log_sigma)
    return mixture.log_prob(*f, y)


def nll(logits, mu, log_sigma, y) -> float:
    """Mean negative log-likelihood, nats per row (float64)."""
    return float(-_host(log_score(logits, mu, log_sigma, y)).mean())


def crps(logits, mu, log_sigma, y):
    """Continuous ranked probability score per row: [N] for D = 1, [N, D] marginals.

    ``CRPS(F, y) = int (F(t) - 1{t >= y})^2 dt = E|X - y| - E|X - X'| / 2``, in
    the closed form for Gaussian mixtures of Grimit et al. (2006); see
    :func:`npmdn.distribution.crps`. In the units of y; lower is better; for a
    point forecast it reduces to the absolute error.
    """
    y, d = _args(logits, mu, log_sigma, y)
    return _drop_d(distribution.crps(logits, mu, log_sigma, y), d)


def pit(logits, mu, log_sigma, y):
    """Probability integral transform ``F(y)`` per row: [N] for D = 1, [N, D] marginals.

    For a calibrated model the PIT values of held-out targets are uniform on (0, 1).
    """
    y, d = _args(logits, mu, log_sigma, y)
    return _drop_d(distribution.cdf(logits, mu, log_sigma, y), d)


def _level_key(level: float) -> str:
    return f"coverage_{100 * level:g}"


def coverage(pit_values, levels=DEFAULT_LEVELS) -> dict:
    """Empirical coverage of central intervals, from PIT values.

    The central interval of probability c, ``[F^-1((1-c)/2), F^-1((1+c)/2)]``,
    holds y exactly when ``|F(y) - 1/2| <= c / 2`` (F is continuous and
    increasing), so no quantile need be solved. Returns
    ``{"coverage_50": ..., "coverage_90": ...}`` (keys from 100 c), fractions
    of all PIT values (pooled over dimensions).
    """
    levels = C.probabilities(levels, "levels").reshape(-1)
    u = _host(pit_values).astype(np.float64).ravel()
    if u.size == 0:
        raise ValueError("pit_values is empty: at least one value is needed")
    if not np.all((u >= 0) & (u <= 1)):
        raise ValueError("pit_values must lie in [0, 1] (they are CDF values)")
    dev = np.abs(u - 0.5)
    return {_level_key(c): float(np.mean(dev <= 0.5 * c)) for c in levels}


def pit_ks(pit_values) -> float:
    """Kolmogorov-Smirnov distance ``sup_u |ECDF(u) - u|`` of PIT values from uniform."""
    u = np.sort(_host(pit_values).astype(np.float64).ravel())
    if u.size == 0:
        raise ValueError("pit_values is empty: at least one value is needed")
    if not np.all((u >= 0) & (u <= 1)):
        raise ValueError("pit_values must lie in [0, 1] (they are CDF values)")
    i = np.arange(1, u.size + 1)
    return float(max(np.max(i / u.size - u), np.max(u - (i - 1) / u.size)))


def calibration(logits, mu, log_sigma, y, levels=DEFAULT_LEVELS) -> dict:
    """Calibration summary as a flat dict of floats.

    ``coverage_<100c>``: empirical coverage of the central c-interval for each
    level (compare with c); ``calibration_error``: the mean of
    ``|coverage - c|`` over the levels; ``pit_ks``: the KS distance of the PIT
    values from uniform (about ``1.36 / sqrt(N)`` is the 5% critical value
    for a calibrated model on N independent rows).
    """
    levels = C.probabilities(levels, "levels").reshape(-1)
    u = pit(logits, mu, log_sigma, y)
    cov = coverage(u, levels)
    out = dict(cov)
    out["calibration_error"] = float(np.mean([abs(cov[_level_key(c)] - c) for c in levels]))
    out["pit_ks"] = pit_ks(u)
    return out


def summary(logits, mu, log_sigma, y, levels=DEFAULT_LEVELS) -> dict:
    """Every score above as one flat dict of floats: ``nll`` (mean, nats), ``crps``
    (mean over rows and dimensions) and the :func:`calibration` entries."""
    levels = C.probabilities(levels, "levels").reshape(-1)
    y_checked, _ = _args(logits, mu, log_sigma, y)
    out = {
        "nll": nll(logits, mu, log_sigma, y_checked),
        "crps": float(_host(crps(logits, mu, log_sigma, y_checked)).mean()),
    }
    out.update(calibration(logits, mu, log_sigma, y_checked, levels))
    return out


__all__ = [
    "DEFAULT_LEVELS", "log_score", "nll", "crps", "pit", "coverage", "pit_ks",
    "calibration", "summary",
]
