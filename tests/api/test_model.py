"""MDN behaviour: training features, user-unit densities, sampling, prediction."""

import io

import numpy as np
import pytest

import npmdn
from npmdn import mixture


def small_data(n=400, seed=0):
    return npmdn.datasets.inverted_sinusoid(n, seed=seed)


def make(seed=0, **kw):
    opts = dict(hidden=(16,), seed=seed, backend="numpy")
    opts.update(kw)
    return npmdn.MDN(1, 1, 3, **opts)


def test_fit_reduces_nll_and_records_history():
    d = small_data()
    m = make()
    before = m.nll(d.x, d.y)
    h = m.fit(d.x, d.y, epochs=15, batch_size=64, lr=1e-2, validation_split=0, verbose=False)
    assert h.epochs == 15 and len(h.train_nll) == 15 and h.val_nll == []
    assert m.nll(d.x, d.y) < before - 0.5
    assert h.train_nll[-1] < h.train_nll[0]
    assert h["train_nll"] is h.train_nll
    assert m.fitted


def test_training_is_reproducible_from_seeds():
    d = small_data()
    a, b = make(seed=4), make(seed=4)
    a.fit(d.x, d.y, epochs=3, batch_size=32, verbose=False)
    b.fit(d.x, d.y, epochs=3, batch_size=32, verbose=False)
    np.testing.assert_array_equal(a.params, b.params)
    c = make(seed=4)
    c.fit(d.x, d.y, epochs=3, batch_size=32, verbose=False, seed=99)  # other shuffling
    assert not np.array_equal(a.params, c.params)


def test_validation_split_and_data():
    d = small_data(500)
    m = make()
    h = m.fit(d.x, d.y, epochs=4, validation_split=0.2, verbose=False)
    assert len(h.val_nll) == 4
    v = small_data(100, seed=9)
    m2 = make()
    h2 = m2.fit(d.x, d.y, epochs=4, validation_data=(v.x, v.y), verbose=False)
    assert abs(h2.val_nll[h2.best_epoch - 1] - m2.nll(v.x, v.y)) < 1e-5


def test_early_stopping_restores_best_weights():
    d = small_data(400)
    # validation data from another problem: its NLL soon gets worse as training fits d
    v = npmdn.datasets.sinusoid(200, seed=1)
    m = make()
    snapshots = {}

    def keep(epoch, history):
        snapshots[epoch] = m.params

    h = m.fit(d.x, d.y, epochs=200, lr=3e-2, validation_data=(v.x, v.y), patience=3,
              callback=keep, verbose=False)
    assert h.stopped_early and h.epochs < 200
    assert h.best_epoch == int(np.argmin(h.val_nll)) + 1
    assert h.epochs - h.best_epoch == 3
    np.testing.assert_array_equal(m.params, snapshots[h.best_epoch])
    assert h.restored_best


def test_callback_can_stop():
    d = small_data()
    m = make()
    h = m.fit(d.x, d.y, epochs=50, verbose=False, callback=lambda e, hist: e == 2)
    assert h.epochs == 2


def test_gradient_clipping_bounds_sgd_steps():
    d = small_data()
    m = make()
    p0 = m.params
    m.fit(d.x, d.y, epochs=1, batch_size=None, lr=0.5, optimizer="sgd",
          optimizer_options={"momentum": 0.0}, clip_norm=1e-3, verbose=False)
    # one full-batch SGD step: ||dp|| = lr * ||clipped g|| <= 0.5e-3
    step = np.linalg.norm(m.params - p0)
    assert 0 < step <= 0.5e-3 * (1 + 1e-5)


def test_weight_decay_shrinks_weights_not_biases():
    d = small_data()
    a, b = make(seed=2), make(seed=2)
    kw = dict(epochs=1, batch_size=None, lr=1e-3, verbose=False)
    a.fit(d.x, d.y, **kw)
    b.fit(d.x, d.y, weight_decay=50.0, **kw)
    mask = a.net.weight_mask().astype(bool)
    p0 = make(seed=2).params
    # decoupled decay: p <- p - lr * wd * p on weights, then the same Adam step
    np.testing.assert_allclose(b.params[mask], a.params[mask] - 1e-3 * 50.0 * p0[mask],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(b.params[~mask], a.params[~mask])


def test_cosine_schedule_decays_lr():
    d = small_data()
    h = make().fit(d.x, d.y, epochs=5, lr=1e-2, lr_schedule="cosine", verbose=False)
    assert h.lr[0] == pytest.approx(1e-2) and h.lr[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(h.lr, h.lr[1:]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_stops_with_epoch_and_keeps_finite_weights():
    d = small_data()
    m = make()
    with pytest.raises(npmdn.NonFiniteLossError, match=r"epoch \d+") as info:
        m.fit(d.x, d.y, epochs=50, batch_size=None, lr=1e8, optimizer="sgd",
              validation_split=0, verbose=False)
    assert "finite" in str(info.value)
    assert np.isfinite(m.params).all()
    assert np.isfinite(m.nll(d.x, d.y))


def test_progress_display(capsys):
    d = small_data()
    make().fit(d.x, d.y, epochs=3, verbose=False)
    assert capsys.readouterr().err == ""
    make().fit(d.x, d.y, epochs=3, verbose=True)
    err = capsys.readouterr().err
    assert "epoch 3/3" in err and "train NLL" in err


def test_progress_terminal_line():
    from npmdn.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    s = Tty()
    p = Progress(4, None, s)
    p.update(1, 2.0, 2.5)
    p.close()
    assert s.getvalue().startswith("\r[") and "val NLL" in s.getvalue()
    quiet = io.StringIO()
    Progress(4, None, quiet).update(1, 2.0)
    assert quiet.getvalue() == ""  # not a terminal: silent by default


def test_log_prob_is_a_density_in_user_units():
    d = small_data()
    m = make(dtype="float64")
    m.fit(d.x * 3 + 10, d.y * 50 - 7, epochs=3, verbose=False)
    grid = np.linspace(-6000, 6000, 60001)
    for x0 in (-5.0, 10.0, 31.0):
        dens = np.exp(m.log_prob(np.full_like(grid, x0), grid))
        assert abs(np.trapezoid(dens, grid) - 1) < 1e-6


def test_rescaling_y_shifts_log_prob_by_the_jacobian():
    d = small_data()
    a, b = make(seed=1, dtype="float64"), make(seed=1, dtype="float64")
    a.fit(d.x, d.y, epochs=3, verbose=False)
    b.fit(d.x, 1000.0 * d.y, epochs=3, verbose=False)
    np.testing.assert_allclose(b.log_prob(d.x, 1000 * d.y), a.log_prob(d.x, d.y) - np.log(1000),
                               rtol=1e-10, atol=1e-10)


def test_mixture_predict_and_variance_agree_with_samples():
    d = small_data()
    m = make()
    m.fit(d.x, d.y, epochs=5, verbose=False)
    x = np.array([[-6.0], [0.0], [4.0]])
    pi, mu, sigma = m.mixture(x)
    assert pi.shape == (3, 3) and mu.shape == (3, 3, 1) and sigma.shape == (3, 3, 1)
    np.testing.assert_allclose(pi.sum(1), 1, rtol=1e-6)
    s = m.sample(x, 40_000, seed=3).astype(np.float64)
    mean, var = m.predict(x), m.predict_variance(x)
    se = np.sqrt(var / s.shape[1])
    assert np.all(np.abs(s.mean(1) - mean) < 5 * se)
    np.testing.assert_allclose(s.var(1), var, rtol=0.05)
    np.testing.assert_allclose(m.predict_std(x), np.sqrt(var))
    np.testing.assert_allclose(m.predict_covariance(x)[:, 0, 0], var[:, 0], rtol=1e-5)


def test_model_sample_is_mixture_sample_of_its_mixture():
    d = small_data()
    m = make()
    m.fit(d.x, d.y, epochs=2, verbose=False)
    x = d.x[:50]
    raw = m.mixture_raw(x)
    for method in ("gumbel", "cumulative"):
        np.testing.assert_array_equal(
            m.sample(x, 3, seed=8, method=method, temperature=0.7, sigma_scale=0.5),
            mixture.sample(*raw, 3, 8, method=method, temperature=0.7, sigma_scale=0.5),
        )
    # the same seed, whatever the batch: row i is row i of the stream
    np.testing.assert_array_equal(m.sample(x, 2, seed=8)[10:20], mixture.sample(
        *(a[10:20] for a in raw), 2, 8, row_offset=10))


def test_isotropic_model_stays_isotropic_in_user_units():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    y = np.c_[x[:, 0] + 0.1 * rng.normal(size=300), 100 * x[:, 1] + rng.normal(size=300)]
    m = npmdn.MDN(2, 2, 2, hidden=(8,), covariance="isotropic", seed=0, backend="numpy")
    m.fit(x, y, epochs=2, verbose=False)
    _, _, sigma = m.mixture(x[:5])
    assert sigma.shape == (5, 2, 1)
    assert m.y_scale[0] == m.y_scale[1]


def test_float64_model_and_repr():
    m = npmdn.MDN(2, 3, 4, hidden=(5, 5), dtype="float64", backend="numpy")
    assert m.params.dtype == np.float64
    assert m.n_params == (2 * 5 + 5) + (5 * 5 + 5) + (5 * 4 * 7 + 4 * 7)
    assert "MDN(in_dim=2" in repr(m)
    x = np.zeros((4, 2))
    assert m.predict(x).shape == (4, 3) and m.predict(x).dtype == np.float64
    assert m.sample(x, 2, seed=0).shape == (4, 2, 3)


def test_large_inputs_are_chunked_consistently():
    m = make()
    x = np.linspace(-10, 10, 70_000)
    y = np.sin(x)
    lp = m.log_prob(x, y)
    np.testing.assert_allclose(lp[65_530:65_540], m.log_prob(x[65_530:65_540], y[65_530:65_540]),
                               rtol=1e-6)
    # the draws of rows 65530.. are those rows' draws from the whole batch's mixture
    # (the mixture of a 10-row slice may differ in the last bit: BLAS picks its kernel
    # by the number of rows)
    s = m.sample(x, 2, seed=1)
    raw = [a[65_530:65_540] for a in m.mixture_raw(x)]
    np.testing.assert_array_equal(s[65_530:65_540],
                                  mixture.sample(*raw, 2, 1, row_offset=65_530))


def test_column_names_from_dataframes_and_arguments():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"temp": rng.normal(size=80), "pressure": rng.normal(size=80)})
    target = pd.Series(frame["pressure"] * 2, name="yield")
    m = make()
    m.fit(frame[["pressure"]], target, epochs=1, verbose=False)
    assert (m.x_names, m.y_names) == (("pressure",), ("yield",))
    # a DataFrame is read by the names, whatever else it holds and in any order
    np.testing.assert_array_equal(m.predict(frame), m.predict(frame["pressure"].to_numpy()))
    with pytest.raises(ValueError, match="lacks the column"):
        m.predict(frame[["temp"]])
    with pytest.raises(ValueError, match="differ from the columns"):
        m.fit(frame["temp"].to_numpy(), target, epochs=1, x_names=["temp"], verbose=False)
    m2 = make()
    m2.fit(np.arange(10.0), np.arange(10.0), epochs=1, x_names="t", y_names=["v"],
           verbose=False)
    assert (m2.x_names, m2.y_names) == (("t",), ("v",))
    import pickle

    back = pickle.loads(pickle.dumps(m))
    assert (back.x_names, back.y_names) == (("pressure",), ("yield",))
    with pytest.raises(ValueError, match="name 1 column"):
        make().fit(np.arange(10.0), np.arange(10.0), epochs=1, x_names=["a", "b"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_network_passes_make_rows_independent_of_their_batch(monkeypatch, dtype):
    """The network runs in passes of config.NETWORK_PASS rows from row 0, so a slice that
    starts on a pass gives its rows of the whole bit for bit (npmdn.dask relies on it),
    and sample's row_offset places the slice in the Philox stream."""
    from npmdn import config

    monkeypatch.setattr(config, "NETWORK_PASS", 128)
    monkeypatch.setattr(config, "INFERENCE_CHUNK", 384)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((1000, 2)), rng.standard_normal((1000, 1))
    m = npmdn.MDN(2, 1, 3, hidden=(16,), dtype=dtype, seed=0)
    lp, draws = m.log_prob(x, y), m.sample(x, 3, seed=4)
    for a in (128, 640):
        np.testing.assert_array_equal(m.log_prob(x[a:], y[a:]), lp[a:])
        np.testing.assert_array_equal(m.sample(x[a:], 3, seed=4, row_offset=a), draws[a:])
    with pytest.raises(ValueError, match="row_offset"):
        m.sample(x, row_offset=-1)
