"""The public functional API on raw mixture parameters.

These are the mixture-head kernels with their inputs checked, on the
backend chosen by :func:`npmdn.backend.backend_for_arrays`. Arrays come back
in the kind they went in (NumPy in, NumPy out; CuPy in, CuPy out).
"""

from __future__ import annotations

from . import _checks as C
from .backend import backend_for_arrays
from .mixture import SAMPLE_METHODS


def _to(backend, arrays):
    return [backend.asarray(a) for a in arrays]


def _back(backend, like_device: bool, arrays):
    if like_device or not backend.on_device:
        return arrays
    return [backend.to_host(a) for a in arrays]


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
    y : (N, D) float array
        Targets. All four arrays share one dtype (float32 or float64).
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
    C.mixture_args(logits, mu, log_sigma, y)
    be = backend_for_arrays((logits, mu, log_sigma, y), backend)
    dev = C.is_device_array(logits)
    nll, dl, dm, ds = be.nll_grad(*_to(be, (logits, mu, log_sigma, y)))
    nll, dl, dm, ds = _back(be, dev, (nll, dl, dm, ds))
    return nll, (dl, dm, ds)


def mixture_log_prob(logits, mu, log_sigma, y, backend=None):
    """Per-row ``log p(y)`` (N,) under the mixture; shapes as in :func:`mixture_nll`."""
    C.mixture_args(logits, mu, log_sigma, y)
    be = backend_for_arrays((logits, mu, log_sigma, y), backend)
    dev = C.is_device_array(logits)
    (out,) = _back(be, dev, [be.log_prob(*_to(be, (logits, mu, log_sigma, y)))])
    return out


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
    """Draw from the mixture: (N, n_samples, D) in the dtype of ``mu``.

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


def mixture_params(logits, mu, log_sigma):
    """``(pi, mu, sigma)``: weights (N, K), means (N, K, D), scales (N, K, S)."""
    from . import mixture

    C.mixture_args(logits, mu, log_sigma)
    return mixture.params(logits, mu, log_sigma)


__all__ = ["mixture_nll", "mixture_log_prob", "mixture_sample", "mixture_params"]
