"""The ``npmdn`` command on data whose spread is extreme (issue 11, item 5): a huge
x cell is standardized without a raw NumPy warning and the model it saves loads;
a y the model cannot represent is refused with one line and exit status 2,
before any file is written."""

import os
import pathlib
import subprocess
import sys

import numpy as np

import npmdn

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run(*args, cwd):
    env = dict(os.environ, NPMDN_BACKEND="numpy", OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]]
                                                       if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, "-m", "npmdn", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _write(path, x, y):
    lines = ["x,y"] + [f"{float(a)!r},{float(b)!r}" for a, b in zip(x, y, strict=True)]
    path.write_text("\n".join(lines) + "\n")


def test_a_huge_x_cell_trains_quietly_and_the_model_loads(tmp_path):
    d = npmdn.datasets.inverted_sinusoid(200, seed=0)
    x = d.x[:, 0].copy()
    x[3] = 1e300
    _write(tmp_path / "data.csv", x, d.y[:, 0])
    fit = run("fit", "data.csv", "--x", "x", "--y", "y", "--epochs", 2, "--hidden", 8,
              "--out", "m.npz", "--quiet", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    assert "Warning" not in fit.stderr and "overflow" not in fit.stderr, fit.stderr
    pred = run("predict", "m.npz", "data.csv", "--x", "x", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    m = npmdn.load(tmp_path / "m.npz")
    assert np.isfinite(m.x_scale).all() and m.x_scale[0] > 1e297


def test_a_y_the_model_cannot_represent_is_refused_with_one_line(tmp_path):
    d = npmdn.datasets.inverted_sinusoid(200, seed=0)
    y = d.y[:, 0].copy()
    y[3] = 1e300
    _write(tmp_path / "data.csv", d.x[:, 0], y)
    fit = run("fit", "data.csv", "--x", "x", "--y", "y", "--epochs", 2, "--out", "m.npz",
              "--quiet", cwd=tmp_path)
    assert fit.returncode == 2, (fit.stdout, fit.stderr)
    assert len(fit.stderr.strip().splitlines()) == 1, fit.stderr
    assert "float32" in fit.stderr and "Warning" not in fit.stderr, fit.stderr
    assert not (tmp_path / "m.npz").exists()
