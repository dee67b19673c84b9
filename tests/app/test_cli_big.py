"""The command on files larger than a chunk: read, computed and written chunk by chunk,
with the same bytes out as in one piece; a bad value late in a file; memory bounded by a
chunk, not by the file; Parquet through Dask; ``--scheduler`` on a real two-process
``distributed.LocalCluster``.

Files stay small: the command runs with ``NPMDN_NETWORK_PASS=32`` and
``NPMDN_INFERENCE_CHUNK=100`` (chunks of 96 rows: three network passes), so N = 961
rows are ten whole chunks and a chunk of one row. The reference is the same command
with the whole file in one chunk, which is the in-memory computation (checked against
the Python API below). The model is float32, whose rows change in the last bit when a
chunk does not start on a network pass of the whole file.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from test_cli import ROOT, read_csv, run, snapshot

import npmdn
from npmdn import config, metrics
from npmdn.cli.data import DataFile

N = 96 * 10 + 1
PASS = {"NPMDN_NETWORK_PASS": "32"}
ONE_CHUNK = {**PASS, "NPMDN_INFERENCE_CHUNK": str(1 << 20)}
CHUNKED = {**PASS, "NPMDN_INFERENCE_CHUNK": "100"}
PARTS = (0, 300, 301, N)  # Parquet partitions: uneven, one of a single row

# (file, extra arguments): every way the command reads rows; x = a, b and y = u, v
FORMATS = {
    "csv": ("data.csv", []),  # with a text column, a quoted comma and blank lines
    "npy": ("data.npy", ["--x", "0,1"]),
    "npy-fortran": ("fortran.npy", ["--x", "0,1"]),
    "npz-stored": ("stored.npz", []),  # np.savez: read at byte offsets
    "npz-compressed": ("packed.npz", []),  # np.savez_compressed: decompressed in order
    "npz-compressed-fortran": ("wide.npz", ["--x", "x"]),  # read whole (the stated limit)
    "parquet": ("data.parquet", []),  # a folder of three files, through Dask
}


def _body(text):
    """The lines after the header (.npy and 2-D .npz columns have other names)."""
    return text.split("\n", 1)[1]


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """The data in every format, a float32 model fitted on it by name, and the
    reference outputs of the command with the whole file in one chunk."""
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(7)
    x = rng.uniform(-2, 2, (N, 2))
    y = np.c_[np.sin(2 * x[:, 0]), x[:, 1] ** 2] + 0.2 * rng.standard_normal((N, 2))
    with open(d / "data.csv", "w") as f:
        f.write("id,a,b,label,u,v\n")
        for i, (a, b, u, v) in enumerate(np.c_[x, y].tolist()):
            f.write(f'{i},{a!r},{b!r},"row {i}, of {N}",{u!r},{v!r}\n')
            if i % 250 == 3:
                f.write("\n , , , , ,\n")  # blank lines: not rows, but lines
    np.save(d / "data.npy", np.c_[x, y])
    np.save(d / "fortran.npy", np.asfortranarray(np.c_[x, y]))
    cols = {"a": x[:, 0], "b": x[:, 1], "u": y[:, 0], "v": y[:, 1]}
    np.savez(d / "stored.npz", **cols)
    np.savez_compressed(d / "packed.npz", **cols)
    np.savez_compressed(d / "wide.npz", x=np.asfortranarray(x), y=np.asfortranarray(y))
    model = npmdn.MDN(2, 2, 3, hidden=(16,), dtype="float32", seed=0, backend="numpy")
    model.fit(x, y, epochs=3, verbose=False, x_names=["a", "b"], y_names=["u", "v"])
    model.save(d / "model.npz")
    refs = {
        "predict": run("predict", "model.npz", "data.csv", "--mixture", cwd=d, env=ONE_CHUNK,
                       check=0).stdout,
        "plain": run("predict", "model.npz", "data.csv", cwd=d, env=ONE_CHUNK, check=0).stdout,
        "sample": run("sample", "model.npz", "data.csv", "-n", 3, "--seed", 5, cwd=d,
                      env=ONE_CHUNK, check=0).stdout,
        "score": json.loads(run("score", "model.npz", "data.csv", "--json", cwd=d,
                                env=ONE_CHUNK, check=0).stdout),
    }
    return d, x, y, refs


def _parquet(d, x, y):
    """data.parquet: a folder of Parquet files (Dask reads one partition from each)."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("dask.dataframe")
    pytest.importorskip("pyarrow")
    folder = d / "data.parquet"
    if not folder.exists():
        folder.mkdir()
        frame = pd.DataFrame(np.c_[x, y], columns=["a", "b", "u", "v"])
        for i, (a, b) in enumerate(zip(PARTS[:-1], PARTS[1:])):
            frame.iloc[a:b].to_parquet(folder / f"part.{i}.parquet")
    return folder


def _file(big, fmt):
    d, x, y, _ = big
    name, extra = FORMATS[fmt]
    if fmt == "parquet":
        _parquet(d, x, y)
    return name, extra


def test_the_reference_is_the_in_memory_computation(big, monkeypatch):
    """One chunk: the outputs of MDN.predict, mixture, sample and score, bit for bit."""
    d, x, y, refs = big
    monkeypatch.setattr(config, "NETWORK_PASS", 32)
    m = npmdn.load(d / "model.npz", backend="numpy")
    _, table = read_csv(refs["predict"], text=True)
    f32 = table.astype(np.float32)
    np.testing.assert_array_equal(table[:, :2], x)
    np.testing.assert_array_equal(f32[:, 2:4], m.predict(x))
    np.testing.assert_array_equal(f32[:, 4:6], m.predict_std(x))
    pi, mu, sigma = m.mixture(x)
    np.testing.assert_array_equal(f32[:, 6:], np.c_[pi, mu.reshape(N, -1), sigma.reshape(N, -1)])
    _, table = read_csv(refs["sample"], text=True)
    np.testing.assert_array_equal(table[:, 4:].astype(np.float32),
                                  m.sample(x, 3, seed=5).reshape(3 * N, 2))
    assert refs["score"] == {"rows": N, **m.score(x, y)}


def test_readers_give_whole_chunks_from_row_0(big):
    """Chunks of 96 rows in order (Parquet: Dask's blocks), the last one short,
    holding the file's rows; x as stored (one float32 array chosen stays float32, so it
    is written back as read; float32 with float64 is float64)."""
    d, x, _, _ = big
    np.savez_compressed(d / "f32.npz", a=x[:, 0].astype(np.float32), b=x[:, 1])
    for fmt in FORMATS:
        name, extra = _file(big, fmt)
        data = DataFile(str(d / name))
        chunks = list(data.chunks([data.columns(extra[1].split(",") if extra else ["a", "b"])],
                                  96))
        starts = [s for s, _ in chunks]
        assert starts == list(np.cumsum([0] + [len(c[0][0]) for _, c in chunks[:-1]])), fmt
        if fmt == "parquet":  # Dask's blocks: three files, which it may fuse
            assert len(starts) > 1 and starts[1] % 32, starts
        else:
            assert starts == list(range(0, N, 96)), fmt
        for i in (0, 1):  # values, source
            got = np.concatenate([c[0][i] for _, c in chunks])
            assert got.dtype == np.float64, fmt
            np.testing.assert_array_equal(got, x, err_msg=fmt)
    # Parquet columns in another order, one twice: whole rows in each block
    data = DataFile(str(d / "data.parquet"))
    [(values, _)] = data.read([data.columns(["b", "a", "b"])])
    np.testing.assert_array_equal(values, x[:, [1, 0, 1]])
    data = DataFile(str(d / "f32.npz"))
    for tokens, dtype in ((["a"], np.float32), (["a", "b"], np.float64)):
        [(_, [(values, source)])] = list(data.chunks([data.columns(tokens)], N))
        assert source.dtype == dtype and values.dtype == np.float64
        np.testing.assert_array_equal(source[:, 0], x[:, 0].astype(np.float32))


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_predict_in_chunks_writes_the_same_bytes(big, fmt):
    d, _, _, refs = big
    name, extra = _file(big, fmt)
    got = run("predict", "model.npz", name, "--mixture", *extra, cwd=d, env=CHUNKED,
              check=0).stdout
    assert _body(got) == _body(refs["predict"])
    if not extra:
        assert got == refs["predict"]


@pytest.mark.parametrize("fmt", ["csv", "npz-compressed", "parquet"])
def test_sample_in_chunks_draws_the_same(big, fmt, tmp_path):
    """Chunks of 96 rows, drawn 33 rows at a time (-n 3): the draws of the whole file,
    written through the atomic --out file."""
    d, _, _, refs = big
    name, extra = _file(big, fmt)
    out = tmp_path / "draws.csv"
    proc = run("sample", d / "model.npz", d / name, "-n", 3, "--seed", 5, *extra,
               "--out", out, cwd=tmp_path, env=CHUNKED, check=0)
    assert out.read_text() == refs["sample"]
    assert proc.stderr == f"{3 * N} draws written to {out}\n"


def _close_scores(got, want):
    """ScoreSums against MDN.score: sums in another order, pit_ks from a histogram."""
    assert got.keys() == want.keys() and got["rows"] == want["rows"]
    for key in want:
        if key == "pit_ks":
            assert abs(got[key] - want[key]) <= 0.5 / metrics.PIT_BINS
        elif key.startswith("coverage") or key == "rows":
            assert got[key] == want[key], key  # counted
        else:
            assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-15), key


@pytest.mark.parametrize("fmt", ["csv", "npz-stored", "parquet"])
def test_score_in_chunks(big, fmt):
    d, _, _, refs = big
    name, extra = _file(big, fmt)
    extra = extra + (["--y", "2,3"] if fmt.startswith("npy") else [])
    got = json.loads(run("score", "model.npz", name, "--json", *extra, cwd=d, env=CHUNKED,
                         check=0).stdout)
    _close_scores(got, refs["score"])


# ------------------------------------------------------------------------------------
# a bad value far into the file
# ------------------------------------------------------------------------------------


def _spoil(d, x, y):
    """Each format with one bad value at row 900 (the tenth chunk)."""
    lines = (d / "data.csv").read_text().split("\n")
    line = next(i for i, t in enumerate(lines) if t.startswith("900,"))
    lines[line] = lines[line].replace(repr(float(x[900, 1])), "1_000", 1)
    (d / "bad.csv").write_text("\n".join(lines))
    bad = x.copy()
    bad[900, 1] = np.nan
    np.save(d / "bad.npy", np.c_[bad, y])
    np.savez_compressed(d / "bad.npz", a=bad[:, 0], b=bad[:, 1])
    return line + 1  # 1-based line number


def test_a_bad_value_in_a_late_chunk(big, tmp_path):
    """Exit 2 and one line naming the row; a named output file as it was, no temporary
    file left; on standard output, the rows of the chunks before it (written as they
    came), never a part of a line."""
    d, x, y, refs = big
    line = _spoil(d, x, y)
    (tmp_path / "keep.csv").write_text("the user's results\n")
    finite = ": values must be finite (missing values are not supported)"
    cases = [("bad.csv", [], f" line {line}, column 'b': '1_000' is not a number"),
             ("bad.npy", ["--x", "0,1"], ": row 900, column 1 is nan" + finite),
             ("bad.npz", [], ": array 'b' holds nan at row 900" + finite)]
    for name, extra, words in cases:
        before = snapshot(tmp_path)
        proc = run("predict", d / "model.npz", d / name, *extra, "--out",
                   tmp_path / "keep.csv", cwd=tmp_path, env=CHUNKED, check=2)
        assert proc.stderr.splitlines() == [f"npmdn predict: error: {d / name}{words}"]
        assert snapshot(tmp_path) == before
        proc = run("predict", d / "model.npz", d / name, *extra, cwd=tmp_path, env=CHUNKED,
                   check=2)
        assert len(proc.stderr.splitlines()) == 1 and words in proc.stderr
        # nine chunks of 96 rows written before the tenth was read, whole lines
        assert _body(proc.stdout) == "".join(_body(refs["plain"]).splitlines(True)[:864])


# ------------------------------------------------------------------------------------
# memory bounded by a chunk
# ------------------------------------------------------------------------------------


def _peak_rss_mib(args, cwd, env):
    """The command's peak resident memory: run from a small parent whose only child
    it is (getrusage of the children of this test process would count every one)."""
    code = ("import resource, subprocess, sys; "
            "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
            "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    full = dict(os.environ, PYTHONPATH=str(ROOT), NPMDN_BACKEND="numpy",
                OPENBLAS_NUM_THREADS="1", **env)
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "npmdn", *args],
                         cwd=cwd, env=full, capture_output=True, text=True, timeout=300)
    rc, kib = out.stdout.split()
    assert rc == "0", out.stderr
    return int(kib) / 1024


def test_predict_memory_is_bounded_by_a_chunk_not_the_file(big, tmp_path):
    """predict with chunks of 8192 rows on an .npy and a CSV of about 6 and 18 MB: the
    peak RSS grows by less than the file over the same command on 961 rows (about 10
    MB: a chunk's arrays and text), and not at all with the file. (Before chunking the
    command held every row: measured, 1.5 GB for a 78 MB CSV, 1.1 GB for a 32 MB .npy.)"""
    d, _, _, _ = big
    rng = np.random.default_rng(1)
    rows = np.c_[rng.uniform(-2, 2, (600_000, 2)), rng.standard_normal((600_000, 2))]
    files = []
    for n in (200_000, 600_000):
        np.save(tmp_path / f"{n}.npy", rows[:n])
        files.append((f"{n}.npy", ["--x", "0,1"]))
    for n in (80_000, 240_000):
        with open(tmp_path / f"{n}.csv", "w") as f:
            f.write("a,b,u,v\n")
            f.writelines(f"{a!r},{b!r},{u!r},{v!r}\n" for a, b, u, v in rows[:n].tolist())
        files.append((f"{n}.csv", []))
    env = {"NPMDN_INFERENCE_CHUNK": "8192"}
    model = d / "model.npz"
    base = _peak_rss_mib(["predict", model, d / "data.npy", "--x", "0,1"], tmp_path, env)
    peak, size = {}, {}
    for name, extra in files:
        size[name] = (tmp_path / name).stat().st_size / 2**20
        peak[name] = _peak_rss_mib(["predict", model, tmp_path / name, *extra], tmp_path, env)
    said = (base, peak, size)
    for small, large in (("200000.npy", "600000.npy"), ("80000.csv", "240000.csv")):
        assert size[large] > 17 and size[large] > 2.9 * size[small]
        assert peak[large] - base < size[large], said  # less than the file itself
        assert peak[large] - peak[small] < (size[large] - size[small]) / 10, said


# ------------------------------------------------------------------------------------
# without Dask; on a Dask cluster
# ------------------------------------------------------------------------------------


def test_without_dask_parquet_and_scheduler_are_one_line(big, tmp_path):
    """CSV, .npy and .npz never need Dask; Parquet and --scheduler say what they need."""
    d, x, y, refs = big
    _parquet(d, x, y)
    fake = tmp_path / "no_dask"
    fake.mkdir()
    for mod in ("dask", "distributed"):
        (fake / f"{mod}.py").write_text(f"raise ImportError('{mod} blocked for this test')\n")
    env = {**CHUNKED, "PYTHONPATH": os.pathsep.join([str(fake), str(ROOT)])}
    assert run("predict", "model.npz", "data.csv", "--mixture", cwd=d, env=env,
               check=0).stdout == refs["predict"]
    for args, words in ((["data.parquet"], 'reading Parquet needs npmdn[dask] (pip install '
                         '"npmdn[dask]")'),
                        (["data.csv", "--scheduler", "tcp://127.0.0.1:8786"],
                         '--scheduler needs npmdn[dask]')):
        proc = run("predict", "model.npz", *args, cwd=d, env=env, check=2)
        assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1
        assert proc.stderr.startswith(f"npmdn predict: error: {words}"), proc.stderr


def test_a_scheduler_that_does_not_answer(big):
    pytest.importorskip("distributed")
    d, _, _, _ = big
    env = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}
    proc = run("score", "model.npz", "data.csv", "--scheduler", "tcp://127.0.0.1:9",
               cwd=d, env=env, check=2)
    assert proc.stderr.startswith("npmdn score: error: cannot connect to the Dask scheduler "
                                  "at tcp://127.0.0.1:9: ")
    assert len(proc.stderr.splitlines()) == 1 and proc.stdout == ""


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of two worker processes, which take NPMDN_NETWORK_PASS from this
    process's environment when they start."""
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    before = os.environ.get("NPMDN_NETWORK_PASS")
    os.environ["NPMDN_NETWORK_PASS"] = PASS["NPMDN_NETWORK_PASS"]
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_":
                              None}), \
                distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                         dashboard_address=None) as c:
            yield c.scheduler_address
    finally:
        if before is None:
            del os.environ["NPMDN_NETWORK_PASS"]
        else:
            os.environ["NPMDN_NETWORK_PASS"] = before


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_on_a_cluster_the_same_bytes(big, cluster, fmt):
    """CSV read here and computed on the workers; Parquet read by the workers."""
    d, _, _, refs = big
    name, extra = _file(big, fmt)
    at = ["--scheduler", cluster]
    got = run("predict", "model.npz", name, "--mixture", *extra, *at, cwd=d, env=CHUNKED,
              check=0)
    assert got.stdout == refs["predict"] and got.stderr == ""
    got = run("sample", "model.npz", name, "-n", 3, "--seed", 5, *extra, *at, cwd=d,
              env=CHUNKED, check=0)
    assert got.stdout == refs["sample"]
    scores = json.loads(run("score", "model.npz", name, "--json", *at, cwd=d, env=CHUNKED,
                            check=0).stdout)
    _close_scores(scores, refs["score"])


def test_on_a_cluster_a_late_bad_value_is_one_line(big, cluster, tmp_path):
    d, x, y, _ = big
    _spoil(d, x, y)
    (tmp_path / "keep.csv").write_text("kept\n")
    proc = run("predict", d / "model.npz", d / "bad.npz", "--scheduler", cluster, "--out",
               tmp_path / "keep.csv", cwd=tmp_path, env=CHUNKED, check=2)
    assert proc.stderr.splitlines() == [f"npmdn predict: error: {d / 'bad.npz'}: array 'b' "
                                        "holds nan at row 900: values must be finite (missing "
                                        "values are not supported)"]
    assert [p.name for p in pathlib.Path(tmp_path).iterdir()] == ["keep.csv"]
    assert (tmp_path / "keep.csv").read_text() == "kept\n"
