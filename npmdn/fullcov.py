r"""Full-covariance components: the packed precision factor, and its NumPy reference.

A full-covariance component is parametrised by the upper-triangular Cholesky
factor ``U`` of its precision, ``Sigma^-1 = U^T U``, so that its density needs
no solve and no factorisation:

.. math::

    z = U (y - \mu), \qquad
    \log N = -\tfrac12 |z|^2 - \sum_i s_i - \tfrac{D}{2} \log 2\pi,
    \qquad U_{ii} = e^{-s_i}.

The diagonal is stored as ``s_i = -log U_ii``, a log *scale* like the diagonal
model's ``log sigma``: a full component with zero off-diagonal entries is the
diagonal component with the same ``s`` (``docs/derivation.md``, section 13,
says why this sign rather than ``log U_ii``).

Packed layout (``log_sigma [N, K, S]`` with ``S = D (D + 1) / 2``), per component:

=========================  =================================================
``log_sigma[..., i]``      ``s_i = -log U_ii`` for ``i < D``
``log_sigma[..., D + p]``  ``U_ij`` for ``i < j``, row-major: ``p`` runs over
                           ``(0, 1), (0, 2), ..., (0, D-1), (1, 2), ...``,
                           ``p = i D - i (i + 1) / 2 + (j - i - 1)``
=========================  =================================================

For ``D >= 2``, ``S = D (D + 1) / 2`` differs from ``D`` (diagonal) and 1
(isotropic), so the width of ``log_sigma`` says which kind a mixture is; for
``D = 1`` the three kinds are one and the same density. Every function of the
raw-parameter API recognises full parameters by ``S`` alone.

Every sum below is taken in a fixed order, the one the Numba and CUDA kernels
use: ``z_i = U_ii (y_i - mu_i) + sum_{j > i} U_ij (y_j - mu_j)`` with ``j``
rising; ``(U^T z)_j = U_jj z_j + sum_{i < j} U_ij z_i`` with ``i`` rising;
the draws' back substitution ``v_i = sigma_i (eps_i - sum_{j > i} U_ij v_j)``
for ``i`` falling, ``j`` rising. Shapes: ``mu [N, K, D]``, ``log_sigma [N, K, S]``,
``y [N, D]``, factors ``[N, K, D, D]``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ._arrays import array_module as _xp

LOG_2PI = math.log(2.0 * math.pi)


def n_scales(d: int) -> int:
    """``S = D (D + 1) / 2``: the packed factor's numbers per component."""
    return d * (d + 1) // 2


def is_full(d: int, s: int) -> bool:
    """Whether ``log_sigma [..., S]`` holds full factors for ``D`` outputs (``D >= 2``)."""
    return d > 1 and s == n_scales(d)


def off_index(i: int, j: int, d: int) -> int:
    """Position of ``U_ij`` (``i < j``) in a packed factor of ``D`` outputs."""
    return d + i * d - i * (i + 1) // 2 + (j - i - 1)


@functools.lru_cache(maxsize=64)
def pairs(d: int):
    """``(rows, cols)``: ``i`` and ``j`` of the off-diagonal entries in packed order."""
    rows, cols = np.triu_indices(d, 1)  # row-major: the packed order
    return rows, cols


def _times_or_zero(x, u):
    """``x * u``, exactly 0 where ``x = 0`` even when ``u`` overflowed (``0 * inf``)."""
    xp = _xp(x)
    return xp.where(x == 0, x.dtype.type(0), x * u)


# --------------------------------------------------------------------------
# the density and its gradient
# --------------------------------------------------------------------------


def log_density(mu, log_sigma, y):
    """``log N_k`` [N, K], ``z = U (y - mu_k)`` [N, K, D], the diagonal ``U_ii = exp(-s_i)``
    [N, K, D] and ``|z|^2 / 2`` [N, K].

    ``U_ii (y_i - mu_i)`` is 0 where ``y_i = mu_i`` even when ``U_ii`` overflows;
    ``|z|^2 / 2`` is a sum of ``(z_i / 2) z_i``, as in the diagonal case.
    """
    xp = _xp(mu)
    d = mu.shape[-1]
    with np.errstate(over="ignore", invalid="ignore"):
        u_diag = xp.exp(-log_sigma[..., :d])
        delta = y[:, None, :] - mu
        z = xp.empty_like(delta)
        for i in range(d):
            zi = _times_or_zero(delta[..., i], u_diag[..., i])
            for j in range(i + 1, d):
                zi = zi + log_sigma[..., off_index(i, j, d)] * delta[..., j]
            z[..., i] = zi
        half_z2 = ((0.5 * z) * z).sum(axis=-1)
    log_det = log_sigma[..., :d].sum(axis=-1)  # sum_i s_i = -log det U
    log_n = -half_z2 - log_det - 0.5 * d * LOG_2PI
    return log_n, z, u_diag, half_z2


def grad_params(r, dead, z, u_diag, mu, log_sigma, y):
    """The gradient of ``-log p`` with respect to ``mu`` and the packed factor, given the
    responsibilities ``r`` [N, K] (``dead``: ``r = 0``, whose gradient is exactly 0):

    ``d_mu = -r U^T z``, ``d_s_i = r (1 - z_i U_ii delta_i)``, ``d_U_ij = r z_i delta_j``
    with ``delta = y - mu`` (``docs/derivation.md``, section 13).
    """
    xp = _xp(mu)
    d = mu.shape[-1]
    zero = mu.dtype.type(0)
    rk = r[..., None]
    d_mu = xp.empty_like(mu)
    d_ls = xp.empty_like(log_sigma)
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN only where r = 0
        delta = y[:, None, :] - mu
        rz = rk * z  # r z_i
        for j in range(d):
            # (U^T z)_j = U_jj z_j + sum_{i < j} U_ij z_i
            acc = _times_or_zero(z[..., j], u_diag[..., j])
            for i in range(j):
                acc = acc + log_sigma[..., off_index(i, j, d)] * z[..., i]
            d_mu[..., j] = -r * acc
        # r (1 - z_i U_ii delta_i) = r - (r z_i) (U_ii delta_i)
        d_ls[..., :d] = rk - rz * _times_or_zero(delta, u_diag)
        rows, cols = pairs(d)
        d_ls[..., d:] = rz[..., rows] * delta[..., cols]  # r z_i delta_j
        d_mu = xp.where(dead[..., None], zero, d_mu)
        d_ls = xp.where(dead[..., None], zero, d_ls)
    return d_mu, d_ls


# --------------------------------------------------------------------------
# draws: one back substitution per draw
# --------------------------------------------------------------------------


def solve_draws(mu_k, ls_k, eps, sigma_scale):
    """``y = mu_k + sigma_scale * v`` with ``U v = eps``, in the dtype of ``mu_k``.

    ``mu_k [..., D]``, ``ls_k [..., S]`` (each draw's chosen component), ``eps [..., D]``
    (already in the dtype). Back substitution from the last coordinate:
    ``v_i = sigma_i (eps_i - sum_{j > i} U_ij v_j)``, ``sigma_i = exp(s_i) = 1 / U_ii``;
    ``v`` has covariance ``U^-1 U^-T = Sigma``.
    """
    xp = _xp(mu_k)
    d = mu_k.shape[-1]
    dtype = mu_k.dtype
    with np.errstate(over="ignore", invalid="ignore"):
        sigma = xp.exp(ls_k[..., :d])
        v = xp.empty_like(eps)
        for i in range(d - 1, -1, -1):
            acc = eps[..., i]
            for j in range(i + 1, d):
                acc = acc - ls_k[..., off_index(i, j, d)] * v[..., j]
            v[..., i] = acc * sigma[..., i]
        return mu_k + dtype.type(sigma_scale) * v


# --------------------------------------------------------------------------
# the factor as a matrix; re-factorisation for marginals and conditionals
# --------------------------------------------------------------------------


def factor(log_sigma, d: int):
    """The upper-triangular ``U`` [..., D, D] of packed factors, in their dtype."""
    xp = _xp(log_sigma)
    u = xp.zeros(log_sigma.shape[:-1] + (d, d), dtype=log_sigma.dtype)
    idx = xp.arange(d)
    with np.errstate(over="ignore"):
        u[..., idx, idx] = xp.exp(-log_sigma[..., :d])
    rows, cols = pairs(d)
    u[..., rows, cols] = log_sigma[..., d:]
    return u


def pack(u):
    """Packed factors [..., S] of upper-triangular ``U`` [..., D, D] with a positive diagonal."""
    xp = _xp(u)
    d = u.shape[-1]
    idx = xp.arange(d)
    rows, cols = pairs(d)
    return xp.concatenate([-xp.log(u[..., idx, idx]), u[..., rows, cols]], axis=-1)


def reorder(log_sigma, d: int, order):
    """The float64 upper factor ``R`` [..., D, D] of the precision in the coordinate order
    ``order`` (a permutation of ``range(D)``): ``R^T R = U'^T U'`` with ``U'`` the columns
    of ``U`` in that order.

    Found by a QR decomposition of ``U'`` (``U' = Q R``, so ``U'^T U' = R^T R``), rows
    of ``R`` negated where its diagonal is negative: backward stable, and never
    forms the precision, whose condition number is the square of ``U``'s.
    """
    xp = _xp(log_sigma)
    u = factor(xp.asarray(log_sigma, dtype=xp.float64), d)[..., :, list(order)]
    r = xp.linalg.qr(u)[1]
    idx = xp.arange(d)
    sign = xp.where(r[..., idx, idx] < 0, -1.0, 1.0)
    return r * sign[..., :, None]


def back_solve(r, b):
    """``x`` [..., M] with ``R x = b`` for upper-triangular ``R`` [..., M, M]."""
    xp = _xp(r)
    m = r.shape[-1]
    x = xp.empty_like(b)
    for i in range(m - 1, -1, -1):
        acc = b[..., i]
        for j in range(i + 1, m):
            acc = acc - r[..., i, j] * x[..., j]
        x[..., i] = acc / r[..., i, i]
    return x
