"""Small, noisy data: noise regularisation (the ``"auto"`` rule, reproducibility,
never at scoring), the sigma floor (``min_sigma``) and the collapse diagnostics
of ``History``. (The initialisation chosen per activation: tests/reference/test_nn.py.)"""

import math

import numpy as np
import pytest

import npmdn
from npmdn import philox, regularization, training

BACKENDS = ["numpy", "numba"]


def _small(n=120, seed=0):
    """A small heteroscedastic set whose y repeats a few values (censored at the
    top, as Boston's 50s): easy to memorise, so an MDN without help collapses."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (n, 2))
    y = np.sin(2 * x[:, :1]) + (0.1 + 0.2 * np.abs(x[:, 1:])) * rng.normal(size=(n, 1))
    y = np.minimum(np.round(y, 1), 0.8)
    return x, y


# --------------------------------------------------------------------------
# the noise scale rule
# --------------------------------------------------------------------------


def test_auto_noise_is_the_rule():
    for n, i, o in ((404, 13, 1), (824, 8, 1), (106, 1, 1), (20_000, 1, 1), (1, 3, 2)):
        rate = n ** (-1.0 / (4 + i + o))
        assert regularization.auto_noise(n, i, o) == pytest.approx((0.05 * rate, 0.3 * rate),
                                                             rel=1e-15)
    # Boston: 404 training rows of a 5-fold split, d = 14 (bench/REALDATA.md: 0.716)
    assert regularization.auto_noise(404, 13, 1)[1] == pytest.approx(0.3 * 0.716, abs=1e-3)
    # it shrinks with the data and with fewer dimensions
    assert regularization.auto_noise(10_000, 2, 1)[1] < regularization.auto_noise(100, 2, 1)[1]
    assert regularization.auto_noise(1000, 1, 1)[1] < regularization.auto_noise(1000, 10, 1)[1]
    with pytest.raises(ValueError, match="n_rows"):
        regularization.auto_noise(0, 1, 1)


@pytest.mark.parametrize("split", [0.0, 0.25])
def test_auto_counts_the_rows_trained_on(split):
    x, y = _small()
    m = npmdn.MDN(2, 1, 3, hidden=(8,), seed=0)
    h = m.fit(x, y, epochs=1, noise_x="auto", noise_y="auto", validation_split=split,
              verbose=False)
    assert h.n_train == len(x) - round(split * len(x))
    assert (h.noise_x, h.noise_y) == regularization.auto_noise(h.n_train, 2, 1)
    h = m.fit(x, y, epochs=1, noise_x=0.0, noise_y="auto", verbose=False)
    assert h.noise_x == 0.0 and h.noise_y == regularization.auto_noise(h.n_train, 2, 1)[1]
    h = m.fit(x, y, epochs=1, noise_y=0.125, verbose=False)
    assert (h.noise_x, h.noise_y) == (0.0, 0.125)


def test_noise_is_off_by_default():
    x, y = _small()
    a, b = (npmdn.MDN(2, 1, 3, hidden=(8,), seed=1) for _ in range(2))
    ha = a.fit(x, y, epochs=3, seed=2, verbose=False)
    hb = b.fit(x, y, epochs=3, seed=2, noise_x=0, noise_y=0.0, verbose=False)
    assert (ha.noise_x, ha.noise_y) == (0.0, 0.0)
    assert a.params.tobytes() == b.params.tobytes() and ha.train_nll == hb.train_nll


@pytest.mark.parametrize("bad,error,match", [
    (dict(noise_x=-0.1), ValueError, "noise_x must be >= 0"),
    (dict(noise_y=float("nan")), ValueError, "noise_y must be finite"),
    (dict(noise_y="some"), ValueError, "noise_y must be a number >= 0 or 'auto'"),
    (dict(noise_x=None), TypeError, "noise_x must be a number >= 0 or 'auto'"),
    (dict(noise_x=True), TypeError, "noise_x must be a number >= 0 or 'auto'"),
])
def test_bad_noise_is_refused_before_any_work(bad, error, match):
    x, y = _small()
    m = npmdn.MDN(2, 1, 3, hidden=(8,), seed=0)
    before = m.params
    with pytest.raises(error, match=match):
        m.fit(x, y, epochs=1, verbose=False, **bad)
    assert m.params.tobytes() == before.tobytes() and not m.fitted


# --------------------------------------------------------------------------
# noise: reproducible, the same on every backend, never at scoring
# --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fit_with_noise_is_reproducible(backend):
    x, y = _small()

    def fit(seed, model_seed=3):
        m = npmdn.MDN(2, 1, 3, hidden=(8,), seed=model_seed, backend=backend)
        h = m.fit(x, y, epochs=4, batch_size=32, seed=seed, noise_x=0.1, noise_y=0.2,
                  verbose=False)
        return m, h

    (a, ha), (b, hb) = fit(7), fit(7)
    assert a.params.tobytes() == b.params.tobytes() and ha.train_nll == hb.train_nll
    c, _ = fit(8)  # another seed: other shuffles and other noise
    assert not np.array_equal(c.params, a.params)
    # without a fit seed the model's keys the noise
    (d, _), (e, _) = fit(None, 11), fit(None, 11)
    assert d.params.tobytes() == e.params.tobytes()


def test_noise_is_the_stream_of_the_fit_seed(monkeypatch):
    """The step loop adds exactly ``noise * philox.noise_normals(seed, rows, epoch)``
    to each batch: captured at the head kernel's input."""
    x, y = _small(n=40)
    m = npmdn.MDN(2, 1, 2, hidden=(4,), seed=0, backend="numpy", dtype="float64")
    seen = []
    real = training.batch_loss_grad
    monkeypatch.setattr(training, "batch_loss_grad",
                        lambda model, xb, yb, *a: seen.append((xb.copy(), yb.copy()))
                        or real(model, xb, yb, *a))
    m.fit(x, y, epochs=2, batch_size=None, seed=5, noise_x=0.25, noise_y=0.5,
          validation_split=0, verbose=False)
    xs, ys = m._std_x(x), m._std_y(y)
    for epoch, (xb, yb) in enumerate(seen, start=1):
        eps = philox.noise_normals(5, np.arange(40), epoch, 3)
        np.testing.assert_allclose(xb, xs + 0.25 * eps[:, :2], rtol=0, atol=1e-15)
        np.testing.assert_allclose(yb, ys + 0.5 * eps[:, 2:], rtol=0, atol=1e-15)
    assert not np.allclose(seen[0][1], seen[1][1])  # fresh at every epoch


def test_validation_and_inference_never_see_noise():
    x, y = _small(n=200)
    xv, yv = _small(n=60, seed=1)
    m = npmdn.MDN(2, 1, 3, hidden=(8,), seed=0, dtype="float64")
    h = m.fit(x, y, epochs=5, validation_data=(xv, yv), restore_best=False,
              noise_x=0.5, noise_y=0.5, verbose=False)
    assert h.val_nll[-1] == pytest.approx(m.nll(xv, yv), rel=1e-12)
    # the training NLL is of the noisy rows; scored again without noise it differs
    assert abs(h.train_nll[-1] - m.nll(x, y)) > 1e-3
    assert m.log_prob(x, y).tobytes() == m.log_prob(x, y).tobytes()


def test_noise_regularises_a_small_fit():
    """What the feature is for: on a small, memorisable set a long fit without noise
    collapses (narrow components, held-out NLL up); noise keeps it apart."""
    x, y = _small(n=150)
    xt, yt = _small(n=2000, seed=9)
    out = {}
    for noise in (0.0, "auto"):
        m = npmdn.MDN(2, 1, 5, hidden=(32, 32), seed=0)
        h = m.fit(x, y, epochs=300, batch_size=32, lr=3e-3, validation_split=0,
                  noise_x=noise, noise_y=noise, seed=0, verbose=False)
        out[noise] = (m.nll(xt, yt), h.narrowest_sigma[-1])
    assert out["auto"][0] < out[0.0][0] - 0.05, out
    assert out["auto"][1] > 5 * out[0.0][1], out


# --------------------------------------------------------------------------
# the sigma floor
# --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cov,d", [("diagonal", 2), ("isotropic", 2), ("diagonal", 1)])
def test_no_component_narrower_than_min_sigma(backend, cov, d):
    """Trained to collapse (repeated targets, 300 epochs, no noise), every sigma the
    model reports, in the units of y, is at least min_sigma (to float32 rounding),
    and the floor is where the fit wants to go: without it, sigmas fall far below."""
    x, y = _small(n=100)
    y = np.hstack([y * 40.0, np.round(x[:, 1:]) * 20.0])[:, :d]  # repeated values
    floor = 0.05 * float(y.std(axis=0).min())
    sig = {}
    for min_sigma in (None, floor):
        m = npmdn.MDN(2, d, 5, hidden=(32, 32), seed=0, covariance=cov, backend=backend,
                      min_sigma=min_sigma)
        m.fit(x, y, epochs=300, batch_size=25, lr=5e-3, validation_split=0, seed=0,
              verbose=False)
        sig[min_sigma] = m.mixture(x)[2]
        if min_sigma is not None:
            assert sig[floor].min() >= floor * (1 - 1e-6)
            lo, hi = m.interval(x[:5], 0.5)
            assert (hi - lo >= 2 * 0.6744 * floor * (1 - 1e-5)).all()  # a one-component floor
            draws = m.sample(x[:3], 2000, seed=1)[..., 0]
            assert (draws.std(axis=1) > 0.9 * floor).all()
    assert sig[None].min() < 0.5 * floor  # the test can fail: without it, the fit collapses


def test_min_sigma_is_in_user_units_and_checked():
    x, y = _small()
    m = npmdn.MDN(2, 1, 3, hidden=(8,), seed=0, min_sigma=2.0)
    m.fit(x, y * 100.0, epochs=2, verbose=False)
    sigma = m.mixture(x)[2]
    assert sigma.min() >= 2.0 * (1 - 1e-6)
    # sigma = min_sigma + y_scale exp(s): the head's raw scales add to the floor
    s = m._split(m.net.forward(m._std_x(x))[0])[2]
    want = 2.0 + m.y_scale[0] * np.exp(s.astype(np.float64))
    np.testing.assert_allclose(sigma, want, rtol=1e-5)
    assert "min_sigma=2.0" in repr(m) and m.config["min_sigma"] == 2.0
    for bad, error in ((0.0, ValueError), (-1.0, ValueError), (float("inf"), ValueError),
                       ("1", TypeError)):
        with pytest.raises(error, match="min_sigma"):
            npmdn.MDN(2, 1, 3, min_sigma=bad)


def test_min_sigma_survives_pickle_and_backend_moves():
    import pickle

    x, y = _small()
    m = npmdn.MDN(2, 1, 3, hidden=(8,), seed=0, min_sigma=0.3, backend="numpy")
    m.fit(x, y, epochs=2, verbose=False)
    back = pickle.loads(pickle.dumps(m))
    assert back.min_sigma == 0.3
    assert back.log_prob(x, y).tobytes() == m.log_prob(x, y).tobytes()
    np.testing.assert_allclose(m.to("numba").log_prob(x, y), back.log_prob(x, y), rtol=1e-5)


# --------------------------------------------------------------------------
# the collapse diagnostics
# --------------------------------------------------------------------------


def test_history_records_the_collapse_diagnostics():
    x, y = _small(n=150)
    m = npmdn.MDN(2, 1, 5, hidden=(16,), seed=0, dtype="float64")
    h = m.fit(x, y, epochs=6, validation_split=0.2, restore_best=False, verbose=False)
    assert len(h.effective_components) == len(h.narrowest_sigma) == h.epochs == 6
    assert all(1.0 <= k <= 5.0 for k in h.effective_components)
    # the last epoch's values, recomputed from the model on the same training rows
    xtr = m._std_x(x)  # any rows: recompute the definition on the diagnostic rows
    rows = regularization.diagnostic_rows(h.n_train)
    assert rows.size == h.n_train  # fewer rows than DIAGNOSTIC_ROWS: all of them
    eff, narrow = regularization.mixture_diagnostics(m, xtr)
    pi, _, sigma = m.mixture(x)
    pbar = pi.mean(axis=0)
    assert eff == pytest.approx(math.exp(-(pbar * np.log(pbar)).sum()), rel=1e-12)
    assert narrow == pytest.approx((sigma / m.y_scale)[pi > 0.05].min(), rel=1e-12)
    assert regularization.diagnostic_rows(10_000).size == regularization.DIAGNOSTIC_ROWS


def test_collapse_shows_in_narrowest_sigma_and_min_sigma_bounds_it():
    x, y = _small(n=100)
    kw = dict(epochs=300, batch_size=25, lr=5e-3, validation_split=0, seed=0, verbose=False)
    free = npmdn.MDN(2, 1, 5, hidden=(32, 32), seed=0)
    h_free = free.fit(x, y, **kw)
    floored = npmdn.MDN(2, 1, 5, hidden=(32, 32), seed=0, min_sigma=0.05 * float(y.std()))
    h_floor = floored.fit(x, y, **kw)
    assert h_free.narrowest_sigma[-1] < 0.01 < h_free.narrowest_sigma[0]
    assert min(h_floor.narrowest_sigma) >= 0.05 * (1 - 1e-5)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_diagnostics_of_a_diverging_fit_are_inf_not_an_error(backend):
    """SGD at lr 3 blows the scales up past exp's range while the loss stays finite:
    the narrowest sigma is recorded as inf (it raised OverflowError from math.exp)."""
    d = npmdn.datasets.inverted_sinusoid(500, seed=0)
    m = npmdn.MDN(1, 1, n_components=3, hidden=(16,), backend=backend, seed=0)
    h = m.fit(d.x, d.y, epochs=30, batch_size=500, optimizer="sgd", lr=3.0,
              validation_split=0, verbose=False)
    assert np.all(np.isfinite(h.train_nll))
    assert np.inf in h.narrowest_sigma  # the case this test is about
