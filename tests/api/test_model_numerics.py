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
