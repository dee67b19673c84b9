r"""Dense layers and activations, forward and backward, derived by hand.

Written once against an array module ``xp`` (NumPy or CuPy). Each op is a
pair ``forward(...) -> (out, cache)`` and ``backward(dout, cache, ...)``; the
forward line is repeated as a comment above each gradient line.

Shapes: a batch is ``x (n_ex, n_in)``; a dense layer has ``W (n_in, n_out)``
and ``b (n_out,)``.

Dense layer, ``out = x W + b``:

.. math::

    \frac{\partial L}{\partial W} = x^\top \frac{\partial L}{\partial \mathrm{out}},\qquad
    \frac{\partial L}{\partial b} = \sum_{\mathrm{rows}} \frac{\partial L}{\partial \mathrm{out}},\qquad
    \frac{\partial L}{\partial x} = \frac{\partial L}{\partial \mathrm{out}} W^\top

Activations act elementwise, so ``dx = dout * f'(x)``, with ``f'`` written
from whichever of the input ``x`` or output ``f(x)`` is cheaper (see
:data:`ACTIVATIONS`). The derivations are in ``docs/derivation.md``.
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("tanh", "relu", "sigmoid", "softplus", "elu", "identity")


# --------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------


def activation_forward(name: str, x, xp=np):
    """``f(x)`` elementwise; returns ``(out, cache)`` with ``cache = (x, out)``."""
    if name == "tanh":
        out = xp.tanh(x)
    elif name == "relu":
        out = xp.maximum(x, 0)
    elif name == "sigmoid":
        out = 0.5 * (xp.tanh(0.5 * x) + 1)  # = 1 / (1 + exp(-x)), with no overflow
    elif name == "softplus":
        out = xp.logaddexp(0, x)  # log(1 + exp(x)), stable for large |x|
    elif name == "elu":
        out = xp.where(x > 0, x, xp.expm1(xp.minimum(x, 0)))
    elif name == "identity":
        out = x
    else:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
    return out, (x, out)


def activation_backward(name: str, dout, cache, xp=np):
    """``dx = dout * f'(x)``."""
    x, out = cache
    if name == "tanh":
        # out = tanh(x);  tanh' = 1 - tanh^2
        return dout * (1 - out * out)
    if name == "relu":
        # out = max(x, 0)
        return dout * (x > 0)
    if name == "sigmoid":
        # out = s(x);  s' = s (1 - s)
        return dout * out * (1 - out)
    if name == "softplus":
        # out = log(1 + e^x);  d/dx = e^x / (1 + e^x) = sigmoid(x)
        return dout * (0.5 * (xp.tanh(0.5 * x) + 1))
    if name == "elu":
        # out = x (x > 0), e^x - 1 (x <= 0);  d/dx = 1, e^x = out + 1
        return dout * xp.where(x > 0, 1, out + 1)
    if name == "identity":
        return dout
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


# --------------------------------------------------------------------------
# dense layer
# --------------------------------------------------------------------------


def dense_forward(x, W, b):
    """``out = x W + b``: (n_ex, n_in) -> (n_ex, n_out); ``cache = x``."""
    return x @ W + b, x


def dense_backward(dout, cache, W, dW, db, need_dx: bool = True, xp=np):
    """Write ``dW`` and ``db`` in place (views into the flat gradient); return ``dx``."""
    x = cache
    # out = x W + b
    xp.matmul(x.T, dout, out=dW)  # dL/dW = x^T dout
    xp.sum(dout, axis=0, out=db)  # dL/db = sum over rows of dout
    return dout @ W.T if need_dx else None  # dL/dx = dout W^T


# --------------------------------------------------------------------------
# the multilayer perceptron over one flat parameter buffer
# --------------------------------------------------------------------------


def n_params(sizes) -> int:
    """The number of weights and biases of an MLP of layer ``sizes`` (no allocation):
    ``sum over layers of n_in * n_out + n_out``."""
    sizes = [int(s) for s in sizes]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))



class MLP:
    """``sizes[0] -> sizes[1] -> ... -> sizes[-1]``, ``activation`` after each
    hidden layer and none after the last.

    All weights and biases live in one contiguous buffer ``params`` (layers
    are views into it), and their gradients in ``grads`` with the same
    layout: one optimizer update, one array to save, one array to move
    between devices. The layout is, layer by layer, ``W`` (row-major,
    ``n_in x n_out``) then ``b``.
    """

    def __init__(self, sizes, activation: str = "tanh", dtype=np.float32, xp=np):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.sizes = tuple(int(s) for s in sizes)
        self.activation = activation
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.shapes = []  # (offset, n_in, n_out) per layer
        off = 0
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            self.shapes.append((off, n_in, n_out))
            off += n_in * n_out + n_out
        self.n_params = off
        self.params = xp.zeros(off, dtype=self.dtype)
        self.grads = xp.zeros(off, dtype=self.dtype)
        self.layers = self._views(self.params)
        self.grad_layers = self._views(self.grads)

    def _views(self, flat):
        views = []
        for off, n_in, n_out in self.shapes:
            w = flat[off : off + n_in * n_out].reshape(n_in, n_out)
            b = flat[off + n_in * n_out : off + n_in * n_out + n_out]
            views.append((w, b))
        return views

    def weight_mask(self):
        """1 on weights, 0 on biases, in the flat layout (for weight decay)."""
        mask = np.zeros(self.n_params, dtype=self.dtype)
        for off, n_in, n_out in self.shapes:
            mask[off : off + n_in * n_out] = 1
        return self.xp.asarray(mask)

    def init(self, rng: np.random.Generator):
        """Uniform init of weights and biases, ``U(-1/sqrt(n_in), 1/sqrt(n_in))`` as in
        PyTorch's ``nn.Linear``, for every layer and every activation.

        Chosen by measurement (``bench/RESULTS.md``, "Initialisation"): against
        He-uniform weights (``U(+-sqrt(6/n_in))``, the rectifiers' textbook
        choice and npmdn's before) it gains 0.14-0.22 nats with relu on small
        real data sets, and He-uniform relu diverged in 6 of 30 unregularised
        fits of one of them; Glorot-uniform is no better for tanh.

        Random biases matter: with zero biases every hidden unit of the first
        layer is centred at x = 0, a poor basis for a function that oscillates
        in x; on the seed sinusoid with K = 3 such a network stalls at an NLL
        of 2.84 (true 1.41) from most seeds, while this init reaches 1.41.
        """
        host = np.zeros(self.n_params)
        for off, n_in, n_out in self.shapes:
            lim = 1.0 / np.sqrt(n_in)
            host[off : off + n_in * n_out] = rng.uniform(-lim, lim, n_in * n_out)
            b = off + n_in * n_out
            host[b : b + n_out] = rng.uniform(-lim, lim, n_out)
        self.set_params(host)

    def set_params(self, values):
        values = self.xp.asarray(values, dtype=self.dtype)
        if values.shape != (self.n_params,):
            raise ValueError(f"expected {self.n_params} parameters, got shape {values.shape}")
        self.params[...] = values

    def forward(self, x):
        """(n_ex, sizes[0]) -> (n_ex, sizes[-1]); returns ``(out, cache)``."""
        cache = []
        h = x
        n = len(self.layers)
        for i, (w, b) in enumerate(self.layers):
            h, c_dense = dense_forward(h, w, b)
            c_act = None
            if i < n - 1:
                h, c_act = activation_forward(self.activation, h, self.xp)
            cache.append((c_dense, c_act))
        return h, cache

    def backward(self, dout, cache, need_dx: bool = False):
        """Fill ``self.grads`` from ``dL/dout``; return ``dL/dx`` if asked."""
        n = len(self.layers)
        for i in range(n - 1, -1, -1):
            c_dense, c_act = cache[i]
            if c_act is not None:
                dout = activation_backward(self.activation, dout, c_act, self.xp)
            w, _ = self.layers[i]
            dw, db = self.grad_layers[i]
            dout = dense_backward(dout, c_dense, w, dw, db, need_dx=(i > 0 or need_dx), xp=self.xp)
        return dout
