"""npmdn on a real Dask cluster: a LocalCluster of two worker processes, one thread each.

Results are compared with the in-memory computation bit for bit (float32 with BLAS on
one thread, as the workers run it: see dask_cases.on_one_blas_thread).
"""

import copy

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask_cases import CHUNKINGS, CountingMDN, built_here, data, on_one_blas_thread, trained
from distributed import Client, LocalCluster

import npmdn
import npmdn.dask


@pytest.fixture(scope="module")
def client():
    # without distributed's MALLOC_TRIM_THRESHOLD_=65536 (see bench/dask_scaling.py), which
    # makes every NumPy temporary a fresh mmap and these tests several times slower
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
            LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                         dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def xy():
    return data()


def _lazy(x, y, rows):
    return (da.from_array(x, chunks=(rows, x.shape[1])),
            da.from_array(y, chunks=(rows, y.shape[1])))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inference_equals_in_memory_bit_for_bit(client, xy, dtype):
    x, y = xy
    model = trained(dtype)

    def everything(m, xa, ya):
        return (m.log_prob(xa, ya), m.sample(xa, 3, seed=11), m.predict(xa), m.predict_std(xa),
                *m.mixture_raw(xa), m.cdf(xa, ya), m.predict(xa, kind="component"))

    want = on_one_blas_thread(everything, model, x, y)
    for rows in CHUNKINGS[:2]:
        got = dask.compute(*everything(model, *_lazy(x, y, rows)))
        for name, g, w in zip(["log_prob", "sample", "predict", "predict_std", "logits", "mu",
                               "log_sigma", "cdf", "component"], got, want):
            assert g.dtype == w.dtype and g.shape == w.shape, name
            assert np.array_equal(g, w), f"{name} differs with row blocks {rows[:4]}..."


def test_samples_same_for_any_chunking(client, xy, monkeypatch):
    x, _ = xy
    model = trained("float32")
    want = on_one_blas_thread(model.sample, x, 4, seed=2**40 + 3, method="cumulative",
                              temperature=0.7)
    lazy = [model.sample(_lazy(x, x, rows)[0], 4, seed=2**40 + 3, method="cumulative",
                         temperature=0.7) for rows in CHUNKINGS]
    for rows, got in zip(CHUNKINGS, dask.compute(*lazy)):
        assert np.array_equal(got, want), f"row blocks {rows[:4]}..."
    # seed=None takes fresh entropy once, in this process; every block then draws from it
    monkeypatch.setattr(npmdn._checks, "seed_arg", lambda s: 987654321 if s is None else s)
    got = model.sample(da.from_array(x, chunks=(1000, 3)), 2).compute()
    assert np.array_equal(got, on_one_blas_thread(model.sample, x, 2, seed=987654321))


def test_model_travels_once_per_worker(client, xy):
    x, y = xy
    model = trained(cls=CountingMDN)
    dx, dy = _lazy(x, y, 400)  # 25 blocks over two workers
    lazy = model.log_prob(dx, dy)
    keys = [k for k in dict(lazy.__dask_graph__()) if str(k).startswith("npmdn-model-")]
    assert len(keys) == 1
    before = client.run(built_here)
    lazy.compute()
    model.predict(dx).compute()  # the same model again: already built there
    built = {w: n - before[w] for w, n in client.run(built_here).items()}
    assert all(n <= 1 for n in built.values()), built
    assert sum(built.values()) >= 1


def test_score_equals_in_memory(client, xy):
    x, y = xy
    model = trained("float64")
    want = model.score(x, y, levels=(0.5, 0.9))
    got = model.score(*_lazy(x, y, 777), levels=(0.5, 0.9))
    assert got.keys() == want.keys()
    for k in ("nll", "crps", "calibration_error"):
        assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-15), k
    assert got["coverage_50"] == want["coverage_50"] and got["coverage_90"] == want["coverage_90"]
    assert abs(got["pit_ks"] - want["pit_ks"]) <= 0.5 / npmdn.metrics.PIT_BINS + 1e-12


def test_dataframe_columns_in(client, xy):
    x, y = xy
    model = trained("float64")
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y0": y[:, 0],
                          "y1": y[:, 1]})
    ddf = dd.from_pandas(frame, npartitions=4)
    got = model.log_prob(ddf[["a", "b", "c"]], ddf[["y0", "y1"]])
    assert isinstance(got, da.Array)
    np.testing.assert_array_equal(got.compute(), model.log_prob(x, y))
    draws = model.sample(ddf[["a", "b", "c"]], 2, seed=4).compute()
    np.testing.assert_array_equal(draws, model.sample(x, 2, seed=4))


def test_distribution_methods_are_lazy_and_equal(client, xy):
    x, y = xy
    model = trained("float64")
    dx, dy = _lazy(x, y, 1000)
    lazy, mem = model.distribution(dx), model.distribution(x)
    assert isinstance(lazy.params[0], da.Array) and isinstance(lazy.mean(), da.Array)
    got = dask.compute(lazy.mean(), lazy.std(), lazy.cdf(dy), lazy.log_prob(dy),
                       lazy.sample(2, seed=5), lazy.interval(0.8), lazy.weights)
    want = (mem.mean(), mem.std(), mem.cdf(y), mem.log_prob(y), mem.sample(2, seed=5),
            mem.interval(0.8), mem.weights)
    for g, w in zip(got, want):
        if isinstance(w, tuple):
            for gi, wi in zip(g, w):
                np.testing.assert_array_equal(gi, wi)
        else:
            np.testing.assert_array_equal(g, w)


def test_raw_functions_on_dask_arrays(client, xy):
    x, y = xy
    raw = trained("float64").mixture_raw(x)
    draws = npmdn.mixture_sample(*raw, 3, seed=8, row_offset=5)
    nll, grads = npmdn.mixture_nll(*raw, y)
    for rows in CHUNKINGS[1:3]:
        lazy = [da.from_array(a, chunks=(rows,) + a.shape[1:]) for a in raw]
        ly = da.from_array(y, chunks=(rows, 2))
        got = dask.compute(npmdn.mixture_log_prob(*lazy, ly),
                           npmdn.mixture_sample(*lazy, 3, seed=8, row_offset=5),
                           npmdn.mixture_nll(*lazy, ly), npmdn.mixture_quantile(*lazy, 0.3))
        np.testing.assert_array_equal(got[0], npmdn.mixture_log_prob(*raw, y))
        np.testing.assert_array_equal(got[1], draws)
        np.testing.assert_array_equal(got[2][0], nll)
        for g, w in zip(got[2][1], grads):
            np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(got[3], npmdn.mixture_quantile(*raw, 0.3))


def test_each_workers_backend(client, xy):
    x, y = xy
    model = trained("float64", backend="numpy")
    dx, dy = _lazy(x, y, 2500)
    # "auto": built on each worker's own choice (numba on these CPU workers)
    got = npmdn.dask.log_prob(model, dx, dy, backend="auto").compute()
    on_numba = copy.deepcopy(model).to("numba")
    np.testing.assert_array_equal(got, on_numba.log_prob(x, y))
    np.testing.assert_allclose(got, model.log_prob(x, y), rtol=1e-12, atol=1e-12)


def test_bad_values_name_their_rows(client, xy):
    x, y = xy
    x = x.copy()
    x[4321, 1] = np.nan
    lazy = trained().log_prob(*_lazy(x, y, 1000))
    with pytest.raises(ValueError, match=r"finite.*rows 4000:5000"):
        lazy.compute()


def test_streaming_fit_is_seeded_and_learns(client):
    x, y = data(20_000, seed=3)
    xv, yv = data(4000, seed=4)
    dx, dy = _lazy(x, y, 2500)
    histories = []
    for _ in range(2):
        model = npmdn.MDN(3, 2, 4, hidden=(32, 32), seed=0)
        histories.append(model.fit(dx, dy, epochs=3, batch_size=256, lr=3e-3, verbose=False,
                                   validation_data=_lazy(xv, yv, 1000)))
    assert histories[0].train_nll == histories[1].train_nll  # blocks in a seeded order
    assert histories[0].val_nll == histories[1].val_nll
    memory = npmdn.MDN(3, 2, 4, hidden=(32, 32), seed=0)
    ref = memory.fit(x, y, epochs=3, batch_size=256, lr=3e-3, verbose=False,
                     validation_data=(xv, yv))
    assert histories[0].val_nll[-1] == pytest.approx(ref.val_nll[-1], abs=0.05)
    assert histories[0].val_nll[-1] < histories[0].val_nll[0]


def test_partial_fit_on_dask_dataframes(client):
    pytest.importorskip("sklearn")
    from npmdn.sklearn import MDNRegressor

    x, y = data(6000, seed=5, out_dim=1)
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(t=y[:, 0])
    ddf = dd.from_pandas(frame, npartitions=3)
    est = MDNRegressor(n_components=2, hidden=(16,), random_state=0)
    est.partial_fit(ddf[["a", "b", "c"]], ddf["t"]).partial_fit(ddf[["a", "b", "c"]], ddf["t"])
    assert est.n_iter_ == 2 and est.n_features_in_ == 3
    assert list(est.feature_names_in_) == ["a", "b", "c"]
    assert est.predict(frame[["a", "b", "c"]]).shape == (6000,)


@pytest.mark.slow
def test_out_of_core_fit_matches_in_memory_nll(client):
    """2 million rows generated on the workers, blocks of 250,000 rows (12 MB of x and y
    each; the fit holds about three): the held-out NLL within 0.01 nats of the fit on the
    same rows in memory."""
    n, rows = 2_000_000, 250_000
    gen = da.random.default_rng(7)
    x = gen.uniform(-2, 2, (n, 3), chunks=(rows, 3))
    branch = da.where(gen.random((n, 1), chunks=(rows, 1)) < 0.5, 1.0, -1.0)
    noise = gen.standard_normal((n, 2), chunks=(rows, 2))
    y = branch * da.sin(x[:, :2]) + (0.1 + 0.1 * abs(x[:, :1])) * noise
    x_test, y_test = data(100_000, seed=9)
    fit = dict(epochs=4, batch_size=512, lr=3e-3, lr_schedule="cosine", verbose=False)
    streamed = npmdn.MDN(3, 2, 4, hidden=(32, 32), seed=0)
    streamed.fit(x, y, **fit)
    memory = npmdn.MDN(3, 2, 4, hidden=(32, 32), seed=0)
    memory.fit(*dask.compute(x, y), **fit)
    assert streamed.nll(x_test, y_test) == pytest.approx(memory.nll(x_test, y_test), abs=0.01)
