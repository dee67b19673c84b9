"""The demo: fit an MDN to a seed problem, print held-out NLL, draw the figure."""

from __future__ import annotations

import sys

from . import datasets
from .model import MDN

# Per problem: training points, components, hidden widths, epochs, peak learning rate
# (cosine schedule, batch 256). Chosen so that each demo trains in seconds on 2 CPU cores
# and lands close to the true conditional NLL where one is known (README.md has the
# timings and gaps measured with these settings). The two unimodal problems need only
# one Gaussian, which the figures then show plainly.
SETTINGS = {
    "sinusoid": dict(n_train=20_000, n_components=1, hidden=(64, 64), epochs=150, lr=5e-3),
    "inverted": dict(n_train=20_000, n_components=8, hidden=(64, 64), epochs=150, lr=5e-3),
    "heteroscedastic": dict(n_train=10_000, n_components=1, hidden=(32, 32), epochs=100,
                            lr=3e-3),
    "spiral": dict(n_train=20_000, n_components=12, hidden=(64, 64), epochs=150, lr=5e-3),
    # 2-D y: two tilted ellipses, one full-covariance Gaussian each
    "correlated": dict(n_train=20_000, n_components=2, hidden=(32, 32), epochs=100, lr=3e-3,
                       covariance="full"),
}
BATCH_SIZE = 256


def run_demo(problem="inverted", n_train=None, n_test=None, seed=0, png=None,
             backend=None, verbose=None, out=sys.stdout):
    """Train on ``n_train`` fresh points of ``problem`` and score ``n_test`` others.

    ``n_train`` defaults to the problem's setting in :data:`SETTINGS` and
    ``n_test`` to ``n_train``. Prints what it trains (before training), then
    the held-out NLL (and the true conditional NLL where known) to ``out``.
    ``png`` is the figure's path, or a callable ``png(fig) -> path`` that
    writes the figure and returns where; the figure is made when matplotlib
    is installed. Returns ``(model, result dict)``.
    """
    key = datasets.problem_name(problem)
    cfg = SETTINGS[key]
    if png is not None:
        try:  # before training, so that a missing matplotlib costs nothing
            from .plot import pyplot

            pyplot()
        except ImportError as exc:
            print(f"no figure: {exc}", file=out)
            png = None
    n_train = cfg["n_train"] if n_train is None else n_train
    n_test = n_train if n_test is None else n_test
    train = datasets.load(key, n_train, seed=seed)
    test = datasets.load(key, n_test, seed=seed + 1)
    covariance = cfg.get("covariance", "diagonal")
    model = MDN(1, train.y.shape[1], cfg["n_components"], hidden=cfg["hidden"],
                covariance=covariance, backend=backend, seed=seed)
    cov_note = "" if covariance == "diagonal" else f", covariance={covariance}"
    print(f"npmdn demo: {key} problem, {n_train} training points, K={cfg['n_components']}, "
          f"hidden={cfg['hidden']}{cov_note}, backend={model.backend.name}", file=out, flush=True)
    history = model.fit(train.x, train.y, epochs=cfg["epochs"], batch_size=BATCH_SIZE,
                        lr=cfg["lr"], lr_schedule="cosine", validation_split=0.0,
                        verbose=verbose)
    result = {
        "problem": key,
        "backend": model.backend.name,
        "train_seconds": history.seconds,
        "epochs": history.epochs,
        "heldout_nll": model.nll(test.x, test.y),
        "true_nll": test.true_nll() if test.has_true_density else None,
        "png": None,
    }
    print(f"trained {history.epochs} epochs in {history.seconds:.1f} s", file=out)
    line = f"held-out NLL ({n_test} fresh points): {result['heldout_nll']:.4f} nats"
    if result["true_nll"] is not None:
        result["gap"] = result["heldout_nll"] - result["true_nll"]
        line += f"   true conditional NLL: {result['true_nll']:.4f}   gap {result['gap']:+.4f}"
    print(line, file=out)
    if png is not None:
        from .plot import plot_fit, pyplot, save_figure

        title = (f"npmdn demo: {key}, K={cfg['n_components']}, held-out NLL "
                 f"{result['heldout_nll']:.3f}")
        if result["true_nll"] is not None:
            title += f" (true {result['true_nll']:.3f})"
        fig = plot_fit(model, test.x, test.y, title=title, seed=seed,
                       true_log_prob=test.log_prob_fn)
        if callable(png):
            path = png(fig)
        else:
            path = png
            save_figure(fig, path)
        pyplot().close(fig)
        result["png"] = str(path)
        print(f"figure written to {path}", file=out)
    return model, result
