"""The learning check of the core issue, shared by tests/app/test_learning.py and bench.learn.

Train on 20,000 points of a seed problem, score 20,000 fresh ones, and compare
with the true conditional NLL (the best any model can do on those rows).
"""

from __future__ import annotations

import time

import numpy as np

from npmdn import datasets
from npmdn.model import MDN

# problem -> model and fit settings (tanh trunk, Adam, cosine decay, batch 256)
SETUPS = {
    # one smooth mode: a small trunk and long training keep sigma(x) from chasing noise
    "heteroscedastic": dict(n_components=2, hidden=(32, 32), epochs=200),
    # up to five branches of the inverse at one x
    "inverted": dict(n_components=8, hidden=(64, 64), epochs=100),
}
FIT = dict(batch_size=256, lr=3e-3, lr_schedule="cosine", verbose=False)


def sigma_tracking(model, lo=1.0, hi=5.2, n=85):
    """Relative error of the predicted std against the true 0.1 x on a grid over [lo, hi]."""
    xs = np.linspace(lo, hi, n)
    return model.predict_std(xs)[:, 0] / (0.1 * xs) - 1


def run(problem: str, seed: int = 0, backend=None, n: int = 20_000) -> dict:
    train = datasets.load(problem, n, seed=1000 + seed)
    test = datasets.load(problem, n, seed=2000 + seed)
    cfg = SETUPS[problem]
    model = MDN(1, 1, cfg["n_components"], hidden=cfg["hidden"], backend=backend, seed=seed)
    t0 = time.perf_counter()
    model.fit(train.x, train.y, epochs=cfg["epochs"], **FIT)
    out = {
        "problem": problem,
        "seed": seed,
        "backend": model.backend.name,
        "train_seconds": time.perf_counter() - t0,
        "heldout_nll": model.nll(test.x, test.y),
        "true_nll": test.true_nll(),
    }
    out["gap"] = out["heldout_nll"] - out["true_nll"]
    if problem == "heteroscedastic":
        # where x has data on both sides (central 90% of [1, 5.2]) and over the whole range
        out["sigma_err_central_max"] = float(np.abs(sigma_tracking(model, 1.21, 4.99)).max())
        err = sigma_tracking(model)
        out["sigma_err_full_max"] = float(np.abs(err).max())
        out["sigma_err_full_mean"] = float(np.abs(err).mean())
    return out
