"""How close npmdn gets to the true conditional NLL on the seed problems.

    python -m bench.learning [--seeds 0 1 2] [--backend numba] [--setups correlated ...]

Train on 20,000 points of a seed problem, score 20,000 fresh ones, and compare
with the true conditional NLL (the best any model can do on those rows). The
correlated problem (2-D y) is fitted twice with the same K, with full and with
diagonal covariance.
Prints a markdown table (and writes bench/learning.json). :func:`run` is
shared with ``tests/app/test_learning.py``, which asserts the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

import npmdn
from npmdn import datasets
from npmdn.model import MDN

# setup -> problem, model and fit settings (tanh trunk, Adam, cosine decay, batch 256)
SETUPS = {
    # one smooth mode: a small trunk and long training keep sigma(x) from chasing noise
    "heteroscedastic": dict(n_components=2, hidden=(32, 32), epochs=200),
    # up to five branches of the inverse at one x
    "inverted": dict(n_components=8, hidden=(64, 64), epochs=100),
    # two tilted ellipses in y (2-D) turning with x: full covariance against diagonal,
    # the same K
    "correlated": dict(n_components=2, hidden=(32, 32), epochs=100, covariance="full"),
    "correlated-diagonal": dict(problem="correlated", n_components=2, hidden=(32, 32),
                                epochs=100, covariance="diagonal"),
}
FIT = dict(batch_size=256, lr=3e-3, lr_schedule="cosine", validation_split=0, verbose=False)


def sigma_tracking(model, lo=1.0, hi=5.2, n=85):
    """Relative error of the predicted std against the true 0.1 x on a grid over [lo, hi]."""
    xs = np.linspace(lo, hi, n)
    return model.predict_std(xs)[:, 0] / (0.1 * xs) - 1


def run(setup: str, seed: int = 0, backend=None, n: int = 20_000) -> dict:
    cfg = SETUPS[setup]
    problem = cfg.get("problem", setup)
    train = datasets.load(problem, n, seed=1000 + seed)
    test = datasets.load(problem, n, seed=2000 + seed)
    model = MDN(1, train.y.shape[1], cfg["n_components"], hidden=cfg["hidden"],
                covariance=cfg.get("covariance", "diagonal"), backend=backend, seed=seed)
    t0 = time.perf_counter()
    model.fit(train.x, train.y, epochs=cfg["epochs"], **FIT)
    out = {
        "problem": setup,
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    ap.add_argument("--backend", default=None)
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "learning.json"))
    args = ap.parse_args()
    rows = []
    for problem in args.setups:
        for seed in args.seeds:
            rows.append(run(problem, seed, backend=args.backend))
    cpu = platform.processor() or platform.machine()
    print(f"npmdn {npmdn.__version__}, numpy {np.__version__}, {cpu}, "
          f"fit {FIT}, tanh trunk\n")
    print("| problem | covariance | K | hidden | epochs | seed | backend | train s | held-out NLL "
          "| true NLL | gap | sigma err (central max / full max / full mean) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sig = ""
        if "sigma_err_central_max" in r:
            sig = (f"{r['sigma_err_central_max']:.1%} / {r['sigma_err_full_max']:.1%} / "
                   f"{r['sigma_err_full_mean']:.1%}")
        cfg = SETUPS[r["problem"]]
        print(f"| {cfg.get('problem', r['problem'])} | {cfg.get('covariance', 'diagonal')} | "
              f"{cfg['n_components']} | {cfg['hidden']} | {cfg['epochs']} | "
              f"{r['seed']} | {r['backend']} | "
              f"{r['train_seconds']:.1f} | {r['heldout_nll']:.4f} | {r['true_nll']:.4f} | "
              f"{r['gap']:+.4f} | {sig} |")
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
