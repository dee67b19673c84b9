r"""The predicted mixture as a distribution: marginal CDF, quantiles, CRPS, and modes.

Everything here computes in float64 whatever the input dtype, works on NumPy
or CuPy arrays (the array module is taken from the input), and takes the
raw mixture parameters of :mod:`npmdn.mixture` (``logits [N,K]``,
``mu [N,K,D]``, ``log_sigma [N,K,S]``); the public, checked versions are in
:mod:`npmdn.functional`. Temporaries are bounded by
``config.DISTRIBUTION_BLOCK`` elements, whatever N.

The marginal of a Gaussian mixture in dimension d is the 1-D mixture with
weights pi_k, means mu_kd and scales sigma_kd, each component's marginal
standard deviation (``sqrt(Sigma_k,dd)`` for full covariance). Shapes:
y [N, D] -> [N, D]; levels q [Q] -> [N, Q, D].
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import config, fullcov
from ._arrays import array_module as _xp
from .mixture import LOG_2PI, log_softmax, logsumexp, marginal_scales, split_log2
from .normal import erf, norm_cdf, norm_log_cdf_sf, norm_logcdf, norm_logpdf, norm_ppf

_SQRT1_2 = math.sqrt(0.5)


class Modes(NamedTuple):
    """Local modes of each row's mixture, highest density first (float64).

    ``locations [N, K, D]`` and ``log_density [N, K]``: row n's ``count[n]``
    modes fill its first slots; the other slots hold NaN and ``-inf``.
    """

    locations: object
    log_density: object
    count: object

    @property
    def density(self):
        return _xp(self.log_density).exp(self.log_density)

    def best(self):
        """The highest mode of each row, [N, D]."""
        return self.locations[:, 0, :]


# --------------------------------------------------------------------------
# marginals: CDF, survival function, quantiles, CRPS
# --------------------------------------------------------------------------

# The marginal of a Gaussian mixture in dimension d is the 1-D mixture with
# weights pi_k, means mu_kd and scales sigma_kd (each component's marginal sd). Shapes:
# y [N, D] -> [N, D]; levels q [Q] -> [N, Q, D]. Everything below computes in
# float64 whatever the input dtype, and works on NumPy or CuPy arrays.

def f64(*arrays):
    xp = _xp(arrays[0])
    return [xp.asarray(a, dtype=xp.float64) for a in arrays]


def _marginals(logits, mu, log_sigma):
    """``(log_pi [N,K,1], mu [N,K,D], log_sigma [N,K,D])`` in float64: each component's
    marginal log sd per output (S = 1 broadcast; full: ``log sqrt(Sigma_dd)``)."""
    logits, mu, log_sigma = f64(logits, mu, log_sigma)
    return log_softmax(logits)[..., None], mu, marginal_scales(log_sigma, mu.shape[-1])[0]


def _row_blocks(n, per_row):
    """Row slices whose temporaries hold about ``config.DISTRIBUTION_BLOCK`` elements."""
    rows = max(1, config.DISTRIBUTION_BLOCK // max(1, per_row))
    for a in range(0, n, rows):
        yield slice(a, min(n, a + rows))


def _lse_axis(t, axis):
    return logsumexp(_xp(t).moveaxis(t, axis, -1))


def _scaled(diff, log_sigma):
    """``diff / sigma`` for ``sigma = exp(log_sigma)``, as ``ldexp(diff, -j) exp(-r)``
    (:func:`npmdn.mixture.split_log2`): no ``1 / sigma = inf`` for a sigma below 5.6e-309,
    no precision lost to a subnormal sigma, and exactly 0 where ``diff = 0``."""
    xp = _xp(diff)
    j, r = split_log2(log_sigma)
    with np.errstate(over="ignore"):
        return xp.ldexp(diff, -j) * xp.exp(-r)


def cdf(logits, mu, log_sigma, y):
    """Marginal CDFs ``F_d(y_d) = sum_k pi_k Phi((y_d - mu_kd) / sigma_kd)``: [N, D], float64.

    A sum of positive terms, so it keeps its relative accuracy far into the
    left tail; use :func:`sf` for ``1 - F`` in the right tail.
    """
    log_pi, mu, log_sigma = _marginals(logits, mu, log_sigma)
    (y,) = f64(y)
    z = _scaled(y[:, None, :] - mu, log_sigma)
    # the weights sum to 1 only to rounding: keep a probability a probability
    return _xp(mu).minimum((_xp(mu).exp(log_pi) * norm_cdf(z)).sum(axis=1), 1.0)


def sf(logits, mu, log_sigma, y):
    """Marginal survival functions ``1 - F_d(y_d)`` [N, D], accurate where F is near 1."""
    log_pi, mu, log_sigma = _marginals(logits, mu, log_sigma)
    (y,) = f64(y)
    z = _scaled(y[:, None, :] - mu, log_sigma)
    return _xp(mu).minimum((_xp(mu).exp(log_pi) * norm_cdf(-z)).sum(axis=1), 1.0)


def log_cdf(logits, mu, log_sigma, y):
    """``log F_d(y_d)`` [N, D]: finite however deep in the left tail y lies."""
    log_pi, mu, log_sigma = _marginals(logits, mu, log_sigma)
    (y,) = f64(y)
    z = _scaled(y[:, None, :] - mu, log_sigma)
    return _xp(mu).minimum(_lse_axis(log_pi + norm_logcdf(z), 1), 0.0)


def quantile(logits, mu, log_sigma, q, rtol: float = 1e-12, max_iter: int = 100):
    """Marginal quantiles ``F_d^-1(q)`` for levels q [Q] in (0, 1): [N, Q, D], float64.

    Each (row, level, dimension) is one 1-D problem, solved by
    :func:`_solve_quantiles` to ``F(y) = q (1 +- rtol)`` (``1 - F(y)`` against
    ``1 - q`` above the median), or to a few ulps of y where float64 cannot
    resolve that; rows go in blocks that bound memory. The results are
    monotone in q (and so intervals ordered) within a call: each is raised to
    the one of the next lower level where rounding left it below, which moves
    it by no more than its own error.
    """
    xp = _xp(mu)
    (q,) = f64(xp.asarray(q).reshape(-1))
    log_pi, mu, log_sigma = _marginals(logits, mu, log_sigma)
    n, k, d = mu.shape
    nq = q.shape[0]
    out = xp.empty((n, nq, d), dtype=xp.float64)
    for r in _row_blocks(n, nq * k * d * 8):
        b = mu[r].shape[0]
        # problems [b, Q, D], components last: [b, Q, D, K]
        shape = (b, nq, d, k)
        lw = xp.broadcast_to(log_pi[r][:, None, :, 0][:, :, None, :], shape).reshape(-1, k)
        m = xp.broadcast_to(mu[r].transpose(0, 2, 1)[:, None], shape).reshape(-1, k)
        ls = xp.broadcast_to(log_sigma[r].transpose(0, 2, 1)[:, None], shape).reshape(-1, k)
        qq = xp.broadcast_to(q[None, :, None], (b, nq, d)).reshape(-1)
        out[r] = _solve_quantiles(lw, m, ls, qq, rtol, max_iter).reshape(b, nq, d)
    order = [int(i) for i in xp.argsort(q)]
    for lower, j in zip(order, order[1:]):  # monotone in q
        out[:, j] = xp.maximum(out[:, j], out[:, lower])
    return out


# float64 <-> int64 keys in the order of the floats (-0 and +0 the same key): halving
# the key range halves the number of floats in a bracket, so a bisection on keys
# reaches adjacent floats in at most 64 steps however wide the bracket (1e80 or 1e-300)
_SIGN = -(2**63)
_MAGNITUDE = 2**63 - 1


def _key(y):
    b = y.view(_xp(y).int64)
    return _xp(y).where(b < 0, -(b & _MAGNITUDE), b)


def _unkey(k):
    xp = _xp(k)
    return xp.where(k < 0, (-k) | _SIGN, k).view(xp.float64)


def _bisect(lo, hi):
    """A point strictly inside each bracket of at least 2 key steps: the midpoint,
    where it splits the floats between lo and hi within [1/4, 3/4], else the
    midpoint of the keys (which crosses binades: 1e80 to 1 in 64 steps)."""
    xp = _xp(lo)
    k_lo, k_hi = _key(lo), _key(hi)
    k_mid = (k_lo >> 1) + (k_hi >> 1) + (k_lo & k_hi & 1)
    mid = 0.5 * lo + 0.5 * hi
    span = k_hi.astype(xp.float64) - k_lo.astype(xp.float64)
    k_a = _key(mid).astype(xp.float64) - k_lo.astype(xp.float64)
    even = (k_a >= 0.25 * span) & (k_a <= 0.75 * span)
    return xp.where(even, mid, _unkey(k_mid))


def _solve_quantiles(lw, m, ls, q, rtol, max_iter):
    """Roots of ``F(y) = q`` for P independent 1-D mixtures (log weights, means and
    log scales [P, K]; levels q [P]): y [P].

    Bracket: with ``x_k = m_k + sigma_k Phi^-1(q)``, every ``Phi_k(min_k x_k) <= q``
    and every ``Phi_k(max_k x_k) >= q``, so F crosses q between them. Inside it,
    safeguarded Newton (rtsafe: bisect whenever Newton leaves the bracket or fails
    to halve the step before last) on ``g = log F(y) - log q`` for ``q <= 1/2`` and
    ``g = log(1 - q) - log S(y)`` above, which stays well scaled in both tails;
    each evaluation moves one end of the bracket to y. The bisection splits the
    floats of the bracket (:func:`_bisect`), so it shrinks a bracket from 1e80
    to 1 as fast as one from 2 to 1. A problem is done when ``|g| <= rtol``
    (F(y) = q to a relative rtol), when Newton would move it by less than 4 ulps,
    or when its bracket holds no float between its ends; the answer is the last
    Newton estimate where it lies in the bracket, else the last point. After
    ``max_iter`` iterations the unfinished problems bisect only, which ends each
    within 64 more steps (the keys of two floats differ by less than 2^64). Only
    unfinished problems are evaluated.
    """
    xp = _xp(m)
    eps = 4.0 * np.finfo(np.float64).eps
    big = np.finfo(np.float64).max
    j, r = split_log2(ls)  # sigma = 2^j exp(r): 1 / sigma = 2^-j exp(-r), applied by ldexp
    inv_r = xp.exp(-r)
    with np.errstate(over="ignore", invalid="ignore"):
        sigma = xp.exp(ls)
        zq = norm_ppf(q)[:, None]
        comp_q = m + xp.where(zq == 0, 0.0, sigma * zq)  # sigma = inf at the median: m
    comp_q = xp.clip(comp_q, -big, big)
    lo, hi = comp_q.min(axis=1), comp_q.max(axis=1)
    upper = q > 0.5
    target = xp.where(upper, xp.log1p(-q), xp.log(q))
    # start from the quantile of the moment-matched normal, inside the bracket
    w = xp.exp(lw)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = (w * m).sum(axis=1)
        sd = xp.sqrt((w * (sigma**2 + (m - mean[:, None]) ** 2)).sum(axis=1))
        y = mean + sd * norm_ppf(q)
    y = xp.where(xp.isfinite(y), xp.clip(y, lo, hi), 0.5 * lo + 0.5 * hi)
    out = y.copy()
    step_old = xp.full(y.shape, np.inf)
    act = xp.nonzero(_key(hi) > _key(lo) + 1)[0]  # unfinished problems (no int64 overflow)
    for it in range(max_iter + 66):
        if act.shape[0] == 0:
            break
        ya, loa, hia, ma, lsa, la = y[act], lo[act], hi[act], m[act], ls[act], lw[act]
        with np.errstate(over="ignore"):
            z = xp.ldexp(ya[:, None] - ma, -j[act]) * inv_r[act]  # (y - m) / sigma
        lc, lsf = norm_log_cdf_sf(z)
        log_pdf = logsumexp(la + norm_logpdf(z) - lsa)
        log_c, log_s = logsumexp(la + lc), logsumexp(la + lsf)
        up = upper[act]
        g = xp.where(up, target[act] - log_s, log_c - target[act])  # increasing in y
        loa = xp.where(g <= 0, ya, loa)
        hia = xp.where(g >= 0, ya, hia)
        with np.errstate(over="ignore", invalid="ignore"):  # where the density is 0: bisect
            step = -g * xp.exp(xp.where(up, log_s, log_c) - log_pdf)  # g / g'
            cand = ya + step
        inside = xp.isfinite(cand) & (cand > loa) & (cand < hia)
        final = (xp.abs(g) <= rtol) | (xp.abs(step) <= eps * xp.abs(ya))
        final |= _key(hia) <= _key(loa) + 1  # adjacent floats (or g = 0: lo = hi)
        newton = inside & (xp.abs(step) <= 0.5 * step_old[act]) & (it < max_iter)
        new = xp.where(newton, cand, _bisect(loa, hia))
        # the last Newton step polishes y where it stays in the bracket; where F is flat
        # it can leap out (F(y) = q already holds there): y stays
        done = xp.where((cand >= loa) & (cand <= hia), cand, ya)
        new = xp.where(final, done, new)
        y[act], lo[act], hi[act] = new, loa, hia
        step_old[act] = xp.abs(new - ya)
        out[act] = new
        act = act[~final]
    return out


def _abs_normal_mean(m, s):
    """``E|m + s Z|`` for ``Z ~ N(0, 1)``: ``2 s phi(m/s) + m erf(m / (s sqrt 2))``.

    (Grimit et al. 2006's ``A(m, s^2)``; ``|m|`` when ``s`` underflows to 0.)
    """
    xp = _xp(m)
    safe = xp.where(s > 0, s, 1.0)
    z = m / safe
    a = 2.0 * safe * xp.exp(norm_logpdf(z)) + m * erf(_SQRT1_2 * z)
    return xp.where(s > 0, a, xp.abs(m))


def crps(logits, mu, log_sigma, y):
    r"""CRPS of each marginal at y [N, D], in closed form (Grimit et al. 2006): float64.

    .. math::

        \mathrm{CRPS}(F, y) = E|X - y| - \tfrac12 E|X - X'|
          = \sum_k \pi_k A(y - \mu_k, \sigma_k^2)
            - \tfrac12 \sum_{k,l} \pi_k \pi_l A(\mu_k - \mu_l, \sigma_k^2 + \sigma_l^2)

    with ``A(m, s^2) = E|m + s Z|``. Lower is better; it has the units of y.
    """
    log_pi, mu, log_sigma = _marginals(logits, mu, log_sigma)
    (y,) = f64(y)
    xp = _xp(mu)
    n, k, d = mu.shape
    out = xp.empty((n, d), dtype=xp.float64)
    for r in _row_blocks(n, k * k * d * 4):
        pi, m, sig = xp.exp(log_pi[r]), mu[r], xp.exp(log_sigma[r])  # [n,K,1], [n,K,D]
        spread = (pi * _abs_normal_mean(y[r][:, None, :] - m, sig)).sum(axis=1)
        pair_s = xp.hypot(sig[:, :, None], sig[:, None, :])  # no underflow in sigma^2
        pair = _abs_normal_mean(m[:, :, None] - m[:, None, :], pair_s)  # [n,K,K,D]
        within = (pi[:, :, None] * pi[:, None, :] * pair).sum(axis=(1, 2))
        out[r] = spread - 0.5 * within
    return out


# --------------------------------------------------------------------------
# modes: every local maximum of the mixture density
# --------------------------------------------------------------------------
# Shapes: start points / candidates x [N, M, D] (M = K, one per component mean).
# Bound optimisation: by Jensen, log p(x) >= sum_k r_k log(pi_k N_k(x) / r_k)
# with r the responsibilities at the current x; maximising the bound gives the
# fixed point (mean shift) x' = (sum_k r_k P_k)^-1 sum_k r_k P_k mu_k, P_k the
# precision, and p never decreases. A precision is a vector [..., D] (its diagonal:
# diagonal and isotropic components) or a matrix [..., D, D] (full: U^T U); the
# helpers _pvec, _pquad, _psum, _psolve apply either. It converges linearly, slowly on
# flat tops, so a Newton step on log p is taken instead whenever the Hessian is
# negative definite, the step stays within one local sigma, and it climbs at
# least as high as the fixed-point step.


def _pvec(p, v):
    """``P v`` for a precision ``p`` (a diagonal [..., D] or a matrix [..., D, D])."""
    if p.ndim == v.ndim:
        return p * v
    return (p @ v[..., None])[..., 0]


def _pquad(p, v):
    """``v^T P v`` [...]: the squared length of ``v`` in the metric ``P``."""
    if p.ndim == v.ndim:
        return (v * v * p).sum(axis=-1)
    return (v * _pvec(p, v)).sum(axis=-1)


def _psum(r, prec):
    """``sum_k r_k P_k`` over axis 1, for weights ``r`` [A, K]."""
    w = r[..., None] if prec.ndim == 3 else r[..., None, None]
    return (w * prec).sum(axis=1)


def _psolve(p, g):
    """``P^-1 g``."""
    return g / p if p.ndim == g.ndim else _solve(p, g)


def _pmax(p):
    """The largest diagonal entry of each precision, [...]."""
    if p.ndim == 4:  # [N, K, D, D]
        return _xp(p).diagonal(p, axis1=-2, axis2=-1).max(axis=-1)
    return p.max(axis=-1)


def _mode_state(log_pi, mu, prec, log_norm, x):
    """One point per mixture: x [A, D] under (log_pi [A,K], mu [A,K,D], prec [A,K,D] or
    [A,K,D,D], log_norm [A,K]) gives log p [A], responsibilities r [A,K], and
    g_k = P_k (mu_k - x) [A,K,D]."""
    xp = _xp(x)
    diff = mu - x[:, None, :]
    with np.errstate(over="ignore", invalid="ignore"):  # far components: z^2 = inf
        g_k = _pvec(prec, diff)
        z2 = xp.where(diff == 0, 0.0, diff * g_k).sum(axis=-1)
    t = log_pi + log_norm - 0.5 * z2
    lp = logsumexp(t)
    r = xp.exp(t - lp[:, None])
    # a component with r = 0 adds nothing to the derivatives (its g_k may be inf: 0 * inf)
    return lp, r, xp.where(r[..., None] > 0, g_k, 0.0)


def _mode_derivs(r, g_k, prec):
    """Gradient g [A,D], Hessian H [A,D,D] of log p, and P = sum_k r_k P_k ([A,D], or
    [A,D,D] for full precisions).

    ``H = sum_k r_k (g_k g_k^T - P_k) - g g^T``: minus P plus the
    r-weighted covariance of the g_k, so ``-H <= P``.
    """
    xp = _xp(g_k)
    p = _psum(r, prec)
    g = (r[..., None] * g_k).sum(axis=1)
    h = xp.einsum("ak,akd,ake->ade", r, g_k, g_k) - g[:, :, None] * g[:, None, :]
    if p.ndim == 3:
        return g, h - p, p
    d = prec.shape[-1]
    idx = xp.arange(d)
    h[:, idx, idx] -= p
    return g, h, p


def _max_eig(h):
    xp = _xp(h)
    return h[..., 0, 0] if h.shape[-1] == 1 else xp.linalg.eigvalsh(h)[..., -1]


def _solve(h, g):
    xp = _xp(h)
    if h.shape[-1] == 1:
        return g / h[..., 0, :]
    return xp.linalg.solve(h, g[..., None])[..., 0]


def _quad(dx, a):
    """``dx^T A dx`` for dx [..., D] and A [..., D, D] (broadcast)."""
    return (dx[..., :, None] * a * dx[..., None, :]).sum(axis=(-1, -2))


def modes(logits, mu, log_sigma, tol: float = 1e-10, max_iter: int = 500,
          merge_tol: float = 1e-2):
    """All local modes of each row's mixture, highest density first.

    Returns ``(locations [N, K, D], log_density [N, K], count [N])`` in
    float64: row n has ``count[n]`` modes in its first slots; the remaining
    slots hold NaN and ``-inf``.

    One ascent starts from every component mean (every mode of a Gaussian
    mixture lies within the hull of the means, and in practice each has a
    component whose ascent reaches it). An ascent stops when its step is
    below ``tol`` local sigmas at both of its ends (a step from a broad
    component's flank can be tiny in its own metric and large in that of a
    narrow component where it lands); the log density is that of the end
    point. A component with zero responsibility adds nothing to a step (its
    terms may overflow far away: means 1e250 apart). Two end points are one
    mode when they are within ``merge_tol`` of each other in the metric of the
    log-density's curvature at both (the ``-H`` of :func:`_mode_derivs`) and
    within one local sigma; the higher one is kept. End points where the Hessian has a positive
    eigenvalue (saddles, met only from starts on their stable manifold) are
    dropped unless nothing else is left.
    """
    logits, mu, log_sigma = f64(logits, mu, log_sigma)
    xp = _xp(mu)
    n, k, d = mu.shape
    out_x = xp.empty((n, k, d))
    out_lp = xp.empty((n, k))
    count = xp.empty(n, dtype=xp.int64)
    for r in _row_blocks(n, k * k * (d * d + 3 * d) * 2):
        out_x[r], out_lp[r], count[r] = _modes_block(
            logits[r], mu[r], log_sigma[r], tol, max_iter, merge_tol)
    return out_x, out_lp, count


def _modes_block(logits, mu, log_sigma, tol, max_iter, merge_tol):
    xp = _xp(mu)
    n, k, d = mu.shape
    if fullcov.is_full(d, log_sigma.shape[-1]):
        u = fullcov.factor(log_sigma, d)
        prec = xp.einsum("nkji,nkjl->nkil", u, u)  # U^T U [N,K,D,D]
        log_det = log_sigma[..., :d].sum(axis=-1)
    else:
        ls = log_sigma + xp.zeros_like(mu)  # [N,K,D]
        prec, log_det = xp.exp(-2.0 * ls), ls.sum(axis=-1)
    # one ascent per (row, component): P = N K start points, each with its row's mixture
    row = xp.repeat(xp.arange(n), k)
    mix = (log_softmax(logits), mu, prec, -log_det - 0.5 * d * LOG_2PI)
    x = mu.reshape(n * k, d).copy()
    act = xp.arange(n * k)  # unfinished ascents
    for _ in range(max_iter):
        if act.shape[0] == 0:
            break
        state = [v[row[act]] for v in mix]
        xa = x[act]
        _, r, g_k = _mode_state(*state, xa)
        g, h, p = _mode_derivs(r, g_k, state[2])
        x_fp = xa + _psolve(p, g)  # the mean-shift fixed point, written as a step
        concave = _max_eig(h) < 0
        step = -_solve(xp.where(concave[:, None, None], h, -xp.eye(d)), g)
        x_nt = xa + step
        near = _pquad(p, step) <= 1.0
        lp_fp, r_fp, _ = _mode_state(*state, x_fp)
        lp_nt, r_nt, _ = _mode_state(*state, x_nt)
        # on a flat top both climb less than rounding: prefer Newton, which converges there
        use_nt = concave & near & (lp_nt >= lp_fp - 1e-14 * (1.0 + xp.abs(lp_fp)))
        x_new = xp.where(use_nt[:, None], x_nt, x_fp)
        # the step in local sigmas at both ends: from a broad component's flank a step can
        # be tiny in its own metric and large in that of a narrow one where it lands
        p_new = _psum(xp.where(use_nt[:, None], r_nt, r_fp), state[2])
        dx = x_new - xa
        moved = xp.sqrt(xp.maximum(_pquad(p, dx), _pquad(p_new, dx)))
        x[act] = x_new
        act = act[moved > tol]
    # log p, curvature and local precision at every end point
    lp, r, g_k = _mode_state(*[v[row] for v in mix], x)
    _, h, p = _mode_derivs(r, g_k, mix[2][row])
    x, lp, h = x.reshape(n, k, d), lp.reshape(n, k), h.reshape(n, k, d, d)
    p = p.reshape((n, k) + p.shape[1:])

    # highest first; a saddle counts only when it is a row's best point
    order = xp.argsort(-lp, axis=1)
    x = xp.take_along_axis(x, order[..., None], axis=1)
    lp = xp.take_along_axis(lp, order, axis=1)
    h = xp.take_along_axis(h, order[..., None, None], axis=1)
    p = xp.take_along_axis(p, order.reshape(order.shape + (1,) * (p.ndim - 2)), axis=1)
    kept = _max_eig(h) <= 1e-9 * _pmax(p)
    kept[:, 0] = True
    neg_h = -h
    for j in range(1, k):
        dx = x[:, :j] - x[:, j : j + 1]  # [N, j, D]
        # an overflow (inf, or NaN from inf - inf) means far apart: never merged
        with np.errstate(over="ignore", invalid="ignore"):
            curv = xp.maximum(_quad(dx, neg_h[:, :j]), _quad(dx, neg_h[:, j : j + 1]))
            local = xp.maximum(_pquad(p[:, :j], dx), _pquad(p[:, j : j + 1], dx))
            near = (xp.sqrt(xp.maximum(curv, 0.0)) <= merge_tol) & (local <= 1.0)
        kept[:, j] &= ~(near & kept[:, :j]).any(axis=1)
    # compact: kept modes first, still in order of density
    order = xp.argsort(xp.where(kept, 0, k) + xp.arange(k), axis=1)  # unique keys: stable
    kept = xp.take_along_axis(kept, order, axis=1)
    x = xp.where(kept[..., None], xp.take_along_axis(x, order[..., None], axis=1), xp.nan)
    lp = xp.where(kept, xp.take_along_axis(lp, order, axis=1), -xp.inf)
    return x, lp, kept.sum(axis=1)
