"""``MDN``: an MLP trunk, a Gaussian-mixture head, and the training loop.

The network sees standardized data, ``x' = (x - x_shift) / x_scale`` and
``y' = (y - y_shift) / y_scale``, with the statistics taken from the first
training set. Every public method speaks the user's units: densities carry
the log-Jacobian of the change of variables,

    log p(y | x) = log p'(y' | x') - sum_d log y_scale_d,

and mixtures, samples, means and variances are mapped back by
``mu = y_shift + y_scale * mu'`` and ``sigma = y_scale * sigma'``. With
isotropic covariance all output dimensions share one ``y_scale`` (the RMS of
their standard deviations), so the mixture stays isotropic in user units.

The head emits, per row, ``P = K (1 + D + S)`` numbers laid out as
``[logits (K) | mu (K x D, component-major) | log_sigma (K x S)]``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import zipfile
from dataclasses import dataclass, field

import numpy as np

from . import _checks as C
from . import metrics, mixture
from ._io import atomic_open
from .backend import Backend, get_backend
from .functional import (
    Modes,
    mixture_cdf,
    mixture_interval,
    mixture_modes,
    mixture_quantile,
    mode_options,
)
from .nn import ACTIVATIONS, MLP
from .optim import OPTIMIZERS, clip_by_global_norm
from .predictive import Mixture
from .progress import Progress

FORMAT = "npmdn-model"
FORMAT_VERSION = 1
COVARIANCES = ("diagonal", "isotropic")
LR_SCHEDULES = ("constant", "cosine")
PREDICT_KINDS = ("mean", "mode", "component")
_CHUNK = 1 << 16  # rows per inference chunk: bounds memory for any N


def _nb_fit_plan(model, opt, xs, ys, bs, steps, clip_norm):
    """The numba backend's fused epochs (npmdn._nb_train), or None for the loop in fit."""
    if model.backend.name != "numba":
        return None
    from . import _nb_train

    return _nb_train.plan(model, opt, xs, ys, bs, steps, clip_norm)


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or infinite loss; the model keeps its last finite weights."""


@dataclass
class History:
    """Per-epoch mean NLL (nats per sample, user units) and how training ended."""

    train_nll: list = field(default_factory=list)
    val_nll: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    restored_best: bool = False
    seconds: float = 0.0

    @property
    def epochs(self) -> int:
        return len(self.train_nll)

    def __getitem__(self, key):
        return getattr(self, key)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class MDN:
    """A mixture density network ``x -> p(y | x)``, a mixture of K Gaussians.

    Parameters
    ----------
    in_dim, out_dim : int
        Widths of x and y.
    n_components : int
        K, the number of Gaussians.
    hidden : sequence of int
        Hidden layer widths of the trunk (may be empty: a linear head).
    activation : str
        One of ``tanh, relu, sigmoid, softplus, elu, identity``.
    covariance : {"diagonal", "isotropic"}
        One sigma per output dimension and component, or one per component.
    backend : str, optional
        ``numpy``, ``numba`` or ``cupy``; see :mod:`npmdn.backend`.
    dtype : {"float32", "float64"}
        Precision of parameters and computation.
    seed : int, optional
        Seeds the initial weights (and, unless ``fit`` gets its own, the
        minibatch order).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        n_components: int,
        hidden=(64, 64),
        activation: str = "tanh",
        covariance: str = "diagonal",
        backend=None,
        dtype="float32",
        seed: int | None = None,
    ):
        self.in_dim = C.int_arg(in_dim, "in_dim", 1)
        self.out_dim = C.int_arg(out_dim, "out_dim", 1)
        self.n_components = C.int_arg(n_components, "n_components", 1)
        if isinstance(hidden, (int, np.integer)):
            hidden = (hidden,)
        try:
            hidden = tuple(hidden)
        except TypeError as exc:
            raise C.InputDTypeError(f"hidden must be a sequence of ints, got {hidden!r}") from exc
        self.hidden = tuple(C.int_arg(h, "hidden layer width", 1) for h in hidden)
        self.activation = C.choice_arg(activation, "activation", ACTIVATIONS)
        self.covariance = C.choice_arg(covariance, "covariance", COVARIANCES)
        self.dtype = C.as_dtype(dtype)
        self.seed = None if seed is None else C.int_arg(seed, "seed", 0)
        self.backend: Backend = get_backend(backend)
        k, d = self.n_components, self.out_dim
        self.scale_dim = d if self.covariance == "diagonal" else 1
        self.head_size = k * (1 + d + self.scale_dim)
        self.net = MLP(
            (self.in_dim, *self.hidden, self.head_size), self.activation, self.dtype,
            self.backend.xp,
        )
        self._init_params(np.random.default_rng(self.seed))
        self.x_shift = np.zeros(self.in_dim)
        self.x_scale = np.ones(self.in_dim)
        self.y_shift = np.zeros(self.out_dim)
        self.y_scale = np.ones(self.out_dim)
        self.fitted = False

    # ------------------------------------------------------------------
    # construction helpers
    # ------------------------------------------------------------------

    def _init_params(self, rng):
        """Trunk init from :meth:`MLP.init`; the head's mean biases spread the
        components over the standardized targets so that they start apart."""
        self.net.init(rng)
        k, d = self.n_components, self.out_dim
        host = self.backend.to_host(self.net.params).astype(np.float64)
        off, n_in, n_out = self.net.shapes[-1]
        b = off + n_in * n_out  # head bias
        host[b + k : b + k + k * d] = rng.standard_normal(k * d)
        self.net.set_params(host)

    @property
    def config(self) -> dict:
        return {
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "n_components": self.n_components,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "covariance": self.covariance,
            "dtype": self.dtype.name,
        }

    @property
    def n_params(self) -> int:
        return self.net.n_params

    @property
    def params(self) -> np.ndarray:
        """A host copy of the flat parameter buffer."""
        return self.backend.to_host(self.net.params).copy()

    def set_params(self, values) -> None:
        values = np.asarray(values)
        if values.shape != (self.n_params,):
            raise ValueError(f"expected {self.n_params} parameters, got shape {values.shape}")
        C.check_finite(values, "params")
        self.net.set_params(values)

    def to(self, backend) -> MDN:
        """Move the model to another backend (in place); returns ``self``."""
        new = get_backend(backend)
        if new is not self.backend:
            host = self.params
            self.backend = new
            self.net = MLP(self.net.sizes, self.activation, self.dtype, new.xp)
            self.net.set_params(host)
        return self

    def __getstate__(self) -> dict:
        # pickle (scikit-learn, joblib, Dask) by value: host arrays and the backend's
        # name, never the backend's modules or device memory
        return {"config": self.config, "backend": self.backend.name, "seed": self.seed,
                "fitted": self.fitted, **self._arrays()}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state["config"], backend=state["backend"], seed=state["seed"])
        self.net.set_params(state["params"])
        for name in ("x_shift", "x_scale", "y_shift", "y_scale"):
            setattr(self, name, np.array(state[name], dtype=np.float64))
        self.fitted = state["fitted"]

    def __repr__(self) -> str:
        h = "x".join(map(str, self.hidden)) or "none"
        return (
            f"MDN(in_dim={self.in_dim}, out_dim={self.out_dim}, n_components="
            f"{self.n_components}, hidden={h}, activation={self.activation!r}, covariance="
            f"{self.covariance!r}, dtype={self.dtype.name}, backend={self.backend.name!r}, "
            f"params={self.n_params}, fitted={self.fitted})"
        )

    # ------------------------------------------------------------------
    # input handling
    # ------------------------------------------------------------------

    def _rows(self, a, name: str, width: int) -> np.ndarray:
        """User data -> checked host array [N, width] in float64 (1-D allowed when width 1)."""
        arr = C.real_array(a, name, np.float64)
        if arr.ndim == 1 and width == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != width:
            want = f"[N, {width}]" + (" or [N]" if width == 1 else "")
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
        C.check_nonempty(arr.shape[0], name)
        C.check_finite(arr, name)
        return arr

    def _xy(self, x, y, xname="x", yname="y"):
        x = self._rows(x, xname, self.in_dim)
        y = self._rows(y, yname, self.out_dim)
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{xname} and {yname} must have the same number of rows, "
                f"got {x.shape[0]} and {y.shape[0]}"
            )
        return x, y

    def _std_x(self, x):
        return self.backend.asarray(((x - self.x_shift) / self.x_scale).astype(self.dtype))

    def _std_y(self, y):
        return self.backend.asarray(((y - self.y_shift) / self.y_scale).astype(self.dtype))

    @property
    def log_jacobian(self) -> float:
        """``sum_d log y_scale_d``: subtracted from standardized log-densities."""
        return float(np.log(self.y_scale).sum())

    # ------------------------------------------------------------------
    # the head
    # ------------------------------------------------------------------

    def _split(self, h):
        """Views of a head output [N, P] as (logits, mu, log_sigma) (no copies)."""
        n = h.shape[0]
        k, d, s = self.n_components, self.out_dim, self.scale_dim
        logits = h[:, :k]
        mu = h[:, k : k + k * d].reshape(n, k, d)
        log_sigma = h[:, k + k * d :].reshape(n, k, s)
        return logits, mu, log_sigma

    def _head(self, xs):
        out, _ = self.net.forward(xs)
        return out

    def _chunks(self, n):
        for start in range(0, n, _CHUNK):
            yield start, min(n, start + _CHUNK)

    def _user_mixture(self, logits, mu, log_sigma):
        """Standardized head views -> (logits, mu, log_sigma) in user units (new arrays)."""
        xp = self.backend.xp
        ys = xp.asarray(self.y_scale.astype(self.dtype))
        ysh = xp.asarray(self.y_shift.astype(self.dtype))
        mu_u = mu * ys + ysh
        log_ys = xp.asarray(np.log(self.y_scale[: self.scale_dim]).astype(self.dtype))
        return xp.ascontiguousarray(logits), mu_u, log_sigma + log_ys

    # ------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------

    def mixture_raw(self, x):
        """``(logits [N,K], mu [N,K,D], log_sigma [N,K,S])`` in user units, as NumPy arrays.

        These are the raw-parameter arrays that :func:`npmdn.mixture_nll`,
        :func:`npmdn.mixture_sample` and the ``npmdn.metrics`` functions take.
        """
        x = self._rows(x, "x", self.in_dim)
        parts = []
        for a, b in self._chunks(x.shape[0]):
            h = self._head(self._std_x(x[a:b]))
            parts.append([self.backend.to_host(v) for v in self._user_mixture(*self._split(h))])
        return tuple(np.concatenate(p, axis=0) for p in zip(*parts, strict=True))

    def distribution(self, x) -> Mixture:
        """The predicted ``p(y | x)`` of each row as a :class:`npmdn.Mixture` (user
        units, on this model's backend): ``log_prob``, ``cdf``, ``quantile``, ``sample``..."""
        return Mixture(*self.mixture_raw(x), covariance_type=self.covariance,
                       backend=self.backend.name)

    def mixture(self, x):
        """``(pi [N,K], mu [N,K,D], sigma [N,K,S])``: the predicted mixture in user units."""
        logits, mu, log_sigma = self.mixture_raw(x)
        return mixture.params(logits, mu, log_sigma)

    def log_prob(self, x, y) -> np.ndarray:
        """``log p(y | x)`` per row [N], a density in the user's units of y."""
        x, y = self._xy(x, y)
        out = np.empty(x.shape[0], dtype=self.dtype)
        for a, b in self._chunks(x.shape[0]):
            h = self._head(self._std_x(x[a:b]))
            lp = self.backend.log_prob(*self._split(h), self._std_y(y[a:b]))
            out[a:b] = self.backend.to_host(lp)
        return out - self.dtype.type(self.log_jacobian)

    def nll(self, x, y) -> float:
        """Mean negative log-likelihood (nats per row) of ``y`` given ``x``."""
        return float(-np.mean(self.log_prob(x, y), dtype=np.float64))

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

    def predict_variance(self, x) -> np.ndarray:
        """Predictive variance per output dimension [N, D] (law of total variance)."""
        return mixture.variance(*self.mixture_raw(x))

    def predict_std(self, x) -> np.ndarray:
        """Predictive standard deviation per output dimension [N, D]."""
        return np.sqrt(self.predict_variance(x))

    def predict_covariance(self, x) -> np.ndarray:
        """Full predictive covariance [N, D, D] (law of total covariance)."""
        return mixture.covariance(*self.mixture_raw(x))

    def sample(
        self, x, n_samples: int = 1, seed=None, *, method: str = "gumbel",
        temperature: float = 1.0, sigma_scale: float = 1.0,
    ) -> np.ndarray:
        """Draws from ``p(y | x)``: [N, n_samples, D] in user units.

        Same arguments and guarantees as :func:`npmdn.mixture_sample` (the
        same seed gives the same draws on every backend and whatever the
        batch size); row ``i`` of ``x`` is row ``i`` of the Philox stream.
        """
        x = self._rows(x, "x", self.in_dim)
        n_samples = C.int_arg(n_samples, "n_samples", 1, 2**32 - 1)
        seed = C.seed_arg(seed)
        method = C.choice_arg(method, "method", mixture.SAMPLE_METHODS)
        temperature = C.float_arg(temperature, "temperature", 0.0)
        sigma_scale = C.float_arg(sigma_scale, "sigma_scale", 0.0)
        out = np.empty((x.shape[0], n_samples, self.out_dim), dtype=self.dtype)
        rows = max(1, _CHUNK // n_samples)
        for a in range(0, x.shape[0], rows):
            b = min(x.shape[0], a + rows)
            h = self._head(self._std_x(x[a:b]))
            draws = self.backend.sample(
                *self._user_mixture(*self._split(h)),
                n_samples, seed, a, method, temperature, sigma_scale,
            )
            out[a:b] = self.backend.to_host(draws)
        return out

    # ------------------------------------------------------------------
    # the predicted density beyond its mean: modes, CDF, quantiles, CRPS
    # (npmdn.functional and npmdn.metrics on mixture_raw, so every backend)
    # ------------------------------------------------------------------

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

    def cdf(self, x, y) -> np.ndarray:
        """``P(Y <= y | x)`` per row: [N] for 1-D y, per-dimension marginals [N, D]
        otherwise. At held-out targets these are the PIT values."""
        x, y = self._xy(x, y)
        return mixture_cdf(*self.mixture_raw(x), y)

    def quantile(self, x, q) -> np.ndarray:
        """Quantiles of p(y | x) at levels ``q`` (a level or 1-D levels in (0, 1)):
        [N, len(q)] for 1-D y ([N] for a scalar q), per-dimension marginals
        [N, len(q), D] otherwise. Accurate to about 1e-12 relative."""
        levels = C.probabilities(q, "q")
        return mixture_quantile(*self.mixture_raw(x), levels)

    def interval(self, x, coverage=0.9):
        """Central predictive interval ``(lower, upper)`` of probability ``coverage``
        per row: the ``(1 - c)/2`` and ``(1 + c)/2`` quantiles, each [N] for 1-D y
        and a scalar coverage (shapes as in :meth:`quantile`)."""
        c = C.probabilities(coverage, "coverage")
        return mixture_interval(*self.mixture_raw(x), c)

    def crps(self, x, y) -> np.ndarray:
        """CRPS of each target under p(y | x), closed form: [N] for 1-D y, per-dimension
        marginals [N, D] otherwise (see :func:`npmdn.metrics.crps`)."""
        x, y = self._xy(x, y)
        return metrics.crps(*self.mixture_raw(x), y)

    # ------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------

    def _set_standardization(self, x, y):
        self.x_shift = x.mean(axis=0)
        sx = x.std(axis=0)
        self.x_scale = np.where(sx > 0, sx, 1.0)
        self.y_shift = y.mean(axis=0)
        sy = y.std(axis=0)
        if self.covariance == "isotropic":
            sy = np.full(self.out_dim, np.sqrt(np.mean(sy**2)))
        self.y_scale = np.where(sy > 0, sy, 1.0)

    def fit(
        self,
        x,
        y,
        epochs: int = 100,
        batch_size: int | None = 256,
        lr: float = 1e-3,
        *,
        validation_data=None,
        validation_split: float = 0.0,
        optimizer: str = "adam",
        optimizer_options: dict | None = None,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        patience: int | None = None,
        min_delta: float = 0.0,
        restore_best: bool = True,
        lr_schedule: str = "constant",
        seed: int | None = None,
        verbose: bool | None = None,
        callback=None,
    ) -> History:
        """Train by minibatch gradient descent on the mean NLL.

        Parameters
        ----------
        x : (N, in_dim) array (or (N,) when ``in_dim == 1``)
        y : (N, out_dim) array (or (N,) when ``out_dim == 1``)
        epochs : int
            Passes over the training data.
        batch_size : int or None
            Rows per step; ``None`` uses the whole training set (full batch).
        lr : float
            Learning rate (peak rate for ``lr_schedule="cosine"``).
        validation_data : (x_val, y_val), optional
            Held-out data scored after every epoch.
        validation_split : float in [0, 1)
            Instead of ``validation_data``, hold out this fraction of (x, y),
            chosen by a seeded permutation.
        optimizer : {"adam", "sgd"}
        optimizer_options : dict, optional
            Extra settings of the optimizer: ``betas``, ``eps`` (Adam);
            ``momentum`` (default 0.9), ``nesterov`` (SGD).
        weight_decay : float
            Decoupled weight decay on the weights (not the biases).
        clip_norm : float, optional
            Rescale the whole gradient to at most this Euclidean norm.
        patience : int, optional
            Stop when the monitored NLL (validation if any, else training)
            has not improved by ``min_delta`` for this many epochs.
        restore_best : bool
            With validation data, end with the weights of the best
            validation epoch.
        lr_schedule : {"constant", "cosine"}
            Cosine decays the rate from ``lr`` to ``lr / 100`` over ``epochs``.
        seed : int, optional
            Seeds the shuffling and the validation split (default: the model's seed).
        verbose : bool, optional
            Progress display on stderr: ``None`` shows it on a terminal only.
        callback : callable, optional
            ``callback(epoch, history)`` after each epoch; returning True stops.

        Returns
        -------
        History
            ``train_nll`` and ``val_nll`` per epoch (user units), ``best_epoch``,
            ``stopped_early``.

        Raises
        ------
        NonFiniteLossError
            When a step's loss or gradient is NaN or infinite. The message names
            the epoch and step; the model keeps the last weights whose loss was
            finite.
        """
        x, y = self._xy(x, y)
        epochs = C.int_arg(epochs, "epochs", 1)
        if batch_size is not None:
            batch_size = C.int_arg(batch_size, "batch_size", 1)
        lr = C.float_arg(lr, "lr", 0.0, strict=True)
        optimizer = C.choice_arg(optimizer, "optimizer", tuple(OPTIMIZERS))
        weight_decay = C.float_arg(weight_decay, "weight_decay", 0.0)
        if clip_norm is not None:
            clip_norm = C.float_arg(clip_norm, "clip_norm", 0.0, strict=True)
        if patience is not None:
            patience = C.int_arg(patience, "patience", 1)
        min_delta = C.float_arg(min_delta, "min_delta", 0.0)
        lr_schedule = C.choice_arg(lr_schedule, "lr_schedule", LR_SCHEDULES)
        validation_split = C.float_arg(validation_split, "validation_split", 0.0)
        if validation_split >= 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
        if validation_data is not None and validation_split > 0:
            raise ValueError("give validation_data or validation_split, not both")
        if callback is not None and not callable(callback):
            raise C.InputDTypeError("callback must be callable")
        seed = self.seed if seed is None else C.int_arg(seed, "seed", 0)
        rng = np.random.default_rng(seed)

        xv = yv = None
        if validation_data is not None:
            try:
                xv, yv = validation_data
            except (TypeError, ValueError) as exc:
                raise ValueError("validation_data must be a pair (x_val, y_val)") from exc
            xv, yv = self._xy(xv, yv, "validation x", "validation y")
        elif validation_split > 0:
            n_val = int(round(validation_split * x.shape[0]))
            if n_val < 1 or n_val >= x.shape[0]:
                raise ValueError(
                    f"validation_split={validation_split} leaves {n_val} validation rows "
                    f"of {x.shape[0]}: need at least 1 in each part"
                )
            perm = rng.permutation(x.shape[0])
            xv, yv = x[perm[:n_val]], y[perm[:n_val]]
            x, y = x[perm[n_val:]], y[perm[n_val:]]

        xp, net = self.backend.xp, self.net
        try:
            opt = OPTIMIZERS[optimizer](
                net.n_params, lr=lr, weight_decay=weight_decay, decay_mask=net.weight_mask(),
                xp=xp, dtype=self.dtype, **(optimizer_options or {}),
            )
        except TypeError as exc:
            raise ValueError(f"optimizer_options do not fit {optimizer!r}: {exc}") from exc
        # all arguments are checked: from here on the model changes
        if not self.fitted:
            self._set_standardization(x, y)
        xs, ys = self._std_x(x), self._std_y(y)  # moved to the device once per fit
        if xv is not None:
            xv_s, yv_s = self._std_x(xv), self._std_y(yv)
        n = x.shape[0]
        bs = n if batch_size is None else min(batch_size, n)
        steps = -(-n // bs)
        jac = self.log_jacobian

        last_good = net.params.copy()  # the weights of the last step with a finite loss
        # numba backend: each epoch's steps in one compiled call (None: the loop below)
        fused = _nb_fit_plan(self, opt, xs, ys, bs, steps, clip_norm)
        best = xp.empty_like(net.params)
        history = History()
        best_val = math.inf
        wait = 0
        progress = Progress(epochs, verbose)
        if fused is None:  # scratch for the step loop
            nll_buf = xp.empty(bs, dtype=self.dtype)
            grad_buf = xp.empty((bs, self.head_size), dtype=self.dtype)
        t0 = time.perf_counter()
        monitor_val = xv is not None
        try:
            for epoch in range(1, epochs + 1):
                if lr_schedule == "cosine":
                    frac = (epoch - 1) / max(1, epochs - 1)
                    lr_now = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
                else:
                    lr_now = lr
                order = xp.asarray(rng.permutation(n)) if steps > 1 else None
                if fused is not None:
                    total = fused.epoch(order, lr_now, epoch, last_good, history)
                else:
                    total = 0.0
                    for step in range(steps):
                        if order is None:
                            xb, yb = xs, ys
                        else:
                            idx = order[step * bs : (step + 1) * bs]
                            xb, yb = xs[idx], ys[idx]
                        b = xb.shape[0]
                        loss, g2 = self._loss_grad_norm_std(xb, yb, nll_buf[:b], grad_buf[:b])
                        if not math.isfinite(loss):
                            self._diverged(epoch, step, steps, "loss", loss, last_good, history)
                        gnorm = math.sqrt(g2)
                        if clip_norm is not None:
                            clip_by_global_norm(net.grads, clip_norm, xp, norm=gnorm)
                        if not math.isfinite(gnorm):
                            self._diverged(epoch, step, steps, "gradient norm", gnorm, None,
                                           history)
                        last_good[...] = net.params
                        opt.step(net.params, net.grads, lr_now)
                        total += loss * b
                train_nll = total / n + jac
                history.train_nll.append(train_nll)
                history.lr.append(lr_now)
                val_nll = None
                if monitor_val:
                    val_nll = self._mean_nll_std(xv_s, yv_s) + jac
                    if not math.isfinite(val_nll):
                        self._diverged(epoch, None, steps, "validation NLL", val_nll,
                                       None, history)
                    history.val_nll.append(val_nll)
                self.fitted = True
                progress.update(epoch, train_nll, val_nll)
                current = val_nll if monitor_val else train_nll
                if current < best_val - min_delta:
                    best_val, wait = current, 0
                    history.best_epoch = epoch
                    if monitor_val and restore_best:
                        best[...] = net.params
                else:
                    wait += 1
                if callback is not None and callback(epoch, history):
                    break
                if patience is not None and wait >= patience:
                    history.stopped_early = True
                    break
        finally:
            history.seconds = time.perf_counter() - t0
            progress.close()
        if monitor_val and restore_best and history.best_epoch is not None:
            net.params[...] = best
            history.restored_best = history.best_epoch != history.epochs
        return history

    def _loss_grad_std(self, xb, yb, nll, grad) -> float:
        """Mean NLL of a standardized batch; fills ``self.net.grads`` with its gradient.

        ``nll`` [B] and ``grad`` [B, P] are scratch buffers: the head kernel
        writes each row's NLL and its gradient with respect to the head output
        straight into them, and the trunk's backward pass starts from ``grad``.
        The gradient is computed even when the loss is not finite; callers check.
        """
        loss, _ = self._loss_grad_norm_std(xb, yb, nll, grad)
        return loss

    def _loss_grad_norm_std(self, xb, yb, nll, grad):
        """As :meth:`_loss_grad_std`, and the squared norm of the whole gradient.

        Both scalars come back to the host in one transfer: on a GPU that is the
        step's only synchronisation.
        """
        b = xb.shape[0]
        xp = self.backend.xp
        head, cache = self.net.forward(xb)
        self.backend.nll_grad(*self._split(head), yb, out=(nll, *self._split(grad)))
        grad *= self.dtype.type(1.0 / b)  # d(mean NLL) = d(sum NLL) / B
        self.net.backward(grad, cache)
        g = self.net.grads
        loss_sum, g2 = self.backend.to_host(xp.stack((nll.sum(), xp.dot(g, g))))
        return float(loss_sum) / b, float(g2)

    def loss_grad(self, x, y):
        """Mean NLL of (x, y) in user units and its gradient with respect to the flat
        parameters (a host copy, in the layout of :attr:`params`).

        This is the quantity ``fit`` descends; the gradient checks in the tests
        compare it with finite differences and with PyTorch autograd. The
        log-Jacobian of the standardization is a constant, so it shifts the loss
        but not the gradient.
        """
        x, y = self._xy(x, y)
        xp = self.backend.xp
        nll = xp.empty(x.shape[0], dtype=self.dtype)
        grad = xp.empty((x.shape[0], self.head_size), dtype=self.dtype)
        loss = self._loss_grad_std(self._std_x(x), self._std_y(y), nll, grad)
        return loss + self.log_jacobian, self.backend.to_host(self.net.grads).copy()

    def _mean_nll_std(self, xs, ys) -> float:
        """Mean NLL in standardized units of standardized (device) arrays, chunked."""
        total = 0.0
        for a, b in self._chunks(xs.shape[0]):
            lp = self.backend.log_prob(*self._split(self._head(xs[a:b])), ys[a:b])
            total -= float(lp.sum())
        return total / xs.shape[0]

    def _diverged(self, epoch, step, steps, what, value, restore, history):
        if restore is not None:
            self.net.params[...] = restore
        where = f"epoch {epoch}" + ("" if step is None else f", step {step + 1} of {steps}")
        kept = (
            "the model keeps the weights of the last step with a finite loss"
            if step is not None
            else "the model keeps the weights of that epoch's last step"
        )
        if step is not None and step == 0 and epoch == 1 and restore is not None:
            kept = "the model keeps its initial weights"
        raise NonFiniteLossError(
            f"training stopped at {where}: the {what} is {value}; {kept}. "
            f"Completed epochs: {history.epochs}. Try a smaller lr, clip_norm, or check "
            f"the scale of the data."
        )

    # ------------------------------------------------------------------
    # persistence: .npz with a JSON header, no pickle, atomic write
    # ------------------------------------------------------------------

    def _arrays(self) -> dict:
        return {
            "params": self.params,
            "x_shift": self.x_shift.astype(np.float64),
            "x_scale": self.x_scale.astype(np.float64),
            "y_shift": self.y_shift.astype(np.float64),
            "y_scale": self.y_scale.astype(np.float64),
        }

    def save(self, path) -> None:
        """Write the model to ``path`` (an ``.npz`` file; the name is kept as given).

        The file is written to a temporary file in the same directory and
        renamed over ``path`` only when complete, so an interrupted save never
        leaves a half-written model behind or damages an existing one.
        """
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise ValueError(f"cannot save to {path!r}: directory {directory!r} does not exist")
        if os.path.isdir(path):
            raise ValueError(f"cannot save to {path!r}: it is a directory")
        arrays = self._arrays()
        from . import __version__

        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "npmdn_version": __version__,
            "config": self.config,
            "fitted": self.fitted,
            "n_params": self.n_params,
            "sha256": {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in arrays.items()},
        }
        blob = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
        with atomic_open(path, "wb") as f:
            np.savez(f, header=blob, **arrays)

    @classmethod
    def load(cls, path, backend=None) -> MDN:
        return load(path, backend=backend)


def _bad_file(path, why):
    return ValueError(f"{path!r} is not a valid npmdn model file: {why}")


def load(path, backend=None) -> MDN:
    """Read a model written by :meth:`MDN.save` (no pickle is ever loaded).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming
    the problem for a corrupt, truncated, foreign or inconsistent file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    if not zipfile.is_zipfile(path):  # checked first: numpy's message here speaks of pickles
        raise _bad_file(path, "it is not an .npz (zip) archive")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise _bad_file(path, f"cannot read it as .npz ({exc})") from exc
    if "header" not in data:
        raise _bad_file(path, "it has no npmdn header")
    try:
        header = json.loads(data["header"].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad_file(path, f"its header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _bad_file(path, "its header does not name the npmdn-model format")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise _bad_file(
            path, f"format version {version!r} is not supported (this npmdn reads up to "
            f"{FORMAT_VERSION})"
        )
    cfg = header.get("config")
    try:
        model = MDN(**cfg, backend=backend)
    except (TypeError, ValueError) as exc:
        raise _bad_file(path, f"its configuration is invalid ({exc})") from exc
    expected = {
        "params": ((model.n_params,), model.dtype),
        "x_shift": ((model.in_dim,), np.dtype(np.float64)),
        "x_scale": ((model.in_dim,), np.dtype(np.float64)),
        "y_shift": ((model.out_dim,), np.dtype(np.float64)),
        "y_scale": ((model.out_dim,), np.dtype(np.float64)),
    }
    sums = header.get("sha256", {})
    for name, (shape, dtype) in expected.items():
        if name not in data:
            raise _bad_file(path, f"the array {name!r} is missing")
        arr = data[name]
        if arr.shape != shape or arr.dtype != dtype:
            raise _bad_file(
                path, f"{name!r} has shape {arr.shape} and dtype {arr.dtype}, but the header's "
                f"architecture needs shape {shape} and dtype {dtype}"
            )
        if sums.get(name) != hashlib.sha256(arr.tobytes()).hexdigest():
            raise _bad_file(path, f"the checksum of {name!r} does not match its header")
        if not np.isfinite(arr).all():
            raise _bad_file(path, f"{name!r} holds NaN or inf")
    if not (data["x_scale"] > 0).all() or not (data["y_scale"] > 0).all():
        raise _bad_file(path, "its standardization scales must be positive")
    model.net.set_params(data["params"])
    model.x_shift, model.x_scale = data["x_shift"], data["x_scale"]
    model.y_shift, model.y_scale = data["y_shift"], data["y_scale"]
    model.fitted = bool(header.get("fitted", False))
    return model
