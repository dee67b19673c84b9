"""The demo: fit an MDN to a seed problem, print held-out NLL, draw the figure."""

from __future__ import annotations

import importlib.util
import sys
import time

from . import datasets
from .model import MDN

# per problem: components, hidden widths, epochs; tuned to run in seconds on 2 cores
SETTINGS = {
    "sinusoid": dict(n_components=3, hidden=(32, 32), epochs=60),
    "inverted": dict(n_components=5, hidden=(32, 32), epochs=60),
    "heteroscedastic": dict(n_components=2, hidden=(32, 32), epochs=60),
    "spiral": dict(n_components=8, hidden=(64, 64), epochs=80),
}


def run_demo(problem="inverted", n_train=4000, n_test=4000, seed=0, png=None,
             backend=None, verbose=None, out=sys.stdout):
    """Train on ``n_train`` fresh points of ``problem`` and score ``n_test`` others.

    Prints the held-out NLL (and the true conditional NLL where known) to
    ``out``; writes the figure to ``png`` when given and matplotlib is
    installed. Returns ``(model, result dict)``.
    """
    key = datasets._ALIASES.get(problem, problem)
    if key not in SETTINGS:
        raise ValueError(f"unknown problem {problem!r}; choose one of {', '.join(SETTINGS)}")
    cfg = SETTINGS[key]
    train = datasets.load(key, n_train, seed=seed)
    test = datasets.load(key, n_test, seed=seed + 1)
    model = MDN(1, 1, cfg["n_components"], hidden=cfg["hidden"], backend=backend, seed=seed)
    t0 = time.perf_counter()
    history = model.fit(train.x, train.y, epochs=cfg["epochs"], batch_size=128, lr=5e-3,
                        lr_schedule="cosine", verbose=verbose)
    seconds = time.perf_counter() - t0
    result = {
        "problem": key,
        "backend": model.backend.name,
        "train_seconds": seconds,
        "epochs": history.epochs,
        "heldout_nll": model.nll(test.x, test.y),
        "true_nll": test.true_nll() if test.has_true_density else None,
        "png": None,
    }
    print(f"npmdn demo: {key} problem, {n_train} training points, K={cfg['n_components']}, "
          f"hidden={cfg['hidden']}, backend={model.backend.name}", file=out)
    print(f"trained {history.epochs} epochs in {seconds:.1f} s", file=out)
    line = f"held-out NLL: {result['heldout_nll']:.4f} nats"
    if result["true_nll"] is not None:
        line += (f"   (true conditional NLL: {result['true_nll']:.4f}, gap "
                 f"{result['heldout_nll'] - result['true_nll']:+.4f})")
    print(line, file=out)
    if png is not None:
        if importlib.util.find_spec("matplotlib") is None:
            print("matplotlib is not installed: no figure (pip install 'npmdn[plot]')", file=out)
        else:
            from .plot import plot_fit

            plot_fit(model, test.x, test.y, png, title=f"npmdn: {key}", seed=seed)
            result["png"] = str(png)
            print(f"figure written to {png}", file=out)
    return model, result
