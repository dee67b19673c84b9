"""The seed problems, seeded, each with its true conditional log-density where one exists.

=====================  ===================================================  ==================
name                   generative model                                     true log p(y | x)
=====================  ===================================================  ==================
``sinusoid``           x ~ U(-10.5, 10.5), y = 7 sin(0.75 x) + 0.5 x + e     Gaussian, exact
``inverted``           t ~ U(-10.5, 10.5), x = 7 sin(0.75 t) + 0.5 t + e,   numerical
                       y = t (the sinusoid with x and y swapped)            normalisation
``heteroscedastic``    x ~ U(1, 5.2), y = x^2 - 6x + 9 + e, sd(e) = 0.1 x   Gaussian, exact
``spiral``             th ~ U(0, 5 pi), x = th cos th + U(-1, 1),           none (see below)
                       y = th sin th
``correlated``         x ~ U(-1, 1), y in R^2 from two tilted Gaussians     a mixture of two
                       whose axes turn with x (see :func:`correlated`)      Gaussians, exact
=====================  ===================================================  ==================

with ``e ~ N(0, 1)`` unless stated. Every problem has one input; every y has
one column except the correlated problem's two. For the inverted sinusoid Bayes' rule gives
``p(y | x) = 1[|y| <= 10.5] phi(x - f(y)) / Z(x)`` with
``Z(x) = int_{-10.5}^{10.5} phi(x - f(t)) dt``, evaluated by composite
Gauss-Legendre quadrature (error far below 1e-10 nats).

The spiral's y is a deterministic function of the angle, so its conditional
law given x is concentrated on the finitely many points of the curve within
the noise band; its density has integrable singularities where the curve
turns vertical and no closed form, so none is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _checks as C
from .mixture import logsumexp

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_T_RANGE = 10.5


@dataclass(frozen=True)
class Dataset:
    """Arrays ``x`` [N, 1] and ``y`` [N, D] (float64; D = 1 but for ``correlated``, 2)
    and, where known, the true conditional log-density. Unpacks as ``x, y = dataset``."""

    name: str
    x: np.ndarray
    y: np.ndarray
    log_prob_fn: Callable | None = None

    def __iter__(self):
        return iter((self.x, self.y))

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def has_true_density(self) -> bool:
        return self.log_prob_fn is not None

    def true_log_prob(self, x=None, y=None) -> np.ndarray:
        """True ``log p(y | x)`` [N], for this data set's rows or any given (x, y)
        (y [N, D], or [N] when D = 1)."""
        if self.log_prob_fn is None:
            raise ValueError(f"the {self.name!r} problem has no closed-form conditional density")
        x = self.x if x is None else np.asarray(x, dtype=np.float64)
        y = self.y if y is None else np.asarray(y, dtype=np.float64)
        d = self.y.shape[1]
        return self.log_prob_fn(x.reshape(-1), y.reshape(-1) if d == 1 else y.reshape(-1, d))

    def true_nll(self, x=None, y=None) -> float:
        """Mean true NLL: the best any model can score on these rows."""
        return float(-np.mean(self.true_log_prob(x, y)))


def _rng(seed):
    return np.random.default_rng(None if seed is None else C.int_arg(seed, "seed", 0))


def _n(n):
    return C.int_arg(n, "n", 1)


def _sin_curve(t):
    return 7.0 * np.sin(0.75 * t) + 0.5 * t


def _gauss_logpdf(y, m, s):
    z = (y - m) / s
    return -0.5 * z * z - np.log(s) - LOG_SQRT_2PI


def sinusoid(n: int = 1000, seed=None, noise: float = 1.0) -> Dataset:
    """``y = 7 sin(0.75 x) + 0.5 x + noise * e``, x uniform on [-10.5, 10.5]."""
    rng = _rng(seed)
    noise = C.float_arg(noise, "noise", 0.0, strict=True)
    x = rng.uniform(-_T_RANGE, _T_RANGE, _n(n))
    y = _sin_curve(x) + noise * rng.standard_normal(x.shape)

    def log_prob(xq, yq):
        return _gauss_logpdf(yq, _sin_curve(xq), noise)

    return Dataset("sinusoid", x[:, None], y[:, None], log_prob)


# composite Gauss-Legendre over [-10.5, 10.5]: 210 panels x 8 nodes (105 panels already
# agree with 840 to 1e-14 in log Z; the integrand varies on a scale of 1/max|f'| = 0.17)
_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)
_PANELS = np.linspace(-_T_RANGE, _T_RANGE, 211)
_HALF = 0.5 * np.diff(_PANELS)
_NODES = ((_PANELS[:-1] + _PANELS[1:]) / 2)[:, None] + _HALF[:, None] * _GL_X[None, :]
_WEIGHTS = (_HALF[:, None] * _GL_W[None, :]).ravel()
_NODES = _NODES.ravel()
_F_NODES = _sin_curve(_NODES)


def _inverted_log_z(x, noise: float) -> np.ndarray:
    """``log Z(x) = log int phi_noise(x - f(t)) dt`` by quadrature, chunked over x."""
    out = np.empty(x.shape[0])
    log_w = np.log(_WEIGHTS)
    for a in range(0, x.shape[0], 1024):
        xa = x[a : a + 1024, None]
        terms = _gauss_logpdf(xa, _F_NODES[None, :], noise) + log_w[None, :]
        out[a : a + 1024] = logsumexp(terms)
    return out


def inverted_sinusoid(n: int = 1000, seed=None, noise: float = 1.0) -> Dataset:
    """The sinusoid with x and y swapped: y uniform on [-10.5, 10.5], x = f(y) + noise * e.

    For most x several branches of y are plausible; a single Gaussian (or
    the MSE fit) averages them, a mixture resolves them.
    """
    rng = _rng(seed)
    noise = C.float_arg(noise, "noise", 0.0, strict=True)
    t = rng.uniform(-_T_RANGE, _T_RANGE, _n(n))
    x = _sin_curve(t) + noise * rng.standard_normal(t.shape)

    def log_prob(xq, yq):
        xq, yq = np.broadcast_arrays(xq, yq)
        inside = np.abs(yq) <= _T_RANGE
        log_z = _inverted_log_z(xq.ravel(), noise).reshape(xq.shape)
        lp = _gauss_logpdf(xq, _sin_curve(yq), noise) - log_z
        return np.where(inside, lp, -np.inf)

    return Dataset("inverted", x[:, None], t[:, None], log_prob)


def heteroscedastic(
    n: int = 1000, seed=None, x_range=(1.0, 5.2), sigma0: float = 0.1
) -> Dataset:
    """``y = x^2 - 6x + 9 + e``, ``sd(e) = sigma0 * x``, x uniform on ``x_range``."""
    rng = _rng(seed)
    lo, hi = (C.float_arg(v, "x_range", 0.0, strict=True) for v in x_range)
    if hi <= lo:
        raise ValueError(f"x_range must be increasing, got {x_range}")
    sigma0 = C.float_arg(sigma0, "sigma0", 0.0, strict=True)
    x = rng.uniform(lo, hi, _n(n))
    y = (x - 3.0) ** 2 + sigma0 * x * rng.standard_normal(x.shape)

    def log_prob(xq, yq):
        return _gauss_logpdf(yq, (xq - 3.0) ** 2, sigma0 * xq)

    return Dataset("heteroscedastic", x[:, None], y[:, None], log_prob)


def spiral(n: int = 2000, seed=None, turns: float = 2.5, noise: float = 1.0) -> Dataset:
    """The seed's spiral: angle th uniform on [0, 2 pi turns], radius th,
    ``x = th cos th + U(-noise, noise)``, ``y = th sin th``. No true density."""
    rng = _rng(seed)
    turns = C.float_arg(turns, "turns", 0.0, strict=True)
    noise = C.float_arg(noise, "noise", 0.0)
    th = rng.uniform(0.0, 2 * np.pi * turns, _n(n))
    x = th * np.cos(th) + rng.uniform(-noise, noise, th.shape)
    y = th * np.sin(th)
    return Dataset("spiral", x[:, None], y[:, None], None)


# the correlated problem: two components, each a Gaussian with axes of sd (1, 0.2)
# turned by an angle that moves with x, means apart along the first output
_CORR_SD = (1.0, 0.2)


def _correlated_params(x):
    """Weights [N, 2], means [N, 2, 2] and covariances [N, 2, 2, 2] of p(y | x)."""
    w1 = 0.5 + 0.3 * np.tanh(2.0 * x)  # the first component gains weight with x
    weights = np.stack([w1, 1.0 - w1], axis=-1)
    means = np.stack([np.stack([-1.5 + 0.5 * x, x], -1), np.stack([1.5 + 0.5 * x, -x], -1)], 1)
    lam = np.diag(np.square(_CORR_SD))
    covs = np.empty(x.shape + (2, 2, 2))
    for k, angle in enumerate((0.5 * np.pi * x + 0.25 * np.pi, 0.5 * np.pi * x - 0.25 * np.pi)):
        c, s = np.cos(angle), np.sin(angle)
        rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # [N, 2, 2]
        covs[:, k] = rot @ lam @ np.swapaxes(rot, -1, -2)
    return weights, means, covs


def correlated(n: int = 2000, seed=None) -> Dataset:
    """Correlated outputs: x ~ U(-1, 1) and y in R^2 from a mixture of two Gaussians,

    ``p(y | x) = w(x) N(y; m_1(x), C_1(x)) + (1 - w(x)) N(y; m_2(x), C_2(x))`` with
    ``w = 0.5 + 0.3 tanh(2 x)``, means ``(-1.5 + x / 2, x)`` and ``(1.5 + x / 2, -x)``,
    and covariances ``R(a) diag(1, 0.04) R(a)^T`` turned by ``a_1 = pi/4 + pi x / 2`` and
    ``a_2 = a_1 - pi/2``: two long thin ellipses at right angles, with correlations of
    opposite signs (up to +-0.92, through 0 at x = +-1/2), that turn together by
    half a turn as x goes from -1 to 1. An axis-aligned (diagonal) component fits
    such an ellipse only with many components; a full one fits it exactly. The true
    conditional log-density is the mixture's, exact.
    """
    rng = _rng(seed)
    x = rng.uniform(-1.0, 1.0, _n(n))
    weights, means, covs = _correlated_params(x)
    comp = (rng.uniform(size=x.shape) >= weights[:, 0]).astype(int)
    chol = np.linalg.cholesky(covs[np.arange(x.size), comp])
    y = means[np.arange(x.size), comp] + (chol @ rng.standard_normal((x.size, 2, 1)))[..., 0]

    def log_prob(xq, yq):
        weights, means, covs = _correlated_params(np.asarray(xq, dtype=np.float64))
        diff = np.asarray(yq, dtype=np.float64)[:, None, :] - means  # [N, 2, 2]
        prec = np.linalg.inv(covs)
        quad = np.einsum("nki,nkij,nkj->nk", diff, prec, diff)
        log_n = -0.5 * quad - 0.5 * np.linalg.slogdet(covs)[1] - 2 * LOG_SQRT_2PI
        return logsumexp(np.log(weights) + log_n)

    return Dataset("correlated", x[:, None], y, log_prob)


PROBLEMS = {
    "sinusoid": sinusoid,
    "inverted": inverted_sinusoid,
    "heteroscedastic": heteroscedastic,
    "spiral": spiral,
    "correlated": correlated,
}
ALIASES = {"inverted_sinusoid": "inverted", "quadratic": "heteroscedastic"}


def problem_name(name: str) -> str:
    """The key in :data:`PROBLEMS` for ``name`` or one of its :data:`ALIASES`."""
    key = ALIASES.get(name, name)
    if key not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; choose one of {', '.join(PROBLEMS)}")
    return key


def load(name: str, n: int = 1000, seed=None, **kwargs) -> Dataset:
    """One of :data:`PROBLEMS` by name (``inverted_sinusoid`` and ``quadratic`` are aliases)."""
    return PROBLEMS[problem_name(name)](n, seed, **kwargs)
