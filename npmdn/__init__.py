"""npmdn: mixture density networks on NumPy, Numba and CuPy.

A small neural network maps x to the parameters of a Gaussian mixture, so you
get the whole conditional density p(y | x). Gradients are derived by hand;
the mixture head runs in fused kernels behind one backend switch.

>>> import npmdn
>>> data = npmdn.datasets.inverted_sinusoid(2000, seed=0)
>>> model = npmdn.MDN(1, 1, n_components=5, hidden=(32, 32), seed=0)
>>> history = model.fit(data.x, data.y, epochs=5, verbose=False)
>>> model.sample(data.x[:3], n_samples=4, seed=1).shape
(3, 4, 1)
"""

from . import datasets, metrics
from ._checks import InputDTypeError
from ._version import __version__
from .backend import BackendUnavailable, available_backends, get_backend, set_backend
from .distribution import Modes
from .functional import (
    mixture_cdf,
    mixture_condition,
    mixture_covariance,
    mixture_interval,
    mixture_log_prob,
    mixture_marginal,
    mixture_mean,
    mixture_modes,
    mixture_nll,
    mixture_params,
    mixture_quantile,
    mixture_sample,
)
from .model import MDN, load
from .predictive import Mixture
from .training import History, NonFiniteLossError

__all__ = [
    "MDN",
    "Mixture",
    "History",
    "NonFiniteLossError",
    "BackendUnavailable",
    "InputDTypeError",
    "load",
    "mixture_nll",
    "mixture_log_prob",
    "mixture_sample",
    "mixture_params",
    "mixture_cdf",
    "mixture_quantile",
    "mixture_interval",
    "mixture_modes",
    "mixture_mean",
    "mixture_covariance",
    "mixture_marginal",
    "mixture_condition",
    "Modes",
    "metrics",
    "set_backend",
    "get_backend",
    "available_backends",
    "datasets",
    "__version__",
]
