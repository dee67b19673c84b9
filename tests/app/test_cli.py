"""The ``npmdn`` command, driven as a user drives it: a subprocess per call, outputs
read back and compared with the Python API, bad input refused with one line and
exit status 2 while every file already there stays byte-identical."""

import csv
import hashlib
import json
import os
import pathlib
import struct
import subprocess
import sys

import numpy as np
import pytest

import npmdn

ROOT = pathlib.Path(__file__).resolve().parents[2]
N = 400  # rows of the small data set


def run(*args, cwd, env=None, check=None, timeout=120):
    """``python -m npmdn ARGS`` importing this checkout; returns the CompletedProcess."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else [])
    )
    full_env.setdefault("OPENBLAS_NUM_THREADS", "1")
    full_env["NPMDN_BACKEND"] = "numpy"  # the in-process comparisons below use numpy too
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "npmdn", *map(str, args)], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def read_csv(path_or_text, text=False):
    text = path_or_text if text else pathlib.Path(path_or_text).read_text()
    lines = text.splitlines()
    rows = list(csv.reader(lines))
    return rows[0], np.array(rows[1:], dtype=np.float64)


def snapshot(directory):
    """Every file under ``directory`` with the hash of its bytes."""
    out = {}
    for p in sorted(pathlib.Path(directory).rglob("*")):
        if p.is_file():
            out[str(p.relative_to(directory))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def png_size(path):
    """(width, height) from the PNG signature and IHDR chunk; fails on anything else."""
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A directory with the inverted sinusoid as CSV (plus a text column), .npz and .npy,
    and a model trained on it by ``npmdn fit``."""
    d = tmp_path_factory.mktemp("cli")
    data = npmdn.datasets.inverted_sinusoid(N, seed=3)
    with open(d / "data.csv", "w") as f:
        f.write("id,label,x,y\n")
        rows = zip(data.x[:, 0].tolist(), data.y[:, 0].tolist(), strict=True)
        for i, (xv, yv) in enumerate(rows):
            f.write(f"{i},row {i},{xv!r},{yv!r}\n")  # repr: the CSV holds the exact doubles
    np.savez(d / "data.npz", x=data.x[:, 0], y=data.y)
    np.save(d / "data.npy", np.c_[data.x, data.y])
    with open(d / "xonly.csv", "w") as f:
        f.write("x\n" + "".join(f"{v!r}\n" for v in data.x[:50, 0].tolist()))
    proc = run("fit", "data.csv", "--x", "x", "--y", "y", "-k", 3, "--hidden", "8,8",
               "--epochs", 4, "--seed", 1, "--out", "model.npz", cwd=d, check=0)
    return d, data, proc


# ------------------------------------------------------------------------------------
# fit
# ------------------------------------------------------------------------------------


def test_fit_reports_and_saves_a_loadable_model(work):
    d, data, proc = work
    assert "model saved to model.npz" in proc.stdout
    assert "trained 4 epochs on 360 rows" in proc.stdout  # 10% held out for validation
    assert proc.stderr == ""  # not a terminal: no progress display
    m = npmdn.load(d / "model.npz", backend="numpy")
    assert (m.in_dim, m.out_dim, m.n_components, m.hidden) == (1, 1, 3, (8, 8))
    assert m.fitted


def test_fit_small_data_settings(work, tmp_path):
    """--noise-x/--noise-y (numbers or auto) and --min-sigma reach MDN.fit and MDN."""
    d, data, _ = work
    proc = run("fit", d / "data.csv", "--x", "x", "--y", "y", "-k", 3, "--hidden", "8",
               "--epochs", 3, "--noise-x", "auto", "--noise-y", "0.25", "--min-sigma", "0.05",
               "--validation-split", 0, "--out", tmp_path / "m.npz", cwd=tmp_path, check=0)
    rate = N ** (-1 / 6)
    assert f"noise regularisation: x {0.05 * rate:.4g}, y 0.25 " in proc.stdout
    m = npmdn.load(tmp_path / "m.npz", backend="numpy")
    assert m.min_sigma == 0.05 and m.mixture(data.x)[2].min() >= 0.05 * (1 - 1e-6)
    # the same fit from Python: the same model
    py = npmdn.MDN(1, 1, 3, hidden=(8,), seed=0, backend="numpy", min_sigma=0.05)
    py.fit(data.x, data.y, epochs=3, noise_x="auto", noise_y=0.25, validation_split=0,
           verbose=False)
    np.testing.assert_allclose(m.params, py.params, rtol=1e-6, atol=1e-7)
    proc = run("fit", d / "data.csv", "--x", "x", "--y", "y", "--epochs", 1,
               "--out", tmp_path / "plain.npz", cwd=tmp_path, check=0)
    assert "noise" not in proc.stdout  # off by default


def test_fit_reads_csv_by_index_npz_and_npy_alike(work, tmp_path):
    d, _, _ = work
    common = ["-k", 3, "--hidden", "8,8", "--epochs", 4, "--seed", 1]
    run("fit", d / "data.csv", "--x", "2", "--y", "3", *common, "--out", tmp_path / "a.npz",
        cwd=tmp_path, check=0)
    run("fit", d / "data.npz", "--x", "x", "--y", "y", *common, "--out", tmp_path / "b.npz",
        cwd=tmp_path, check=0)
    run("fit", d / "data.npy", "--x", "0", "--y", "1", *common, "--out", tmp_path / "c.npz",
        cwd=tmp_path, check=0)
    ref = npmdn.load(d / "model.npz").params  # the fixture's fit, columns by name
    for name in "abc":
        assert npmdn.load(tmp_path / f"{name}.npz").params.tobytes() == ref.tobytes(), name


def test_header_names_win_over_indices(work, tmp_path):
    """A header name is matched before a 0-based index: in a file whose header is
    "1,0", --x 1 is the first column, and so is the column named "1" that predict
    finds by the name the model was fitted on."""
    d, data, _ = work
    with open(tmp_path / "digits.csv", "w") as f:
        f.write("1,0\n" + "".join(f"{a!r},{b!r}\n" for a, b in
                                  zip(data.x[:, 0].tolist(), data.y[:, 0].tolist(), strict=True)))
    run("fit", "digits.csv", "--x", "1", "--y", "0", "-k", 3, "--hidden", "8,8", "--epochs", 4,
        "--seed", 1, "--out", "m.npz", cwd=tmp_path, check=0)
    ref = npmdn.load(d / "model.npz").params  # x = column "x", y = column "y"
    assert npmdn.load(tmp_path / "m.npz").params.tobytes() == ref.tobytes()
    assert npmdn.load(tmp_path / "m.npz").x_names == ("1",)
    proc = run("predict", "m.npz", "digits.csv", cwd=tmp_path, check=0)
    names, table = read_csv(proc.stdout, text=True)
    assert names == ["1", "mean", "std"]
    np.testing.assert_array_equal(table[:, 0], data.x[:, 0])


def test_fit_default_output_never_overwrites(work, tmp_path):
    d, _, _ = work
    (tmp_path / "model.npz").write_bytes(b"a model the user made earlier")
    before = (tmp_path / "model.npz").read_bytes()
    proc = run("fit", d / "data.npz", "--x", "x", "--y", "y", "--hidden", "4", "--epochs", 1,
               cwd=tmp_path, check=0)
    assert (tmp_path / "model.npz").read_bytes() == before
    assert "model saved to model-2.npz" in proc.stdout
    npmdn.load(tmp_path / "model-2.npz")


def test_fit_named_output_is_replaced(work, tmp_path):
    d, _, _ = work
    target = tmp_path / "mine.npz"
    target.write_bytes(b"old")
    run("fit", d / "data.npz", "--x", "x", "--y", "y", "--hidden", "4", "--epochs", 1,
        "--out", target, cwd=tmp_path, check=0)
    assert npmdn.load(target).fitted  # named explicitly: replaced, as documented


def _run_on_terminal(args, cwd):
    """Run with stderr on a pseudo-terminal; returns what was written there."""
    import pty

    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT), NPMDN_BACKEND="numpy")
    proc = subprocess.Popen([sys.executable, "-m", "npmdn", *map(str, args)], cwd=cwd,
                            env=env, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    return b"".join(chunks).decode()


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_fit_progress_on_a_terminal_only(work, tmp_path):
    d, _, _ = work
    args = ["fit", d / "data.npz", "--x", "x", "--y", "y", "--hidden", "4", "--epochs", 3]
    shown = _run_on_terminal(args + ["--out", tmp_path / "a.npz"], tmp_path)
    assert "epoch 3/3" in shown and "train NLL" in shown and "val NLL" in shown
    assert "left" in shown  # time left
    quiet = _run_on_terminal(args + ["--out", tmp_path / "b.npz", "--quiet"], tmp_path)
    assert "epoch" not in quiet


# ------------------------------------------------------------------------------------
# predict, sample, score, plot
# ------------------------------------------------------------------------------------


def test_predict_matches_the_python_api(work, tmp_path):
    d, data, _ = work
    run("predict", d / "model.npz", d / "data.csv", "--x", "x", "--mixture",
        "--out", tmp_path / "pred.csv", cwd=tmp_path, check=0)
    names, table = read_csv(tmp_path / "pred.csv")
    m = npmdn.load(d / "model.npz", backend="numpy")
    k = m.n_components
    assert names == (["x", "mean", "std"] + [f"pi_{i}" for i in range(k)]
                     + [f"mu_{i}" for i in range(k)] + [f"sigma_{i}" for i in range(k)])
    assert table.shape == (N, 3 + 3 * k)
    np.testing.assert_array_equal(table[:, 0], data.x[:, 0])
    # float32 values are written in their shortest exact form: equal after the round trip
    f32 = table.astype(np.float32)
    np.testing.assert_array_equal(f32[:, 1], m.predict(data.x)[:, 0])
    np.testing.assert_array_equal(f32[:, 2], m.predict_std(data.x)[:, 0])
    pi, mu, sigma = m.mixture(data.x)
    np.testing.assert_array_equal(f32[:, 3 : 3 + k], pi)
    np.testing.assert_array_equal(f32[:, 3 + k : 3 + 2 * k], mu[..., 0])
    np.testing.assert_array_equal(f32[:, 3 + 2 * k :], sigma[..., 0])


def test_predict_defaults_to_stdout_and_x_only_files(work):
    d, data, _ = work
    proc = run("predict", "model.npz", "xonly.csv", cwd=d, check=0)
    names, table = read_csv(proc.stdout, text=True)
    assert names == ["x", "mean", "std"] and table.shape == (50, 3)
    m = npmdn.load(d / "model.npz", backend="numpy")
    np.testing.assert_array_equal(table[:, 1].astype(np.float32), m.predict(data.x[:50])[:, 0])


def test_two_dimensional_x_and_y(tmp_path):
    """Widths above 1: .npz arrays of two columns each, an isotropic model (one sigma per
    component), and the column names of predict --mixture and sample."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    y = np.c_[x[:, 0] + 0.1 * rng.normal(size=300), 3 * x[:, 1] + rng.normal(size=300)]
    np.savez(tmp_path / "d.npz", x=x, y=y)
    run("fit", "d.npz", "--x", "x", "--y", "y", "-k", 2, "--hidden", "6", "--epochs", 2,
        "--covariance", "isotropic", "--out", "m.npz", cwd=tmp_path, check=0)
    m = npmdn.load(tmp_path / "m.npz", backend="numpy")
    assert (m.in_dim, m.out_dim, m.covariance) == (2, 2, "isotropic")
    names, table = read_csv(run("predict", "m.npz", "d.npz", "--mixture", cwd=tmp_path,
                                check=0).stdout, text=True)
    assert names == ["x0", "x1", "mean_y0", "mean_y1", "std_y0", "std_y1", "pi_0", "pi_1",
                     "mu_0_y0", "mu_0_y1", "mu_1_y0", "mu_1_y1", "sigma_0", "sigma_1"]
    f32 = table.astype(np.float32)
    np.testing.assert_array_equal(f32[:, 2:4], m.predict(x))
    np.testing.assert_array_equal(f32[:, 4:6], m.predict_std(x))
    pi, mu, sigma = m.mixture(x)
    np.testing.assert_array_equal(f32[:, 8:12], mu.reshape(300, 4))
    np.testing.assert_array_equal(f32[:, 12:], sigma[..., 0])
    names, table = read_csv(run("sample", "m.npz", "d.npz", "-n", 2, cwd=tmp_path,
                                check=0).stdout, text=True)
    assert names == ["row", "draw", "x0", "x1", "y0", "y1"] and table.shape == (600, 6)
    np.testing.assert_array_equal(table[:, 4:].astype(np.float32),
                                  m.sample(x, 2, seed=0).reshape(600, 2))


def test_sample_rows_columns_and_seed(work, tmp_path):
    d, data, _ = work
    out = tmp_path / "draws.csv"
    run("sample", d / "model.npz", d / "data.npz", "-n", 5, "--seed", 7, "--out", out,
        cwd=tmp_path, check=0)
    names, table = read_csv(out)
    assert names == ["row", "draw", "x", "y"] and table.shape == (N * 5, 4)
    np.testing.assert_array_equal(table[:, 0], np.repeat(np.arange(N), 5))
    np.testing.assert_array_equal(table[:, 1], np.tile(np.arange(5), N))
    m = npmdn.load(d / "model.npz", backend="numpy")
    want = m.sample(data.x, 5, seed=7).reshape(-1)
    np.testing.assert_array_equal(table[:, 3].astype(np.float32), want)
    again = run("sample", d / "model.npz", d / "data.npz", "-n", 5, "--seed", 7, cwd=tmp_path,
                check=0)
    assert again.stdout == out.read_text()  # same seed, same draws
    other = run("sample", d / "model.npz", d / "data.npz", "-n", 5, "--seed", 8, cwd=tmp_path,
                check=0)
    assert other.stdout != again.stdout


def test_score_prints_every_metric_of_the_api(work):
    d, data, _ = work
    m = npmdn.load(d / "model.npz", backend="numpy")
    want = m.score(data.x, data.y)
    proc = run("score", "model.npz", "data.csv", "--x", "x", "--y", "y", cwd=d, check=0)
    lines = dict(line.split(None, 1) for line in proc.stdout.strip().splitlines())
    assert int(lines.pop("rows")) == N
    assert set(lines) == set(want)  # every key MDN.score returns, nothing else
    for key, value in want.items():
        if isinstance(value, float):
            assert float(lines[key]) == pytest.approx(value, rel=1e-5), key
    as_json = json.loads(run("score", "model.npz", "data.npz", "--json", cwd=d, check=0).stdout)
    assert as_json.pop("rows") == N
    assert as_json.keys() == want.keys()
    assert as_json["nll"] == want["nll"]


def test_plot_writes_a_real_png(work, tmp_path):
    d, _, _ = work
    proc = run("plot", d / "model.npz", d / "data.npy", "--x", 0, "--y", 1,
               "--out", tmp_path / "fig.png", cwd=tmp_path, check=0)
    assert "figure written to" in proc.stdout
    w, h = png_size(tmp_path / "fig.png")
    assert 600 <= w <= 2000 and 400 <= h <= 1500 and w > h
    assert 20_000 < (tmp_path / "fig.png").stat().st_size < 1_000_000
    # the default name comes from the model's and is never reused
    run("plot", d / "model.npz", d / "data.npz", cwd=tmp_path, check=0)
    run("plot", d / "model.npz", d / "data.npz", cwd=tmp_path, check=0)
    assert png_size(tmp_path / "model.png") and png_size(tmp_path / "model-2.png")


def test_plot_refuses_models_that_are_not_1d(tmp_path):
    rng = np.random.default_rng(0)
    m = npmdn.MDN(2, 1, 2, hidden=(4,), seed=0, backend="numpy")
    x = rng.normal(size=(30, 2))
    m.fit(x, x.sum(1), epochs=1, verbose=False)
    m.save(tmp_path / "m2.npz")
    np.savez(tmp_path / "d.npz", x=x, y=x.sum(1))
    before = snapshot(tmp_path)
    proc = run("plot", "m2.npz", "d.npz", cwd=tmp_path, check=2)
    assert "1-D x and 1-D y" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_demo_trains_scores_and_draws(tmp_path):
    (tmp_path / "npmdn-demo-heteroscedastic.png").write_bytes(b"an older figure")
    proc = run("demo", "heteroscedastic", "-n", 500, "--quiet", cwd=tmp_path, check=0)
    assert "held-out NLL" in proc.stdout and "true conditional NLL" in proc.stdout
    assert (tmp_path / "npmdn-demo-heteroscedastic.png").read_bytes() == b"an older figure"
    assert png_size(tmp_path / "npmdn-demo-heteroscedastic-2.png")


def test_version_and_help(tmp_path):
    assert run("--version", cwd=tmp_path, check=0).stdout.strip() == f"npmdn {npmdn.__version__}"
    for sub in ("demo", "fit", "predict", "sample", "score", "plot"):
        assert "usage: npmdn " + sub in run(sub, "-h", cwd=tmp_path, check=0).stdout


def test_closed_stdout_pipe_is_not_an_error(work):
    d, _, _ = work
    env = dict(os.environ, PYTHONPATH=str(ROOT), NPMDN_BACKEND="numpy")
    proc = subprocess.Popen([sys.executable, "-m", "npmdn", "sample", "model.npz", "data.npz",
                             "-n", "200"], cwd=d, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and err == ""


# ------------------------------------------------------------------------------------
# bad input: exit 2, one line on stderr, no traceback, every existing file untouched
# ------------------------------------------------------------------------------------

BAD_FILES = {
    "text.csv": "x,y\n1,2\n3,abc\n",
    "nan.csv": "x,y\n1,2\n3,nan\n",
    "empty_cell.csv": "x,y\n1,2\n3,\n",
    "ragged.csv": "x,y\n1,2\n3\n",
    "header_only.csv": "x,y\n",
    "two.csv": "a,b\n1,2\n3,4\n",
    "garbage.npz": "this is not a zip archive",
    "existing.csv": "results the user keeps\n",
    "existing.png": "a figure the user keeps",
    "underscore.csv": "x,y\n1,2\n1_0,3\n",
    "semicolon.csv": "x;y\n1;2\n3;4\n",
}

BAD = [
    # (arguments, words the message must contain)
    (["fit", "missing.csv", "--x", "x", "--y", "y"], "no data file"),
    (["fit", "data.csv", "--x", "nope", "--y", "y"], "unknown column 'nope'"),
    (["fit", "data.csv", "--x", "9", "--y", "y"], "out of range"),
    (["fit", "data.csv", "--x", "label", "--y", "y"], "'row 0' is not a number"),
    (["fit", "text.csv", "--x", "x", "--y", "y"], "line 3, column 'y': 'abc' is not a number"),
    (["fit", "nan.csv", "--x", "x", "--y", "y"], "not a finite number"),
    (["fit", "empty_cell.csv", "--x", "x", "--y", "y"], "empty cell"),
    (["fit", "ragged.csv", "--x", "x", "--y", "y"], "line 3 has 1 fields"),
    (["fit", "header_only.csv", "--x", "x", "--y", "y"], "no data rows"),
    (["fit", "garbage.npz", "--x", "x", "--y", "y"], "cannot read"),
    (["fit", "data.npz", "--x", "x", "--y", "z"], "no array 'z'"),
    (["fit", "data.csv", "--x", "x"], "needs --x and --y"),
    (["fit", "data.csv", "--x", "x", "--y", "x"], "both x and y"),
    (["fit", "data.csv", "--x", "x", "--y", "y", "--lr", "-1"], "lr must be > 0"),
    (["fit", "data.csv", "--x", "x", "--y", "y", "--epochs", "0"], "--epochs"),
    (["fit", "data.csv", "--x", "x", "--y", "y", "--out", "data.csv"], "also an input"),
    (["fit", "data.csv", "--x", "x", "--y", "y", "--out", "no/such/dir/m.npz"], "does not exist"),
    (["fit", "data.npz", "--x", "x", "--y", "y", "--backend", "cupy"], "backend 'cupy'"),
    (["predict", "model.npz", "data.csv", "--x", "x,y", "--out", "existing.csv"],
     "wrong width for the model"),
    (["predict", "unnamed.npz", "data.csv", "--out", "existing.csv"], "say which with --x"),
    (["predict", "model.npz", "two.csv", "--out", "existing.csv"],
     "fitted on the x column 'x'; two.csv lacks 'x'"),
    (["plot", "model.npz", "data.npy", "--out", "existing.png"], "has no column names"),
    (["predict", "model.npz", "two.csv", "--x", "a,b"], "wrong width for the model"),
    (["predict", "missing.npz", "data.csv", "--x", "x"], "no model file"),
    (["predict", "garbage.npz", "data.csv", "--x", "x", "--out", "existing.csv"],
     "not a valid npmdn model file"),
    (["predict", "data.npz", "data.csv", "--x", "x"], "not a valid npmdn model file"),
    (["sample", "model.npz", "nan.csv", "--x", "y", "--out", "existing.csv"], "not a finite"),
    (["score", "model.npz", "data.npz", "--y", "nope"], "no array 'nope'"),
    (["score", "model.npz", "data.csv", "--x", "x", "--y", "label"], "is not a number"),
    (["plot", "model.npz", "data.csv", "--x", "x", "--y", "y", "--out", "fig.txt"],
     "must end in one of"),
    (["plot", "model.npz", "text.csv", "--out", "existing.png"], "'abc' is not a number"),
    (["plot", "garbage.npz", "data.npz", "--out", "existing.png"], "not a valid npmdn model file"),
    # damaged and crafted model files: one line, not a traceback
    (["predict", "method.npz", "data.csv"], "compression method 1"),
    (["predict", "huge.npz", "data.csv"], "architecture"),
    (["score", "nosums.npz", "data.csv"], "'sha256' must map"),
    # absurd sizes: refused before the work, not a MemoryError
    # (rows are drawn a few at a time, but one row's draws and their text are held: 670 GB)
    (["sample", "model.npz", "data.csv", "-n", "4000000000"], "memory"),
    (["fit", "data.csv", "--x", "x", "--y", "y", "--hidden", "100000,100000"], "memory"),
    (["fit", "data.csv", "--x", "x", "--y", "y", "-k", "1000000000"], "memory"),
    (["predict", "model.npz", "data.csv", "--out", "sub/"], "ends in a path separator"),
    # CSV that only looks numeric, or is not comma-separated
    (["fit", "underscore.csv", "--x", "x", "--y", "y"], "'1_0' is not a number"),
    (["fit", "semicolon.csv", "--x", "x", "--y", "y"], "semicolon-separated"),
    # the library's checks in the command's words
    (["fit", "data.csv", "--x", "x", "--y", "y", "--clip-norm", "-1"], "--clip-norm must be >"),
    (["fit", "data.csv", "--x", "x", "--y", "y", "--validation-split", "1.5"],
     "--validation-split must be in [0, 1)"),
    (["fit", "data.csv", "--x", "x", "--y", "y", "--noise-y", "lots"],
     "--noise-y: expected a number >= 0 or 'auto'"),
    (["fit", "data.csv", "--x", "x", "--y", "y", "--noise-x", "-0.1"],
     "--noise-x: must be a finite number >= 0 or 'auto'"),
    (["fit", "data.csv", "--x", "x", "--y", "y", "--min-sigma", "0"],
     "--min-sigma: must be a finite number > 0"),
]


@pytest.fixture(scope="module")
def bad_dir(work):
    d, _, _ = work
    for name, text in BAD_FILES.items():
        (d / name).write_text(text)
    # a model that does not know its columns (fitted from Python on plain arrays)
    unnamed = npmdn.MDN(1, 1, 2, hidden=(4,), seed=0, backend="numpy")
    unnamed.fit(np.arange(20.0), np.arange(20.0) ** 2, epochs=1, verbose=False)
    unnamed.save(d / "unnamed.npz")
    # the fixture's model with one bit flipped in a member's compression method, with a
    # header describing a network of 10^12 parameters, and with its checksums a list
    raw = bytearray((d / "model.npz").read_bytes())
    raw[raw.find(b"PK\x01\x02") + 10] ^= 1
    (d / "method.npz").write_bytes(bytes(raw))
    with np.load(d / "model.npz") as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(arrays["header"].tobytes())
    for name, change in (("huge", {"config": {**header["config"], "hidden": [10**6, 10**6]}}),
                         ("nosums", {"sha256": []})):
        blob = json.dumps({**header, **change}).encode()
        np.savez(d / f"{name}.npz", **{**arrays, "header": np.frombuffer(blob, np.uint8)})
    # CuPy that cannot import: the same path as a machine without a working CUDA
    fake = d / "_no_cupy"
    fake.mkdir(exist_ok=True)
    (fake / "cupy.py").write_text("raise ImportError('CuPy blocked for this test')\n")
    return d


@pytest.mark.parametrize("args,words", BAD, ids=[" ".join(a[:2]) + f" {i}"
                                                for i, (a, _) in enumerate(BAD)])
def test_bad_input_exit_2_one_line_nothing_touched(bad_dir, args, words):
    before = snapshot(bad_dir)
    extra = os.pathsep.join([str(bad_dir / "_no_cupy"), str(ROOT)])
    env = {"PYTHONPATH": extra, "PYTHONDONTWRITEBYTECODE": "1"}  # no new .pyc files either
    proc = run(*args, cwd=bad_dir, env=env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"npmdn {args[0]}: error: "), lines[0]
    assert words in lines[0], lines[0]
    assert proc.stdout == ""
    assert snapshot(bad_dir) == before  # nothing written, nothing replaced


def test_score_json_is_strict_json_when_a_score_is_infinite(work, tmp_path):
    """A row of zero density makes the NLL inf: Python's json would print the
    non-JSON token ``Infinity``; the command prints the string "inf" instead."""
    d, data, _ = work
    y = data.y.copy()
    y[0] = 1e30  # far beyond any component in float32: log p = -inf for that row
    np.savez(tmp_path / "far.npz", x=data.x, y=y)
    m = npmdn.load(d / "model.npz", backend="numpy")
    assert m.score(data.x, y)["nll"] == np.inf  # the case this test is about
    out = run("score", d / "model.npz", tmp_path / "far.npz", "--json", cwd=tmp_path,
              check=0).stdout
    as_json = json.loads(out, parse_constant=lambda name: pytest.fail(f"non-JSON {name}"))
    assert as_json["nll"] == "inf"
