"""The command's outputs and inputs at their edges: special files and links as --out,
two runs racing for one default name, the columns a model was fitted on, the
environment, absurd sizes, odd CSV, the defaults it shows and says, and what the
first run on a machine prints while Numba compiles."""

import argparse
import inspect
import io
import json
import os
import socket
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest
from test_cli import ROOT, read_csv, run

import npmdn
from npmdn.cli import build_parser
from npmdn.cli.main import _Help

posix_only = pytest.mark.skipif(os.name != "posix", reason="FIFOs, links and /proc are POSIX")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """temp, pressure and y as CSV; y depends on pressure only. A model fitted on
    --x pressure --y y."""
    d = tmp_path_factory.mktemp("cols")
    rng = np.random.default_rng(0)
    temp, pressure = rng.normal(size=200), rng.normal(size=200)
    y = np.sin(2 * pressure) + 0.1 * rng.normal(size=200)
    with open(d / "train.csv", "w") as f:
        f.write("temp,pressure,y\n")
        f.writelines(f"{a!r},{b!r},{c!r}\n" for a, b, c in
                     zip(temp.tolist(), pressure.tolist(), y.tolist(), strict=True))
    run("fit", "train.csv", "--x", "pressure", "--y", "y", "-k", 2, "--hidden", "8",
        "--epochs", 3, "--out", "m.npz", cwd=d, check=0)
    return d, temp, pressure, y


# ------------------------------------------------------------------------------------
# item 1: special files as --out are written through, never replaced
# ------------------------------------------------------------------------------------


@posix_only
def test_out_through_links_fifos_and_descriptors(small, tmp_path):
    d, _, pressure, _ = small
    args = (d / "m.npz", d / "train.csv", "--x", "pressure")
    ref = run("predict", *args, cwd=tmp_path, check=0).stdout
    # a FIFO: a reader gets the CSV, the FIFO stays a FIFO
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    t = threading.Thread(target=lambda: got.append(open(fifo).read()), daemon=True)
    t.start()
    run("predict", *args, "--out", fifo, cwd=tmp_path, check=0)
    t.join(20)
    assert got == [ref] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    # /dev/null through a link: still a character device, the link still a link
    null = tmp_path / "null.csv"
    null.symlink_to(os.devnull)
    run("predict", *args, "--out", null, cwd=tmp_path, check=0)
    assert null.is_symlink() and stat.S_ISCHR(os.stat(os.devnull).st_mode)
    # a dangling link: its target is made, the link kept
    dangling = tmp_path / "pred.csv"
    dangling.symlink_to("made.csv")
    run("predict", *args, "--out", dangling, cwd=tmp_path, check=0)
    assert dangling.is_symlink() and (tmp_path / "made.csv").read_text() == ref
    # standard output by its descriptor path
    if os.path.isdir("/proc/self/fd"):
        proc = run("predict", *args, "--out", "/proc/self/fd/1", cwd=tmp_path, check=0)
        assert proc.stdout == ref
    # a model through a link keeps the target's permission bits
    target = tmp_path / "keep.npz"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    (tmp_path / "via.npz").symlink_to("keep.npz")
    run("fit", d / "train.csv", "--x", "pressure", "--y", "y", "--hidden", "4", "--epochs", 1,
        "--out", tmp_path / "via.npz", cwd=tmp_path, check=0)
    assert (tmp_path / "via.npz").is_symlink() and npmdn.load(target).fitted
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@posix_only
def test_out_that_cannot_be_written_is_refused_before_the_work(small, tmp_path):
    d, *_ = small
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "sock"))
    try:
        for out, words in ((tmp_path / "sock", "it is a socket"),
                           ("sub/", "ends in a path separator"),
                           ("nowhere/x.npz", "does not exist")):
            proc = run("fit", d / "train.csv", "--x", "pressure", "--y", "y", "--out", out,
                       "--epochs", 1000, cwd=tmp_path)
            assert proc.returncode == 2 and words in proc.stderr, proc.stderr
            assert len(proc.stderr.splitlines()) == 1 and ".npmdn-" not in proc.stderr
            assert "trained" not in proc.stdout  # refused before training
        assert stat.S_ISSOCK(os.stat(tmp_path / "sock").st_mode)
    finally:
        s.close()


# ------------------------------------------------------------------------------------
# item 2: runs racing for the default name each keep their model
# ------------------------------------------------------------------------------------

# Every run waits inside its fsync until all have written their model: the moment
# where the name is decided. Check-then-rename lets each of them take model.npz.
_RACE = r"""
import os, sys, time
gate, n = sys.argv[1], int(sys.argv[2])
real_fsync = os.fsync
def fsync(fd):
    real_fsync(fd)
    open(os.path.join(gate, str(os.getpid())), "w").close()
    t0 = time.monotonic()
    while len(os.listdir(gate)) < n and time.monotonic() - t0 < 60:
        time.sleep(0.01)
os.fsync = fsync
from npmdn.cli import main
sys.exit(main(sys.argv[3:]))
"""


def test_runs_racing_for_the_default_name_never_lose_a_model(small, tmp_path):
    d, *_ = small
    n = 3
    gate = tmp_path / "gate"
    gate.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), NPMDN_BACKEND="numpy")
    procs = [subprocess.Popen(
        [sys.executable, "-c", _RACE, str(gate), str(n), "fit", str(d / "train.csv"),
         "--x", "pressure", "--y", "y", "--hidden", "4", "--epochs", "1", "--seed", str(i)],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(n)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    said = sorted(line.split()[-1] for out, _ in outs for line in out.splitlines()
                  if line.startswith("model saved to"))
    assert said == ["model-2.npz", "model-3.npz", "model.npz"], said
    seeds = sorted(npmdn.load(work / name).params[0] for name in said)
    assert len(set(seeds)) == n  # three different models, none lost
    assert sorted(os.listdir(work)) == said  # and no temporary files


# ------------------------------------------------------------------------------------
# item 10: the columns a model was fitted on
# ------------------------------------------------------------------------------------


def test_the_columns_fitted_on_are_used_by_name(small, tmp_path):
    d, temp, pressure, y = small
    m = npmdn.load(d / "m.npz", backend="numpy")
    assert (m.x_names, m.y_names) == (("pressure",), ("y",))
    # another file with temp first: predict reads pressure, not the first column
    with open(tmp_path / "new.csv", "w") as f:
        f.write("temp,pressure\n")
        f.writelines(f"{a!r},{b!r}\n" for a, b in
                     zip(temp.tolist(), pressure.tolist(), strict=True))
    names, table = read_csv(run("predict", d / "m.npz", "new.csv", cwd=tmp_path,
                                check=0).stdout, text=True)
    assert names == ["pressure", "mean", "std"]
    np.testing.assert_array_equal(table[:, 0], pressure)
    np.testing.assert_array_equal(table[:, 1].astype(np.float32), m.predict(pressure)[:, 0])
    names, _ = read_csv(run("sample", d / "m.npz", "new.csv", cwd=tmp_path, check=0).stdout,
                        text=True)
    assert names == ["row", "draw", "pressure", "y"]
    scored = run("score", d / "m.npz", d / "train.csv", "--json", cwd=tmp_path, check=0)
    assert json.loads(scored.stdout)["nll"] == pytest.approx(m.nll(pressure, y), rel=1e-5)
    # a file without them is refused, naming them
    with open(tmp_path / "other.csv", "w") as f:
        f.write("temp\n1.0\n")
    proc = run("predict", d / "m.npz", "other.csv", cwd=tmp_path, check=2)
    assert "'pressure'" in proc.stderr and "--x" in proc.stderr
    proc = run("score", d / "m.npz", "new.csv", cwd=tmp_path, check=2)
    assert "fitted on the y column 'y'" in proc.stderr


def test_outputs_are_labelled_with_the_names(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 2))
    np.savez(tmp_path / "d.npz", a=x[:, 0], b=x[:, 1], up=x.sum(1), down=-x[:, 0])
    run("fit", "d.npz", "--x", "a,b", "--y", "up,down", "--hidden", "4", "--epochs", 1, "-k", 2,
        "--out", "m.npz", cwd=tmp_path, check=0)
    names, _ = read_csv(run("predict", "m.npz", "d.npz", "--mixture", cwd=tmp_path,
                            check=0).stdout, text=True)
    assert names == ["a", "b", "mean_up", "mean_down", "std_up", "std_down", "pi_0", "pi_1",
                     "mu_0_up", "mu_0_down", "mu_1_up", "mu_1_down", "sigma_0_up",
                     "sigma_0_down", "sigma_1_up", "sigma_1_down"]
    names, _ = read_csv(run("sample", "m.npz", "d.npz", cwd=tmp_path, check=0).stdout,
                        text=True)
    assert names == ["row", "draw", "a", "b", "up", "down"]


def test_float32_inputs_are_echoed_as_read(tmp_path):
    x = np.array([0.04729, 1.1, -3.3], dtype=np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=x * 2)
    run("fit", "d.npz", "--x", "x", "--y", "y", "--hidden", "3", "--epochs", 1,
        "--validation-split", 0, "--out", "m.npz", cwd=tmp_path, check=0)
    out = run("predict", "m.npz", "d.npz", cwd=tmp_path, check=0).stdout
    assert [line.split(",")[0] for line in out.splitlines()[1:]] == ["0.04729", "1.1", "-3.3"]


# ------------------------------------------------------------------------------------
# item 11: the environment, named when it is wrong
# ------------------------------------------------------------------------------------


def test_a_bad_npmdn_backend_is_named(small, tmp_path):
    d, *_ = small
    proc = run("predict", d / "m.npz", d / "train.csv", cwd=tmp_path,
               env={"NPMDN_BACKEND": "bogus"}, check=2)
    assert "environment variable NPMDN_BACKEND" in proc.stderr and "'bogus'" in proc.stderr
    assert "not a valid npmdn model file" not in proc.stderr
    with pytest.raises(ValueError, match="NPMDN_BACKEND"):
        os.environ["NPMDN_BACKEND"] = "bogus"
        try:
            npmdn.get_backend()
        finally:
            del os.environ["NPMDN_BACKEND"]


# ------------------------------------------------------------------------------------
# item 13: one set of defaults, shown and said
# ------------------------------------------------------------------------------------


def test_python_and_command_defaults_are_one_set():
    fit = build_parser()._subparsers._group_actions[0].choices["fit"]
    opt = {a.dest: a.default for a in fit._actions}
    sig = inspect.signature(npmdn.MDN.fit).parameters
    assert sig["lr"].default == opt["lr"] == 3e-3
    assert sig["lr_schedule"].default == opt["lr_schedule"] == "cosine"
    assert sig["epochs"].default == opt["epochs"] and sig["batch_size"].default == \
        opt["batch_size"]
    assert opt["validation_split"] == 0.1
    d = npmdn.datasets.heteroscedastic(200, seed=0)
    m = npmdn.MDN(1, 1, 2, hidden=(4,), seed=0, backend="numpy")
    h = m.fit(d.x, d.y, epochs=3, verbose=False)
    assert (h.n_train, h.n_val, len(h.val_nll)) == (180, 20, 3)  # 10% held out by default
    assert h.lr[0] == pytest.approx(3e-3) and h.lr[-1] == pytest.approx(3e-5)
    h = m.fit(d.x, d.y, epochs=1, validation_data=(d.x[:5], d.y[:5]), verbose=False)
    assert (h.n_train, h.n_val) == (200, 5)  # given validation data: no split


def test_every_default_is_in_the_help(tmp_path):
    parser = build_parser()
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        fmt = _Help(name)
        for action in sub._actions:
            if action.default is None or action.default is False or \
                    isinstance(action, argparse._HelpAction):
                continue
            assert "default" in fmt._get_help_string(action), (name, action.dest)
    text = run("fit", "-h", cwd=tmp_path, check=0).stdout
    for shown in ("(default: 0.003)", "(default: cosine)", "(default: 0.1)", "(default: 256)",
                  "(default: 100)", "(default: 64,64)", "(default: 5)", "(default: float32)",
                  "(default: 0.0)", "(default: 0)"):
        assert shown in text, shown


def test_an_early_stop_is_said(small, tmp_path):
    d, *_ = small
    proc = run("fit", d / "train.csv", "--x", "pressure", "--y", "y", "--hidden", "4",
               "--epochs", 200, "--lr", 0.05, "--patience", 2, "--out", "m.npz", cwd=tmp_path,
               check=0)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("stopped early"))
    assert "--patience 2" in line and "validation NLL did not improve" in line
    h = npmdn.MDN(1, 1, 1, hidden=(4,), seed=0, backend="numpy").fit(
        np.arange(50.0), np.arange(50.0), epochs=10, verbose=False,
        callback=lambda epoch, history: epoch == 3)
    assert h.stopped_early and h.stop_reason == "callback" and h.epochs == 3


# ------------------------------------------------------------------------------------
# item 14: the first run says what it is doing
# ------------------------------------------------------------------------------------


def test_demo_says_what_it_trains_before_training(monkeypatch):
    from npmdn import demo

    out = io.StringIO()
    seen = []
    real_fit = npmdn.MDN.fit

    def fit(self, *args, **kwargs):
        seen.append(out.getvalue())
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(npmdn.MDN, "fit", fit)
    demo.run_demo("heteroscedastic", n_train=200, n_test=100, backend="numpy", verbose=False,
                  out=out)
    assert seen and seen[0].startswith("npmdn demo: heteroscedastic problem")


@pytest.mark.slow
def test_first_run_says_numba_is_compiling(small, tmp_path):
    """In a fresh Numba cache the first command that needs a kernel says so on stderr,
    once per kernel; the next run loads them from the cache and says nothing."""
    pytest.importorskip("numba")
    d, *_ = small
    env = {"NPMDN_BACKEND": "numba", "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first = run("score", d / "m.npz", d / "train.csv", cwd=tmp_path, env=env, check=0,
                timeout=600)
    assert first.stderr.count("npmdn: compiling the numba") == 1, first.stderr
    assert "log-likelihood kernel" in first.stderr and "first run only" in first.stderr
    again = run("score", d / "m.npz", d / "train.csv", cwd=tmp_path, env=env, check=0,
                timeout=600)
    assert again.stderr == "" and again.stdout == first.stdout
