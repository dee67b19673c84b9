"""MDN under numerical stress (issue 11): a run that diverges keeps its best
validation weights, data whose spread the model cannot represent is refused
before any work, and the predicted moments are returned wherever they are
representable."""

import numpy as np
import pytest

import npmdn


def small_data(n=300, seed=0):
    return npmdn.datasets.inverted_sinusoid(n, seed=seed)


# --------------------------------------------------------------- divergence


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the numpy reference on NaN weights
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_divergence_after_a_good_epoch_keeps_the_best_validation_weights(backend):
    d, v = small_data(), small_data(100, seed=5)
    m = npmdn.MDN(1, 1, 3, hidden=(8,), seed=0, backend=backend)
    snapshots = {}

    def sabotage(epoch, history):
        snapshots[epoch] = m.params
        if epoch == 4:  # the next step's loss is NaN
            m.net.params[...] = np.nan

    with pytest.raises(npmdn.NonFiniteLossError, match="best validation epoch") as info:
        m.fit(d.x, d.y, epochs=10, batch_size=100, validation_data=(v.x, v.y),
              callback=sabotage, verbose=False)
    best = int(str(info.value).split("best validation epoch (")[1].split(")")[0])
    assert 1 <= best <= 4
    np.testing.assert_array_equal(m.params, snapshots[best])
    assert np.isfinite(m.nll(v.x, v.y))
    assert "clip_norm" in str(info.value)  # the advice is still there


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_log_prob_far_beyond_every_component_is_minus_inf_not_nan(backend):
    """z^2 overflows float32 for every component: log p = -inf on both backends
    (numba gave NaN), and the mean NLL is inf."""
    d = small_data()
    m = npmdn.MDN(1, 1, 3, hidden=(8,), seed=0, backend=backend)
    m.fit(d.x, d.y, epochs=2, verbose=False)
    far = np.full_like(d.y[:5], 1e25)
    lp = m.log_prob(d.x[:5], far)
    assert lp.dtype == np.float32 and np.all(lp == -np.inf), lp
    assert m.nll(d.x[:5], far) == np.inf


# ------------------------------------------------------------------ moments


def test_float32_model_on_huge_targets_returns_its_std():
    """A float32 model fitted on y * 1e20: the std (about 7.7e19 here) fits float32,
    its square does not; predict_std is finite and right, predict_variance float64."""
    d = small_data()
    m = npmdn.MDN(1, 1, 3, hidden=(8,), seed=0, backend="numpy")
    m.fit(d.x, d.y * 1e20, epochs=3, verbose=False)
    raw = [a.astype(np.float64) for a in m.mixture_raw(d.x)]
    pi, mu, sigma = np.exp(raw[0]) / np.exp(raw[0]).sum(1, keepdims=True), raw[1], np.exp(raw[2])
    mean = (pi[..., None] * mu).sum(1)
    var = (pi[..., None] * (sigma**2 + (mu - mean[:, None]) ** 2)).sum(1)
    std = m.predict_std(d.x)
    assert std.dtype == np.float32 and np.isfinite(std).all()
    np.testing.assert_allclose(std, np.sqrt(var), rtol=1e-6)
    assert np.all(std > 1e19)
    v = m.predict_variance(d.x)
    assert v.dtype == np.float64
    np.testing.assert_allclose(v, var, rtol=1e-12)
    np.testing.assert_allclose(m.predict_covariance(d.x)[:, :, 0], var, rtol=1e-12)
    np.testing.assert_array_equal(m.distribution(d.x).std(), std)
    assert np.isfinite(m.distribution(d.x).covariances).all()


# ----------------------------------------------------------- standardization


def _state(m):
    return [m.params, m.x_shift.copy(), m.x_scale.copy(), m.y_shift.copy(), m.y_scale.copy(),
            m.fitted]


def _same_state(a, b):
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)


def test_column_stats_are_numpys_where_numpys_are_finite(rng):
    from npmdn.standardization import column_stats

    a = rng.normal(3.0, 2.0, (257, 4)) * [1.0, 1e-3, 1e5, 0.0]
    m, s = column_stats(a)
    np.testing.assert_array_equal(m, a.mean(axis=0))
    np.testing.assert_array_equal(s, a.std(axis=0))
    for scale in (1e160, 1e-200, 2.0**1000):  # where numpy's std overflows or underflows
        m2, s2 = column_stats(a * scale)
        np.testing.assert_allclose(m2, m * scale, rtol=1e-14)
        np.testing.assert_allclose(s2, s * scale, rtol=1e-14)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("factor", [1e160, 1e-200])
def test_y_beyond_float32_is_refused_before_any_work(backend, factor):
    """fit(x, y * 1e160) left y_scale = inf and NaN predictions (and a file load
    rejects); y * 1e-200 used y_scale = 1 and predicted 0.45 for data near 1e-200."""
    d = small_data()
    m = npmdn.MDN(1, 1, 3, hidden=(8,), seed=0, backend=backend)
    before = _state(m)
    with pytest.raises(ValueError, match=r"y column 0: .* float32 model .* dtype float64"):
        m.fit(d.x, d.y * factor, epochs=2, verbose=False)
    _same_state(_state(m), before)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("factor", [1e160, 1e-200])
def test_float64_model_fits_y_of_any_representable_spread(tmp_path, factor):
    d = small_data()
    m = npmdn.MDN(1, 1, 3, hidden=(8,), seed=0, dtype="float64", backend="numpy")
    m.fit(d.x, d.y * factor, epochs=30, batch_size=64, lr=1e-2, validation_split=0,
          verbose=False)  # the statistics of every row
    np.testing.assert_allclose(m.y_scale, d.y.std() * factor, rtol=1e-12)
    pred = m.predict(d.x)
    assert np.isfinite(pred).all() and np.isfinite(m.predict_std(d.x)).all()
    np.testing.assert_allclose(pred.mean() / factor, d.y.mean(), atol=0.3)
    assert np.isfinite(m.log_prob(d.x, d.y * factor)).all()
    m.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(npmdn.load(tmp_path / "m.npz").predict(d.x), pred)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_x_of_huge_spread_is_standardized_not_ignored(tmp_path, dtype):
    """fit(x * 1e160, y) left x_scale = inf: predictions that ignored x, and a file
    that load rejected."""
    d = small_data()
    ref = npmdn.MDN(1, 1, 3, hidden=(8,), seed=0, dtype=dtype, backend="numpy")
    ref.fit(d.x, d.y, epochs=5, verbose=False)
    m = npmdn.MDN(1, 1, 3, hidden=(8,), seed=0, dtype=dtype, backend="numpy")
    m.fit(d.x * 1e160, d.y, epochs=5, verbose=False)
    np.testing.assert_allclose(m.x_scale, ref.x_scale * 1e160, rtol=1e-14)
    # the network sees the same standardized inputs: the same model
    np.testing.assert_allclose(m.predict(d.x * 1e160), ref.predict(d.x), rtol=1e-5, atol=1e-6)
    assert np.ptp(m.predict(d.x * 1e160)) > 0.1
    m.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(npmdn.load(tmp_path / "m.npz").predict(d.x * 1e160),
                                  m.predict(d.x * 1e160))


def test_x_spread_below_float64_normals_is_refused():
    d = small_data()
    m = npmdn.MDN(1, 1, 3, hidden=(8,), seed=0, dtype="float64", backend="numpy")
    with pytest.raises(ValueError, match="x column 0: its standard deviation"):
        m.fit(d.x * 1e-310, d.y, epochs=1, verbose=False)
    assert not m.fitted


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_values_beyond_the_dtype_after_standardizing_are_refused():
    """A fitted float32 model: an x that standardizes past float32 would reach the
    network as inf (NaN answers); new training data likewise, before any change.
    A far y is a log-density of -inf, not an error."""
    d = small_data()
    m = npmdn.MDN(1, 1, 3, hidden=(8,), seed=0, backend="numpy")
    m.fit(d.x, d.y, epochs=2, verbose=False)
    far = d.x.copy()
    far[7, 0] = 1e300
    with pytest.raises(ValueError, match=r"x column 0: 1e\+300 \(row 7\) is too far"):
        m.predict(far)
    before = _state(m)
    with pytest.raises(ValueError, match="validation y column 0"):
        m.fit(d.x, d.y, epochs=1, validation_data=(d.x, d.y * 1e300), verbose=False)
    with pytest.raises(ValueError, match="x column 0"):
        m.fit(far, d.y, epochs=1, verbose=False)
    _same_state(_state(m), before)
    assert m.log_prob(d.x[:2], [[1e300], [0.0]])[0] == -np.inf
