"""A model's shape from its configuration, computed without building it.

The head emits, per row, ``P = K (1 + D + S)`` numbers, ``S`` the scales per
component (``D`` diagonal, 1 isotropic, ``D (D + 1) / 2`` full); the trunk is an MLP from ``in_dim``
through ``hidden`` to ``P``. :mod:`npmdn.persistence` checks a model file's
declared sizes against these before it allocates anything.
"""

from __future__ import annotations

import numpy as np

from . import _checks as C
from .mixture import COVARIANCES, scale_size
from .nn import ACTIVATIONS
from .nn import n_params as mlp_n_params

CONFIG_KEYS = ("in_dim", "out_dim", "n_components", "hidden", "activation", "covariance", "dtype",
               "min_sigma")


def head_size(n_components: int, out_dim: int, covariance: str) -> int:
    """``P = K (1 + D + S)``: the head's outputs per row (S = D diagonal, 1 isotropic,
    D (D + 1) / 2 full)."""
    return n_components * (1 + out_dim + scale_size(out_dim, covariance))


def count_params(in_dim, out_dim, n_components, hidden, covariance="diagonal") -> int:
    """The number of parameters of an MDN of these sizes, computed without building it."""
    return mlp_n_params((in_dim, *hidden, head_size(n_components, out_dim, covariance)))


def file_layout(cfg) -> dict:
    """``{name: (shape, dtype)}`` of the arrays a model file with configuration ``cfg``
    holds, after checking ``cfg`` strictly (the keys of :attr:`MDN.config`, each of
    its type); allocates nothing, so a crafted size costs nothing."""
    if not isinstance(cfg, dict) or set(cfg) != set(CONFIG_KEYS):
        got = sorted(cfg) if isinstance(cfg, dict) else type(cfg).__name__
        raise ValueError(f"the configuration must have the keys {list(CONFIG_KEYS)}, got {got}")
    in_dim = C.int_arg(cfg["in_dim"], "in_dim", 1)
    out_dim = C.int_arg(cfg["out_dim"], "out_dim", 1)
    k = C.int_arg(cfg["n_components"], "n_components", 1)
    if not isinstance(cfg["hidden"], list):
        raise C.InputDTypeError(f"hidden must be a list of widths, got {cfg['hidden']!r}")
    hidden = [C.int_arg(h, "hidden layer width", 1) for h in cfg["hidden"]]
    C.choice_arg(cfg["activation"], "activation", ACTIVATIONS)
    covariance = C.choice_arg(cfg["covariance"], "covariance", COVARIANCES)
    dtype = np.dtype(C.choice_arg(cfg["dtype"], "dtype", ("float32", "float64")))
    if cfg["min_sigma"] is not None:
        C.float_arg(cfg["min_sigma"], "min_sigma", 0.0, strict=True)
        if cfg["covariance"] == "full":
            raise ValueError("min_sigma is not defined for covariance 'full'")
    f64 = np.dtype(np.float64)
    return {
        "params": ((count_params(in_dim, out_dim, k, hidden, covariance),), dtype),
        "x_shift": ((in_dim,), f64),
        "x_scale": ((in_dim,), f64),
        "y_shift": ((out_dim,), f64),
        "y_scale": ((out_dim,), f64),
    }
