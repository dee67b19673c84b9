"""The standard normal distribution in float64, on NumPy or CuPy arrays, with no SciPy.

``erf``, ``erfc``, ``Phi`` (:func:`norm_cdf`), ``log phi``, ``log Phi`` and
``Phi^-1`` (:func:`norm_ppf`), each accurate to a few ulps in relative terms
over the whole real line, including both tails where ``Phi`` underflows. The
mixture CDF, quantiles and CRPS of :mod:`npmdn.distribution` are built on
these. The array module is taken from the input.
"""

from __future__ import annotations

import math

from ._arrays import array_module as _xp

# erfcx(x) = exp(x^2) erfc(x) for x >= 0 by W. J. Cody's rational Chebyshev
# approximations (Math. Comp. 23 (1969) 631-637; the coefficients of his
# CALERF), relative error below 1e-16 on three intervals. Working with the
# scaled function keeps log Phi finite far past where Phi underflows.

_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
_ERF_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
          2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
          2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
          1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
          3.43936767414372164e03, 1.23033935480374942e03)
_ERF_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERF_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)
_ERF_SMALL = 0.46875  # below: erf by its own series-like rational; above: erfc
_RSQRT_PI = 1.0 / math.sqrt(math.pi)
_SQRT1_2 = math.sqrt(0.5)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _erf_small(x):
    """``erf(x)`` for ``|x| <= 0.46875`` (Cody's first interval)."""
    z = x * x
    num, den = _ERF_A[4] * z, z
    for a, b in zip(_ERF_A[:3], _ERF_B[:3], strict=True):
        num, den = (num + a) * z, (den + b) * z
    return x * (num + _ERF_A[3]) / (den + _ERF_B[3])


def _erfcx_large(y):
    """``exp(y^2) erfc(y)`` for ``y > 0.46875`` (Cody's second and third intervals)."""
    xp = _xp(y)
    mid = xp.minimum(y, 4.0)  # each branch sees only arguments in its own range
    num, den = _ERF_C[8] * mid, mid
    for c, d in zip(_ERF_C[:7], _ERF_D[:7], strict=True):
        num, den = (num + c) * mid, (den + d) * mid
    r_mid = (num + _ERF_C[7]) / (den + _ERF_D[7])
    big = xp.maximum(y, 4.0)
    z = 1.0 / (big * big)
    num, den = _ERF_P[5] * z, z
    for p, q in zip(_ERF_P[:4], _ERF_Q[:4], strict=True):
        num, den = (num + p) * z, (den + q) * z
    r_big = (_RSQRT_PI - z * (num + _ERF_P[4]) / (den + _ERF_Q[4])) / big
    return xp.where(y <= 4.0, r_mid, r_big)


def _exp_neg_sq(y):
    """``exp(-y^2)`` without the rounding error of squaring a large y: with
    ``t = trunc(16 y) / 16`` the square ``t^2`` is exact and the rest is small."""
    xp = _xp(y)
    t = xp.trunc(y * 16.0) / 16.0
    return xp.exp(-t * t) * xp.exp(-(y - t) * (y + t))


def erfc(x):
    """Complementary error function, relative error ~1e-16 (Cody 1969)."""
    xp = _xp(x)
    x = xp.asarray(x, dtype=xp.float64)
    ax = xp.minimum(xp.abs(x), 30.0)  # erfc(27.3) already underflows to 0
    small = ax <= _ERF_SMALL
    tail = _exp_neg_sq(ax) * _erfcx_large(xp.maximum(ax, _ERF_SMALL))  # erfc(|x|)
    out = xp.where(x < 0, 2.0 - tail, tail)
    return xp.where(small, 1.0 - _erf_small(xp.where(small, x, 0.0)), out)


def erf(x):
    """Error function, relative error ~1e-16 (Cody 1969)."""
    xp = _xp(x)
    x = xp.asarray(x, dtype=xp.float64)
    ax = xp.minimum(xp.abs(x), 30.0)  # erf(6) already rounds to 1
    small = ax <= _ERF_SMALL
    big = 1.0 - _exp_neg_sq(ax) * _erfcx_large(xp.maximum(ax, _ERF_SMALL))
    return xp.where(small, _erf_small(xp.where(small, x, 0.0)), xp.copysign(big, x))


def norm_cdf(z):
    """Standard normal CDF ``Phi(z) = erfc(-z / sqrt 2) / 2``, relative accuracy in both tails."""
    return 0.5 * erfc(-_SQRT1_2 * z)


_Z_MAX = 1e150  # |z| beyond this: every density and tail is 0 (and z * z would overflow)


def norm_logpdf(z):
    z = _xp(z).clip(z, -_Z_MAX, _Z_MAX)
    return -0.5 * z * z - _LOG_SQRT_2PI


def norm_logcdf(z):
    """``log Phi(z)``, finite for every finite z.

    Left of ``z = -1`` it is ``log(erfcx(u) / 2) - u^2`` with ``u = -z / sqrt 2``,
    which never underflows; elsewhere ``log1p(-Phi(-z))``, exact near 0.
    """
    xp = _xp(z)
    z = xp.asarray(z, dtype=xp.float64)
    u = xp.clip(-_SQRT1_2 * z, _SQRT1_2, _Z_MAX)  # u >= 0.707 > 0.46875 on the left branch
    left = xp.log(0.5 * _erfcx_large(u)) - u * u
    right = xp.log1p(-norm_cdf(-xp.maximum(z, -1.0)))
    return xp.where(z < -1.0, left, right)


# Acklam's rational approximation to Phi^-1 (relative error < 1.2e-9), then
# two Newton steps on log Phi(x) = log p, which make it exact to rounding.
_PPF_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
          1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_PPF_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
          6.680131188771972e01, -1.328068155288572e01)
_PPF_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
          -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_PPF_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
          3.754408661907416e00)


def _horner(coefs, x):
    out = coefs[0] * x + coefs[1]
    for c in coefs[2:]:
        out = out * x + c
    return out


def _ppf_lower(p):
    """``Phi^-1(p)`` for ``0 < p <= 1/2`` (shape kept, float64)."""
    xp = _xp(p)
    r = xp.sqrt(-2.0 * xp.log(xp.minimum(p, 0.02425)))
    tail = _horner(_PPF_C, r) / (_horner(_PPF_D, r) * r + 1.0)
    t = xp.maximum(p, 0.02425) - 0.5
    s = t * t
    central = t * _horner(_PPF_A, s) / (_horner(_PPF_B, s) * s + 1.0)
    log_p = xp.log(p)
    for _ in range(2):
        # tail: Newton on log Phi(x) - log p (slope phi / Phi), well scaled at any depth;
        # centre: Newton on erf(x / sqrt 2) / 2 - (p - 1/2), exact in relative terms near 0
        lc = norm_logcdf(tail)
        tail = tail - (lc - log_p) * xp.exp(lc - norm_logpdf(tail))
        central = central - (0.5 * erf(_SQRT1_2 * central) - t) * xp.exp(-norm_logpdf(central))
    return xp.where(p < 0.02425, tail, central)


def norm_ppf(p):
    """Standard normal quantile ``Phi^-1(p)`` for ``0 < p < 1``, exact to a few ulps.

    The upper half uses ``-Phi^-1(1 - p)``; ``1 - p`` is exact for ``p >= 1/2``.
    """
    xp = _xp(p)
    p = xp.asarray(p, dtype=xp.float64)
    upper = p > 0.5
    return xp.where(upper, -_ppf_lower(xp.where(upper, 1.0 - p, 0.5)),
                    _ppf_lower(xp.where(upper, 0.5, p)))


def norm_log_cdf_sf(z):
    """``(log Phi(z), log Phi(-z))`` from one erfc evaluation at ``|z| / sqrt 2``."""
    xp = _xp(z)
    u = xp.minimum(_SQRT1_2 * xp.abs(z), _Z_MAX)
    us = xp.minimum(u, _ERF_SMALL)
    ub = xp.maximum(u, _ERF_SMALL)
    log_tail = xp.where(  # log Phi(-|z|) <= log 1/2
        u <= _ERF_SMALL,
        xp.log(0.5 - 0.5 * _erf_small(us)),
        xp.log(0.5 * _erfcx_large(ub)) - ub * ub,
    )
    log_body = xp.log1p(-xp.exp(log_tail))  # log Phi(|z|), exact: exp(log_tail) <= 1/2
    neg = z < 0
    return xp.where(neg, log_tail, log_body), xp.where(neg, log_body, log_tail)
