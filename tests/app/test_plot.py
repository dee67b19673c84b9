"""npmdn.plot: each panel draws what the model says, the whole figure writes a real PNG,
and without matplotlib the library still imports and the call says how to install it."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import npmdn

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from npmdn import plot  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def trapezoid(y, x):
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


@pytest.fixture(scope="module")
def fitted():
    data = npmdn.datasets.inverted_sinusoid(600, seed=0)
    m = npmdn.MDN(1, 1, 3, hidden=(8, 8), seed=0, backend="numpy")
    m.fit(data.x, data.y, epochs=3, verbose=False)
    return m, data


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_components_draw_the_model_means_and_bands(fitted):
    m, data = fitted
    grid = np.linspace(-10, 10, 50)
    ax = plot.plot_components(m, data.x, data.y, ax=plt.figure().gca(), grid=grid, min_weight=0)
    pi, mu, sigma = m.mixture(grid)
    # per component: a faint full line, then the solid line where it carries weight
    lines = ax.get_lines()
    assert len(lines) == 2 * m.n_components
    for k in range(m.n_components):
        np.testing.assert_allclose(lines[2 * k + 1].get_ydata(), mu[:, k, 0])
    bands = [c for c in ax.collections if c.__class__.__name__ in ("PolyCollection",
                                                                   "FillBetweenPolyCollection")]
    assert len(bands) == m.n_components
    # each band spans mu - sigma .. mu + sigma
    for k, band in enumerate(bands):
        ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
        lo, hi = (mu[:, k, 0] - sigma[:, k, 0]).min(), (mu[:, k, 0] + sigma[:, k, 0]).max()
        assert ys.min() == pytest.approx(lo, rel=1e-5) and ys.max() == pytest.approx(hi, rel=1e-5)
    assert ax.get_ylim()[0] < data.y.min() and ax.get_ylim()[1] > data.y.max()


def test_unused_components_lose_their_solid_line(fitted):
    m, data = fitted
    grid = np.linspace(-10, 10, 50)
    pi, _, _ = m.mixture(grid)
    ax = plot.plot_components(m, data.x, data.y, ax=plt.figure().gca(), grid=grid,
                              min_weight=0.5)
    for k in range(m.n_components):
        solid = np.asarray(ax.get_lines()[2 * k + 1].get_ydata(), dtype=float)
        np.testing.assert_array_equal(np.isnan(solid), pi[:, k] < 0.5)


def test_parameter_panels_show_pi_mu_sigma(fitted):
    m, data = fitted
    grid = np.linspace(-8, 8, 40)
    _, axes = plt.subplots(3, 1)
    plot.plot_parameters(m, data.x, axes, grid=grid)
    pi, mu, sigma = m.mixture(grid)
    for k in range(m.n_components):
        np.testing.assert_allclose(axes[0].get_lines()[k].get_ydata(), pi[:, k])
        np.testing.assert_allclose(axes[1].get_lines()[2 * k].get_ydata(), mu[:, k, 0])
        np.testing.assert_allclose(axes[2].get_lines()[2 * k].get_ydata(), sigma[:, k, 0])
    assert [a.get_title() for a in axes] == [r"$\pi_k(x) = p(c = k \mid x)$", r"$\mu_k(x)$",
                                             r"$\sigma_k(x)$"]


def test_samples_are_the_models_draws(fitted):
    m, data = fitted
    ax = plot.plot_samples(m, data.x[:100], data.y[:100], ax=plt.figure().gca(), n_samples=2,
                           seed=5)
    data_pts, draws = ax.collections
    assert data_pts.get_offsets().shape == (100, 2)
    want = m.sample(data.x[:100], 2, seed=5).reshape(-1)
    np.testing.assert_allclose(draws.get_offsets()[:, 1], want)
    np.testing.assert_allclose(draws.get_offsets()[:, 0], np.repeat(data.x[:100, 0], 2))


def test_density_slices_integrate_to_one_and_show_the_truth(fitted):
    m, data = fitted
    ax = plot.plot_densities(m, data.x, data.y, ax=plt.figure().gca(), at=[-3.0, 4.0],
                             true_log_prob=data.log_prob_fn, n=2000)
    lines = ax.get_lines()
    assert len(lines) == 4
    model_lines = [ln for ln in lines if ln.get_linestyle() == "-"]
    true_lines = [ln for ln in lines if ln.get_linestyle() == "--"]
    assert len(model_lines) == 2 and len(true_lines) == 2
    for ln in true_lines:  # the true conditional density lives inside the y range drawn
        assert trapezoid(ln.get_ydata(), ln.get_xdata()) == pytest.approx(1, abs=0.01)
    for ln, x0 in zip(model_lines, [-3.0, 4.0], strict=True):  # exactly the model's density
        ys = ln.get_xdata()
        want = np.exp(m.log_prob(np.full_like(ys, x0), ys))
        np.testing.assert_allclose(ln.get_ydata(), want, rtol=1e-6)
        assert trapezoid(ln.get_ydata(), ys) <= 1.001


def test_plot_fit_writes_a_png(fitted, tmp_path):
    m, data = fitted
    fig = plot.plot_fit(m, data.x, data.y, title="t", true_log_prob=data.log_prob_fn)
    assert len(fig.axes) == 6
    path = tmp_path / "fit.png"
    plot.save_figure(fig, path)
    head = path.read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not private
    plot.plot_fit(m, data.x, data.y, path=tmp_path / "direct.png")
    assert (tmp_path / "direct.png").read_bytes()[:8] == head
    assert list(tmp_path.glob(".npmdn-*")) == []  # no temporary files left behind


def test_save_figure_failure_keeps_the_old_file(fitted, tmp_path, monkeypatch):
    m, data = fitted
    path = tmp_path / "keep.png"
    path.write_bytes(b"the user's figure")
    fig = plot.plot_fit(m, data.x[:50], data.y[:50])

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plot.save_figure(fig, path)
    assert path.read_bytes() == b"the user's figure"
    assert list(tmp_path.glob(".npmdn-*")) == []


def test_bad_arguments(fitted):
    m, data = fitted
    m2 = npmdn.MDN(2, 1, 2, hidden=(4,), seed=0, backend="numpy")
    with pytest.raises(ValueError, match="1-D x and 1-D or 2-D y"):
        plot.plot_fit(m2, data.x, data.y)
    with pytest.raises(ValueError, match="1-D x and 2-D y"):
        plot.plot_ellipses(m, data.x, data.y)
    with pytest.raises(ValueError, match="same length"):
        plot.plot_components(m, data.x, data.y[:-1])
    with pytest.raises(ValueError, match="finite"):
        plot.plot_samples(m, np.full(3, np.nan), np.zeros(3))


def _run_without_matplotlib(code):
    """Run ``code`` in a fresh interpreter where ``import matplotlib`` fails."""
    blocker = (
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'matplotlib' or name.startswith('matplotlib.'):\n"
        "            raise ImportError(f'No module named {name!r} (blocked)')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), NPMDN_BACKEND="numpy")
    return subprocess.run([sys.executable, "-c", blocker + code], env=env,
                          capture_output=True, text=True, timeout=60)


def test_missing_matplotlib_is_a_clear_error():
    code = (
        "import numpy as np, npmdn\n"
        "from npmdn import plot\n"  # importing the module needs no matplotlib
        "assert 'matplotlib' not in sys.modules\n"
        "m = npmdn.MDN(1, 1, 2, hidden=(4,), seed=0)\n"
        "try:\n"
        "    plot.plot_fit(m, np.zeros(5), np.zeros(5))\n"
        "except ImportError as e:\n"
        "    print('ERR', e)\n"
    )
    proc = _run_without_matplotlib(code)
    assert proc.returncode == 0, proc.stderr
    assert "ERR npmdn.plot needs matplotlib" in proc.stdout
    assert "pip install 'npmdn[plot]'" in proc.stdout


def test_cli_without_matplotlib(tmp_path):
    """`npmdn plot` says so in one line (exit 2); `npmdn demo` still trains and scores."""
    m = npmdn.MDN(1, 1, 2, hidden=(4,), seed=0, backend="numpy")
    m.fit(np.linspace(0, 1, 20), np.linspace(0, 1, 20) ** 2, epochs=1, verbose=False)
    m.save(tmp_path / "m.npz")
    np.savez(tmp_path / "d.npz", x=np.linspace(0, 1, 20), y=np.linspace(0, 1, 20) ** 2)
    run_cli = (
        "import runpy, os\n"
        f"os.chdir({str(tmp_path)!r})\n"
        "sys.argv = ['npmdn'] + {args!r}\n"
        "runpy.run_module('npmdn', run_name='__main__')\n"
    )
    proc = _run_without_matplotlib(run_cli.format(args=["plot", "m.npz", "d.npz"]))
    assert proc.returncode == 2
    assert proc.stderr.startswith("npmdn plot: error: npmdn.plot needs matplotlib")
    assert len(proc.stderr.splitlines()) == 1
    assert not list(tmp_path.glob("*.png"))
    proc = _run_without_matplotlib(run_cli.format(args=["demo", "heteroscedastic", "-n", "300"]))
    assert proc.returncode == 0, proc.stderr
    assert "no figure: npmdn.plot needs matplotlib" in proc.stdout
    assert "held-out NLL" in proc.stdout
    assert not list(tmp_path.glob("*.png"))


def test_axes_are_labelled_with_the_models_column_names():
    data = npmdn.datasets.heteroscedastic(100, seed=0)
    m = npmdn.MDN(1, 1, 2, hidden=(4,), seed=0, backend="numpy")
    m.fit(data.x, data.y, epochs=1, verbose=False, x_names=["dose"], y_names=["response"])
    fig = plot.plot_fit(m, data.x, data.y)
    labels = {(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes}
    assert ("dose", "response") in labels and ("response", "density") in labels
    assert not any("x" == a or "y" == b for a, b in labels)


# --------------------------------------------------------------------------
# 2-D outputs: component ellipses
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted_2d():
    data = npmdn.datasets.correlated(3000, seed=0)
    m = npmdn.MDN(1, 2, 2, hidden=(16,), covariance="full", seed=0, backend="numpy")
    m.fit(data.x, data.y, epochs=20, verbose=False)
    return m, data


def test_ellipses_are_the_components_covariances(fitted_2d):
    """Each drawn ellipse is centred on a component mean, with half-axes n sqrt(eigenvalue)
    of its covariance along the eigenvectors: the points on its edge are n Mahalanobis
    units from the mean."""
    m, data = fitted_2d
    at = [-0.6, 0.4]
    axes = plot.plot_ellipses(m, data.x, data.y, at=at, true_log_prob=data.log_prob_fn)
    dist = m.distribution(np.array(at))
    for i, ax in enumerate(axes):
        patches = ax.patches
        assert len(patches) == 2 * m.n_components  # 1 and 2 sigma per component
        for j, e in enumerate(patches):
            k, n_sigma = divmod(j, 2)
            n_sigma += 1
            np.testing.assert_allclose(e.center, dist.means[i, k])
            unit = e.get_path().vertices  # a unit circle of Bezier curves: keep the points
            unit = unit[np.isclose(np.hypot(*unit.T), 1.0)]  # on it, not the control points
            edge = e.get_patch_transform().transform(unit)  # in data coordinates
            assert len(edge) >= 8
            diff = edge - dist.means[i, k]
            maha = np.einsum("pi,ij,pj->p", diff, np.linalg.inv(dist.covariances[i, k]), diff)
            np.testing.assert_allclose(np.sqrt(maha), n_sigma, rtol=1e-6)
        assert ax.collections  # the data (and the true contours)
    plt.close("all")


def test_correlation_panel_and_whole_figure(fitted_2d, tmp_path):
    m, data = fitted_2d
    ax_pi, ax_rho = plot.plot_correlations(m, data.x)
    xs = ax_rho.lines[1].get_xdata()
    c = m.distribution(xs).covariances
    np.testing.assert_allclose(ax_rho.lines[1].get_ydata(),
                               c[:, 0, 0, 1] / np.sqrt(c[:, 0, 0, 0] * c[:, 0, 1, 1]))
    np.testing.assert_allclose(ax_pi.lines[0].get_ydata(), m.distribution(xs).weights[:, 0])
    plt.close("all")
    path = tmp_path / "fit2d.png"
    plot.plot_fit(m, data.x, data.y, path=path, true_log_prob=data.log_prob_fn)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 50_000
