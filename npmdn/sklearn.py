"""``MDNRegressor``: an :class:`npmdn.MDN` as a scikit-learn estimator.

Needs scikit-learn >= 1.6 (``pip install "npmdn[sklearn]"``); ``import npmdn``
never imports this module or scikit-learn.

It follows scikit-learn's conventions where ``MDN`` cannot: ``__init__`` only
stores its keyword arguments; ``fit(X, y)`` infers the widths, trains and
returns ``self``; fitted state ends in ``_``; ``score`` is one float, the mean
log-likelihood ``mean_n log p(y_n | x_n)`` in the units of y (higher is better),
so that ``GridSearchCV`` and ``cross_val_score`` pick the best density by
default. Beyond the point prediction it gives the whole predicted
distribution (``predict_distribution``, an :class:`npmdn.Mixture`), its
standard deviation, quantiles and intervals.

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> from npmdn.sklearn import MDNRegressor
>>> import npmdn
>>> x, y = npmdn.datasets.heteroscedastic(500, seed=0)
>>> est = make_pipeline(StandardScaler(), MDNRegressor(n_components=1, hidden=(16,),
...                                                    epochs=5, random_state=0))
>>> est.fit(x, y.ravel()).predict(x[:3]).shape
(3,)

Files: :meth:`MDNRegressor.save` writes npmdn's model file (``.npz`` with a
JSON header, no pickle, atomic), with one more member, ``estimator``: a JSON
document of the estimator's parameters and fitted attributes, checksummed
like the model's arrays (``persistence.write``'s ``extra``) and read in the
same pass as the model. ``feature_names_in_`` become the model's ``x_names``.
:func:`npmdn.load` reads such a file as the plain ``MDN`` it holds;
:func:`load` reads it back as the estimator. Pickling (what scikit-learn and
joblib do) works as well: the ``MDN`` pickles by value, its backend by name.
"""

from __future__ import annotations

import json
import numbers
import os

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import (
    _check_feature_names,
    _check_n_features,
    _check_sample_weight,
    check_array,
    check_consistent_length,
    check_is_fitted,
    validate_data,
)

from . import _blocks
from . import _checks as C
from .backend import Backend
from .model import MDN
from .model import _load as _load_model
from .predictive import Mixture
from .regularization import noise_arg
from .training import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    DEFAULT_LR_SCHEDULE,
    DEFAULT_VALIDATION_SPLIT,
    LR_SCHEDULES,
    History,
)

ESTIMATOR_FORMAT = "npmdn-sklearn"
ESTIMATOR_FORMAT_VERSION = 1
_SEED_MAX = 2**32 - 1


class MDNRegressor(RegressorMixin, BaseEstimator):
    """A mixture density network ``p(y | x)`` as a scikit-learn regressor.

    Parameters
    ----------
    n_components : int, default 5
        K, the number of Gaussians.
    hidden : sequence of int, default (64, 64)
        Hidden layer widths (may be empty: a linear head).
    activation : str, default "tanh"
        One of ``tanh, relu, sigmoid, softplus, elu, identity``.
    covariance : {"diagonal", "isotropic", "full"}, default "diagonal"
        One sigma per output and component, one per component, or a full
        covariance matrix per component (correlated outputs).
    epochs : int, default 100
        Passes over the training rows.
    batch_size : int or None, default 256
        Rows per step (``None``: the whole training set).
    lr : float, default 3e-3
        Adam's learning rate (the peak of the cosine schedule).
    lr_schedule : {"cosine", "constant"}, default "cosine"
        Cosine decays the rate from ``lr`` to ``lr / 100`` over ``epochs``.
    validation_fraction : float in [0, 1), default 0.1
        Rows held out (``max(1, round(fraction * n))``, at most ``n - 1``,
        chosen by ``random_state``) and scored after every epoch; training
        ends with the weights of the best validation epoch. 0 trains on every
        row and keeps the last weights. Needs at least 2 rows when > 0.
    n_iter_no_change : int or None, default None
        Stop when the monitored NLL (validation, else training) has not
        improved for this many epochs (``MDN.fit``'s ``patience``).
    weight_decay : float, default 0
        Decoupled weight decay on the weights (not the biases).
    clip_norm : float or None, default None
        Rescale every step's whole gradient to at most this norm.
    noise_x, noise_y : float >= 0 or "auto", default 0
        Noise regularisation: fresh Gaussian noise of these standard
        deviations on the standardized X and y of every training row at every
        epoch (``MDN.fit``'s ``noise_x``, ``noise_y``; ``"auto"`` scales with
        the number of rows and dimensions). For small, noisy data (the
        README's "Small data").
    min_sigma : float or None, default None
        A floor on every component's sigma, in the units of y (``MDN``'s).
    backend : {"numpy", "numba", "cupy"} or None, default None
        Where the network runs; ``None`` chooses as :func:`npmdn.get_backend`.
    dtype : {"float64", "float32"}, default "float64"
        Precision of the network. float64 (unlike ``MDN``'s float32) so that a
        row's prediction does not depend on the rows predicted with it beyond
        float64 rounding, as scikit-learn expects; float32 is faster for wide
        networks and agrees to about 1e-7.
    random_state : int, RandomState instance or None, default None
        Seeds the initial weights, the validation split and the minibatch
        order; an int gives the same model on every call of ``fit``.
    verbose : bool, default False
        Show the progress line on stderr.

    Attributes
    ----------
    model_ : npmdn.MDN
        The fitted network.
    history_ : npmdn.History
        Per-epoch training (and validation) NLL; ``partial_fit`` appends.
    n_iter_ : int
        Epochs run.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X was a DataFrame with string column names.
    n_outputs_ : int
        D, the width of y.
    """

    def __init__(
        self,
        n_components=5,
        hidden=(64, 64),
        activation="tanh",
        covariance="diagonal",
        *,
        epochs=DEFAULT_EPOCHS,
        batch_size=DEFAULT_BATCH_SIZE,
        lr=DEFAULT_LR,
        lr_schedule=DEFAULT_LR_SCHEDULE,
        validation_fraction=DEFAULT_VALIDATION_SPLIT,
        n_iter_no_change=None,
        weight_decay=0.0,
        clip_norm=None,
        noise_x=0.0,
        noise_y=0.0,
        min_sigma=None,
        backend=None,
        dtype="float64",
        random_state=None,
        verbose=False,
    ):
        self.n_components = n_components
        self.hidden = hidden
        self.activation = activation
        self.covariance = covariance
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm
        self.noise_x = noise_x
        self.noise_y = noise_y
        self.min_sigma = min_sigma
        self.backend = backend
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        # check_regressors_train asks score() > 0.5 as for R^2; score here is the mean
        # log-likelihood in nats, on another scale (a fit Gaussian there scores about -0.6)
        tags.regressor_tags.poor_score = True
        return tags

    # ------------------------------------------------------------------
    # parameters
    # ------------------------------------------------------------------

    def _training_args(self) -> dict:
        """The parameters of ``MDN.fit``, checked, under the names the messages use."""
        epochs = C.int_arg(self.epochs, "epochs", 1)
        batch_size = None if self.batch_size is None else C.int_arg(
            self.batch_size, "batch_size", 1)
        lr = C.float_arg(self.lr, "lr", 0.0, strict=True)
        lr_schedule = C.choice_arg(self.lr_schedule, "lr_schedule", LR_SCHEDULES)
        fraction = C.float_arg(self.validation_fraction, "validation_fraction", 0.0)
        if fraction >= 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
        patience = None if self.n_iter_no_change is None else C.int_arg(
            self.n_iter_no_change, "n_iter_no_change", 1)
        weight_decay = C.float_arg(self.weight_decay, "weight_decay", 0.0)
        clip_norm = None if self.clip_norm is None else C.float_arg(
            self.clip_norm, "clip_norm", 0.0, strict=True)
        noise_x = noise_arg(self.noise_x, "noise_x")
        noise_y = noise_arg(self.noise_y, "noise_y")
        if not isinstance(self.verbose, (bool, np.bool_, numbers.Integral)):
            raise C.InputDTypeError(f"verbose must be a bool, got {self.verbose!r}")
        return {
            "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "lr_schedule": lr_schedule, "fraction": fraction, "patience": patience,
            "weight_decay": weight_decay, "clip_norm": clip_norm, "noise_x": noise_x,
            "noise_y": noise_y, "verbose": bool(self.verbose),
        }

    def _seed(self) -> int:
        """An int seed for ``MDN``: the int ``random_state`` itself, else one draw from it."""
        rs = self.random_state
        if isinstance(rs, numbers.Integral) and not isinstance(rs, (bool, np.bool_)):
            return C.int_arg(rs, "random_state", 0, _SEED_MAX)
        if rs is not None and not isinstance(rs, np.random.RandomState):
            raise ValueError(
                f"random_state must be None, an int or a numpy RandomState, got {rs!r}")
        return int(check_random_state(rs).randint(_SEED_MAX))

    def _new_model(self, n_features: int, n_outputs: int, seed: int) -> MDN:
        return MDN(
            n_features, n_outputs, self.n_components, hidden=self.hidden,
            activation=self.activation, covariance=self.covariance, backend=self.backend,
            dtype=self.dtype, seed=seed, min_sigma=self.min_sigma,
        )

    # ------------------------------------------------------------------
    # data
    # ------------------------------------------------------------------

    def _fit_data(self, X, y, reset: bool):
        X, y = validate_data(self, X, y, reset=reset, multi_output=True, y_numeric=True,
                             dtype=np.float64)
        if y.ndim > 2:
            raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}")
        return X, y

    def _lazy_fit_data(self, X, y, reset: bool):
        """Dask X and y (Arrays, DataFrames, Series) checked as ``_fit_data`` checks arrays;
        the values are checked block by block as training reads them."""
        # a Dask DataFrame's _meta is an empty pandas one with its columns
        _check_feature_names(self, getattr(X, "_meta", X), reset=reset)
        X, y = _blocks.as_rows([X, y], ["X", "y"])
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
        _check_n_features(self, X, reset=reset)
        if y.ndim > 2:
            raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}")
        return X, y

    def _targets(self, y, n_rows: int) -> np.ndarray:
        """y as [N, D] float64, checked against the fitted width."""
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has shape {y.shape}, but {type(self).__name__} was fitted on "
                f"{self.n_outputs_} output(s)"
            )
        if y.shape[0] != n_rows:
            check_consistent_length(np.empty(n_rows), y)
        return y

    def _x_names(self):
        """``feature_names_in_`` as the model's column names (kept in its file)."""
        names = getattr(self, "feature_names_in_", None)
        return None if names is None else [str(n) for n in names]

    def _shaped(self, a) -> np.ndarray:
        """A per-row [N, D] result as float64, [N] when y was 1-D."""
        a = np.asarray(a, dtype=np.float64)
        return a[:, 0] if self._y_1d else a

    # ------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------

    def fit(self, X, y):
        """Train a new network on (X, y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        X, y = self._fit_data(X, y, reset=True)
        args = self._training_args()
        seed = self._seed()
        y_1d = y.ndim == 1
        y = y.reshape(y.shape[0], -1)
        model = self._new_model(X.shape[1], y.shape[1], seed)
        validation = None
        n = X.shape[0]
        if args["fraction"] > 0:
            if n < 2:
                raise ValueError(
                    f"validation_fraction={args['fraction']} holds rows out for validation, "
                    f"which needs at least 2 rows; got n_samples={n} (set "
                    "validation_fraction=0 to train on every row)"
                )
            n_val = min(n - 1, max(1, round(args["fraction"] * n)))
            perm = np.random.default_rng(seed).permutation(n)
            validation = (X[perm[:n_val]], y[perm[:n_val]])
            X, y = X[perm[n_val:]], y[perm[n_val:]]
        history = model.fit(
            X, y, epochs=args["epochs"], batch_size=args["batch_size"], lr=args["lr"],
            lr_schedule=args["lr_schedule"], validation_data=validation,
            validation_split=0.0, patience=args["patience"], x_names=self._x_names(),
            weight_decay=args["weight_decay"], noise_x=args["noise_x"],
            noise_y=args["noise_y"], clip_norm=args["clip_norm"], seed=seed,
            verbose=args["verbose"],
        )
        self.model_ = model
        self.history_ = history
        self.n_iter_ = history.epochs
        self.n_outputs_ = y.shape[1]
        self._y_1d = y_1d
        self._seed_used = seed
        return self

    def partial_fit(self, X, y):
        """One more epoch of training on (X, y); the first call builds the network.

        The first call sets the widths and the standardization of x and y; each
        call is one pass over its rows (in a seeded order) at the constant rate
        ``lr``, with no validation split. Adam's moment estimates restart at
        each call. ``fit`` starts again from scratch.

        X and y may be Dask Arrays or DataFrames (y a Series), larger than memory:
        the epoch then streams their blocks (see :mod:`npmdn.dask`), and the first
        call's standardization comes from one pass over them.

        Returns
        -------
        self
        """
        first = not hasattr(self, "model_")
        if _blocks.any_lazy(X, y):
            X, y = self._lazy_fit_data(X, y, reset=first)
        else:
            X, y = self._fit_data(X, y, reset=first)
        args = self._training_args()
        y_1d = y.ndim == 1
        y = y.reshape(y.shape[0], -1)
        if first:
            seed = self._seed()
            model = self._new_model(X.shape[1], y.shape[1], seed)
        else:
            seed, model = self._seed_used, self.model_
            if y.shape[1] != self.n_outputs_:
                raise ValueError(
                    f"y has {y.shape[1]} output(s), but {type(self).__name__} was fitted "
                    f"on {self.n_outputs_}"
                )
        n_done = 0 if first else self.n_iter_
        # a fresh, reproducible minibatch order for every call
        step_seed = int(np.random.SeedSequence([seed, n_done]).generate_state(1)[0])
        h = model.fit(
            X, y, epochs=1, batch_size=args["batch_size"], lr=args["lr"],
            lr_schedule="constant", validation_split=0.0, weight_decay=args["weight_decay"],
            noise_x=args["noise_x"], noise_y=args["noise_y"], x_names=self._x_names(),
            clip_norm=args["clip_norm"], seed=step_seed, verbose=args["verbose"],
        )
        if first:
            self.model_, self.history_ = model, History()
            self.n_outputs_, self._y_1d, self._seed_used = y.shape[1], y_1d, seed
        self.history_.train_nll.extend(h.train_nll)
        self.history_.lr.extend(h.lr)
        self.history_.effective_components.extend(h.effective_components)
        self.history_.narrowest_sigma.extend(h.narrowest_sigma)
        self.history_.noise_x, self.history_.noise_y = h.noise_x, h.noise_y
        self.history_.seconds += h.seconds
        self.n_iter_ = self.history_.epochs
        return self

    # ------------------------------------------------------------------
    # prediction
    # ------------------------------------------------------------------

    def predict_distribution(self, X) -> Mixture:
        """The predicted ``p(y | x)`` of each row, an :class:`npmdn.Mixture` in the units of y."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.model_.distribution(X)

    def predict(self, X, return_std: bool = False):
        """The conditional mean ``E[y | x]``, shaped as y was: (n_samples,) for 1-D y.

        With ``return_std=True`` also the predictive standard deviation (law of
        total variance), in the same shape, as scikit-learn's Gaussian process does.
        """
        dist = self.predict_distribution(X)
        mean = self._shaped(dist.mean())
        if return_std:
            return mean, self._shaped(dist.std())
        return mean

    def predict_quantiles(self, X, q):
        """Quantiles of ``p(y | x)`` at levels ``q`` in (0, 1): (n_samples, len(q)) for one
        output ((n_samples,) for a scalar q), (n_samples, len(q), n_outputs) otherwise."""
        return self.predict_distribution(X).quantile(q)

    def predict_interval(self, X, coverage=0.9):
        """Central predictive interval ``(lower, upper)`` holding probability ``coverage``;
        each (n_samples,) for one output and a scalar coverage (shapes as
        :meth:`predict_quantiles`)."""
        return self.predict_distribution(X).interval(coverage)

    def score(self, X, y, sample_weight=None) -> float:
        """Mean log-likelihood ``mean_n log p(y_n | x_n)`` (nats, units of y; higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional
            Weights of a weighted mean.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        y = self._targets(y, X.shape[0])
        log_p = self.model_.log_prob(X, y).astype(np.float64)
        if sample_weight is None:
            return float(np.mean(log_p))
        w = _check_sample_weight(sample_weight, X)
        return float(np.average(log_p, weights=w))

    # ------------------------------------------------------------------
    # files
    # ------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the fitted estimator to ``path``: npmdn's model file (readable by
        :func:`npmdn.load` as the ``MDN``) plus the array ``estimator``, a JSON
        document of the parameters and fitted attributes. No pickle; written to
        a temporary file and renamed, so an existing file is never half-replaced.
        ``random_state`` given as a RandomState instance is stored as ``null``.
        """
        check_is_fitted(self)
        doc = json.dumps(self._document(), sort_keys=True).encode()
        self.model_._save(path, extra={"estimator": np.frombuffer(doc, dtype=np.uint8)})

    def _document(self) -> dict:
        params = {}
        for name, value in self.get_params(deep=False).items():
            if name == "random_state" and isinstance(value, np.random.RandomState):
                value = None
            params[name] = _jsonable(value, name)
        names = getattr(self, "feature_names_in_", None)
        return {
            "format": ESTIMATOR_FORMAT,
            "format_version": ESTIMATOR_FORMAT_VERSION,
            "class": type(self).__name__,
            "params": params,
            "fitted": {
                "n_features_in_": int(self.n_features_in_),
                "feature_names_in_": None if names is None else [str(s) for s in names],
                "n_outputs_": int(self.n_outputs_),
                "y_1d": bool(self._y_1d),
                "seed": int(self._seed_used),
                "history": self.history_.to_dict(),
            },
        }

    @classmethod
    def load(cls, path, backend=None) -> MDNRegressor:
        """Read an estimator written by :meth:`save`; see :func:`load`."""
        return load(path, backend=backend)


def _jsonable(value, name):
    """A parameter value as JSON: ints, floats, strings, None, lists of those."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Backend):
        return value.name
    if isinstance(value, (np.dtype, type)):
        return np.dtype(value).name
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, name) for v in value]
    raise ValueError(f"cannot save parameter {name}={value!r}: not a number, string or list")


def load(path, backend=None) -> MDNRegressor:
    """Read an :class:`MDNRegressor` written by :meth:`MDNRegressor.save` (no pickle).

    ``backend`` runs the network elsewhere than it was saved from, and becomes
    the estimator's ``backend`` parameter. A plain model file (from
    ``MDN.save``) is refused here: read it with :func:`npmdn.load`.
    """
    # checks the file and the model in it, and reads the estimator's member
    model, extras = _load_model(path, backend=backend, extra=("estimator",))
    raw = extras["estimator"]
    if raw is None:
        raise ValueError(
            f"{os.fspath(path)!r} holds an npmdn model but no MDNRegressor; read it "
            "with npmdn.load"
        )
    try:
        doc = json.loads(raw.tobytes().decode())
        if doc.get("format") != ESTIMATOR_FORMAT:
            raise ValueError("its estimator document does not name the npmdn-sklearn format")
        if doc.get("format_version") != ESTIMATOR_FORMAT_VERSION:
            raise ValueError(f"estimator format version {doc.get('format_version')!r} "
                             f"is not supported")
        params = dict(doc["params"])
        fitted = doc["fitted"]
        est = MDNRegressor(**params)
        if isinstance(est.hidden, list):
            est.hidden = tuple(est.hidden)
        if backend is not None:
            est.backend = model.backend.name
        est.model_ = model
        est.history_ = History(**fitted["history"])
        est.n_iter_ = est.history_.epochs
        est.n_features_in_ = int(fitted["n_features_in_"])
        if fitted["feature_names_in_"] is not None:
            est.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
        est.n_outputs_ = int(fitted["n_outputs_"])
        est._y_1d = bool(fitted["y_1d"])
        est._seed_used = int(fitted["seed"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
            AttributeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{os.fspath(path)!r} is not a valid MDNRegressor file: {exc}") from exc
    if (est.n_features_in_, est.n_outputs_) != (model.in_dim, model.out_dim):
        raise ValueError(
            f"{os.fspath(path)!r} is not a valid MDNRegressor file: its estimator document "
            f"says {est.n_features_in_} features and {est.n_outputs_} outputs, its model "
            f"{model.in_dim} and {model.out_dim}"
        )
    return est


__all__ = ["MDNRegressor", "load"]
