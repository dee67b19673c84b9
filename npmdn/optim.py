"""Adam and SGD over one flat parameter buffer.

Every optimizer updates ``params`` in place from ``grads``, both 1-D arrays
of the same length (the model's flat buffers), so one step is a handful of
vectorized operations whatever the network's shape.

Weight decay is decoupled (Loshchilov and Hutter, "Decoupled weight decay
regularization"): ``p <- p - lr * wd * mask * p`` before the gradient step,
with ``mask`` 1 on weights and 0 on biases.
"""

from __future__ import annotations

import math

import numpy as np


def global_norm(grads, xp=np) -> float:
    """Euclidean norm of the whole flat gradient."""
    return float(xp.sqrt(xp.dot(grads, grads)))


def clip_by_global_norm(grads, max_norm: float, xp=np, norm: float | None = None) -> float:
    """Scale ``grads`` in place so that its norm is at most ``max_norm``; return the norm before.

    ``norm``, when the caller already has it, saves computing it again.
    """
    if norm is None:
        norm = global_norm(grads, xp)
    if norm > max_norm:
        grads *= grads.dtype.type(max_norm / (norm + 1e-12))
    return norm


class Optimizer:
    def __init__(self, n_params, lr, weight_decay=0.0, decay_mask=None, xp=np, dtype=np.float32):
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.decay_mask = decay_mask
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.t = 0
        self._tmp = xp.zeros(n_params, dtype=self.dtype)

    def _decay(self, params, lr):
        if self.weight_decay:
            tmp = self._tmp
            self.xp.multiply(params, self.dtype.type(lr * self.weight_decay), out=tmp)
            if self.decay_mask is not None:
                tmp *= self.decay_mask
            params -= tmp

    def step(self, params, grads, lr=None):
        raise NotImplementedError


class SGD(Optimizer):
    """``v <- momentum v + g``; ``p <- p - lr (g + momentum v)`` (Nesterov) or ``p - lr v``."""

    def __init__(self, n_params, lr=1e-2, momentum=0.9, nesterov=False, **kw):
        super().__init__(n_params, lr, **kw)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.v = self.xp.zeros(n_params, dtype=self.dtype)

    def step(self, params, grads, lr=None):
        lr = self.lr if lr is None else lr
        self.t += 1
        self._decay(params, lr)
        if self.momentum:
            self.v *= self.dtype.type(self.momentum)
            self.v += grads
            if self.nesterov:
                self.xp.multiply(self.v, self.dtype.type(self.momentum), out=self._tmp)
                self._tmp += grads
                step = self._tmp
            else:
                step = self.v
        else:
            step = grads
        self.xp.multiply(step, self.dtype.type(lr), out=self._tmp)
        params -= self._tmp


class Adam(Optimizer):
    """Adam (Kingma and Ba) in the bias-corrected form PyTorch uses::

        m <- b1 m + (1 - b1) g
        v <- b2 v + (1 - b2) g^2
        p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    def __init__(self, n_params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, **kw):
        super().__init__(n_params, lr, **kw)
        self.b1, self.b2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.m = self.xp.zeros(n_params, dtype=self.dtype)
        self.v = self.xp.zeros(n_params, dtype=self.dtype)

    def step(self, params, grads, lr=None):
        lr = self.lr if lr is None else lr
        xp, t, f = self.xp, self.dtype.type, self._tmp
        self.t += 1
        self._decay(params, lr)
        self.m *= t(self.b1)
        xp.multiply(grads, t(1 - self.b1), out=f)
        self.m += f
        self.v *= t(self.b2)
        xp.multiply(grads, grads, out=f)
        f *= t(1 - self.b2)
        self.v += f
        # denominator sqrt(v) / sqrt(1 - b2^t) + eps, then the step lr / (1 - b1^t) * m / denom
        xp.sqrt(self.v, out=f)
        f *= t(1.0 / math.sqrt(1.0 - self.b2**self.t))
        f += t(self.eps)
        xp.divide(self.m, f, out=f)
        f *= t(lr / (1.0 - self.b1**self.t))
        params -= f


OPTIMIZERS = {"adam": Adam, "sgd": SGD}
