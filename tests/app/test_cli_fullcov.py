"""The command with covariance="full": fit, the mixture's columns, draws, the figure of a
2-D y (component ellipses) and the correlated demo."""

import numpy as np
from test_cli import png_size, read_csv, run

import npmdn


def test_full_covariance_fit_predict_sample_plot(tmp_path):
    data = npmdn.datasets.correlated(400, seed=0)
    np.savez(tmp_path / "d.npz", x=data.x, y=data.y)
    run("fit", "d.npz", "--x", "x", "--y", "y", "-k", 2, "--hidden", "6", "--epochs", 2,
        "--covariance", "full", "--out", "m.npz", cwd=tmp_path, check=0)
    m = npmdn.load(tmp_path / "m.npz", backend="numpy")
    assert (m.out_dim, m.covariance, m.scale_dim) == (2, "full", 3)
    names, table = read_csv(run("predict", "m.npz", "d.npz", "--mixture", cwd=tmp_path,
                                check=0).stdout, text=True)
    covs = [f"cov_{k}_y{i}_y{j}" for k in range(2) for i, j in ((0, 0), (0, 1), (1, 1))]
    assert names == ["x0", "mean_y0", "mean_y1", "std_y0", "std_y1", "pi_0", "pi_1", "mu_0_y0",
                     "mu_0_y1", "mu_1_y0", "mu_1_y1", *covs]
    c = m.distribution(data.x).covariances
    want = np.stack([c[:, k, i, j] for k in range(2) for i, j in ((0, 0), (0, 1), (1, 1))], 1)
    np.testing.assert_allclose(table[:, 11:], want, rtol=1e-6)
    names, table = read_csv(run("sample", "m.npz", "d.npz", "-n", 3, "--seed", 4, cwd=tmp_path,
                                check=0).stdout, text=True)
    np.testing.assert_array_equal(table[:, 3:].astype(np.float32),
                                  m.sample(data.x, 3, seed=4).reshape(-1, 2))
    run("plot", "m.npz", "d.npz", "--out", "fig.png", cwd=tmp_path, check=0)
    w, h = png_size(tmp_path / "fig.png")
    assert 600 <= w <= 2000 and 400 <= h <= 1500


def test_correlated_demo(tmp_path):
    proc = run("demo", "correlated", "-n", 2000, "--quiet", cwd=tmp_path, check=0)
    assert "covariance=full" in proc.stdout and "true conditional NLL" in proc.stdout
    assert png_size(tmp_path / "npmdn-demo-correlated.png")
