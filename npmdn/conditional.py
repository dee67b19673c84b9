r"""Marginals and conditionals of a Gaussian mixture over a subset of its outputs.

Both are again Gaussian mixtures of the same kind, in closed form; this is
their NumPy reference (any array module), on the raw parameters of
:mod:`npmdn.mixture`. The public, checked versions are
:func:`npmdn.mixture_marginal` and :func:`npmdn.mixture_condition`, and
:meth:`npmdn.Mixture.marginal` and :meth:`~npmdn.Mixture.condition`.

With ``A`` the chosen outputs and ``B`` the others, a component
``N(mu, Sigma)`` has the marginal ``N(mu_A, Sigma_AA)`` and, given ``y_A = a``,
the conditional ``N(mu_B + Sigma_BA Sigma_AA^-1 (a - mu_A), Sigma_BB - ...)``;
the mixture's marginal keeps the weights, its conditional re-weights the
components by how well each explains ``a``:

.. math::

    p(y_B \mid y_A = a) = \sum_k \pi'_k N_k(y_B \mid a), \qquad
    \pi'_k \propto \pi_k N(a; \mu_{k,A}, \Sigma_{k,AA}).

Diagonal and isotropic components have independent outputs: their
marginals and conditionals keep their means and scales (selected), and only
the weights change. A full component is re-factorised instead of inverted:
with the outputs ordered ``(B, A)``, the QR decomposition of ``U``'s columns in
that order gives the upper factor ``R`` of the same precision
(:func:`npmdn.fullcov.reorder`), and with ``z = R (y - mu)`` split as
``z_B = R_BB (y_B - mu_B) + R_BA (y_A - mu_A)`` and ``z_A = R_AA (y_A - mu_A)``,
``|z|^2 = |z_B|^2 + |z_A|^2`` and ``log det R = log det R_BB + log det R_AA``. So
the marginal of ``A`` has the factor ``R_AA``, and the conditional of ``B`` the
factor ``R_BB`` and the mean ``mu_B - R_BB^-1 R_BA (a - mu_A)``: one QR, one
triangular solve, no covariance formed (``docs/derivation.md``, section 13).

Computed in float64 and returned in the input dtype, so that the result is a
mixture the kernels take. Shapes: ``logits [N, K]``, ``mu [N, K, D]``,
``log_sigma [N, K, S]``, ``values [N, M]`` for ``M = len(dims)``.
"""

from __future__ import annotations

import numpy as np

from . import fullcov
from ._arrays import array_module as _xp
from .mixture import component_log_density, covariance_kind, log_softmax, logsumexp


def _rest(dims, d):
    chosen = set(dims)
    return [i for i in range(d) if i not in chosen]


def _cast(dtype, *arrays):
    xp = _xp(arrays[0])
    return tuple(xp.ascontiguousarray(a.astype(dtype, copy=False)) for a in arrays)


def marginal(logits, mu, log_sigma, dims):
    """The mixture of the outputs ``dims`` (a sequence of distinct indices, in the order
    wanted): ``(logits [N, K], mu [N, K, M], log_sigma [N, K, S'])`` of the same kind."""
    d = mu.shape[-1]
    dims = [int(i) for i in dims]
    kind = covariance_kind(d, log_sigma.shape[-1])
    if kind == "full":
        m = len(dims)
        r = fullcov.reorder(log_sigma, d, _rest(dims, d) + dims)
        ls = fullcov.pack(r[..., d - m:, d - m:])  # R_AA
    elif kind == "diagonal":
        ls = log_sigma[..., dims]
    else:
        ls = log_sigma
    return _cast(mu.dtype, logits, mu[..., dims], ls)


def condition(logits, mu, log_sigma, values, dims):
    """The mixture of the other outputs given ``y[dims] = values`` [N, M], in their
    original order: ``(logits, mu [N, K, D - M], log_sigma [N, K, S'])`` of the same kind,
    the logits the normalised log posterior weights ``log pi'_k``."""
    xp = _xp(mu)
    d = mu.shape[-1]
    dims = [int(i) for i in dims]
    rest = _rest(dims, d)
    kind = covariance_kind(d, log_sigma.shape[-1])
    logits64, mu64, ls64, a = (xp.asarray(v, dtype=xp.float64)
                               for v in (logits, mu, log_sigma, values))
    if kind == "full":
        b = len(rest)
        r = fullcov.reorder(ls64, d, rest + dims)
        r_bb, r_ba, r_aa = r[..., :b, :b], r[..., :b, b:], r[..., b:, b:]
        ls_a = fullcov.pack(r_aa)
        delta = a[:, None, :] - mu64[..., dims]  # [N, K, M]
        shift = fullcov.back_solve(r_bb, xp.einsum("nkij,nkj->nki", r_ba, delta))
        mu_b = mu64[..., rest] - shift
        ls_b = fullcov.pack(r_bb)
    else:
        ls_a = ls64[..., dims] if kind == "diagonal" else ls64
        mu_b = mu64[..., rest]
        ls_b = ls64[..., rest] if kind == "diagonal" else ls64
    log_n = component_log_density(mu64[..., dims], ls_a, a)[0]  # log N(a; mu_A, Sigma_AA)
    t = log_softmax(logits64) + log_n
    with np.errstate(invalid="ignore"):  # a row no component can explain: NaN weights
        post = t - logsumexp(t)[:, None]
    return _cast(mu.dtype, post, mu_b, ls_b)
