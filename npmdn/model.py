"""``MDN``: an MLP trunk, a Gaussian-mixture head, and the training loop.

The network sees standardized data, ``x' = (x - x_shift) / x_scale`` and
``y' = (y - y_shift) / y_scale``, with the statistics taken from the first
training set. Every public method speaks the user's units: densities carry
the log-Jacobian of the change of variables,

    log p(y | x) = log p'(y' | x') - sum_d log y_scale_d,

and mixtures, samples, means and variances are mapped back by
``mu = y_shift + y_scale * mu'`` and ``sigma = y_scale * sigma'`` (full
covariance: ``U = U' diag(1 / y_scale)``). With isotropic covariance all
output dimensions share one ``y_scale`` (the RMS of their standard
deviations), so the mixture stays isotropic in user units.

The head emits, per row, ``P = K (1 + D + S)`` numbers laid out as
``[logits (K) | mu (K x D, component-major) | log_sigma (K x S)]``, with
``S = D`` (diagonal), 1 (isotropic) or ``D (D + 1) / 2`` (full: each
component's packed precision factor, :mod:`npmdn.fullcov`).

Training is in :mod:`npmdn.training`, the file format in
:mod:`npmdn.persistence`, what the model answers (densities, draws, moments,
quantiles...) in the mixin :class:`npmdn.queries.DistributionQueries`; this
module holds the model: construction, parameters, input checks and
standardization, the network and its head, fit's interface, save and load.
"""

from __future__ import annotations

import numpy as np

from . import _checks as C
from . import config, mixture, persistence, standardization, training
from .architecture import CONFIG_KEYS, count_params, file_layout, head_size  # noqa: F401
from .backend import Backend, get_backend
from .fullcov import pairs
from .mixture import COVARIANCES, scale_size
from .nn import ACTIVATIONS, MLP
from .queries import DistributionQueries, dask_aware
from .training import History, NonFiniteLossError

__all__ = ["MDN", "load", "History", "NonFiniteLossError", "COVARIANCES"]

class MDN(DistributionQueries):
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
    covariance : {"diagonal", "isotropic", "full"}
        One sigma per output dimension and component, one per component, or
        a full covariance matrix per component (correlated outputs), given by
        the upper Cholesky factor of its precision (:mod:`npmdn.fullcov`).
    backend : str, optional
        ``numpy``, ``numba`` or ``cupy``; see :mod:`npmdn.backend`.
    dtype : {"float32", "float64"}
        Precision of parameters and computation.
    seed : int, optional
        Seeds the initial weights (and, unless ``fit`` gets its own, the
        minibatch order).
    min_sigma : float, optional
        A floor on every component's sigma, in the units of y (default: none).
        Each sigma is ``min_sigma + y_scale * exp(s)`` for the network's raw
        scale ``s``, in training and in every answer, so no component is ever
        narrower (to the rounding of the dtype) and none can collapse onto a
        repeated value of y. With ``covariance="isotropic"`` the floor is that
        of the shared sigma. Noise regularisation (``fit``'s ``noise_y``)
        keeps sigmas away from 0 by itself; the floor is a guard for training
        without it (about 1% of std(y) stops the divergences measured in
        ``bench/RESULTS.md``).
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
        min_sigma: float | None = None,
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
        self.min_sigma = None if min_sigma is None else C.float_arg(
            min_sigma, "min_sigma", 0.0, strict=True)
        if self.min_sigma is not None and self.covariance == "full":
            # a full component's narrowest direction is not one of its packed scales
            raise ValueError("min_sigma is defined for covariance 'diagonal' and 'isotropic', "
                             "not 'full'; noise regularisation (noise_y) keeps components "
                             "from collapsing")
        self.backend: Backend = get_backend(backend)
        k, d = self.n_components, self.out_dim
        self.scale_dim = scale_size(d, self.covariance)
        self.head_size = head_size(k, d, self.covariance)
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
        self.x_names: tuple | None = None  # the columns of x and y at fit, when known
        self.y_names: tuple | None = None

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
            "min_sigma": self.min_sigma,
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
                "fitted": self.fitted, "x_names": self.x_names, "y_names": self.y_names,
                **self._arrays()}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state["config"], backend=state["backend"], seed=state["seed"])
        self.net.set_params(state["params"])
        for name in ("x_shift", "x_scale", "y_shift", "y_scale"):
            setattr(self, name, np.array(state[name], dtype=np.float64))
        self.fitted = state["fitted"]
        self.x_names, self.y_names = state.get("x_names"), state.get("y_names")

    def __repr__(self) -> str:
        h = "x".join(map(str, self.hidden)) or "none"
        return (
            f"MDN(in_dim={self.in_dim}, out_dim={self.out_dim}, n_components="
            f"{self.n_components}, hidden={h}, activation={self.activation!r}, covariance="
            f"{self.covariance!r}, dtype={self.dtype.name}, backend={self.backend.name!r}, "
            + ("" if self.min_sigma is None else f"min_sigma={self.min_sigma!r}, ") +
            f"params={self.n_params}, fitted={self.fitted})"
        )

    # ------------------------------------------------------------------
    # input handling
    # ------------------------------------------------------------------

    def _rows(self, a, name: str, width: int, names=None) -> np.ndarray:
        """User data -> checked host array [N, width] in float64 (1-D allowed when width 1).

        A pandas DataFrame with string columns, given to a model that knows the
        ``names`` of its columns, is read by those names (in the model's order);
        one that lacks any of them is refused, naming them.
        """
        if names is not None and getattr(a, "ndim", None) == 2:
            have = C.column_names(a)
            if have is not None:
                missing = [n for n in names if n not in have]
                if missing:
                    raise ValueError(
                        f"{name} lacks the column(s) {', '.join(map(repr, missing))} the model "
                        f"was fitted on (it has {', '.join(map(repr, have))})"
                    )
                a = a[list(names)]
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
        x = self._rows(x, xname, self.in_dim, self.x_names)
        y = self._rows(y, yname, self.out_dim, self.y_names)
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{xname} and {yname} must have the same number of rows, "
                f"got {x.shape[0]} and {y.shape[0]}"
            )
        return x, y

    def _std_x(self, x, name: str = "x"):
        """Standardized x on the backend; ValueError for a value the dtype cannot hold."""
        return self.backend.asarray(
            standardization.apply(x, self.x_shift, self.x_scale, self.dtype, name))

    def _std_y(self, y):
        """Standardized y on the backend; a value beyond the dtype becomes +-inf, whose
        log-density is -inf (the rounding of the true value)."""
        with np.errstate(over="ignore"):
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

    def _log_floor(self):
        """``log(min_sigma / y_scale)`` [S] on the backend (the floor in standardized
        units, per scale column), or None without a floor."""
        if self.min_sigma is None:
            return None
        lf = np.log(self.min_sigma) - np.log(self.y_scale[: self.scale_dim])
        return self.backend.xp.asarray(lf.astype(self.dtype))

    def _floor(self, h, keep_raw: bool = False):
        """Apply the sigma floor to a head output [N, P] in place (its log_sigma block,
        see :func:`npmdn.mixture.floor_log_sigma`). With ``keep_raw``, returns a copy
        of the raw scales before it (for the gradient); None without a floor."""
        lf = self._log_floor()
        if lf is None:
            return None
        log_sigma = self._split(h)[2]
        raw = log_sigma.copy() if keep_raw else log_sigma
        mixture.floor_log_sigma(raw, lf, out=log_sigma)
        return raw if keep_raw else None

    def _network_pass(self) -> int:
        """Rows per matrix product in inference (see ``config.NETWORK_PASS``)."""
        return config.NETWORK_PASS_DEVICE if self.backend.on_device else config.NETWORK_PASS

    def _head(self, xs):
        """The head output [N, P] of standardized rows, in network passes of a fixed
        number of rows counted from the first, so that a row's result depends only on
        the row and its index (``config.NETWORK_PASS`` says why)."""
        rows = self._network_pass()
        n = xs.shape[0]
        if n <= rows:
            out, _ = self.net.forward(xs)
        else:
            out = self.backend.xp.empty((n, self.head_size), dtype=self.dtype)
            for a in range(0, n, rows):
                h, _ = self.net.forward(xs[a : a + rows])
                out[a : a + rows] = h
        self._floor(out)
        return out

    def _chunks(self, n, rows=None):
        """Row ranges of about ``rows`` (default ``config.INFERENCE_CHUNK``) rows that
        start on network passes, so chunking never changes a result."""
        step = self._network_pass()
        rows = config.INFERENCE_CHUNK if rows is None else rows
        rows = max(step, rows // step * step)
        for start in range(0, n, rows):
            yield start, min(n, start + rows)

    def _user_mixture(self, logits, mu, log_sigma):
        """Standardized head views -> (logits, mu, log_sigma) in user units (new arrays).

        ``y = y_shift + y_scale y'``: ``mu = y_shift + y_scale mu'``, ``s = s' + log y_scale``;
        a full factor becomes ``U = U' diag(1 / y_scale)``, so its ``s_i`` shift as the
        diagonal model's and its ``U_ij`` (``i < j``) are divided by ``y_scale_j``.
        """
        xp = self.backend.xp
        ys = xp.asarray(self.y_scale.astype(self.dtype))
        ysh = xp.asarray(self.y_shift.astype(self.dtype))
        mu_u = mu * ys + ysh
        d = self.out_dim
        log_ys = np.log(self.y_scale[: min(d, self.scale_dim)])
        if self.covariance != "full" or d == 1:
            return xp.ascontiguousarray(logits), mu_u, log_sigma + xp.asarray(
                log_ys.astype(self.dtype))
        ls = xp.empty_like(log_sigma)
        ls[..., :d] = log_sigma[..., :d] + xp.asarray(log_ys.astype(self.dtype))
        ls[..., d:] = log_sigma[..., d:] / xp.asarray(self.y_scale[pairs(d)[1]].astype(self.dtype))
        return xp.ascontiguousarray(logits), mu_u, ls

    # ------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------

    @dask_aware
    def mixture_raw(self, x):
        """``(logits [N,K], mu [N,K,D], log_sigma [N,K,S])`` in user units, as NumPy arrays.

        These are the raw-parameter arrays that :func:`npmdn.mixture_nll`,
        :func:`npmdn.mixture_sample` and the ``npmdn.metrics`` functions take.
        """
        x = self._rows(x, "x", self.in_dim, self.x_names)
        parts = []
        for a, b in self._chunks(x.shape[0]):
            h = self._head(self._std_x(x[a:b]))
            parts.append([self.backend.to_host(v) for v in self._user_mixture(*self._split(h))])
        return tuple(np.concatenate(p, axis=0) for p in zip(*parts, strict=True))

    # ------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------

    def _standardization(self, x, y):
        """``(x_shift, x_scale, y_shift, y_scale)`` of training data, computed without
        overflow; a ValueError naming the column where this model cannot represent
        the data (see :mod:`npmdn.standardization`)."""
        return standardization.fit(x, y, self.dtype, self.covariance == "isotropic")

    def _set_standardization(self, x, y):
        self.x_shift, self.x_scale, self.y_shift, self.y_scale = self._standardization(x, y)

    def _standardize_from(self, mx, sx, my, sy):
        """The standardization from the training set's column means and (population)
        standard deviations, checked as :meth:`_set_standardization`'s; a streaming
        fit (:mod:`npmdn.dask`) passes streamed ones."""
        self.x_shift, self.x_scale, self.y_shift, self.y_scale = standardization.from_moments(
            mx, sx, my, sy, self.dtype, self.covariance == "isotropic")

    @dask_aware
    def fit(
        self,
        x,
        y,
        epochs: int = training.DEFAULT_EPOCHS,
        batch_size: int | None = training.DEFAULT_BATCH_SIZE,
        lr: float = training.DEFAULT_LR,
        *,
        validation_data=None,
        validation_split: float | None = None,
        optimizer: str = "adam",
        optimizer_options: dict | None = None,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        patience: int | None = None,
        min_delta: float = 0.0,
        restore_best: bool = True,
        lr_schedule: str = training.DEFAULT_LR_SCHEDULE,
        noise_x: float | str = 0.0,
        noise_y: float | str = 0.0,
        seed: int | None = None,
        verbose: bool | None = None,
        callback=None,
        x_names=None,
        y_names=None,
    ) -> History:
        """Train by minibatch gradient descent on the mean NLL.

        Parameters
        ----------
        x : (N, in_dim) array (or (N,) when ``in_dim == 1``)
        y : (N, out_dim) array (or (N,) when ``out_dim == 1``)
        epochs : int, default 100
            Passes over the training data.
        batch_size : int or None, default 256
            Rows per step; ``None`` uses the whole training set (full batch).
        lr : float, default 3e-3
            Learning rate (peak rate for ``lr_schedule="cosine"``).
        validation_data : (x_val, y_val), optional
            Held-out data scored after every epoch.
        validation_split : float in [0, 1), optional
            Hold out this fraction of (x, y) (default 0.1, or 0 when
            ``validation_data`` is given): ``max(1, round(fraction * N))``
            rows, at most ``N - 1``, chosen by a seeded permutation, scored
            after every epoch; with ``restore_best`` training ends with the
            weights of the best epoch. 0 trains on every row and keeps the
            last weights.
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
        restore_best : bool, default True
            With validation data, end with the weights of the best
            validation epoch.
        lr_schedule : {"cosine", "constant"}, default "cosine"
            Cosine decays the rate from ``lr`` to ``lr / 100`` over ``epochs``.
        noise_x, noise_y : float >= 0 or "auto", default 0
            Noise regularisation (Rothfuss et al.): at every epoch each training
            row's standardized x and y get fresh Gaussian noise of these standard
            deviations (standardized units, i.e. fractions of each column's
            standard deviation), drawn from the Philox stream keyed by the fit's
            seed (reproducible, the same on every backend, independent of the
            batch size). ``"auto"``: :func:`npmdn.regularization.auto_noise`,
            ``0.05 n ** (-1/(4+d))`` for x and ``0.3 n ** (-1/(4+d))`` for y
            (n training rows, d = in_dim + out_dim). Validation and every
            inference method see no noise. For small, noisy data sets (the
            README's "Small data"); it costs sharpness on large, clean ones.
        seed : int, optional
            Seeds the shuffling, the validation split and the noise (default: the
            model's seed; without either, fresh entropy).
        verbose : bool, optional
            Progress display on stderr: ``None`` shows it on a terminal only.
        callback : callable, optional
            ``callback(epoch, history)`` after each epoch; returning True stops.
        x_names, y_names : sequence of str, optional
            The names of the columns of x and y, kept with the model (and in
            its file) so that the command can find them in a data file and
            label its outputs. Taken from the columns when x (or y) is a
            pandas DataFrame. A model that knows its names reads a DataFrame
            given to any method by those names.

        The defaults (lr 3e-3 with the cosine schedule, 10% held out and the
        best epoch kept) are the command's (``npmdn fit``) and
        ``MDNRegressor``'s; they were chosen on the seed problems, where they
        land closest to the true conditional NLL (``python -m bench.defaults``).

        Returns
        -------
        History
            ``train_nll`` and ``val_nll`` per epoch (user units), the collapse
            diagnostics ``effective_components`` and ``narrowest_sigma`` per epoch,
            ``best_epoch``, ``stopped_early`` and ``stop_reason``, ``n_train`` and
            ``n_val``, the noise scales used.

        Raises
        ------
        NonFiniteLossError
            When a step's loss or gradient is NaN or infinite. The message names
            the epoch and step and the weights kept: with validation data and
            ``restore_best``, those of the best validation epoch so far; otherwise
            the last weights whose loss was finite.
        """
        names = self._fit_names(x, y, x_names, y_names)
        try:
            return training.fit(
                self, x, y, epochs=epochs, batch_size=batch_size, lr=lr,
                validation_data=validation_data, validation_split=validation_split,
                optimizer=optimizer, optimizer_options=optimizer_options,
                weight_decay=weight_decay, clip_norm=clip_norm, patience=patience,
                min_delta=min_delta, restore_best=restore_best, lr_schedule=lr_schedule,
                noise_x=noise_x, noise_y=noise_y, seed=seed, verbose=verbose,
                callback=callback,
            )
        finally:
            if self.fitted:
                self.x_names, self.y_names = names

    def _fit_names(self, x, y, x_names, y_names):
        """The column names after a fit on (x, y): given, else the data's (DataFrame),
        else the model's own; a model fitted on other names is refused."""
        out = []
        for given, data, width, what, mine in (
            (x_names, x, self.in_dim, "x_names", self.x_names),
            (y_names, y, self.out_dim, "y_names", self.y_names),
        ):
            names = C.names_arg(given, width, what)
            if names is None:
                found = C.column_names(data)
                if found is not None and mine is not None and set(mine) <= set(found):
                    found = mine  # a DataFrame is read by the model's names (see _rows)
                names = found if found is not None and len(found) == width else None
            if names is not None and mine is not None and names != mine:
                raise ValueError(f"{what} {list(names)} differ from the columns this model "
                                 f"was fitted on, {list(mine)}")
            out.append(mine if names is None else names)
        return tuple(out)

    def loss_grad(self, x, y):
        """Mean NLL of (x, y) in user units and its gradient with respect to the flat
        parameters (a host copy, in the layout of :attr:`params`).

        This is the quantity ``fit`` descends (:func:`npmdn.training.batch_loss_grad`);
        the gradient checks in the tests compare it with finite differences and
        with PyTorch autograd. The log-Jacobian of the standardization is a
        constant, so it shifts the loss but not the gradient.
        """
        x, y = self._xy(x, y)
        xp = self.backend.xp
        nll = xp.empty(x.shape[0], dtype=self.dtype)
        grad = xp.empty((x.shape[0], self.head_size), dtype=self.dtype)
        loss, _ = training.batch_loss_grad(self, self._std_x(x), self._std_y(y), nll, grad)
        return loss + self.log_jacobian, self.backend.to_host(self.net.grads).copy()

    # ------------------------------------------------------------------
    # persistence (the format is npmdn.persistence's)
    # ------------------------------------------------------------------

    def _arrays(self) -> dict:
        return {
            "params": self.params,
            "x_shift": self.x_shift.astype(np.float64),
            "x_scale": self.x_scale.astype(np.float64),
            "y_shift": self.y_shift.astype(np.float64),
            "y_scale": self.y_scale.astype(np.float64),
        }

    def save(self, path, *, overwrite: bool = True) -> str:
        """Write the model to ``path`` (an ``.npz`` file; the name is kept as given).

        The file is written to a temporary file beside the target and renamed
        over it only when complete, so an interrupted save never leaves a
        half-written model behind or damages an existing one; a replaced file
        keeps its permissions. A symbolic link is followed (the file it points
        to is replaced); a FIFO or character device is written to, never
        replaced. ``overwrite=False`` refuses (``FileExistsError``, nothing
        written) when ``path`` is taken, atomically: of two processes saving
        to one new name, one wins and the other is told. The format is
        described in :mod:`npmdn.persistence`. Returns the path written.
        """
        return self._save(path, overwrite=overwrite)

    def _save(self, path, extra=None, overwrite=True) -> str:
        return persistence.write(path, self.config, self._arrays(), self.fitted,
                                 x_names=self.x_names, y_names=self.y_names, extra=extra,
                                 overwrite=overwrite)

    @classmethod
    def load(cls, path, backend=None) -> MDN:
        """Read a model written by :meth:`save`; see :func:`npmdn.load`."""
        return load(path, backend=backend)


def load(path, backend=None) -> MDN:
    """Read a model written by :meth:`MDN.save` (no pickle is ever loaded).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming
    the problem for anything else that is not a valid model file: a directory,
    FIFO or device, a corrupt, truncated, foreign, crafted or inconsistent
    file. An unusable backend (the argument or ``NPMDN_BACKEND``) is reported
    as such (:func:`npmdn.get_backend`), never as a bad file.
    """
    return _load(path, backend)[0]


def _load(path, backend=None, extra=()):
    """``(model, extras)``: :func:`load`, and the extra members named (see
    :func:`npmdn.persistence.read`)."""
    backend = get_backend(backend)  # before the file: its errors are not the file's
    header, data, extras = persistence.read(path, file_layout, extra)
    try:
        model = MDN(**header["config"], backend=backend)
    except MemoryError as exc:
        raise persistence.bad_file(
            path, f"its model of {header['n_params']} parameters does not fit in memory"
        ) from exc
    model.net.set_params(data["params"])
    model.x_shift, model.x_scale = data["x_shift"], data["x_scale"]
    model.y_shift, model.y_scale = data["y_shift"], data["y_scale"]
    model.fitted = header["fitted"]
    model.x_names = None if header["x_names"] is None else tuple(header["x_names"])
    model.y_names = None if header["y_names"] is None else tuple(header["y_names"])
    return model, extras
