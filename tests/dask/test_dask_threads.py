"""npmdn on Dask without a cluster: Dask's default threaded scheduler, in this process.

Also the checks on inputs (before any work), laziness, the streaming fit's loop against
the in-memory one, and every row method with small network passes (config.NETWORK_PASS
is read at call time in this process, so small passes put many pass boundaries inside
few rows).
"""

import dask
import dask.array as da
import numpy as np
import pytest
from dask_cases import CHUNKINGS, data, trained

import npmdn
import npmdn.dask
from npmdn import _blocks, config, regularization

ROW_METHODS = [  # (method, arguments, takes y)
    ("log_prob", {}, True), ("sample", {"n_samples": 2, "seed": 3}, False),
    ("predict", {}, False), ("predict", {"kind": "mode"}, False),
    ("predict", {"kind": "component"}, False), ("predict_variance", {}, False),
    ("predict_std", {}, False), ("predict_covariance", {}, False), ("mixture", {}, False),
    ("mixture_raw", {}, False), ("cdf", {}, True), ("quantile", {"q": [0.2, 0.7]}, False),
    ("interval", {"coverage": 0.8}, False), ("crps", {}, True), ("modes", {}, False),
]


@pytest.fixture(autouse=True)
def threads_only():
    assert _blocks._client() is None, "a distributed client is still the default"


def _lazy(a, rows):
    return da.from_array(a, chunks=(rows,) + a.shape[1:])


def _equal(got, want, what):
    if isinstance(want, tuple):
        assert type(got) is type(want), what
        for g, w in zip(got, want):
            _equal(g, w, what)
        return
    assert isinstance(got, np.ndarray) and got.dtype == want.dtype, what
    assert np.array_equal(got, want, equal_nan=True), what


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("covariance", ["diagonal", "isotropic", "full"])
def test_every_row_method_equals_in_memory(monkeypatch, dtype, covariance):
    monkeypatch.setattr(config, "NETWORK_PASS", 64)
    monkeypatch.setattr(config, "INFERENCE_CHUNK", 192)
    model = trained(dtype, covariance=covariance)
    x, y = data(700, seed=2)
    for rows in [(100,) * 7, (1, 63, 1, 635), (250, 450), (700,)]:
        dx, dy = _lazy(x, rows), _lazy(y, rows)
        for method, kwargs, takes_y in ROW_METHODS:
            want = getattr(model, method)(*((x, y) if takes_y else (x,)), **kwargs)
            lazy = getattr(model, method)(*((dx, dy) if takes_y else (dx,)), **kwargs)
            (got,) = dask.compute(lazy)
            _equal(got, want, f"{method}{kwargs} with row blocks {rows}")


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_marginal_and_condition_on_lazy_rows(covariance):
    """A Mixture over Dask rows: its marginals and conditionals are lazy Mixtures whose
    answers are the in-memory ones."""
    model = trained("float64", covariance=covariance)
    x, y = data(500, seed=4)
    dx, dy = _lazy(x, (100,) * 5), _lazy(y, (100,) * 5)
    dist, lazy = model.distribution(x), model.distribution(dx)
    part = lazy.condition([0], dy[:, 0])
    assert isinstance(part.params[0], da.Array)
    (got,) = dask.compute(part.log_prob(dy[:, 1]))
    _equal(got, dist.condition([0], y[:, 0]).log_prob(y[:, 1]), "condition")
    (got,) = dask.compute(lazy.marginal([1]).cdf(dy[:, 1]))
    _equal(got, dist.marginal([1]).cdf(y[:, 1]), "marginal")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_default_passes_any_chunking(dtype):
    model = trained(dtype)
    x, y = data()
    want = model.log_prob(x, y), model.sample(x, 3, seed=6)
    for rows in CHUNKINGS:
        got = dask.compute(model.log_prob(_lazy(x, rows), _lazy(y, rows)),
                           model.sample(_lazy(x, rows), 3, seed=6))
        _equal(got, want, f"row blocks {rows[:4]}...")


def test_score_without_a_cluster():
    model = trained()
    x, y = data(3000, seed=3)
    want, got = model.score(x, y), model.score(_lazy(x, 700), _lazy(y, 700))
    assert got["nll"] == pytest.approx(want["nll"], rel=1e-12)
    assert got["coverage_90"] == want["coverage_90"]
    assert abs(got["pit_ks"] - want["pit_ks"]) <= 0.5 / npmdn.metrics.PIT_BINS + 1e-12
    assert model.nll(_lazy(x, 700), _lazy(y, 700)) == pytest.approx(model.nll(x, y), rel=1e-12)


def test_results_are_lazy():
    calls = []

    def rows(n):
        calls.append(n)
        return np.zeros((n, 3))

    x = da.concatenate([da.from_delayed(dask.delayed(rows)(n), (n, 3), float) for n in (5, 7)])
    model = trained()
    lazy = [model.log_prob(x, np.zeros(12 * 2).reshape(12, 2)), model.sample(x, 2),
            model.predict(x), model.distribution(x).mean()]
    assert calls == [] and all(isinstance(a, da.Array) for a in lazy)
    assert lazy[1].shape == (12, 2, 2) and lazy[1].chunks[0] == (5, 7)
    dask.compute(*lazy)
    assert sorted(set(calls)) == [5, 7]


def test_bad_inputs_are_refused_before_any_work():
    model = trained()
    x = da.zeros((100, 3), chunks=(50, 3))
    y = da.zeros((100, 2), chunks=(50, 2))
    with pytest.raises(ValueError, match=r"chunked along axis 1.*rechunk\(\{1: -1\}\)"):
        model.log_prob(da.zeros((100, 3), chunks=(50, 2)), y)
    with pytest.raises(ValueError, match="different row blocks"):
        model.log_prob(x, da.zeros((100, 2), chunks=(40, 2)))
    with pytest.raises(ValueError, match="same number of rows"):
        model.log_prob(x, da.zeros((90, 2), chunks=(50, 2)))
    with pytest.raises(ValueError, match="rows of x"):
        model.log_prob(x, np.zeros((90, 2)))
    with pytest.raises(ValueError, match="unknown size"):
        model.predict(x[x[:, 0] > 0])
    with pytest.raises(ValueError, match=r"shape \[N, 3\]"):
        model.predict(da.zeros((100, 4), chunks=(50, 4)))
    with pytest.raises(TypeError, match="real numbers"):
        model.predict(da.zeros((100, 3), dtype=bool, chunks=(50, 3)))
    with pytest.raises(TypeError, match="Dask Array, DataFrame or Series"):
        model.predict(dask.delayed(np.zeros)((100, 3)))
    with pytest.raises(ValueError, match="n_samples"):
        model.sample(x, 0)
    with pytest.raises(ValueError, match="empty"):
        model.predict(da.zeros((0, 3), chunks=(5, 3)))
    with pytest.raises(ValueError, match="batch_size=None"):
        model.fit(x, y, batch_size=None)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, validation_split=0.2)
    with pytest.raises(ValueError, match="levels"):
        model.score(x, y, levels=[1.5])


def test_dataframe_without_columns_chunking():
    dd = pytest.importorskip("dask.dataframe")
    import pandas as pd

    model = trained()
    x, y = data(500, seed=4)
    ddf = dd.from_pandas(pd.DataFrame(np.hstack([x, y]), columns=list("abcde")), npartitions=3)
    np.testing.assert_array_equal(model.predict(ddf[["a", "b", "c"]]).compute(), model.predict(x))
    with pytest.raises(TypeError, match="real numbers"):
        model.predict(ddf.assign(a=ddf["a"].astype(str))[["a", "b", "c"]])


def test_columns_of_a_parquet_read(tmp_path):
    """A column selection of a Parquet read, whose partitions Dask fuses (here three
    files become two blocks): the rows are counted on the array's own blocks."""
    dd = pytest.importorskip("dask.dataframe")
    pytest.importorskip("pyarrow")
    import pandas as pd

    model = trained()
    x, y = data(500, seed=4)
    frame = pd.DataFrame(np.hstack([x, y]), columns=list("abcde"))
    for i, (a, b) in enumerate([(0, 200), (200, 201), (201, 500)]):
        frame.iloc[a:b].to_parquet(tmp_path / f"part.{i}.parquet")
    cols = dd.read_parquet(tmp_path)[["a", "b", "c"]]
    np.testing.assert_array_equal(model.predict(cols).compute(), model.predict(x))


def test_single_block_fit_is_the_in_memory_fit():
    """One block: the streamed loop draws the same order and runs the same steps (the
    epoch's short last batch goes to its own engine), so the fits agree bit for bit."""
    x, y = data(3000, seed=5)
    xv, yv = data(500, seed=6)
    args = dict(epochs=3, batch_size=128, lr=3e-3, verbose=False, validation_data=(xv, yv))
    memory = npmdn.MDN(3, 2, 4, hidden=(16, 16), seed=1)
    h_mem = memory.fit(x, y, **args)
    streamed = npmdn.MDN(3, 2, 4, hidden=(16, 16), seed=1)
    h_str = streamed.fit(_lazy(x, 3000), _lazy(y, 3000), **args)
    assert h_str.train_nll == h_mem.train_nll and h_str.val_nll == h_mem.val_nll
    np.testing.assert_array_equal(streamed.params, memory.params)
    np.testing.assert_array_equal(streamed.x_scale, memory.x_scale)


def test_single_block_fit_with_noise_and_floor_is_the_in_memory_fit(monkeypatch):
    """A streamed row draws its noise at its global row, as in memory (no split):
    one block, the same fit bit for bit; several blocks, the same noise per row."""
    x, y = data(3000, seed=5)
    xv, yv = data(500, seed=6)
    args = dict(epochs=3, batch_size=128, lr=3e-3, verbose=False, validation_data=(xv, yv),
                noise_x="auto", noise_y=0.2)
    memory = npmdn.MDN(3, 2, 4, hidden=(16, 16), seed=1, min_sigma=0.05)
    h_mem = memory.fit(x, y, **args)
    streamed = npmdn.MDN(3, 2, 4, hidden=(16, 16), seed=1, min_sigma=0.05)
    h_str = streamed.fit(_lazy(x, 3000), _lazy(y, 3000), **args)
    assert h_str.train_nll == h_mem.train_nll and h_str.val_nll == h_mem.val_nll
    assert (h_str.noise_x, h_str.noise_y) == (h_mem.noise_x, h_mem.noise_y) != (0, 0.2)
    assert len(h_str.narrowest_sigma) == 3 and min(h_str.narrowest_sigma) > 0
    np.testing.assert_array_equal(streamed.params, memory.params)
    # several blocks: every row once per epoch, at its global row of the noise stream
    seen = []
    real = regularization.Noise.add

    def spy(self, xb, yb, rows, epoch, xp=np):
        seen.append((epoch, np.array(rows)))
        return real(self, xb, yb, rows, epoch, xp)

    monkeypatch.setattr(regularization.Noise, "add", spy)
    blocks = npmdn.MDN(3, 2, 4, hidden=(16, 16), seed=1, min_sigma=0.05, backend="numpy")
    blocks.fit(_lazy(x, 700), _lazy(y, 700), **args)
    for epoch in (1, 2, 3):
        rows = np.concatenate([r for e, r in seen if e == epoch])
        assert np.array_equal(np.sort(rows), np.arange(3000))
        assert not np.array_equal(rows, np.arange(3000))  # in the shuffled order


def test_streaming_fit_with_lazy_validation_and_early_stop():
    x, y = data(4000, seed=7)
    xv, yv = data(800, seed=8)
    model = npmdn.MDN(3, 2, 3, hidden=(16,), seed=2)
    seen = []
    h = model.fit(_lazy(x, 900), _lazy(y, 900), epochs=4, batch_size=100, lr=1e-2,
                  validation_data=(_lazy(xv, 300), _lazy(yv, 300)), verbose=False,
                  callback=lambda epoch, hist: seen.append(epoch))
    assert seen == [1, 2, 3, 4] and len(h.val_nll) == 4 and h.best_epoch is not None
    # the weights of the best validation epoch, scored by the same blockwise NLL
    assert model.nll(xv, yv) == pytest.approx(h.val_nll[h.best_epoch - 1], rel=1e-9)
    bad = x.copy()
    bad[1234, 0] = np.inf
    with pytest.raises(ValueError, match=r"finite.*rows 900:1800"):
        npmdn.MDN(3, 2, 3, seed=2).fit(_lazy(bad, 900), _lazy(y, 900), epochs=1)


def test_partial_fit_single_block_equals_numpy():
    pytest.importorskip("sklearn")
    from npmdn.sklearn import MDNRegressor

    x, y = data(2000, seed=9, out_dim=1)
    a = MDNRegressor(n_components=2, hidden=(8,), random_state=3).partial_fit(x, y[:, 0])
    b = MDNRegressor(n_components=2, hidden=(8,), random_state=3)
    b.partial_fit(_lazy(x, 2000), _lazy(y[:, 0], 2000))
    np.testing.assert_array_equal(a.model_.params, b.model_.params)
    assert a.history_.train_nll == b.history_.train_nll


def test_iter_blocks_in_order_with_results():
    model = trained()
    x, y = data(2000, seed=10)
    dx, dy = _lazy(x, 300), _lazy(y, 300)
    seen, parts = [], []
    for start, (xb, lp) in npmdn.dask.iter_blocks(dx, model.log_prob(dx, dy), ahead=2):
        seen.append(start)
        np.testing.assert_array_equal(xb, x[start : start + 300])
        parts.append(lp)
    assert seen == list(range(0, 2000, 300))
    np.testing.assert_array_equal(np.concatenate(parts), model.log_prob(x, y))


def test_column_moments_match_numpy():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5000, 3)) * [1, 1e-3, 1e4] + [1e6, 0, -5]
    ((mean, std),) = _blocks.column_moments([_lazy(a, 333)], ["a"])
    np.testing.assert_allclose(mean, a.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(std, a.std(axis=0), rtol=1e-11)
