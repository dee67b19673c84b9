"""Figures like the seed tutorials', for a fitted model with 1-D x and y.

matplotlib is imported only when a function here is called; without it the
call raises ``ImportError`` saying how to install it.
"""

from __future__ import annotations

import numpy as np


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised where matplotlib is absent
        raise ImportError(
            "npmdn.plot needs matplotlib: pip install 'npmdn[plot]' (or pip install matplotlib)"
        ) from exc
    return plt


def _check_1d(model):
    if model.in_dim != 1 or model.out_dim != 1:
        raise ValueError(
            f"these figures need a model with 1-D x and 1-D y; this one maps "
            f"{model.in_dim}-D x to {model.out_dim}-D y"
        )


def _grid(x, n=400):
    lo, hi = float(np.min(x)), float(np.max(x))
    pad = 0.02 * (hi - lo or 1.0)
    return np.linspace(lo - pad, hi + pad, n)


def plot_components(model, x, y, ax=None, grid=None):
    """Data scatter with each component's mean and a +-sigma band."""
    plt = _plt()
    _check_1d(model)
    ax = ax if ax is not None else plt.gca()
    xs = _grid(x) if grid is None else grid
    pi, mu, sigma = model.mixture(xs)
    ax.scatter(np.ravel(x), np.ravel(y), s=3, c="black", alpha=0.15, lw=0, label="data")
    for k in range(model.n_components):
        m, s = mu[:, k, 0], sigma[:, k, 0]
        line = ax.plot(xs, m, lw=1.5, label=f"component {k}")[0]
        ax.fill_between(xs, m - s, m + s, color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("component means ± sigma")
    return ax


def plot_parameters(model, x, axes=None, grid=None):
    """Three panels against x: mixing weights, means and sigmas of every component."""
    plt = _plt()
    _check_1d(model)
    if axes is None:
        _, axes = plt.subplots(3, 1, sharex=True)
    xs = _grid(x) if grid is None else grid
    pi, mu, sigma = model.mixture(xs)
    for vals, ax, title in ((pi, axes[0], r"$\pi_k(x) = p(c = k \mid x)$"),
                            (mu[..., 0], axes[1], r"$\mu_k(x)$"),
                            (sigma[..., 0], axes[2], r"$\sigma_k(x)$")):
        ax.plot(xs, vals, lw=1.2)
        ax.set_title(title)
    axes[-1].set_xlabel("x")
    return axes


def plot_samples(model, x, y, ax=None, n_samples=1, seed=0):
    """The data and draws from the model at the same x, overlaid."""
    plt = _plt()
    _check_1d(model)
    ax = ax if ax is not None else plt.gca()
    draws = model.sample(x, n_samples, seed=seed)
    xr = np.repeat(np.ravel(x), n_samples)
    ax.scatter(np.ravel(x), np.ravel(y), s=3, c="black", alpha=0.15, lw=0, label="data")
    ax.scatter(xr, draws.reshape(-1), s=3, c="tab:red", alpha=0.25, lw=0, label="model samples")
    ax.legend(loc="upper left", markerscale=4, fontsize="small")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("samples from p(y | x)")
    return ax


def plot_fit(model, x, y, path=None, title=None, seed=0, max_points=3000):
    """The whole demo figure: components, the three parameter panels, and samples.

    Writes a PNG to ``path`` if given; returns the matplotlib figure.
    """
    plt = _plt()
    _check_1d(model)
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    if x.shape[0] > max_points:  # keep the scatter readable and the file small
        idx = np.random.default_rng(seed).choice(x.shape[0], max_points, replace=False)
        x, y = x[idx], y[idx]
    fig = plt.figure(figsize=(13, 8.5), constrained_layout=True)
    gs = fig.add_gridspec(3, 3)
    ax_comp = fig.add_subplot(gs[:2, 0])
    ax_samp = fig.add_subplot(gs[:2, 1], sharex=ax_comp, sharey=ax_comp)
    ax_pi = fig.add_subplot(gs[0, 2])
    ax_mu = fig.add_subplot(gs[1, 2], sharex=ax_pi)
    ax_sig = fig.add_subplot(gs[2, 2], sharex=ax_pi)
    ax_hist = fig.add_subplot(gs[2, :2])
    grid = _grid(x)
    plot_components(model, x, y, ax_comp, grid)
    plot_samples(model, x, y, ax_samp, seed=seed)
    plot_parameters(model, x, (ax_pi, ax_mu, ax_sig), grid)
    # the predicted density at a few x, as vertical slices
    qs = np.quantile(x[:, 0], [0.2, 0.5, 0.8])
    lo, hi = float(y.min()), float(y.max())
    pad = 0.1 * (hi - lo or 1.0)
    ys = np.linspace(lo - pad, hi + pad, 600)
    for xq in qs:
        dens = np.exp(model.log_prob(np.full_like(ys, xq), ys))
        ax_hist.plot(ys, dens, lw=1.5, label=f"p(y | x = {xq:.2f})")
    ax_hist.set_xlabel("y")
    ax_hist.set_ylabel("density")
    ax_hist.legend(fontsize="small")
    ax_hist.set_title("predicted conditional densities")
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=90)
        plt.close(fig)
    return fig
