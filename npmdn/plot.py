"""Figures like the seed tutorials', for a fitted model with 1-D x and 1-D (or 2-D) y.

* :func:`plot_components`: the data with each component's mean and a
  +-sigma band (``fill_between``), drawn solid where the component carries
  weight and faint where it does not;
* :func:`plot_parameters`: three panels against x: mixing weights
  ``pi_k(x) = p(c = k | x)``, means ``mu_k(x)`` and sigmas ``sigma_k(x)``;
* :func:`plot_samples`: draws from the model over the data;
* :func:`plot_densities`: slices ``p(y | x = x0)`` at a few x0, with the
  true density beside them when it is known;
* :func:`plot_fit`: all of these in one figure (what ``npmdn demo`` and
  ``npmdn plot`` draw), and :func:`save_figure` to write it.

For a model with 2-D y (any covariance kind; made for ``covariance="full"``):

* :func:`plot_ellipses`: at a few x0, the data near x0 in the (y0, y1) plane
  with each component's 1- and 2-sigma ellipses (and the true density's
  contours when it is known);
* :func:`plot_correlations`: each component's correlation ``rho_k(x)`` and
  its weight ``pi_k(x)`` against x;
* :func:`plot_fit` draws these and the model's draws over the data.

Each panel function draws into ``ax``/``axes`` when given, else into the
current pyplot axes. matplotlib is imported only when a function here is
called; without it the call raises ``ImportError`` saying how to install it.
"""

from __future__ import annotations

import os

import numpy as np

from ._io import atomic_open

MIN_WEIGHT = 0.02  # below this mixing weight a component is drawn faint, without its band


def pyplot():
    """``matplotlib.pyplot``, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "npmdn.plot needs matplotlib, which is not installed: "
            "pip install 'npmdn[plot]' (or pip install matplotlib)"
        ) from exc
    return plt


def _check_1d(model, out_dims=(1,)):
    if model.in_dim != 1 or model.out_dim not in out_dims:
        want = " or ".join(f"{d}-D" for d in out_dims)
        raise ValueError(
            f"these figures need a model with 1-D x and {want} y; this one maps "
            f"{model.in_dim}-D x to {model.out_dim}-D y"
        )


def _labels(model):
    """Axis labels: the names of x and y the model was fitted on, else "x" and "y"."""
    xn = getattr(model, "x_names", None)
    yn = getattr(model, "y_names", None)
    return (xn[0] if xn else "x"), (yn[0] if yn else "y")


def _column(a, name) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape [N] or [N, 1], got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    return arr


def _xy(x, y):
    x, y = _column(x, "x"), _column(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    return x, y


def _grid(x, n=400):
    lo, hi = float(np.min(x)), float(np.max(x))
    pad = 0.02 * (hi - lo or 1.0)
    return np.linspace(lo - pad, hi + pad, n)


def _span(v, pad=0.08):
    lo, hi = float(np.min(v)), float(np.max(v))
    p = pad * (hi - lo or 1.0)
    return lo - p, hi + p


def _colors(k):
    """k distinct colours; the greys of the tab palettes are skipped, as the data is grey.
    Past nine, tab20's dark shades come first and its light ones after."""
    plt = pyplot()
    if k <= 9:
        cmap, order = plt.get_cmap("tab10"), [i for i in range(10) if i != 7]
    else:
        cmap = plt.get_cmap("tab20")
        order = [i for i in list(range(0, 20, 2)) + list(range(1, 20, 2)) if i not in (14, 15)]
    return [cmap(order[i % len(order)]) for i in range(k)]


def _masked(values, keep):
    return np.where(keep, values, np.nan)


def plot_data(x, y, ax=None, **kwargs):
    """A scatter of the data in the seeds' style (small, translucent points)."""
    plt = pyplot()
    x, y = _xy(x, y)
    ax = ax if ax is not None else plt.gca()
    style = dict(s=4, c="black", alpha=0.2, lw=0, label="data")
    style.update(kwargs)
    ax.scatter(x, y, **style)
    return ax


def plot_components(model, x, y, ax=None, grid=None, min_weight=MIN_WEIGHT):
    """The data with each component's mean ``mu_k(x)`` and a ``mu_k +- sigma_k`` band.

    Where ``pi_k(x) < min_weight`` the component contributes almost nothing:
    its mean is drawn as a faint dotted line and its band is left out, so
    unused components do not hide the ones that matter.
    """
    plt = pyplot()
    _check_1d(model)
    x, y = _xy(x, y)
    ax = ax if ax is not None else plt.gca()
    xs = _grid(x) if grid is None else np.asarray(grid, dtype=np.float64)
    pi, mu, sigma = model.mixture(xs)
    plot_data(x, y, ax)
    for k, color in enumerate(_colors(model.n_components)):
        m, s, on = mu[:, k, 0], sigma[:, k, 0], pi[:, k] >= min_weight
        ax.plot(xs, m, color=color, lw=0.8, ls=":", alpha=0.5)
        ax.plot(xs, _masked(m, on), color=color, lw=1.8, label=f"component {k}")
        ax.fill_between(xs, m - s, m + s, where=on, color=color, alpha=0.18, lw=0)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(*_span(y))
    ax.set_xlabel(_labels(model)[0])
    ax.set_ylabel(_labels(model)[1])
    ax.set_title(r"component means $\mu_k(x) \pm \sigma_k(x)$")
    return ax


def plot_parameters(model, x, axes=None, grid=None, min_weight=MIN_WEIGHT, y=None):
    """Three panels against x, as in the seeds: ``pi_k(x)``, ``mu_k(x)``, ``sigma_k(x)``.

    Means and sigmas are solid where ``pi_k >= min_weight`` and faint
    elsewhere; the mu and sigma axes are scaled to the solid parts (and the
    mu axis to the data, when ``y`` is given).
    """
    plt = pyplot()
    _check_1d(model)
    x = _column(x, "x")
    if axes is None:
        _, axes = plt.subplots(3, 1, sharex=True, figsize=(8, 8))
    ax_pi, ax_mu, ax_sig = axes
    xs = _grid(x) if grid is None else np.asarray(grid, dtype=np.float64)
    pi, mu, sigma = model.mixture(xs)
    on = pi >= min_weight
    colors = _colors(model.n_components)
    for k, color in enumerate(colors):
        ax_pi.plot(xs, pi[:, k], color=color, lw=1.4)
        for ax, v in ((ax_mu, mu[:, k, 0]), (ax_sig, sigma[:, k, 0])):
            ax.plot(xs, v, color=color, lw=0.8, ls=":", alpha=0.5)
            ax.plot(xs, _masked(v, on[:, k]), color=color, lw=1.4)
    ax_pi.set_ylim(-0.03, 1.03)
    ax_pi.set_title(r"$\pi_k(x) = p(c = k \mid x)$")
    ax_mu.set_title(r"$\mu_k(x)$")
    ax_sig.set_title(r"$\sigma_k(x)$")
    if on.any():
        used_mu = mu[..., 0][on]
        lo, hi = _span(used_mu if y is None else np.concatenate([used_mu, _column(y, "y")]))
        ax_mu.set_ylim(lo, hi)
        ax_sig.set_ylim(0, 1.1 * float(sigma[..., 0][on].max()))
    for ax in axes:
        ax.set_xlim(xs[0], xs[-1])
    axes[-1].set_xlabel(_labels(model)[0])
    return axes


def plot_samples(model, x, y, ax=None, n_samples=1, seed=0):
    """The data (blue) and draws from ``p(y | x)`` at the same x (red), as in the seeds."""
    plt = pyplot()
    _check_1d(model)
    x, y = _xy(x, y)
    ax = ax if ax is not None else plt.gca()
    draws = model.sample(x, n_samples, seed=seed)
    plot_data(x, y, ax, c="tab:blue", alpha=0.25)
    ax.scatter(np.repeat(x, n_samples), draws.reshape(-1), s=4, c="tab:red", alpha=0.25, lw=0,
               label="model samples")
    ax.legend(loc="upper left", markerscale=3, fontsize="small")
    ax.set_xlabel(_labels(model)[0])
    ax.set_ylabel(_labels(model)[1])
    ax.set_title(r"samples from $p(y \mid x)$ over the data")
    return ax


def plot_densities(model, x, y, ax=None, at=None, true_log_prob=None, n=600):
    """Slices of the predicted density ``p(y | x = x0)`` at a few ``x0``.

    ``at`` defaults to the 20%, 50% and 80% quantiles of x. With
    ``true_log_prob(x, y) -> log p`` (e.g. a data set's ``log_prob_fn``)
    the true density is drawn dashed beside each slice.
    """
    plt = pyplot()
    _check_1d(model)
    x, y = _xy(x, y)
    ax = ax if ax is not None else plt.gca()
    at = np.quantile(x, [0.2, 0.5, 0.8]) if at is None else np.atleast_1d(at)
    ys = np.linspace(*_span(y, 0.05), n)
    for x0, color in zip(at, _colors(len(at)), strict=True):
        xq = np.full_like(ys, float(x0))
        ax.plot(ys, np.exp(model.log_prob(xq, ys)), color=color, lw=1.6,
                label=f"model, {_labels(model)[0]} = {x0:.2f}")
        if true_log_prob is not None:  # legend columns fill top-down: model above true
            ax.plot(ys, np.exp(true_log_prob(xq, ys)), color=color, lw=1.2, ls="--",
                    label=f"true, {_labels(model)[0]} = {x0:.2f}")
    ax.set_xlim(ys[0], ys[-1])
    ax.set_ylim(0, 1.35 * ax.get_ylim()[1])  # headroom for the legend above the peaks
    ax.set_xlabel(_labels(model)[1])
    ax.set_ylabel("density")
    ax.legend(fontsize="small", loc="upper center", ncol=len(at))
    ax.set_title(r"predicted conditional densities $p(y \mid x = x_0)$")
    return ax


def plot_fit(model, x, y, path=None, title=None, seed=0, max_points=2500,
             true_log_prob=None):
    """The whole demo figure: components with +-sigma bands, samples over the data,
    the pi / mu / sigma panels, and density slices (2-D y: :func:`_plot_fit_2d`).

    At most ``max_points`` rows (a seeded random subset) are scattered. Writes
    the figure to ``path`` when given (then closes it); returns the figure.
    """
    plt = pyplot()
    _check_1d(model, (1, 2))
    if model.out_dim == 2:
        fig = _plot_fit_2d(model, x, y, seed, max_points, true_log_prob)
        if title:
            fig.suptitle(title)
        if path is not None:
            save_figure(fig, path)
            plt.close(fig)
        return fig
    x, y = _xy(x, y)
    if x.size > max_points:  # keep the scatter readable and the file small
        idx = np.random.default_rng(seed).choice(x.size, max_points, replace=False)
        x, y = x[idx], y[idx]
    fig = plt.figure(figsize=(13, 8.5), constrained_layout=True)
    gs = fig.add_gridspec(3, 3)
    ax_comp = fig.add_subplot(gs[:2, 0])
    ax_samp = fig.add_subplot(gs[:2, 1], sharex=ax_comp, sharey=ax_comp)
    ax_pi = fig.add_subplot(gs[0, 2])
    ax_mu = fig.add_subplot(gs[1, 2], sharex=ax_pi)
    ax_sig = fig.add_subplot(gs[2, 2], sharex=ax_pi)
    ax_dens = fig.add_subplot(gs[2, :2])
    grid = _grid(x)
    plot_components(model, x, y, ax_comp, grid)
    plot_samples(model, x, y, ax_samp, seed=seed)
    ax_samp.set_ylim(*_span(y))
    plot_parameters(model, x, (ax_pi, ax_mu, ax_sig), grid, y=y)
    plot_densities(model, x, y, ax_dens, true_log_prob=true_log_prob)
    if title:
        fig.suptitle(title)
    if path is not None:
        save_figure(fig, path)
        plt.close(fig)
    return fig


# --------------------------------------------------------------------------
# 2-D outputs: component ellipses
# --------------------------------------------------------------------------


def _xy2(x, y):
    x = _column(x, "x")
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != 2 or y.shape[0] != x.size:
        raise ValueError(f"y must have shape [N, 2] = [{x.size}, 2], got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("y must be finite")
    return x, y


def ellipse(mean, cov, n_sigma=1.0, **kwargs):
    """A :class:`matplotlib.patches.Ellipse` of the points ``n_sigma`` Mahalanobis units
    from ``mean`` [2] under ``cov`` [2, 2]: axes along cov's eigenvectors, half-lengths
    ``n_sigma sqrt(eigenvalue)``."""
    from matplotlib.patches import Ellipse

    vals, vecs = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))  # of the major axis
    width, height = 2 * n_sigma * np.sqrt(np.maximum(vals[::-1], 0.0))
    return Ellipse(mean, width, height, angle=angle, **kwargs)


def plot_ellipses(model, x, y, at=None, axes=None, band=None, min_weight=MIN_WEIGHT,
                  true_log_prob=None, n_grid=160):
    """At each ``x0`` of ``at`` (default: the 10%, 50% and 90% quantiles of x), one panel in
    the (y0, y1) plane: the data whose x lies within ``band`` of x0 (default: 5% of x's
    range), each component's mean and its 1- and 2-sigma ellipses (opacity by weight;
    faint and dotted below ``min_weight``) and, with ``true_log_prob(x, y)``, the true
    density's contours at the same x0 (dark grey, dashed)."""
    plt = pyplot()
    _check_1d(model, (2,))
    x, y = _xy2(x, y)
    at = np.quantile(x, [0.1, 0.5, 0.9]) if at is None else np.atleast_1d(at)
    if axes is None:
        _, axes = plt.subplots(1, len(at), figsize=(4.2 * len(at), 4.2), squeeze=False)
        axes = axes[0]
    band = 0.05 * (np.ptp(x) or 1.0) if band is None else band
    dist = model.distribution(np.asarray(at, dtype=np.float64))
    w, means, covs = dist.weights, dist.means, dist.covariances
    colors = _colors(model.n_components)
    lo0, hi0 = _span(y[:, 0])
    lo1, hi1 = _span(y[:, 1])
    names = getattr(model, "y_names", None) or ("y0", "y1")
    for i, (ax, x0) in enumerate(zip(axes, at, strict=True)):
        near = np.abs(x - x0) <= band
        ax.scatter(y[near, 0], y[near, 1], s=5, c="black", alpha=0.25, lw=0, label="data")
        for k, color in enumerate(colors):
            on = w[i, k] >= min_weight
            alpha = float(np.clip(0.25 + 0.75 * w[i, k] / w[i].max(), 0.25, 1.0)) if on else 0.3
            for n_sigma in (1.0, 2.0):
                ax.add_patch(ellipse(means[i, k], covs[i, k], n_sigma, fill=False, color=color,
                                     lw=1.8 if on else 0.8, ls="-" if on else ":",
                                     alpha=alpha / n_sigma))
            ax.plot(*means[i, k], "+", color=color, ms=8, alpha=alpha,
                    label=f"component {k} ({w[i, k]:.2f})")
        if true_log_prob is not None:
            g0, g1 = np.linspace(lo0, hi0, n_grid), np.linspace(lo1, hi1, n_grid)
            grid = np.stack(np.meshgrid(g0, g1), -1).reshape(-1, 2)
            dens = np.exp(true_log_prob(np.full(len(grid), float(x0)), grid))
            ax.contour(g0, g1, dens.reshape(n_grid, n_grid), levels=4, colors="0.25",
                       linestyles="--", linewidths=0.9, zorder=3)
        ax.set_xlim(lo0, hi0)
        ax.set_ylim(lo1, hi1)
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_title(f"{_labels(model)[0]} = {x0:.2f}: 1 and 2 sigma ellipses")
        ax.legend(fontsize="x-small", loc="upper left")
    return axes


def plot_correlations(model, x, axes=None, grid=None, min_weight=MIN_WEIGHT):
    """Two panels against x: each component's weight ``pi_k(x)`` and the correlation
    ``rho_k(x) = Sigma_01 / sqrt(Sigma_00 Sigma_11)`` of its two outputs (solid where
    ``pi_k >= min_weight``)."""
    plt = pyplot()
    _check_1d(model, (2,))
    x = _column(x, "x")
    if axes is None:
        _, axes = plt.subplots(2, 1, sharex=True, figsize=(6, 6))
    ax_pi, ax_rho = axes
    xs = _grid(x, 200) if grid is None else np.asarray(grid, dtype=np.float64)
    dist = model.distribution(xs)
    pi, c = dist.weights, dist.covariances
    rho = c[..., 0, 1] / np.sqrt(c[..., 0, 0] * c[..., 1, 1])
    for k, color in enumerate(_colors(model.n_components)):
        on = pi[:, k] >= min_weight
        ax_pi.plot(xs, pi[:, k], color=color, lw=1.4)
        ax_rho.plot(xs, rho[:, k], color=color, lw=0.8, ls=":", alpha=0.5)
        ax_rho.plot(xs, _masked(rho[:, k], on), color=color, lw=1.4, label=f"component {k}")
    ax_pi.set_ylim(-0.03, 1.03)
    ax_pi.set_title(r"$\pi_k(x)$")
    ax_rho.set_ylim(-1.05, 1.05)
    ax_rho.axhline(0.0, color="grey", lw=0.5)
    ax_rho.set_title(r"correlation $\rho_k(x)$ of the two outputs")
    ax_rho.set_xlim(xs[0], xs[-1])
    ax_rho.set_xlabel(_labels(model)[0])
    return axes


def _plot_fit_2d(model, x, y, seed, max_points, true_log_prob):
    """2-D y: ellipses at three x0 (top), weights and correlations against x, and draws
    from the model over the data in the (y0, y1) plane (bottom)."""
    plt = pyplot()
    x, y = _xy2(x, y)
    if x.size > max_points:
        idx = np.random.default_rng(seed).choice(x.size, max_points, replace=False)
        x_plot, y_plot = x[idx], y[idx]
    else:
        x_plot, y_plot = x, y
    fig = plt.figure(figsize=(13, 8.5), constrained_layout=True)
    gs = fig.add_gridspec(2, 3)
    plot_ellipses(model, x, y, axes=[fig.add_subplot(gs[0, i]) for i in range(3)],
                  true_log_prob=true_log_prob)
    ax_pi = fig.add_subplot(gs[1, 0])
    plot_correlations(model, x, (ax_pi, fig.add_subplot(gs[1, 1], sharex=ax_pi)))
    ax = fig.add_subplot(gs[1, 2])
    draws = model.sample(x_plot, 1, seed=seed)[:, 0]
    ax.scatter(y_plot[:, 0], y_plot[:, 1], s=4, c="tab:blue", alpha=0.25, lw=0, label="data")
    ax.scatter(draws[:, 0], draws[:, 1], s=4, c="tab:red", alpha=0.25, lw=0,
               label="model samples")
    names = getattr(model, "y_names", None) or ("y0", "y1")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.legend(loc="upper left", markerscale=3, fontsize="small")
    ax.set_title(r"samples from $p(y \mid x)$ over the data, all x")
    return fig


def save_figure(fig, path, dpi=80, *, overwrite: bool = True) -> str:
    """Write ``fig`` to ``path`` (format from the extension, PNG when there is none);
    returns the path written.

    Written as :func:`npmdn._io.atomic_open` writes: through a temporary file
    renamed into place, so a failed write never leaves a broken figure or
    damages an existing file; links followed, a FIFO or device written to and
    never replaced; ``overwrite=False`` raises ``FileExistsError`` when
    ``path`` is taken (atomically).
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower().lstrip(".") or "png"
    writer = atomic_open(path, "wb", suffix=f".{ext}", overwrite=overwrite)
    with writer as f:
        fig.savefig(f, format=ext, dpi=dpi)
    return path
