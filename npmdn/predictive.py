"""``Mixture``: the predicted conditional distribution of a batch of rows.

A thin view over the raw-parameter functions of :mod:`npmdn.functional` and
:mod:`npmdn.metrics`: it holds the raw parameters ``(logits [N,K], mu [N,K,D],
log_sigma [N,K,S])`` (S = D diagonal, S = 1 isotropic, S = D (D + 1) / 2 full:
the packed factor of each precision, :mod:`npmdn.fullcov`), the covariance kind and
a backend name, and every method is one call of those functions on them, so
a result is bit for bit what the function gives on the same backend. No
mixture math lives here.

>>> import numpy as np, npmdn
>>> dist = npmdn.Mixture(np.zeros((2, 1)), np.zeros((2, 1, 1)), np.zeros((2, 1, 1)))
>>> dist.mean().shape, dist.interval(0.9)[0].shape, len(dist[1:])
((2, 1), (2,), 1)
"""

from __future__ import annotations

import numbers

from . import _checks as C
from . import metrics, mixture
from ._arrays import array_module
from ._blocks import any_lazy, rowwise
from .backend import Backend, check_name
from .functional import (
    mixture_cdf,
    mixture_condition,
    mixture_covariance,
    mixture_interval,
    mixture_log_prob,
    mixture_marginal,
    mixture_mean,
    mixture_modes,
    mixture_params,
    mixture_quantile,
    mixture_sample,
)

# the reference's moments, lazy on Dask arrays as the functions are
_variance = rowwise(3)(mixture.variance)
_component_covariances = rowwise(2)(mixture.component_covariances)


class Mixture:
    """A Gaussian mixture per row: ``p(y) = sum_k pi_k N(y; mu_k, Sigma_k)``.

    Returned by :meth:`npmdn.MDN.distribution` and
    ``npmdn.sklearn.MDNRegressor.predict_distribution``, in the user's units of y.

    Parameters
    ----------
    logits : (N, K) float array
        Unnormalised log mixing weights.
    mu : (N, K, D) float array
        Component means.
    log_sigma : (N, K, S) float array
        Log standard deviations: ``S = D`` (diagonal) or ``S = 1`` (isotropic);
        or ``S = D (D + 1) / 2`` (full): each component's packed precision factor
        (:mod:`npmdn.fullcov`). The three arrays share one dtype and one device
        (NumPy or CuPy).
    covariance_type : {"diagonal", "isotropic", "full"}, optional
        What ``log_sigma`` means (``MDN``'s ``covariance``); by default read
        from S (``S = D`` is diagonal: for D = 1 the three kinds are one law).
    backend : str, optional
        Runs :func:`npmdn.mixture_log_prob` and :func:`npmdn.mixture_sample`
        (``"numpy"``, ``"numba"``, ``"cupy"``); ``None`` follows the usual
        rules of :func:`npmdn.backend.backend_for_arrays`. The distribution
        functions (CDF, quantiles, modes, CRPS, moments) run on the arrays'
        own device, as :mod:`npmdn.functional` does.

    Attributes
    ----------
    params : tuple
        ``(logits, mu, log_sigma)``, as given: what the functions take.
    covariance_type : str
    backend : str or None
    weights : (N, K) array
    means : (N, K, D) array
    covariances : (N, K, D, D) array
        Every component's covariance matrix, whatever the covariance kind.

    Indexing by rows (an int, a slice, an integer array or a boolean mask)
    gives another ``Mixture``; an int keeps the row axis (N = 1). Over the
    outputs, :meth:`marginal` and :meth:`condition` give the mixture of a
    subset of them, again a ``Mixture`` of the same kind.
    """

    def __init__(self, logits, mu, log_sigma, *, covariance_type: str | None = None,
                 backend=None):
        _, _, d, s = C.mixture_args(logits, mu, log_sigma)
        if covariance_type is None:
            covariance_type = mixture.covariance_kind(d, s)
        covariance_type = C.choice_arg(covariance_type, "covariance_type", mixture.COVARIANCES)
        want = mixture.scale_size(d, covariance_type)
        if s != want:
            raise ValueError(
                f"covariance_type={covariance_type!r} needs log_sigma [N, K, {want}], got "
                f"{tuple(log_sigma.shape)}"
            )
        if isinstance(backend, Backend):
            backend = backend.name
        self.params = (logits, mu, log_sigma)
        self.covariance_type = covariance_type
        self.backend = None if backend is None else check_name(backend)

    # ------------------------------------------------------------------
    # shape
    # ------------------------------------------------------------------

    def __len__(self) -> int:
        return self.params[0].shape[0]

    @property
    def n_components(self) -> int:
        return self.params[0].shape[1]

    @property
    def dim(self) -> int:
        """D, the width of y."""
        return self.params[1].shape[2]

    @property
    def dtype(self):
        return self.params[0].dtype

    def __getitem__(self, key) -> Mixture:
        if isinstance(key, tuple):
            raise IndexError("a Mixture is indexed by rows only, e.g. dist[3], dist[2:5]")
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            n = len(self)
            if not -n <= key < n:
                raise IndexError(f"row {key} is out of range for a Mixture of {n} rows")
            key = slice(key, key + 1 if key != -1 else None)
        parts = [p[key] for p in self.params]
        if parts[0].ndim != 2:
            raise IndexError(f"index {key!r} does not select rows")
        if parts[0].shape[0] == 0:
            raise IndexError(f"index {key!r} selects no rows")
        if not any_lazy(parts[0]):
            xp = array_module(parts[0])
            parts = [xp.ascontiguousarray(p) for p in parts]
        return Mixture(*parts, covariance_type=self.covariance_type, backend=self.backend)

    def __repr__(self) -> str:
        return (
            f"Mixture(n={len(self)}, n_components={self.n_components}, dim={self.dim}, "
            f"covariance_type={self.covariance_type!r}, dtype={self.dtype.name}, "
            f"backend={self.backend!r})"
        )

    # ------------------------------------------------------------------
    # natural parameters
    # ------------------------------------------------------------------

    @property
    def weights(self):
        """Mixing weights ``pi = softmax(logits)`` [N, K]."""
        return mixture_params(*self.params)[0]

    @property
    def means(self):
        """Component means [N, K, D]."""
        return self.params[1]

    @property
    def covariances(self):
        """Component covariance matrices [N, K, D, D], float64, for every covariance kind
        (full: ``U^-1 U^-T``)."""
        return _component_covariances(self.params[1], self.params[2])

    # ------------------------------------------------------------------
    # subsets of the outputs
    # ------------------------------------------------------------------

    def marginal(self, dims) -> Mixture:
        """The mixture of the outputs ``dims`` (an int or a sequence of distinct indices,
        in the order wanted), the others integrated out: a ``Mixture`` of the same kind,
        weights and backend; :func:`npmdn.mixture_marginal`."""
        return Mixture(*mixture_marginal(*self.params, dims),
                       covariance_type=self.covariance_type, backend=self.backend)

    def condition(self, dims, values) -> Mixture:
        """The mixture of the other outputs given ``y[:, dims] = values`` ([N, len(dims)],
        or [N] for one index): each component's conditional, re-weighted by how well it
        explains ``values`` (``pi'_k ∝ pi_k N(values; mu_k,dims, Sigma_k,dims)``); a
        ``Mixture`` of the same kind and backend; :func:`npmdn.mixture_condition`."""
        return Mixture(*mixture_condition(*self.params, values, dims),
                       covariance_type=self.covariance_type, backend=self.backend)

    # ------------------------------------------------------------------
    # densities, draws
    # ------------------------------------------------------------------

    def _targets(self, y):
        """y [N, D] (or [N] when D = 1), any real dtype -> [N, D] in the mixture's dtype."""
        logits = self.params[0]
        y = C.mixture_targets(y, len(self), self.dim, C.is_device_array(logits))
        return y.astype(logits.dtype, copy=False)

    def log_prob(self, y):
        """``log p(y_n)`` per row [N]: the joint density of y [N, D] (or [N] when D = 1),
        cast to the mixture's dtype; :func:`npmdn.mixture_log_prob` on this backend."""
        return mixture_log_prob(*self.params, self._targets(y), backend=self.backend)

    def pdf(self, y):
        """``p(y_n)`` per row [N]: ``exp(log_prob(y))`` (underflows to 0 far out)."""
        lp = self.log_prob(y)
        return array_module(lp).exp(lp)

    def sample(self, n_samples: int = 1, seed=None, *, method: str = "gumbel",
               temperature: float = 1.0, sigma_scale: float = 1.0, row_offset: int = 0):
        """Draws [N, n_samples, D]; :func:`npmdn.mixture_sample` on this backend.

        Row ``n`` uses row ``row_offset + n`` of the seed's Philox stream, so
        ``dist[a:b].sample(m, seed, row_offset=a)`` equals ``dist.sample(m, seed)[a:b]``.
        """
        return mixture_sample(
            *self.params, n_samples, seed, method=method, temperature=temperature,
            sigma_scale=sigma_scale, row_offset=row_offset, backend=self.backend,
        )

    # ------------------------------------------------------------------
    # moments, CDF, quantiles, modes, CRPS (float64 unless stated)
    # ------------------------------------------------------------------

    def mean(self):
        """Mixture mean ``sum_k pi_k mu_k`` [N, D], computed in float64, in the mixture's dtype."""
        return mixture_mean(*self.params)

    def covariance(self):
        """Predictive covariance [N, D, D] (law of total covariance), float64."""
        return mixture_covariance(*self.params)

    def variance(self):
        """Predictive variance per output dimension [N, D], float64."""
        return _variance(*self.params)

    def std(self):
        """Predictive standard deviation per output dimension [N, D], in the mixture's
        dtype (computed in float64 without forming the variance)."""
        return mixture.std(*self.params)

    def cdf(self, y):
        """``P(Y <= y)``: [N] for D = 1, per-dimension marginals [N, D] otherwise."""
        return mixture_cdf(*self.params, y)

    def quantile(self, q):
        """Quantiles at levels ``q`` in (0, 1): [N, len(q)] for D = 1 ([N] for a scalar q),
        per-dimension marginals [N, len(q), D] otherwise."""
        return mixture_quantile(*self.params, q)

    def interval(self, coverage=0.9):
        """Central interval ``(lower, upper)`` of probability ``coverage``, each shaped
        as :meth:`quantile` for ``q = coverage``."""
        return mixture_interval(*self.params, coverage)

    def modes(self, **options):
        """Every local mode per row, highest first: a :class:`npmdn.Modes`
        (options as :func:`npmdn.mixture_modes`)."""
        return mixture_modes(*self.params, **options)

    def crps(self, y):
        """CRPS of y per row: [N] for D = 1, per-dimension marginals [N, D] otherwise."""
        return metrics.crps(*self.params, y)


__all__ = ["Mixture"]
