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
                             isotropic (one sigma shared by the D dimensions),
                             ``S = D (D + 1) / 2`` full (the packed upper factor
                             of each precision, :mod:`npmdn.fullcov`)
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

In the isotropic case ``sum_d s_kd = D s_k``. A full-covariance component has
``z = U (y - mu_k)`` with ``U`` its precision's upper Cholesky factor and the same
``log N_k`` (:mod:`npmdn.fullcov` holds its layout and the pieces that differ).
``S`` alone says which kind is meant: ``1``, ``D`` and ``D (D + 1) / 2`` differ
for every ``D >= 2``, and when ``D = 1`` the three kinds are one density.

The derivations are in ``docs/derivation.md``. All functions accept NumPy or
CuPy arrays (the array module is taken from the input) except sampling, whose
Philox stream is NumPy-only here. The mixture as a distribution beyond its
moments (CDF, quantiles, CRPS, modes) is in :mod:`npmdn.distribution`; the
standard normal's special functions in :mod:`npmdn.normal`.
"""

from __future__ import annotations

import math

import numpy as np

from . import fullcov, philox
from ._arrays import array_module as _xp

LOG_2PI = math.log(2.0 * math.pi)
SAMPLE_METHODS = ("gumbel", "cumulative")
# what log_sigma [N, K, S] means: one scale per dimension (S = D), one per component
# (S = 1), or each component's packed precision factor (S = D (D + 1) / 2)
COVARIANCES = ("diagonal", "isotropic", "full")


def scale_size(d: int, covariance: str) -> int:
    """``S``, the raw scale parameters per component of a ``covariance`` mixture of D outputs."""
    return {"diagonal": d, "isotropic": 1, "full": fullcov.n_scales(d)}[covariance]


def covariance_kind(d: int, s: int) -> str:
    """The covariance kind that ``log_sigma [..., S]`` holds for D outputs ("diagonal"
    when ``D = 1``, where the three are the same density); ValueError for another S."""
    if s == d:
        return "diagonal"
    if s == 1:
        return "isotropic"
    if fullcov.is_full(d, s):
        return "full"
    raise ValueError(
        f"log_sigma's last axis must be 1 (isotropic), D={d} (diagonal) or "
        f"D(D+1)/2={fullcov.n_scales(d)} (full), got {s}")


# --------------------------------------------------------------------------
# log-space primitives (the max is taken per row, never over the whole array)
# --------------------------------------------------------------------------


def _row_max(t):
    """Each row's max [..., 1], 0 where it is not finite (a row of -inf stays -inf below)."""
    xp = _xp(t)
    m = xp.max(t, axis=-1, keepdims=True)
    return xp.where(xp.isfinite(m), m, t.dtype.type(0))


def logsumexp(t):
    """``log(sum(exp(t)))`` over the last axis, shifted by each row's own max.

    A row that is ``-inf`` everywhere gives ``-inf`` (not NaN), without a warning.
    """
    xp = _xp(t)
    m = _row_max(t)
    with np.errstate(divide="ignore"):  # log(0) = -inf is the answer for such a row
        return xp.log(xp.sum(xp.exp(t - m), axis=-1)) + m[..., 0]


def log_softmax(a):
    """``(a - max a) - log(sum(exp(a - max a)))`` over the last axis: log mixing weights.

    The row max is subtracted first: ``a_k - max a`` is exact for logits of any
    common offset, so the result depends on the logits only through their
    differences (``a - logsumexp(a)`` would round the log-sum away next to a
    large offset: logits ``[1e16, 1e16]`` gave weights ``[1, 1]``).
    """
    xp = _xp(a)
    b = a - _row_max(a)
    return b - xp.log(xp.sum(xp.exp(b), axis=-1, keepdims=True))


def softmax(a):
    return _xp(a).exp(log_softmax(a))


# --------------------------------------------------------------------------
# densities and the fused NLL + gradient
# --------------------------------------------------------------------------


def _dims(mu, log_sigma):
    d = mu.shape[-1]
    s = log_sigma.shape[-1]
    covariance_kind(d, s)  # checks S
    return d, s


def component_log_density(mu, log_sigma, y):
    """``log N_k`` [N, K], residuals ``z`` [N, K, D], ``1 / sigma`` [N, K, S] and
    ``sum_d z_kd^2 / 2`` [N, K].

    Where 1 / sigma overflows (``s < -709.8``, float32 ``-88.7``) a target on the
    mean still has ``z = 0``, not ``0 * inf``; ``z^2 / 2`` is formed as
    ``(z / 2) z``, finite wherever it fits even when ``z^2`` does not.
    """
    d, s = _dims(mu, log_sigma)
    if fullcov.is_full(d, s):  # z = U (y - mu); the third result is U's diagonal, 1 / sigma
        return fullcov.log_density(mu, log_sigma, y)
    xp = _xp(mu)
    # an overflow here (1 / sigma, z, z^2 = inf) is a density of 0: log N = -inf;
    # 0 * inf on the mean is replaced by z = 0
    with np.errstate(over="ignore", invalid="ignore"):
        inv_sigma = xp.exp(-log_sigma)  # [N,K,S]: one exp per scale
        diff = y[:, None, :] - mu  # [N,K,D]
        z = xp.where(diff == 0, mu.dtype.type(0), diff * inv_sigma)
        half_z2 = ((0.5 * z) * z).sum(axis=-1)  # exactly 0.5 * sum z^2 wherever that fits
    # sum_d s_kd: the isotropic s_k counts once per dimension
    log_det = log_sigma.sum(axis=-1) * (d if s == 1 else 1)
    log_n = -half_z2 - log_det - 0.5 * d * LOG_2PI
    return log_n, z, inv_sigma, half_z2


def log_prob(logits, mu, log_sigma, y):
    """``log p(y | mixture)`` per row, [N]."""
    log_n = component_log_density(mu, log_sigma, y)[0]
    return logsumexp(log_softmax(logits) + log_n)


def responsibilities(logits, mu, log_sigma, y):
    """Posterior component probabilities ``r`` [N, K] given y."""
    log_n = component_log_density(mu, log_sigma, y)[0]
    return softmax(log_softmax(logits) + log_n)


def nll_grad(logits, mu, log_sigma, y, out=None):
    """Per-row NLL [N] and its gradient with respect to the head output.

    Returns ``(nll, d_logits, d_mu, d_log_sigma)`` with the shapes of the
    inputs. The gradient is of each row's own NLL (not divided by N).
    With ``out=(nll, d_logits, d_mu, d_log_sigma)`` the results are written
    into those arrays (which may be strided views) and returned.

    For full factors ``d_log_sigma`` is packed as ``log_sigma`` is:
    ``r (1 - z_i U_ii delta_i)`` for each ``s_i``, then ``r z_i delta_j`` for each
    ``U_ij`` (:func:`npmdn.fullcov.grad_params`).

    A component with ``r_k = 0`` exactly gets a zero gradient for its mean and
    scales, whatever its ``z`` (which may be infinite for a collapsed
    component far from y: ``0 * inf`` must not become NaN).
    """
    d, s = _dims(mu, log_sigma)
    xp = _xp(mu)
    zero = mu.dtype.type(0)
    log_pi = log_softmax(logits)
    log_n, z, inv_sigma, half_z2 = component_log_density(mu, log_sigma, y)
    t = log_pi + log_n
    # r = softmax(t) with the row max first, as log_softmax: exp(t - log p) would round
    # log p's log-sum away where |t| is huge (z^2 ~ 1e308: r = 1 for two equal components)
    m = _row_max(t)
    e = xp.exp(t - m)
    total = e.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):  # log p(y) = -inf: NaN gradient
        lse = (xp.log(total) + m)[:, 0]  # log p(y)
        r = e / total  # responsibilities
    nll = -lse
    d_logits = xp.exp(log_pi) - r  # pi - r
    dead = r == 0  # NaN (a row whose density is not finite) stays NaN
    rk = r[..., None]
    if fullcov.is_full(d, s):
        d_mu, d_log_sigma = fullcov.grad_params(r, dead, z, inv_sigma, mu, log_sigma, y)
        return _written((nll, d_logits, d_mu, d_log_sigma), out)
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN only where r = 0
        z_inv = xp.where(z == 0, zero, z * inv_sigma)  # z / sigma; 0 on the mean
        d_mu = xp.where(dead[..., None], zero, -rk * z_inv)  # -r z / sigma
        if s == 1:
            # r (D - sum_d z^2) = r D - 2 r (sum_d z^2 / 2)
            d_log_sigma = xp.where(dead, zero, r * d - 2 * (r * half_z2))[..., None]
        else:
            # r (1 - z^2) = r - (r z) z
            d_log_sigma = xp.where(dead[..., None], zero, rk - (rk * z) * z)
    return _written((nll, d_logits, d_mu, d_log_sigma), out)


def _written(result, out):
    if out is None:
        return result
    for dst, src in zip(out, result):
        dst[...] = src
    return tuple(out)


# --------------------------------------------------------------------------
# the sigma floor (MDN's min_sigma): a reparametrisation of the raw scales
# --------------------------------------------------------------------------


def floor_log_sigma(log_sigma, log_floor, out=None):
    """Raw scales with a floor: ``s' = logaddexp(s, log f)``, i.e. ``exp(s') = exp(s) + f``.

    ``log_sigma`` [..., S]; ``log_floor`` [S] (or a scalar), in the same units
    (``log f`` of the floor ``f > 0``). Every sigma ``exp(s')`` is at least
    ``f`` (to the rounding of the dtype) and the map is smooth and increasing,
    so the head's contract and kernels are unchanged: they see ``s'``. The
    gradient is :func:`floor_log_sigma_grad`. ``out`` may be ``log_sigma``.
    """
    xp = _xp(log_sigma)
    lf = xp.asarray(log_floor, dtype=log_sigma.dtype)
    return xp.logaddexp(log_sigma, lf, out=out)


def floor_log_sigma_grad(log_sigma, floored):
    """``ds'/ds = exp(s) / (exp(s) + f) = exp(s - s')``, in (0, 1], from ``s`` and
    ``s' = floor_log_sigma(s, log f)``: the chain-rule factor of ``dNLL/ds'``."""
    return _xp(log_sigma).exp(log_sigma - floored)


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
    """``(pi [N,K], mu [N,K,D], sigma [N,K,S])``: the mixture in natural units; for full
    factors the third is each component's covariance matrix ``[N,K,D,D]`` (float64)."""
    xp = _xp(mu)
    if fullcov.is_full(mu.shape[-1], log_sigma.shape[-1]):
        return softmax(logits), mu, component_covariances(mu, log_sigma)
    return softmax(logits), mu, xp.exp(log_sigma)


# The moments are computed in float64 whatever the input dtype, and scaled so that
# every representable answer comes back: the deviations from the mean are taken
# from the heaviest component's mean (equal means give exactly 0, however large),
# halved (no overflow), and every term of the sums is divided by a power of two
# 2^e_d per row and dimension, chosen so that the largest term is about 1. The mean
# and the standard deviation are returned in the input dtype (they fit wherever
# the inputs do); the second moments in float64, because a float32 mixture's
# variance passes float32's range already at sigma = 1.8e19.

LN2 = math.log(2.0)
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # fdlibm's split


def split_log2(x):
    """``x = j ln 2 + r`` with integer ``j`` (int32) and ``|r| <= ln 2 / 2`` (float64), so
    that ``exp(x) = 2^j exp(r)`` can be applied by ``ldexp`` without overflow or
    underflow on the way (Cody-Waite: ``j LN2_HI`` is exact). ``x`` is clipped to
    +-1600 first, beyond which ``exp(x)`` scales every float64 to 0 or inf anyway."""
    xp = _xp(x)
    x = xp.clip(xp.asarray(x, dtype=xp.float64), -1600.0, 1600.0)
    j = xp.rint(x / LN2)
    return j.astype(xp.int32), (x - j * _LN2_HI) - j * _LN2_LO


def _centre(logits, mu):
    """``(log_pi [N,K,1], mean [N,1,D], dev [N,K,D])`` in float64, ``dev = (mu_k - mean) / 2``."""
    xp = _xp(mu)
    logits, mu = (xp.asarray(v, dtype=xp.float64) for v in (logits, mu))
    log_pi = log_softmax(logits)[..., None]
    ref = xp.take_along_axis(mu, xp.argmax(logits, axis=1)[:, None, None], axis=1)
    half = 0.5 * mu - 0.5 * ref  # (mu_k - ref) / 2: cannot overflow
    shift = (xp.exp(log_pi) * half).sum(axis=1, keepdims=True)
    return log_pi, ref + 2.0 * shift, half - shift


def _scaled_inverse(log_sigma, d: int):
    """Full factors: ``(W [..., D, D], e [...])`` in float64 with ``U^-1 = 2^e W``.

    ``U`` is scaled by ``2^e`` exactly first (``e`` the binary exponent of the
    largest ``sigma_i = exp(s_i)``), so that ``W``'s diagonal ``sigma_i 2^-e`` is at
    most about 1 however large or small the scales; back substitution row by row.
    """
    xp = _xp(log_sigma)
    ls = xp.asarray(log_sigma, dtype=xp.float64)
    s = ls[..., :d]
    e = xp.floor(xp.clip(s.max(axis=-1), -1600.0, 1600.0) / LN2).astype(xp.int32)
    j, r = split_log2(s)
    w_diag = xp.ldexp(xp.exp(r), j - e[..., None])  # sigma_i 2^-e
    u_off = xp.ldexp(ls[..., d:], e[..., None])  # U_ij 2^e
    w = xp.zeros(ls.shape[:-1] + (d, d))
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(d - 1, -1, -1):  # (2^e U) W = I, row i from the rows below it
            w[..., i, i] = w_diag[..., i]
            for c in range(i + 1, d):
                acc = 0.0
                for m in range(i + 1, c + 1):
                    acc = acc + u_off[..., fullcov.off_index(i, m, d) - d] * w[..., m, c]
                w[..., i, c] = -w_diag[..., i] * acc
    return w, e


def marginal_scales(log_sigma, d: int):
    """``(log_sd [N, K, D], corr)`` in float64: each component's marginal log standard
    deviation per output, and its correlation matrices [N, K, D, D] for full factors
    (None for diagonal and isotropic ones, whose correlations are 0)."""
    xp = _xp(log_sigma)
    ls = xp.asarray(log_sigma, dtype=xp.float64)
    if not fullcov.is_full(d, ls.shape[-1]):
        return ls + xp.zeros(ls.shape[:-1] + (d,)), None  # S = 1 over D
    w, e = _scaled_inverse(ls, d)
    g = xp.einsum("...ij,...kj->...ik", w, w)  # Sigma 4^-e = W W^T
    idx = xp.arange(d)
    sd = xp.sqrt(g[..., idx, idx])
    corr = g / (sd[..., :, None] * sd[..., None, :])
    corr[..., idx, idx] = 1.0
    return xp.log(sd) + e[..., None] * LN2, corr


def _scaled_terms(logits, mu, log_sigma):
    """The terms of the second moments, scaled: ``u = sqrt(pi_k) (mu_kd - m_d) / 2^e_d``
    and ``w = sqrt(pi_k) sd_kd / 2^e_d`` [N, K, D] (float64, ``sd`` the component's
    marginal standard deviation), the exponents ``e`` [N, D] (int32) such that the
    largest term of each sum lies in about [1, 4), and the components' correlations
    (None unless full)."""
    xp = _xp(mu)
    log_pi, _, dev = _centre(logits, mu)
    ls, corr = marginal_scales(log_sigma, mu.shape[-1])
    with np.errstate(divide="ignore"):  # log 0 = -inf for a component on the mean
        log_dev = xp.log(xp.abs(dev)) + LN2
    # log of the largest sqrt(pi_k) max(sigma_kd, |mu_kd - m_d|): finite (pi_k, sigma_k > 0)
    log_c = (0.5 * log_pi + xp.maximum(ls, log_dev)).max(axis=1, keepdims=True)
    e = xp.floor(log_c / LN2).astype(xp.int32)
    root_pi = xp.exp(0.5 * log_pi)  # sqrt(pi_k) without underflow in pi_k
    live = root_pi > 0  # pi_k = 0 adds nothing (and 0 * inf must not)
    u = xp.where(live, root_pi * xp.ldexp(dev, 1 - e), 0.0)
    # sigma = 2^j exp(r), scaled by 2^-e exactly
    j, r = split_log2(ls)
    w = xp.where(live, root_pi * xp.ldexp(xp.exp(r), j - e), 0.0)
    return u, w, e[:, 0], corr


def mean(logits, mu):
    """Mixture mean ``sum_k pi_k mu_k`` [N, D], computed in float64, in the dtype of ``mu``."""
    return _centre(logits, mu)[1][:, 0].astype(mu.dtype)


def variance(logits, mu, log_sigma):
    """Per-dimension predictive variance [N, D] by the law of total variance, float64.

    ``Var[y_d] = sum_k pi_k Sigma_k,dd + sum_k pi_k (mu_kd - m_d)^2``:
    the expected within-component variance plus the variance of the means.
    Float64 whatever the input dtype; ``inf`` only where it exceeds float64.
    """
    xp = _xp(mu)
    u, w, e, _ = _scaled_terms(logits, mu, log_sigma)
    with np.errstate(over="ignore"):  # beyond float64: inf
        return xp.ldexp((u * u + w * w).sum(axis=1), 2 * e)


def std(logits, mu, log_sigma):
    """Per-dimension predictive standard deviation [N, D], ``sqrt`` of :func:`variance`
    without forming it (finite wherever the result fits), in the dtype of ``mu``."""
    xp = _xp(mu)
    u, w, e, _ = _scaled_terms(logits, mu, log_sigma)
    with np.errstate(over="ignore"):  # beyond the dtype: inf
        return xp.ldexp(xp.sqrt((u * u + w * w).sum(axis=1)), e).astype(mu.dtype)


def covariance(logits, mu, log_sigma):
    """Full predictive covariance [N, D, D] by the law of total covariance, float64.

    ``Cov[y] = sum_k pi_k Sigma_k + sum_k pi_k (mu_k - m)(mu_k - m)^T``, with
    ``Sigma_k = diag(sigma_k^2)`` (diagonal, isotropic) or ``U_k^-1 U_k^-T`` (full).
    """
    xp = _xp(mu)
    u, w, e, corr = _scaled_terms(logits, mu, log_sigma)
    between = xp.einsum("nkd,nke->nde", u, u)
    if corr is None:
        idx = xp.arange(mu.shape[-1])
        between[:, idx, idx] += (w * w).sum(axis=1)
    else:  # pi_k Sigma_k,de = (sqrt(pi_k) sd_kd)(sqrt(pi_k) sd_ke) corr_k,de
        between += xp.einsum("nkd,nke,nkde->nde", w, w, corr)
    with np.errstate(over="ignore"):  # beyond float64: inf
        return xp.ldexp(between, e[:, :, None] + e[:, None, :])


def component_covariances(mu, log_sigma):
    """Each component's covariance matrix [N, K, D, D] in float64: ``diag(sigma_k^2)``
    (isotropic: ``sigma_k^2 I``; a float32 sigma above 1.8e19 has a square beyond
    float32) or, for full factors, ``U_k^-1 U_k^-T``."""
    xp = _xp(mu)
    d, s = _dims(mu, log_sigma)
    if fullcov.is_full(d, s):
        w, e = _scaled_inverse(log_sigma, d)
        with np.errstate(over="ignore"):  # beyond float64: inf
            return xp.ldexp(xp.einsum("...ij,...kj->...ik", w, w), 2 * e[..., None, None])
    ls = xp.asarray(log_sigma, dtype=xp.float64)
    with np.errstate(over="ignore"):  # sigma^2 beyond float64: inf
        var = xp.exp(2.0 * ls) * xp.ones(mu.shape)  # [N,K,D], S=1 broadcast over D
    out = xp.zeros((*mu.shape, d))
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

    * ``"gumbel"``: ``k = argmax_k ((a_k - max a) / T + g_k)`` with Gumbel noise
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
    # (a_k - max a) / T: the row max first, so a common offset changes nothing
    a = (a - a.max(axis=-1, keepdims=True)) / float(temperature)
    if method == "gumbel":
        keys = a[:, None, :] - np.log(-np.log(u))
        return np.argmax(keys, axis=-1)
    if method == "cumulative":
        u = u.reshape(n, j)
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
    ``eps`` the stream's normals cast to the input dtype (a backend may compute
    float32 normals in float32: within ``philox.NORMALS_FLOAT32_RTOL`` = 3e-7 of
    the exact value, relative, where this reference rounds the float64 ones, see
    :mod:`npmdn.philox`; the choices are the same in every precision) (full covariance:
    ``y = mu_k + sigma_scale * v`` with ``U_k v = eps``, :func:`npmdn.fullcov.solve_draws`).
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
    if sigma_scale == 0:  # the chosen means, even where sigma overflows (0 * inf)
        return mu_k + dtype.type(0) * eps
    if fullcov.is_full(d, log_sigma.shape[-1]):  # U v = eps by back substitution
        ls_k = np.take_along_axis(log_sigma, comp[..., None], axis=1)  # [N, J, S]
        return fullcov.solve_draws(mu_k, ls_k, eps, sigma_scale)
    sigma_k = np.exp(np.take_along_axis(log_sigma, comp[..., None], axis=1))  # [N, J, S]
    return mu_k + (dtype.type(sigma_scale) * sigma_k) * eps
