"""Noise regularisation for :meth:`npmdn.MDN.fit`, and the collapse diagnostics
of its :class:`npmdn.History`: what helps an MDN on small, noisy data, and what
shows when it is failing.

Noise regularisation (Rothfuss et al., "Noise Regularization for Conditional
Density Estimation", arXiv 1907.08982): at every epoch, each training row's
standardized x and y get fresh Gaussian noise of the scales ``noise_x`` and
``noise_y`` (:class:`Noise`), drawn from the Philox noise stream of
:mod:`npmdn.philox` keyed by the fit's seed, so a fit is reproducible and the
noise the same on every backend and for any batch size. ``"auto"`` is
:func:`auto_noise`. The step loop (:class:`npmdn.training.StepLoop`) adds
:meth:`Noise.add` to each batch; the numba backend's fused epoch draws the
same words in its kernel (``npmdn._numba.regularization``). Scoring never
sees noise.

Collapse diagnostics (:func:`mixture_diagnostics`): after every epoch, on up
to :data:`DIAGNOSTIC_ROWS` fixed training rows, the effective number of
components and the narrowest sigma of a live component. (The sigma floor,
``MDN(min_sigma=)``, is a reparametrisation of the head:
:func:`npmdn.mixture.floor_log_sigma`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _checks as C
from . import mixture, philox

# The "auto" rule (auto_noise): the constants of x and y.
AUTO_NOISE_X = 0.05
AUTO_NOISE_Y = 0.3

# The collapse diagnostics: at most this many training rows (evenly spaced; about
# 0.06 ms per epoch for a small network, whatever the data size), and a component
# counts as live where its weight exceeds LIVE_WEIGHT.
DIAGNOSTIC_ROWS = 256
LIVE_WEIGHT = 0.05


# --------------------------------------------------------------------------
# noise regularisation
# --------------------------------------------------------------------------


def auto_noise(n_rows: int, in_dim: int, out_dim: int) -> tuple[float, float]:
    """``(noise_x, noise_y)`` of ``"auto"``, in standardized units, for ``n_rows`` training rows.

    Rothfuss et al.'s rule of thumb ("Noise Regularization for Conditional
    Density Estimation", arXiv 1907.08982; "Conditional Density Estimation
    with Neural Networks: Best Practices and Benchmarks", arXiv 1903.00954):
    a scale ``C * n ** (-1 / (4 + d))`` with ``d = in_dim + out_dim``, which
    shrinks as the data grow. Their constants (0.5 to 1.0, the same on x and
    y) cost 0.15 to 0.44 nats on six small real data sets against
    :data:`AUTO_NOISE_X` = 0.05 for x and :data:`AUTO_NOISE_Y` = 0.3 for y,
    which were chosen there (5-fold CV on other folds than those reported;
    ``bench/REALDATA.md``, ``bench/RESULTS.md``, "Small real data"): noise
    on y does most of the work, noise on x above 0.05 hurts some sets.

    For small, noisy data (hundreds to a few thousand rows); on 20,000 clean
    rows of a sharp density the rule costs 0.18 nats, so noise stays off by
    default.
    """
    n_rows = C.int_arg(n_rows, "n_rows", 1)
    rate = float(n_rows) ** (-1.0 / (4 + C.int_arg(in_dim, "in_dim", 1)
                                      + C.int_arg(out_dim, "out_dim", 1)))
    return AUTO_NOISE_X * rate, AUTO_NOISE_Y * rate


def noise_arg(value, name: str):
    """A noise scale: a real number >= 0 (standardized units) or ``"auto"``."""
    if isinstance(value, str):
        if value == "auto":
            return value
        raise ValueError(f"{name} must be a number >= 0 or 'auto', got {value!r}")
    try:
        return C.float_arg(value, name, 0.0)
    except C.InputDTypeError:
        raise C.InputDTypeError(f"{name} must be a number >= 0 or 'auto', got "
                                f"{type(value).__name__}") from None


@dataclass(frozen=True)
class Noise:
    """The per-step noise of one fit: ``x`` and ``y`` scales (standardized units) and
    the ``seed`` that keys the Philox noise stream (see :mod:`npmdn.philox`)."""

    x: float
    y: float
    seed: int

    @classmethod
    def of_fit(cls, noise_x, noise_y, n_rows, in_dim, out_dim, seed) -> Noise | None:
        """The noise of a fit on ``n_rows`` training rows (``"auto"`` resolved by
        :func:`auto_noise`), or None when both scales are 0. ``seed`` None draws one."""
        ax, ay = auto_noise(n_rows, in_dim, out_dim)
        sx = ax if noise_x == "auto" else float(noise_x)
        sy = ay if noise_y == "auto" else float(noise_y)
        if sx == 0.0 and sy == 0.0:
            return None
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
        return cls(sx, sy, int(seed) & 0xFFFFFFFFFFFFFFFF)

    def add(self, xb, yb, rows, epoch: int, xp=np):
        """``(xb + noise_x eps_x, yb + noise_y eps_y)`` for standardized batch rows whose
        training-row indices are ``rows`` (host ints), at ``epoch``: new arrays.

        The normals are float64 (:func:`npmdn.philox.noise_normals`); each scale
        times its normal is rounded to the batch's dtype and added in it, as the
        fused kernel does.
        """
        d_in = xb.shape[1]
        eps = philox.noise_normals(self.seed, rows, epoch, d_in + yb.shape[1])
        if self.x:
            xb = xb + xp.asarray((self.x * eps[:, :d_in]).astype(xb.dtype))
        if self.y:
            yb = yb + xp.asarray((self.y * eps[:, d_in:]).astype(yb.dtype))
        return xb, yb


# --------------------------------------------------------------------------
# the collapse diagnostics
# --------------------------------------------------------------------------


def diagnostic_rows(n: int) -> np.ndarray:
    """The training rows of the collapse diagnostics: at most :data:`DIAGNOSTIC_ROWS`,
    evenly spaced over ``0..n-1``."""
    return np.unique(np.linspace(0, n - 1, min(n, DIAGNOSTIC_ROWS)).round().astype(np.int64))


def mixture_diagnostics(model, xs) -> tuple[float, float]:
    """``(effective components, narrowest live sigma)`` of the model's mixture at
    standardized rows ``xs`` (see :class:`History`): ``exp(-sum_k pbar_k log pbar_k)``
    with ``pbar`` the mean of the mixing weights over the rows, and the smallest
    standardized sigma (a fraction of y's standardization scale) among components
    whose weight exceeds :data:`LIVE_WEIGHT` at a row."""
    xp = model.backend.xp
    logits, _, log_sigma = model._split(model._head(xs))
    # column-major: NumPy's reductions over the K components of each row run 2x faster
    pi = mixture.softmax(xp.asfortranarray(logits))
    pbar = pi.mean(axis=0)
    entropy = -(pbar * xp.log(xp.where(pbar > 0, pbar, 1))).sum()
    live = xp.where(pi > LIVE_WEIGHT, log_sigma.min(axis=2), xp.inf).min()
    h, s = model.backend.to_host(xp.stack((entropy, live)).astype(np.float64))
    with np.errstate(over="ignore"):  # a diverging fit's log sigma may pass log(max float)
        return math.exp(h), float(np.exp(s))
