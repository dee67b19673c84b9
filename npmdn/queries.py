"""What a model answers about ``p(y | x)``: densities, scores, draws, point
predictions, moments, modes, CDF, quantiles, intervals, CRPS.

:class:`DistributionQueries` is a mixin of :class:`npmdn.MDN`: every method
here runs the model's network (``_head``, in user units ``mixture_raw``) and
hands the mixture to a backend kernel or to one raw-parameter function of
:mod:`npmdn.functional`, :mod:`npmdn.mixture` or :mod:`npmdn.metrics`, so it
computes on every backend with no math of its own. :func:`dask_aware` sends a
call with Dask rows to :mod:`npmdn.dask`.
"""

from __future__ import annotations

import functools

import numpy as np

from . import _blocks, config, metrics, mixture
from . import _checks as C
from .functional import (
    Modes,
    mixture_cdf,
    mixture_interval,
    mixture_modes,
    mixture_quantile,
    mode_options,
)
from .predictive import Mixture

PREDICT_KINDS = ("mean", "mode", "component")


def dask_aware(method):
    """A method whose rows may be Dask collections: such a call goes to :mod:`npmdn.dask`
    (lazy results computed block by block, computed scores, a streaming fit)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if _blocks.any_lazy(*args, *kwargs.values()):
            from . import dask as npmdn_dask

            return npmdn_dask.dispatch(self, method, args, kwargs)
        return method(self, *args, **kwargs)

    return wrapper


class DistributionQueries:
    """Everything the model answers about ``p(y | x)`` beyond ``mixture_raw``: the
    distribution object, densities and scores, draws, point predictions, moments,
    modes, CDF, quantiles, intervals and CRPS (see the module)."""

    @dask_aware
    def distribution(self, x) -> Mixture:
        """The predicted ``p(y | x)`` of each row as a :class:`npmdn.Mixture` (user
        units, on this model's backend): ``log_prob``, ``cdf``, ``quantile``, ``sample``..."""
        return Mixture(*self.mixture_raw(x), covariance_type=self.covariance,
                       backend=self.backend.name)

    @dask_aware
    def mixture(self, x):
        """``(pi [N,K], mu [N,K,D], sigma [N,K,S])``: the predicted mixture in user units
        (``covariance="full"``: the third is each component's covariance [N,K,D,D])."""
        logits, mu, log_sigma = self.mixture_raw(x)
        return mixture.params(logits, mu, log_sigma)

    @dask_aware
    def log_prob(self, x, y) -> np.ndarray:
        """``log p(y | x)`` per row [N], a density in the user's units of y."""
        x, y = self._xy(x, y)
        out = np.empty(x.shape[0], dtype=self.dtype)
        for a, b in self._chunks(x.shape[0]):
            h = self._head(self._std_x(x[a:b]))
            lp = self.backend.log_prob(*self._split(h), self._std_y(y[a:b]))
            out[a:b] = self.backend.to_host(lp)
        return out - self.dtype.type(self.log_jacobian)

    @dask_aware
    def nll(self, x, y) -> float:
        """Mean negative log-likelihood (nats per row) of ``y`` given ``x``."""
        return float(-np.mean(self.log_prob(x, y), dtype=np.float64))

    @dask_aware
    def score(self, x, y, levels=metrics.DEFAULT_LEVELS) -> dict:
        """Scores of held-out data as a flat dict of floats: ``nll`` (mean, nats),
        ``crps``, ``coverage_<100c>`` per level, ``calibration_error`` and ``pit_ks``;
        see :func:`npmdn.metrics.summary` (for D > 1, CRPS and PIT are per-dimension
        marginals, averaged and pooled)."""
        x, y = self._xy(x, y)
        levels = C.probabilities(levels, "levels")
        out = metrics.summary(*self.mixture_raw(x), y, levels)
        out["nll"] = self.nll(x, y)  # the training loss's own kernel, as in History
        return out

    def _score_rows(self, x, y):
        """``(log p(y | x) [N], CRPS, PIT)`` of in-memory rows, CRPS and PIT [N] or
        [N, D]: what :class:`npmdn.metrics.ScoreSums` adds up when rows are scored in
        pieces (Dask blocks in :mod:`npmdn.dask`, chunks of a file in the command)."""
        raw = self.mixture_raw(x)
        return self.log_prob(x, y), metrics.crps(*raw, y), metrics.pit(*raw, y)

    @dask_aware
    def sample(
        self, x, n_samples: int = 1, seed=None, *, method: str = "gumbel",
        temperature: float = 1.0, sigma_scale: float = 1.0, row_offset: int = 0,
    ) -> np.ndarray:
        """Draws from ``p(y | x)``: [N, n_samples, D] in user units.

        Same arguments and guarantees as :func:`npmdn.mixture_sample` (the
        same seed gives the same draws on every backend and whatever the
        batch size); row ``i`` of ``x`` is row ``row_offset + i`` of the Philox
        stream, so rows ``a:b`` drawn with ``row_offset=a`` are those rows of the
        whole batch's draws (bit for bit when ``a`` is a multiple of
        ``config.NETWORK_PASS``; otherwise the network's float rounding may
        differ in the last bit; :mod:`npmdn.dask` pads its blocks to passes).
        """
        x = self._rows(x, "x", self.in_dim, self.x_names)
        n_samples = C.int_arg(n_samples, "n_samples", 1, 2**32 - 1)
        seed = C.seed_arg(seed)
        method = C.choice_arg(method, "method", mixture.SAMPLE_METHODS)
        temperature = C.float_arg(temperature, "temperature", 0.0)
        sigma_scale = C.float_arg(sigma_scale, "sigma_scale", 0.0)
        row_offset = C.int_arg(row_offset, "row_offset", 0, 2**64 - 1 - x.shape[0])
        out = np.empty((x.shape[0], n_samples, self.out_dim), dtype=self.dtype)
        per_call = max(1, config.INFERENCE_CHUNK // n_samples)  # bounds the draws' temporaries
        for a, b in self._chunks(x.shape[0], per_call):
            mix = self._user_mixture(*self._split(self._head(self._std_x(x[a:b]))))
            for c in range(a, b, per_call):
                d = min(b, c + per_call)
                draws = self.backend.sample(
                    *(m[c - a : d - a] for m in mix),
                    n_samples, seed, row_offset + c, method, temperature, sigma_scale,
                )
                out[c:d] = self.backend.to_host(draws)
        return out

    @dask_aware
    def predict(self, x, kind: str = "mean") -> np.ndarray:
        """A point prediction per row [N, D].

        ``kind="mean"``: the conditional mean ``E[y | x] = sum_k pi_k mu_k``;
        ``"mode"``: the highest mode of p(y | x) (see :meth:`modes`);
        ``"component"``: the mean of the heaviest component.
        """
        kind = C.choice_arg(kind, "kind", PREDICT_KINDS)
        if kind != "mean":
            return self._predict_point(x, kind)
        logits, mu, _ = self.mixture_raw(x)
        return mixture.mean(logits, mu)

    @dask_aware
    def predict_variance(self, x) -> np.ndarray:
        """Predictive variance per output dimension [N, D] (law of total variance),
        float64 whatever the model's dtype (see :func:`npmdn.mixture.variance`)."""
        return mixture.variance(*self.mixture_raw(x))

    @dask_aware
    def predict_std(self, x) -> np.ndarray:
        """Predictive standard deviation per output dimension [N, D], in the model's
        dtype; computed in float64 without forming the variance, so it is finite
        wherever it fits the dtype (see :func:`npmdn.mixture.std`)."""
        return mixture.std(*self.mixture_raw(x))

    @dask_aware
    def predict_covariance(self, x) -> np.ndarray:
        """Full predictive covariance [N, D, D] (law of total covariance), float64."""
        return mixture.covariance(*self.mixture_raw(x))

    # ------------------------------------------------------------------
    # the predicted density beyond its mean: modes, CDF, quantiles, CRPS
    # (npmdn.functional and npmdn.metrics on mixture_raw, so every backend)
    # ------------------------------------------------------------------

    @dask_aware
    def modes(self, x, *, tol: float = 1e-10, max_iter: int = 500,
              merge_tol: float = 1e-2) -> Modes:
        """Every local mode of p(y | x) per row, highest density first.

        A :class:`npmdn.Modes`: ``locations [N, K, D]``, ``log_density [N, K]``
        (log p(mode | x), in the user's units of y) and ``count [N]``; unused
        slots hold NaN and ``-inf``. The options are :func:`npmdn.mixture_modes`'s.
        """
        tol, max_iter, merge_tol = mode_options(tol, max_iter, merge_tol)
        return mixture_modes(*self.mixture_raw(x), tol=tol, max_iter=max_iter,
                             merge_tol=merge_tol)

    def _predict_point(self, x, kind):
        logits, mu, log_sigma = self.mixture_raw(x)
        if kind == "mode":
            best = mixture_modes(logits, mu, log_sigma).best()
            return best.astype(self.dtype)
        heaviest = np.argmax(logits, axis=1)  # ties: the lowest index
        return mu[np.arange(mu.shape[0]), heaviest]

    @dask_aware
    def cdf(self, x, y) -> np.ndarray:
        """``P(Y <= y | x)`` per row: [N] for 1-D y, per-dimension marginals [N, D]
        otherwise. At held-out targets these are the PIT values."""
        x, y = self._xy(x, y)
        return mixture_cdf(*self.mixture_raw(x), y)

    @dask_aware
    def quantile(self, x, q) -> np.ndarray:
        """Quantiles of p(y | x) at levels ``q`` (a level or 1-D levels in (0, 1)):
        [N, len(q)] for 1-D y ([N] for a scalar q), per-dimension marginals
        [N, len(q), D] otherwise; accuracy and monotonicity as :func:`npmdn.mixture_quantile`."""
        levels = C.probabilities(q, "q")
        return mixture_quantile(*self.mixture_raw(x), levels)

    @dask_aware
    def interval(self, x, coverage=0.9):
        """Central predictive interval ``(lower, upper)`` of probability ``coverage``
        per row: the ``(1 - c)/2`` and ``(1 + c)/2`` quantiles, each [N] for 1-D y
        and a scalar coverage (shapes as in :meth:`quantile`)."""
        c = C.probabilities(coverage, "coverage")
        return mixture_interval(*self.mixture_raw(x), c)

    @dask_aware
    def crps(self, x, y) -> np.ndarray:
        """CRPS of each target under p(y | x), closed form: [N] for 1-D y, per-dimension
        marginals [N, D] otherwise (see :func:`npmdn.metrics.crps`)."""
        x, y = self._xy(x, y)
        return metrics.crps(*self.mixture_raw(x), y)
