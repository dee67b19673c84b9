r"""The mixture-head math contract and its NumPy reference.

Every backend kernel (Numba, CUDA) is tested against the functions here.
They are written for readability, vectorized, and entirely in log space:
nothing is exponentiated and then logged, so densities far below the
smallest float never turn into ``log(0) = -inf`` or NaN.

Shapes (one section, stated once)
---------------------------------
=============  ============  ==================================================
``logits``     ``[N, K]``    unnormalised log mixing weights ``a``
``mu``         ``[N, K, D]`` component means
``log_sigma``  ``[N, K, S]`` raw scales ``s``: ``S = D`` diagonal, ``S = 1``
                             isotropic (one sigma shared by the D dimensions)
``y``          ``[N, D]``    targets
=============  ============  ==================================================

With ``sigma = exp(s)`` and ``log pi = log_softmax(a)``:

.. math::

    z_{kd} &= (y_d - \mu_{kd}) / \sigma_{kd} \\
    \log N_k &= -\tfrac12 \sum_d z_{kd}^2 - \sum_d s_{kd} - \tfrac{D}{2}\log 2\pi \\
    \log p(y) &= \operatorname{logsumexp}_k(\log\pi_k + \log N_k) \\
    r_k &= \operatorname{softmax}_k(\log\pi_k + \log N_k) \\
    \partial\,\mathrm{NLL}/\partial a_k &= \pi_k - r_k \\
    \partial\,\mathrm{NLL}/\partial \mu_{kd} &= -r_k z_{kd} / \sigma_{kd} \\
    \partial\,\mathrm{NLL}/\partial s_{kd} &= r_k (1 - z_{kd}^2)
        \quad\text{(isotropic: } r_k (D - \textstyle\sum_d z_{kd}^2)\text{)}

In the isotropic case ``sum_d s_kd = D s_k``. When ``D = 1`` the two
covariance types coincide, so ``S`` alone says which one is meant.

The derivations are in ``docs/derivation.md``. All functions accept NumPy or
CuPy arrays (the array module is taken from the input) except sampling, whose
Philox stream is NumPy-only here.
"""

from __future__ import annotations

import math

import numpy as np

from . import philox
from ._checks import is_device_array

LOG_2PI = math.log(2.0 * math.pi)
SAMPLE_METHODS = ("gumbel", "cumulative")


def _xp(a):
    if is_device_array(a):
        import cupy

        return cupy
    return np


# --------------------------------------------------------------------------
# log-space primitives (the max is taken per row, never over the whole array)
# --------------------------------------------------------------------------


def logsumexp(t):
    """``log(sum(exp(t)))`` over the last axis, shifted by each row's own max.

    A row that is ``-inf`` everywhere gives ``-inf`` (not NaN).
    """
    xp = _xp(t)
    m = xp.max(t, axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)
    return xp.log(xp.sum(xp.exp(t - m), axis=-1)) + m[..., 0]


def log_softmax(a):
    """``a - logsumexp(a)`` over the last axis: log mixing weights from logits."""
    return a - logsumexp(a)[..., None]


def softmax(a):
    return _xp(a).exp(log_softmax(a))


# --------------------------------------------------------------------------
# densities and the fused NLL + gradient
# --------------------------------------------------------------------------


def _dims(mu, log_sigma):
    d = mu.shape[-1]
    s = log_sigma.shape[-1]
    if s not in (1, d):
        raise ValueError(f"log_sigma's last axis must be 1 or D={d}, got {s}")
    return d, s


def component_log_density(mu, log_sigma, y):
    """``log N_k`` [N, K] and the standardized residuals ``z`` [N, K, D]."""
    d, s = _dims(mu, log_sigma)
    xp = _xp(mu)
    inv_sigma = xp.exp(-log_sigma)  # [N,K,S]: one exp per scale
    z = (y[:, None, :] - mu) * inv_sigma  # [N,K,D]
    # sum_d s_kd: the isotropic s_k counts once per dimension
    log_det = log_sigma.sum(axis=-1) * (d if s == 1 else 1)
    log_n = -0.5 * (z * z).sum(axis=-1) - log_det - 0.5 * d * LOG_2PI
    return log_n, z


def log_prob(logits, mu, log_sigma, y):
    """``log p(y | mixture)`` per row, [N]."""
    log_n, _ = component_log_density(mu, log_sigma, y)
    return logsumexp(log_softmax(logits) + log_n)


def responsibilities(logits, mu, log_sigma, y):
    """Posterior component probabilities ``r`` [N, K] given y."""
    log_n, _ = component_log_density(mu, log_sigma, y)
    return softmax(log_softmax(logits) + log_n)


def nll_grad(logits, mu, log_sigma, y, out=None):
    """Per-row NLL [N] and its gradient with respect to the head output.

    Returns ``(nll, d_logits, d_mu, d_log_sigma)`` with the shapes of the
    inputs. The gradient is of each row's own NLL (not divided by N).
    With ``out=(nll, d_logits, d_mu, d_log_sigma)`` the results are written
    into those arrays (which may be strided views) and returned.
    """
    d, s = _dims(mu, log_sigma)
    xp = _xp(mu)
    log_pi = log_softmax(logits)
    inv_sigma = xp.exp(-log_sigma)
    z = (y[:, None, :] - mu) * inv_sigma
    z2 = z * z
    log_det = log_sigma.sum(axis=-1) * (d if s == 1 else 1)
    log_n = -0.5 * z2.sum(axis=-1) - log_det - 0.5 * d * LOG_2PI
    t = log_pi + log_n
    lse = logsumexp(t)  # log p(y)
    r = xp.exp(t - lse[:, None])  # responsibilities
    nll = -lse
    d_logits = xp.exp(log_pi) - r  # pi - r
    d_mu = -r[..., None] * z * inv_sigma  # -r z / sigma
    if s == 1:
        d_log_sigma = (r * (d - z2.sum(axis=-1)))[..., None]  # r (D - sum_d z^2)
    else:
        d_log_sigma = r[..., None] * (1.0 - z2)  # r (1 - z^2)
    result = (nll, d_logits, d_mu, d_log_sigma)
    if out is None:
        return result
    for dst, src in zip(out, result):
        dst[...] = src
    return tuple(out)


# --------------------------------------------------------------------------
# the mixture as a distribution: weights, moments
# --------------------------------------------------------------------------


def weights(logits, temperature: float = 1.0):
    """Mixing weights ``pi = softmax(a / T)`` [N, K].

    ``T = 1`` gives the model's weights; ``T < 1`` sharpens them towards the
    heaviest component and ``T = 0`` puts all weight on it (ties: lowest k);
    ``T > 1`` flattens them towards uniform.
    """
    xp = _xp(logits)
    if temperature == 0:
        k = xp.argmax(logits, axis=-1)
        return (xp.arange(logits.shape[-1])[None, :] == k[:, None]).astype(logits.dtype)
    return softmax(logits / logits.dtype.type(temperature))


def params(logits, mu, log_sigma):
    """``(pi [N,K], mu [N,K,D], sigma [N,K,S])``: the mixture in natural units."""
    xp = _xp(mu)
    return softmax(logits), mu, xp.exp(log_sigma)


def mean(logits, mu):
    """Mixture mean ``sum_k pi_k mu_k`` [N, D]."""
    return (softmax(logits)[..., None] * mu).sum(axis=1)


def variance(logits, mu, log_sigma):
    """Per-dimension predictive variance [N, D] by the law of total variance.

    ``Var[y_d] = sum_k pi_k sigma_kd^2 + sum_k pi_k (mu_kd - m_d)^2``:
    the expected within-component variance plus the variance of the means.
    """
    xp = _xp(mu)
    pi = softmax(logits)[..., None]
    m = (pi * mu).sum(axis=1)
    within = (pi * xp.exp(2.0 * log_sigma)).sum(axis=1)  # broadcasts S=1 over D
    between = (pi * (mu - m[:, None, :]) ** 2).sum(axis=1)
    return within * xp.ones_like(m) + between


def covariance(logits, mu, log_sigma):
    """Full predictive covariance [N, D, D] by the law of total covariance.

    ``Cov[y] = sum_k pi_k diag(sigma_k^2) + sum_k pi_k (mu_k - m)(mu_k - m)^T``.
    """
    xp = _xp(mu)
    pi = softmax(logits)
    m = (pi[..., None] * mu).sum(axis=1)
    dev = mu - m[:, None, :]
    between = xp.einsum("nk,nkd,nke->nde", pi, dev, dev)
    var = xp.exp(2.0 * log_sigma) * xp.ones_like(mu)  # [N,K,D]
    within = (pi[..., None] * var).sum(axis=1)
    d = mu.shape[-1]
    idx = xp.arange(d)
    between[:, idx, idx] += within
    return between


def component_covariances(mu, log_sigma):
    """Each component's covariance matrix [N, K, D, D]: ``diag(sigma_k^2)`` (isotropic:
    ``sigma_k^2 I``), in the dtype of ``log_sigma``."""
    xp = _xp(mu)
    d, _ = _dims(mu, log_sigma)
    var = xp.exp(2.0 * log_sigma) * xp.ones_like(mu)  # [N,K,D], S=1 broadcast over D
    out = xp.zeros((*mu.shape, d), dtype=log_sigma.dtype)
    idx = xp.arange(d)
    out[..., idx, idx] = var
    return out


# --------------------------------------------------------------------------
# sampling on the Philox stream (see npmdn.philox for the layout)
# --------------------------------------------------------------------------


def choose_components(logits, uniforms, method: str = "gumbel", temperature: float = 1.0):
    """Component indices [N, J] from choice uniforms.

    ``uniforms`` is [N, J, K] for Gumbel-max and [N, J] (or [N, J, 1]) for
    the cumulative method. All arithmetic is float64 whatever the dtype of
    ``logits``, so every backend makes the same choices.

    * ``"gumbel"``: ``k = argmax_k (a_k / T + g_k)`` with Gumbel noise
      ``g_k = -log(-log u_k)``; ties go to the lowest k.
    * ``"cumulative"``: with ``pi = softmax(a / T)`` and running sums
      ``c_k = pi_0 + ... + pi_k``, ``k`` is the smallest index with
      ``u < c_k``; if rounding leaves ``u >= c_{K-1}``, the last component
      with ``pi_k > 0``.
    * ``T = 0`` (either method): ``k = argmax_k a_k``, no randomness used.
    """
    a = np.asarray(logits, dtype=np.float64)
    n, k = a.shape
    u = np.asarray(uniforms, dtype=np.float64)
    j = u.shape[1]
    if temperature == 0:
        return np.broadcast_to(np.argmax(a, axis=-1)[:, None], (n, j)).copy()
    a = a / float(temperature)
    if method == "gumbel":
        keys = a[:, None, :] - np.log(-np.log(u))
        return np.argmax(keys, axis=-1)
    if method == "cumulative":
        u = u.reshape(n, j)
        a = a - a.max(axis=-1, keepdims=True)
        e = np.exp(a)
        pi = e / e.sum(axis=-1, keepdims=True)
        c = np.cumsum(pi, axis=-1)
        idx = (c[:, None, :] <= u[..., None]).sum(axis=-1)  # first k with u < c_k
        last = k - 1 - np.argmax((pi > 0)[:, ::-1], axis=-1)  # last k with pi_k > 0
        return np.where(idx >= k, last[:, None], idx)
    raise ValueError(f"method must be one of {SAMPLE_METHODS}, got {method!r}")


def sample(
    logits,
    mu,
    log_sigma,
    n_samples: int,
    seed: int,
    row_offset: int = 0,
    method: str = "gumbel",
    temperature: float = 1.0,
    sigma_scale: float = 1.0,
):
    """Draw ``n_samples`` values per row: [N, n_samples, D] in the input dtype.

    Draw ``j`` of global row ``i = row_offset + n`` uses only the Philox
    stream at (seed, i, j), so results do not depend on the batch size or on
    how rows are split into calls. The component is chosen by
    :func:`choose_components`; the value is
    ``y_d = mu_kd + (sigma_scale * sigma_kd) * eps_d`` with
    ``eps`` the stream's normals cast to the input dtype.
    ``temperature`` reshapes the weights (``pi ∝ pi^(1/T)``) and
    ``sigma_scale`` multiplies every sigma (0 returns the chosen means).
    """
    logits, mu, log_sigma = (np.asarray(v) for v in (logits, mu, log_sigma))
    n, k = logits.shape
    d, _ = _dims(mu, log_sigma)
    dtype = mu.dtype
    rows = row_offset + np.arange(n, dtype=np.uint64)
    draws = np.arange(n_samples, dtype=np.uint64)
    n_words = k if method == "gumbel" else 1
    u = philox.choice_uniforms(seed, rows, draws, n_words)
    comp = choose_components(logits, u, method, temperature)  # [N, J]
    first = philox.normal_offset(n_words)  # the normals follow the choice words
    eps = philox.normals(seed, rows, draws, d, first).astype(dtype)  # [N, J, D]
    mu_k = np.take_along_axis(mu, comp[..., None], axis=1)  # [N, J, D]
    sigma_k = np.exp(np.take_along_axis(log_sigma, comp[..., None], axis=1))  # [N, J, S]
    return mu_k + (dtype.type(sigma_scale) * sigma_k) * eps


# --------------------------------------------------------------------------
# the standard normal: erfc, Phi, log Phi, Phi^-1 (float64, any xp, no SciPy)
# --------------------------------------------------------------------------
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


# --------------------------------------------------------------------------
# the mixture as a distribution of each output dimension (its marginals)
# --------------------------------------------------------------------------
# The marginal of a diagonal (or isotropic) Gaussian mixture in dimension d is
# the 1-D mixture with weights pi_k, means mu_kd and scales sigma_kd. Shapes:
# y [N, D] -> [N, D]; levels q [Q] -> [N, Q, D]. Everything below computes in
# float64 whatever the input dtype, and works on NumPy or CuPy arrays.

_BLOCK = 1 << 20  # float64 elements per temporary: bounds memory for any N


def _f64(*arrays):
    xp = _xp(arrays[0])
    return [xp.asarray(a, dtype=xp.float64) for a in arrays]


def _marginals(logits, mu, log_sigma):
    """``(log_pi [N,K,1], mu [N,K,D], log_sigma [N,K,D])`` in float64 (S=1 broadcast)."""
    logits, mu, log_sigma = _f64(logits, mu, log_sigma)
    return log_softmax(logits)[..., None], mu, log_sigma + _xp(mu).zeros_like(mu)


def _row_blocks(n, per_row):
    """Row slices whose temporaries hold about ``_BLOCK`` elements each."""
    rows = max(1, _BLOCK // max(1, per_row))
    for a in range(0, n, rows):
        yield slice(a, min(n, a + rows))


def _lse_axis(t, axis):
    return logsumexp(_xp(t).moveaxis(t, axis, -1))


def _norm_log_cdf_sf(z):
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


def cdf(logits, mu, log_sigma, y):
    """Marginal CDFs ``F_d(y_d) = sum_k pi_k Phi((y_d - mu_kd) / sigma_kd)``: [N, D], float64.

    A sum of positive terms, so it keeps its relative accuracy far into the
    left tail; use :func:`sf` for ``1 - F`` in the right tail.
    """
    log_pi, mu, log_sigma = _marginals(logits, mu, log_sigma)
    (y,) = _f64(y)
    z = (y[:, None, :] - mu) * _xp(mu).exp(-log_sigma)
    # the weights sum to 1 only to rounding: keep a probability a probability
    return _xp(mu).minimum((_xp(mu).exp(log_pi) * norm_cdf(z)).sum(axis=1), 1.0)


def sf(logits, mu, log_sigma, y):
    """Marginal survival functions ``1 - F_d(y_d)`` [N, D], accurate where F is near 1."""
    log_pi, mu, log_sigma = _marginals(logits, mu, log_sigma)
    (y,) = _f64(y)
    z = (y[:, None, :] - mu) * _xp(mu).exp(-log_sigma)
    return _xp(mu).minimum((_xp(mu).exp(log_pi) * norm_cdf(-z)).sum(axis=1), 1.0)


def log_cdf(logits, mu, log_sigma, y):
    """``log F_d(y_d)`` [N, D]: finite however deep in the left tail y lies."""
    log_pi, mu, log_sigma = _marginals(logits, mu, log_sigma)
    (y,) = _f64(y)
    z = (y[:, None, :] - mu) * _xp(mu).exp(-log_sigma)
    return _xp(mu).minimum(_lse_axis(log_pi + norm_logcdf(z), 1), 0.0)


def quantile(logits, mu, log_sigma, q, rtol: float = 1e-12, max_iter: int = 200):
    """Marginal quantiles ``F_d^-1(q)`` for levels q [Q] in (0, 1): [N, Q, D], float64.

    Each (row, level, dimension) is one 1-D problem, solved by
    :func:`_solve_quantiles`; rows go in blocks that bound memory.
    """
    xp = _xp(mu)
    (q,) = _f64(xp.asarray(q).reshape(-1))
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
    return out


def _solve_quantiles(lw, m, ls, q, rtol, max_iter):
    """Roots of ``F(y) = q`` for P independent 1-D mixtures (log weights, means and
    log scales [P, K]; levels q [P]): y [P].

    Bracket: with ``x_k = m_k + sigma_k Phi^-1(q)``, every ``Phi_k(min_k x_k) <= q``
    and every ``Phi_k(max_k x_k) >= q``, so F crosses q between them. Inside it,
    safeguarded Newton (rtsafe: bisect whenever Newton leaves the bracket or fails
    to halve the step before last) on ``g = log F(y) - log q`` for ``q <= 1/2`` and
    ``g = log(1 - q) - log S(y)`` above, which stays well scaled in both tails.
    A problem stops when its step or bracket is below ``rtol * (|y| + min_k sigma_k)``;
    only unfinished problems are evaluated.
    """
    xp = _xp(m)
    sigma = xp.exp(ls)
    comp_q = m + sigma * norm_ppf(q)[:, None]
    lo, hi = comp_q.min(axis=1), comp_q.max(axis=1)
    scale = sigma.min(axis=1)
    upper = q > 0.5
    target = xp.where(upper, xp.log1p(-q), xp.log(q))
    # start from the quantile of the moment-matched normal, inside the bracket
    w = xp.exp(lw)
    mean = (w * m).sum(axis=1)
    sd = xp.sqrt((w * (sigma**2 + (m - mean[:, None]) ** 2)).sum(axis=1))
    y = xp.clip(mean + sd * norm_ppf(q), lo, hi)
    y = xp.where(hi - lo <= rtol * (xp.abs(lo) + scale), lo, y)
    out = y.copy()
    step_old = hi - lo
    act = xp.nonzero(hi - lo > rtol * (xp.abs(lo) + scale))[0]  # unfinished problems
    for _ in range(max_iter):
        if act.shape[0] == 0:
            break
        ya, loa, hia = y[act], lo[act], hi[act]
        z = (ya[:, None] - m[act]) * xp.exp(-ls[act])
        lc, lsf = _norm_log_cdf_sf(z)
        la = lw[act]
        log_pdf = logsumexp(la + norm_logpdf(z) - ls[act])
        log_c, log_s = logsumexp(la + lc), logsumexp(la + lsf)
        up = upper[act]
        g = xp.where(up, target[act] - log_s, log_c - target[act])  # increasing in y
        loa = xp.where(g <= 0, ya, loa)
        hia = xp.where(g >= 0, ya, hia)
        with np.errstate(over="ignore", invalid="ignore"):  # far from the root: bisect
            step = -g * xp.exp(xp.where(up, log_s, log_c) - log_pdf)  # g / g'
        cand = ya + step
        tol = rtol * (xp.abs(ya) + scale[act])
        final = xp.abs(step) <= tol  # converged (also when the step is below one ulp)
        newton = xp.isfinite(cand) & (cand > loa) & (cand < hia)
        newton &= xp.abs(step) <= 0.5 * xp.abs(step_old[act])
        new = xp.where(newton, cand, 0.5 * (loa + hia))
        new = xp.where(final, xp.clip(cand, loa, hia), new)
        moved = xp.abs(new - ya)
        y[act], lo[act], hi[act], step_old[act] = new, loa, hia, moved
        out[act] = new
        act = act[~final & (moved > tol) & (hia - loa > tol)]
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
    (y,) = _f64(y)
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
# diagonal precision, and p never decreases. It converges linearly, slowly on
# flat tops, so a Newton step on log p is taken instead whenever the Hessian is
# negative definite, the step stays within one local sigma, and it climbs at
# least as high as the fixed-point step.


def _mode_state(log_pi, mu, prec, log_norm, x):
    """One point per mixture: x [A, D] under (log_pi [A,K], mu [A,K,D], prec [A,K,D],
    log_norm [A,K]) gives log p [A], responsibilities r [A,K], g_k = P_k (mu_k - x) [A,K,D]."""
    diff = mu - x[:, None, :]
    g_k = prec * diff
    t = log_pi + log_norm - 0.5 * (diff * g_k).sum(axis=-1)
    lp = logsumexp(t)
    return lp, _xp(x).exp(t - lp[:, None]), g_k


def _mode_derivs(r, g_k, prec):
    """Gradient g [A,D], Hessian H [A,D,D] of log p, and P = sum_k r_k P_k [A,D].

    ``H = sum_k r_k (g_k g_k^T - P_k) - g g^T``: minus P plus the
    r-weighted covariance of the g_k, so ``-H <= diag(P)``.
    """
    xp = _xp(g_k)
    p = (r[..., None] * prec).sum(axis=1)
    g = (r[..., None] * g_k).sum(axis=1)
    h = xp.einsum("ak,akd,ake->ade", r, g_k, g_k) - g[:, :, None] * g[:, None, :]
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
    below ``tol`` local sigmas. Two end points are one mode when they are
    within ``merge_tol`` of each other in the metric of the log-density's
    curvature at both (the ``-H`` of :func:`_mode_derivs`) and within one local
    sigma; the higher one is kept. End points where the Hessian has a positive
    eigenvalue (saddles, met only from starts on their stable manifold) are
    dropped unless nothing else is left.
    """
    logits, mu, log_sigma = _f64(logits, mu, log_sigma)
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
    ls = log_sigma + xp.zeros_like(mu)  # [N,K,D]
    # one ascent per (row, component): P = N K start points, each with its row's mixture
    row = xp.repeat(xp.arange(n), k)
    mix = (log_softmax(logits), mu, xp.exp(-2.0 * ls), -ls.sum(axis=-1) - 0.5 * d * LOG_2PI)
    x = mu.reshape(n * k, d).copy()
    lp = xp.empty(n * k)
    act = xp.arange(n * k)  # unfinished ascents
    for it in range(max_iter + 1):
        state = [v[row[act]] for v in mix]
        xa = x[act]
        lpa, r, g_k = _mode_state(*state, xa)
        lp[act] = lpa
        if it == max_iter or act.shape[0] == 0:
            break
        g, h, p = _mode_derivs(r, g_k, state[2])
        x_fp = xa + g / p  # the mean-shift fixed point, written as a step
        concave = _max_eig(h) < 0
        step = -_solve(xp.where(concave[:, None, None], h, -xp.eye(d)), g)
        x_nt = xa + step
        near = (step * step * p).sum(axis=-1) <= 1.0
        lp_fp = _mode_state(*state, x_fp)[0]
        lp_nt = _mode_state(*state, x_nt)[0]
        # on a flat top both climb less than rounding: prefer Newton, which converges there
        use_nt = concave & near & (lp_nt >= lp_fp - 1e-14 * (1.0 + xp.abs(lp_fp)))
        x_new = xp.where(use_nt[:, None], x_nt, x_fp)
        moved = xp.sqrt(((x_new - xa) ** 2 * p).sum(axis=-1))
        x[act] = x_new
        act = act[moved > tol]
    # curvature and local precision at every end point
    _, r, g_k = _mode_state(*[v[row] for v in mix], x)
    _, h, p = _mode_derivs(r, g_k, mix[2][row])
    x, lp, h, p = x.reshape(n, k, d), lp.reshape(n, k), h.reshape(n, k, d, d), p.reshape(n, k, d)

    # highest first; a saddle counts only when it is a row's best point
    order = xp.argsort(-lp, axis=1)
    x = xp.take_along_axis(x, order[..., None], axis=1)
    lp = xp.take_along_axis(lp, order, axis=1)
    h = xp.take_along_axis(h, order[..., None, None], axis=1)
    p = xp.take_along_axis(p, order[..., None], axis=1)
    kept = _max_eig(h) <= 1e-9 * p.max(axis=-1)
    kept[:, 0] = True
    neg_h = -h
    for j in range(1, k):
        dx = x[:, :j] - x[:, j : j + 1]  # [N, j, D]
        curv = xp.maximum(_quad(dx, neg_h[:, :j]), _quad(dx, neg_h[:, j : j + 1]))
        local = xp.maximum((dx * dx * p[:, :j]).sum(-1), (dx * dx * p[:, j : j + 1]).sum(-1))
        same = (curv <= merge_tol**2) & (local <= 1.0) & kept[:, :j]
        kept[:, j] &= ~same.any(axis=1)
    # compact: kept modes first, still in order of density
    order = xp.argsort(xp.where(kept, 0, k) + xp.arange(k), axis=1)  # unique keys: stable
    kept = xp.take_along_axis(kept, order, axis=1)
    x = xp.where(kept[..., None], xp.take_along_axis(x, order[..., None], axis=1), xp.nan)
    lp = xp.where(kept, xp.take_along_axis(lp, order, axis=1), -xp.inf)
    return x, lp, kept.sum(axis=1)
