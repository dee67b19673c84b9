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
from ._blocks import rowwise

DEFAULT_LEVELS = (0.5, 0.8, 0.9, 0.95)


def _args(logits, mu, log_sigma, y):
    n, _, d, _ = C.mixture_args(logits, mu, log_sigma)
    return C.mixture_targets(y, n, d, C.is_device_array(logits)), d


def _host(a) -> np.ndarray:
    return a.get() if C.is_device_array(a) else np.asarray(a)


def _drop_d(a, d):
    return a[..., 0] if d == 1 else a


@rowwise(4)
def log_score(logits, mu, log_sigma, y):
    """``log p(y)`` per row [N] (float64): the joint density of all D dimensions."""
    y, _ = _args(logits, mu, log_sigma, y)
    f = distribution.f64(logits, mu, log_sigma)
    return mixture.log_prob(*f, y)


def nll(logits, mu, log_sigma, y) -> float:
    """Mean negative log-likelihood, nats per row (float64)."""
    return float(-_host(log_score(logits, mu, log_sigma, y)).mean())


@rowwise(4)
def crps(logits, mu, log_sigma, y):
    """Continuous ranked probability score per row: [N] for D = 1, [N, D] marginals.

    ``CRPS(F, y) = int (F(t) - 1{t >= y})^2 dt = E|X - y| - E|X - X'| / 2``, in
    the closed form for Gaussian mixtures of Grimit et al. (2006); see
    :func:`npmdn.distribution.crps`. In the units of y; lower is better; for a
    point forecast it reduces to the absolute error.
    """
    y, d = _args(logits, mu, log_sigma, y)
    return _drop_d(distribution.crps(logits, mu, log_sigma, y), d)


@rowwise(4)
def pit(logits, mu, log_sigma, y):
    """Probability integral transform ``F(y)`` per row: [N] for D = 1, [N, D] marginals.

    For a calibrated model the PIT values of held-out targets are uniform on (0, 1).
    """
    y, d = _args(logits, mu, log_sigma, y)
    return _drop_d(distribution.cdf(logits, mu, log_sigma, y), d)


def _level_key(level: float) -> str:
    return f"coverage_{100 * level:g}"


def _pit_array(pit_values) -> np.ndarray:
    u = _host(pit_values).astype(np.float64).ravel()
    if u.size == 0:
        raise ValueError("pit_values is empty: at least one value is needed")
    if not np.all((u >= 0) & (u <= 1)):
        raise ValueError("pit_values must lie in [0, 1] (they are CDF values)")
    return u


def _inside(u, levels) -> np.ndarray:
    """How many PIT values fall in each level's central interval (int64 [len(levels)])."""
    dev = np.abs(u - 0.5)
    return np.array([np.count_nonzero(dev <= 0.5 * c) for c in levels], dtype=np.int64)


def coverage(pit_values, levels=DEFAULT_LEVELS) -> dict:
    """Empirical coverage of central intervals, from PIT values.

    The central interval of probability c, ``[F^-1((1-c)/2), F^-1((1+c)/2)]``,
    holds y exactly when ``|F(y) - 1/2| <= c / 2`` (F is continuous and
    increasing), so no quantile need be solved. Returns
    ``{"coverage_50": ..., "coverage_90": ...}`` (keys from 100 c), fractions
    of all PIT values (pooled over dimensions).
    """
    levels = C.probabilities(levels, "levels").reshape(-1)
    u = _pit_array(pit_values)
    return {_level_key(c): float(k / u.size) for c, k in zip(levels, _inside(u, levels))}


def pit_ks(pit_values) -> float:
    """Kolmogorov-Smirnov distance ``sup_u |ECDF(u) - u|`` of PIT values from uniform."""
    u = np.sort(_pit_array(pit_values))
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


# --------------------------------------------------------------------------
# the summary in pieces: rows scored chunk by chunk (Dask blocks, big files)
# --------------------------------------------------------------------------

PIT_BINS = 1 << 16  # histogram bins of ScoreSums: pit_ks to within 1 / (2 PIT_BINS)


class ScoreSums:
    """What :func:`summary` reports, gathered from rows scored in pieces, in bounded memory.

    :meth:`add` takes a piece's per-row ``log p(y)``, CRPS and PIT values (for
    D > 1 the per-dimension ones, [N, D]); :meth:`merge` adds another
    ``ScoreSums`` (pieces scored apart, such as Dask blocks); :meth:`result`
    gives :func:`summary`'s dict. Every entry equals the in-memory one up to
    the order of the sums (coverage exactly: it is counted) except
    ``pit_ks``: a Kolmogorov-Smirnov distance needs every PIT value in order,
    so it comes from a histogram of ``bins`` equal bins and is within
    ``1 / (2 bins)`` of the exact value (see :meth:`pit_ks`).
    """

    def __init__(self, levels=DEFAULT_LEVELS, bins: int = PIT_BINS):
        self.levels = C.probabilities(levels, "levels").reshape(-1)
        self.bins = C.int_arg(bins, "bins", 1)
        self.rows = 0
        self.log_p = 0.0  # sum of log p(y)
        self.crps = 0.0  # sum over rows and dimensions
        self.n_pit = 0  # PIT values: rows x dimensions
        self.inside = np.zeros(self.levels.size, dtype=np.int64)
        self.hist = np.zeros(self.bins, dtype=np.int64)

    def add(self, log_p, crps, pit) -> ScoreSums:
        """Add a piece: ``log_p`` [N], ``crps`` and ``pit`` [N] or [N, D]; returns self."""
        log_p = _host(log_p).astype(np.float64).ravel()
        u = _pit_array(pit)
        self.rows += log_p.size
        self.log_p += float(log_p.sum())
        self.crps += float(_host(crps).astype(np.float64).sum())
        self.n_pit += u.size
        self.inside += _inside(u, self.levels)
        self.hist += np.bincount(np.minimum((u * self.bins).astype(np.int64), self.bins - 1),
                                 minlength=self.bins)
        return self

    def merge(self, other: ScoreSums) -> ScoreSums:
        """Add the pieces of ``other`` (same levels and bins); returns self."""
        if other.bins != self.bins or not np.array_equal(other.levels, self.levels):
            raise ValueError("ScoreSums to merge must have the same levels and bins")
        self.rows += other.rows
        self.log_p += other.log_p
        self.crps += other.crps
        self.n_pit += other.n_pit
        self.inside += other.inside
        self.hist += other.hist
        return self

    @staticmethod
    def merged(*parts: ScoreSums) -> ScoreSums:
        """One ``ScoreSums`` of all ``parts`` (the first is updated)."""
        for p in parts[1:]:
            parts[0].merge(p)
        return parts[0]

    def pit_ks(self) -> float:
        """The KS distance of the PIT values from uniform, from the histogram.

        With ``C_j`` values below bin ``j = [e_j, e_j+1)`` and ``c_j > 0`` in it, the
        exact terms of :func:`pit_ks` for its values lie in
        ``(C_j + c_j)/n - u in [(C_j + c_j)/n - e_j+1, (C_j + c_j)/n - e_j]`` and
        ``u - C_j/n in [e_j - C_j/n, e_j+1 - C_j/n]`` (the largest of each kind
        is the one with the largest index or the smallest). So the exact
        distance lies between the largest lower and the largest upper bound,
        which differ by at most one bin width; this returns their midpoint.
        """
        if self.n_pit == 0:
            raise ValueError("no PIT values were added")
        n, width = self.n_pit, 1.0 / self.bins
        full = np.nonzero(self.hist)[0]
        below = (np.cumsum(self.hist) - self.hist)[full] / n
        upto = below + self.hist[full] / n
        lo_edge = full * width
        hi_edge = lo_edge + width
        lower = max(np.max(upto - hi_edge), np.max(lo_edge - below))
        upper = max(np.max(upto - lo_edge), np.max(hi_edge - below))
        return float(0.5 * (lower + upper))

    def result(self) -> dict:
        """:func:`summary`'s dict: ``nll``, ``crps``, ``coverage_<100c>``,
        ``calibration_error``, ``pit_ks``."""
        if self.rows == 0:
            raise ValueError("no rows were added")
        cov = {_level_key(c): float(k / self.n_pit) for c, k in zip(self.levels, self.inside)}
        out = {"nll": -self.log_p / self.rows, "crps": self.crps / self.n_pit}
        out.update(cov)
        out["calibration_error"] = float(
            np.mean([abs(cov[_level_key(c)] - c) for c in self.levels]))
        out["pit_ks"] = self.pit_ks()
        return out


__all__ = [
    "DEFAULT_LEVELS", "log_score", "nll", "crps", "pit", "coverage", "pit_ks",
    "calibration", "summary", "ScoreSums", "PIT_BINS",
]
