"""Shared by the example scripts: where the figure goes, and the plain MSE network
that the seed tutorials train before they reach for a mixture density network."""

from __future__ import annotations

import argparse
import os

import numpy as np

from npmdn.nn import MLP
from npmdn.optim import Adam


def parse_args(default_name: str, description: str):
    """``OUT`` (optional) and ``--quick``; the default output never replaces a file."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("out", nargs="?", help=f"figure path (default: {default_name} in the "
                    "current directory, or name-2.png... if that exists)")
    ap.add_argument("--quick", action="store_true",
                    help="a few epochs only: checks that the script runs, not a good fit")
    args = ap.parse_args()
    if args.out is None:
        args.out = free_path(default_name)
    return args


def free_path(path: str) -> str:
    stem, ext = os.path.splitext(path)
    i, candidate = 2, path
    while os.path.lexists(candidate):
        candidate, i = f"{stem}-{i}{ext}", i + 1
    return candidate


def headless_pyplot():
    import matplotlib

    matplotlib.use("Agg")  # the scripts only write files
    import matplotlib.pyplot as plt

    return plt


class MSENet:
    """A plain regression network: npmdn's MLP trained on the mean squared error.

    The loss and its gradient are written out by hand (npmdn has no autograd):

        L = 1/N sum_n (f(x_n) - y_n)^2,     dL/df(x_n) = 2 (f(x_n) - y_n) / N

    and ``MLP.backward`` carries ``dL/df`` back to every weight. x and y are
    standardized for training and mapped back for prediction.
    """

    def __init__(self, hidden=(20,), activation="tanh", seed=0):
        self.hidden, self.activation, self.seed = tuple(hidden), activation, seed

    def fit(self, x, y, epochs=1000, lr=1e-2, batch_size=None, callback=None):
        x, y = np.asarray(x, float).reshape(len(x), -1), np.asarray(y, float).reshape(len(y), -1)
        self.xm, self.xs, self.ym, self.ys = x.mean(0), x.std(0), y.mean(0), y.std(0)
        xs, ys = (x - self.xm) / self.xs, (y - self.ym) / self.ys
        rng = np.random.default_rng(self.seed)
        self.net = MLP((x.shape[1], *self.hidden, y.shape[1]), self.activation, np.float64)
        self.net.init(rng)
        opt = Adam(self.net.n_params, lr=lr, dtype=np.float64)
        n = len(xs)
        bs = n if batch_size is None else batch_size
        for epoch in range(epochs):
            order = rng.permutation(n)
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                out, cache = self.net.forward(xs[idx])
                # L = mean (out - y)^2  ->  dL/dout = 2 (out - y) / N
                self.net.backward(2.0 * (out - ys[idx]) / len(idx), cache)
                opt.step(self.net.params, self.net.grads)
            if callback is not None:
                callback(epoch, self)
        return self

    def predict(self, x):
        x = np.asarray(x, float).reshape(len(x), -1)
        out, _ = self.net.forward((x - self.xm) / self.xs)
        return out * self.ys + self.ym

    def mse(self, x, y):
        return float(np.mean((self.predict(x) - np.asarray(y, float).reshape(len(y), -1)) ** 2))
