"""The public functional API on raw mixture parameters.

These are the mixture-head kernels with their inputs checked, on the
backend chosen by :func:`npmdn.backend.backend_for_arrays`. Arrays come back
in the kind they went in (NumPy in, NumPy out; CuPy in, CuPy out; Dask in,
lazy Dask out: each row block computed by the same function, with
``mixture_sample`` drawing every block at its global rows; see
:func:`npmdn._blocks.rowwise`).
"""

from __future__ import annotations

import numpy as np

from . import _checks as C
from . import conditional, distribution, mixture
from ._arrays import array_module
from ._blocks import rowwise
from .backend import backend_for_arrays
from .distribution import Modes
from .mixture import SAMPLE_METHODS


def _to(backend, arrays):
    return [backend.asarray(a) for a in arrays]


def _back(backend, like_device: bool, arrays):
    if like_device or not backend.on_device:
        return arrays
    return [backend.to_host(a) for a in arrays]


@rowwise(4)
def mixture_nll(logits, mu, log_sigma, y, backend=None):
    """Per-row negative log-likelihood of ``y`` under a Gaussian mixture, and its gradient.

    Parameters
    ----------
    logits : (N, K) float array
        Unnormalised log mixing weights.
    mu : (N, K, D) float array
        Component means.
    log_sigma : (N, K, S) float array
        Log standard deviations; ``S = D`` (diagonal) or ``S = 1`` (isotropic).
        ``S = D (D + 1) / 2``: full covariance, each component's packed precision
        factor (``-log U_ii``, then ``U_ij`` for ``i < j`` row by row, see
        :mod:`npmdn.fullcov`), recognised by ``S`` alone; its gradient comes
        back packed the same way.
    y : (N, D) array of real numbers
        Targets. logits, mu and log_sigma share one float dtype (float32 or
        float64; else :class:`npmdn.InputDTypeError`); y of any real dtype is
        converted to it, so float64 targets of a float32 mixture (what
        ``MDN.mixture_raw`` gives for a float32 model) are rounded to float32.
    backend : str, optional
        ``"numpy"``, ``"numba"`` or ``"cupy"``; see :mod:`npmdn.backend`.

    Returns
    -------
    nll : (N,) array
        ``-log p(y_n)``, computed in log space (finite wherever the density
        is representable in log form, far beyond where ``p`` underflows).
    (d_logits, d_mu, d_log_sigma) : arrays shaped like the inputs
        The gradient of each row's NLL with respect to its own head outputs.
    """
    y = C.like_mixture(y, logits)
    C.mixture_args(logits, mu, log_sigma, y)
    be = backend_for_arrays((logits, mu, log_sigma, y), backend)
    dev = C.is_device_array(logits)
    nll, dl, dm, ds = be.nll_grad(*_to(be, (logits, mu, log_sigma, y)))
    nll, dl, dm, ds = _back(be, dev, (nll, dl, dm, ds))
    return nll, (dl, dm, ds)


@rowwise(4)
def mixture_log_prob(logits, mu, log_sigma, y, backend=None):
    """Per-row ``log p(y)`` (N,) under the mixture; shapes and dtypes as in
    :func:`mixture_nll`."""
    y = C.like_mixture(y, logits)
    C.mixture_args(logits, mu, log_sigma, y)
    be = backend_for_arrays((logits, mu, log_sigma, y), backend)
    dev = C.is_device_array(logits)
    (out,) = _back(be, dev, [be.log_prob(*_to(be, (logits, mu, log_sigma, y)))])
    return out


@rowwise(3, offset="row_offset", seed="seed")
def mixture_sample(
    logits,
    mu,
    log_sigma,
    n_samples: int = 1,
    seed=None,
    *,
    method: str = "gumbel",
    temperature: float = 1.0,
    sigma_scale: float = 1.0,
    row_offset: int = 0,
    backend=None,
):
    """Draw from the mixture: (N, n_samples, D) in the dtype of ``mu`` (full factors:
    ``mu_k + sigma_scale * v`` with ``U_k v = eps``, one triangular solve per draw).

    Parameters
    ----------
    n_samples : int
        Draws per row.
    seed : int in [0, 2**64), optional
        Key of the Philox4x32-10 stream; ``None`` takes fresh OS entropy.
        The same seed gives the same draws on every backend, whatever the
        batch size: draw ``j`` of row ``i`` depends only on (seed,
        ``row_offset + i``, ``j``). See :mod:`npmdn.philox` for the layout.
    method : {"gumbel", "cumulative"}
        Component choice by Gumbel-max over ``a_k / T`` (K uniforms per
        draw) or by one uniform through the cumulative weights.
    temperature : float >= 0
        ``T`` in ``pi_k ∝ pi_k^(1/T)``, i.e. weights ``softmax(logits / T)``.
        1 samples the model; below 1 favours heavy components; 0 always
        takes the heaviest component (ties: the lowest index).
    sigma_scale : float >= 0
        Every component's sigma is multiplied by this before drawing; 0
        returns the chosen components' means.
    row_offset : int >= 0
        Global index of the first row, so that a large batch drawn in pieces
        gives the same draws as drawn at once.
    """
    C.mixture_args(logits, mu, log_sigma)
    n_samples = C.int_arg(n_samples, "n_samples", 1, 2**32 - 1)
    seed = C.seed_arg(seed)
    method = C.choice_arg(method, "method", SAMPLE_METHODS)
    temperature = C.float_arg(temperature, "temperature", 0.0)
    sigma_scale = C.float_arg(sigma_scale, "sigma_scale", 0.0)
    row_offset = C.int_arg(row_offset, "row_offset", 0, 2**64 - 1 - logits.shape[0])
    be = backend_for_arrays((logits, mu, log_sigma), backend)
    dev = C.is_device_array(logits)
    out = be.sample(
        *_to(be, (logits, mu, log_sigma)),
        n_samples, seed, row_offset, method, temperature, sigma_scale,
    )
    (out,) = _back(be, dev, [out])
    return out


@rowwise(3)
def mixture_params(logits, mu, log_sigma):
    """``(pi, mu, sigma)``: weights (N, K), means (N, K, D), scales (N, K, S); for full
    covariance the third is each component's covariance matrix (N, K, D, D), float64."""
    C.mixture_args(logits, mu, log_sigma)
    return mixture.params(logits, mu, log_sigma)


# --------------------------------------------------------------------------
# the mixture as a distribution: CDF, quantiles, intervals, modes, moments
# --------------------------------------------------------------------------
# These run on the arrays' own device (NumPy or CuPy) with the float64 math of
# npmdn.distribution, whatever the input dtype, and return float64 arrays there.
# For D > 1 they act on each output dimension's marginal and keep a trailing
# D axis; for D = 1 that axis is dropped, so 1-D targets give [N] and [N, Q].


def _drop_d(a, d):
    return a[..., 0] if d == 1 else a


@rowwise(4)
def mixture_cdf(logits, mu, log_sigma, y):
    """``P(Y_d <= y_d)`` under each row's mixture: [N] for D = 1, else per-dimension
    marginals [N, D]. ``y`` is [N, D] (or [N] when D = 1), any real dtype.

    The CDF of a target under its own predicted law is its PIT value.
    """
    n, _, d, _ = C.mixture_args(logits, mu, log_sigma)
    y = C.mixture_targets(y, n, d, C.is_device_array(logits))
    return _drop_d(distribution.cdf(logits, mu, log_sigma, y), d)


@rowwise(3)
def mixture_quantile(logits, mu, log_sigma, q):
    """Quantiles ``F^-1(q)`` of each row's mixture at levels ``q``.

    ``q`` is a level or a 1-D sequence of levels strictly inside (0, 1).
    Returns [N, len(q)] for D = 1 (per-dimension marginals [N, len(q), D]
    for D > 1); a scalar ``q`` drops the level axis. Found by bracketed,
    safeguarded Newton root finding on the mixture CDF in log space, with a
    bisection that converges however wide the bracket: each ``y`` has
    ``F(y) = q`` to a relative 1e-12 (``1 - F(y) = 1 - q`` above the median), or
    lies within a few ulps of the exact root where float64 cannot resolve that.
    The results are monotone in q (see :func:`npmdn.distribution.quantile`).
    """
    _, _, d, _ = C.mixture_args(logits, mu, log_sigma)
    levels = C.probabilities(q, "q")
    out = distribution.quantile(logits, mu, log_sigma, array_module(mu).asarray(levels))
    out = _drop_d(out, d)
    return out[:, 0] if levels.ndim == 0 else out


@rowwise(3)
def mixture_interval(logits, mu, log_sigma, coverage=0.9):
    """The central interval holding probability ``coverage`` in each row (per dimension).

    Returns ``(lower, upper)``, the ``(1 - c) / 2`` and ``(1 + c) / 2``
    quantiles, each shaped like :func:`mixture_quantile`'s result for
    ``q = coverage``. For a multimodal law this interval may span
    low-density gaps between the modes.
    """
    _, _, d, _ = C.mixture_args(logits, mu, log_sigma)
    c = C.probabilities(coverage, "coverage")
    xp = array_module(mu)
    lv = xp.asarray(np.concatenate([np.ravel(0.5 - 0.5 * c), np.ravel(0.5 + 0.5 * c)]))
    out = _drop_d(distribution.quantile(logits, mu, log_sigma, lv), d)
    m = c.size
    lower, upper = out[:, :m], out[:, m:]
    if c.ndim == 0:
        lower, upper = lower[:, 0], upper[:, 0]
    return lower, upper


@rowwise(3)
def mixture_modes(logits, mu, log_sigma, *, tol: float = 1e-10, max_iter: int = 500,
                  merge_tol: float = 1e-2):
    """Every local mode of each row's mixture density, highest first: a :class:`Modes`.

    Found by mean-shift (fixed-point) ascent from every component mean, with
    Newton steps where the log-density is concave nearby, then merged; see
    :func:`npmdn.distribution.modes` for the rules. Works in any D, for diagonal
    and isotropic scales; the densities are joint densities of y.
    """
    C.mixture_args(logits, mu, log_sigma)
    options = mode_options(tol, max_iter, merge_tol)
    return Modes(*distribution.modes(logits, mu, log_sigma, *options))


def mode_options(tol, max_iter, merge_tol):
    """Checked ``(tol, max_iter, merge_tol)`` for :func:`mixture_modes`."""
    return (
        C.float_arg(tol, "tol", 0.0, strict=True),
        C.int_arg(max_iter, "max_iter", 1),
        C.float_arg(merge_tol, "merge_tol", 0.0, strict=True),
    )


@rowwise(3)
def mixture_mean(logits, mu, log_sigma):
    """Mixture mean ``sum_k pi_k mu_k``: [N, D], computed in float64, in the dtype of
    ``mu`` (``log_sigma`` is checked, not used)."""
    C.mixture_args(logits, mu, log_sigma)
    return mixture.mean(logits, mu)


@rowwise(3)
def mixture_covariance(logits, mu, log_sigma):
    """Full predictive covariance [N, D, D] by the law of total covariance:
    ``sum_k pi_k Sigma_k + sum_k pi_k (mu_k - m)(mu_k - m)^T`` with ``Sigma_k`` =
    ``diag(sigma_k^2)`` (or ``U_k^-1 U_k^-T`` for full factors); float64 whatever the
    input dtype, finite wherever the result fits float64."""
    C.mixture_args(logits, mu, log_sigma)
    return mixture.covariance(logits, mu, log_sigma)


# --------------------------------------------------------------------------
# marginals and conditionals over a subset of the outputs
# --------------------------------------------------------------------------


@rowwise(3)
def mixture_marginal(logits, mu, log_sigma, dims):
    """The mixture of the outputs ``dims`` alone (the others integrated out).

    Parameters
    ----------
    dims : int or sequence of int
        Distinct output indices in ``[0, D)``, in the order wanted.

    Returns
    -------
    (logits, mu, log_sigma) : arrays (N, K), (N, K, M), (N, K, S')
        A mixture of the same kind and dtype, ``M = len(dims)``: the same weights,
        the chosen means, and the scales of the chosen outputs (full covariance:
        the factor of ``Sigma_AA``, found without inverting anything; see
        :mod:`npmdn.conditional`).
    """
    _, _, d, _ = C.mixture_args(logits, mu, log_sigma)
    return conditional.marginal(logits, mu, log_sigma, C.dims_arg(dims, d))


@rowwise(4)
def mixture_condition(logits, mu, log_sigma, values, dims):
    """The mixture of the other outputs given ``y[:, dims] = values``.

    Parameters
    ----------
    values : (N, M) array of real numbers (or (N,) when M = 1)
        The observed outputs of each row, ``M = len(dims)``.
    dims : int or sequence of int
        Distinct output indices in ``[0, D)`` (fewer than D), in the order of
        the columns of ``values``.

    Returns
    -------
    (logits, mu, log_sigma) : arrays (N, K), (N, K, D - M), (N, K, S')
        A mixture of the same kind and dtype over the remaining outputs, in their
        original order: each component's conditional (full covariance: mean
        ``mu_B - R_BB^-1 R_BA (a - mu_A)`` and factor ``R_BB``; otherwise unchanged),
        and the weights re-weighted, ``pi'_k ∝ pi_k N(values; mu_k,A, Sigma_k,AA)``
        (the logits are ``log pi'``). See :mod:`npmdn.conditional`.
    """
    n, _, d, _ = C.mixture_args(logits, mu, log_sigma)
    dims = C.dims_arg(dims, d, keep_one=True)
    values = C.mixture_targets(values, n, len(dims), C.is_device_array(logits), "values")
    return conditional.condition(logits, mu, log_sigma, values, dims)


__all__ = [
    "mixture_nll", "mixture_log_prob", "mixture_sample", "mixture_params",
    "mixture_cdf", "mixture_quantile", "mixture_interval", "mixture_modes",
    "mixture_mean", "mixture_covariance", "mixture_marginal", "mixture_condition", "Modes",
]
