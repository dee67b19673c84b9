"""Bad input to the distribution functions and metrics: a clear ValueError/TypeError
naming what was expected, raised before any work."""

import numpy as np
import pytest

import npmdn
from npmdn import metrics

rng = np.random.default_rng(0)
L = rng.normal(size=(5, 3))
MU = rng.normal(size=(5, 3, 1))
LS = rng.normal(size=(5, 3, 1)) * 0.3
Y = rng.normal(size=(5, 1))

Y_TAKERS = {
    "mixture_cdf": npmdn.mixture_cdf,
    "metrics.crps": metrics.crps,
    "metrics.pit": metrics.pit,
    "metrics.nll": metrics.nll,
    "metrics.log_score": metrics.log_score,
    "metrics.calibration": metrics.calibration,
    "metrics.summary": metrics.summary,
}
NO_Y = {
    "mixture_quantile": lambda a, b, c: npmdn.mixture_quantile(a, b, c, [0.5]),
    "mixture_interval": lambda a, b, c: npmdn.mixture_interval(a, b, c, 0.9),
    "mixture_modes": npmdn.mixture_modes,
    "mixture_mean": npmdn.mixture_mean,
    "mixture_covariance": npmdn.mixture_covariance,
}

BAD_PARAMS = [
    ((L[:4], MU, LS), ValueError, r"mu must have shape \[N, K, D\] = \[4, 3, D\]"),
    ((L, MU, LS[:, :2]), ValueError, "log_sigma must have shape"),
    ((L, MU, np.repeat(LS, 2, axis=2)), ValueError, "log_sigma must have shape"),
    ((np.where(np.eye(5, 3, dtype=bool), np.nan, L), MU, LS), ValueError, "logits must be finite"),
    ((L, MU.astype(np.float32), LS), TypeError, "share one float dtype"),
    ((L.astype(int), MU, LS), TypeError, "logits must be a float32 or float64 array"),
    ((L[:0], MU[:0], LS[:0]), ValueError, "empty"),
]


@pytest.mark.parametrize("args,exc,msg", BAD_PARAMS)
@pytest.mark.parametrize("name", sorted(Y_TAKERS) + sorted(NO_Y))
def test_bad_mixture_parameters(name, args, exc, msg):
    with pytest.raises(exc, match=msg):
        if name in Y_TAKERS:
            Y_TAKERS[name](*args, Y[: args[0].shape[0]])
        else:
            NO_Y[name](*args)


BAD_Y = [
    (Y[:4], ValueError, r"y must have shape \[N, D\] = \[5, 1\] or \[N\] = \[5\]"),
    (np.zeros((5, 2)), ValueError, r"y must have shape"),
    (np.array([0.0, 1, np.nan, 2, 3]), ValueError, "y must be finite"),
    (np.array([0.0, 1, np.inf, 2, 3]), ValueError, "y must be finite"),
    (np.zeros(5, dtype=complex), TypeError, "y must hold real numbers"),
    (np.array(["a"] * 5), TypeError, "y must hold real numbers"),
]


@pytest.mark.parametrize("bad,exc,msg", BAD_Y)
@pytest.mark.parametrize("name", sorted(Y_TAKERS))
def test_bad_targets(name, bad, exc, msg):
    with pytest.raises(exc, match=msg):
        Y_TAKERS[name](L, MU, LS, bad)


def test_integer_and_1d_targets_are_accepted():
    a = npmdn.mixture_cdf(L, MU, LS, Y)
    np.testing.assert_array_equal(npmdn.mixture_cdf(L, MU, LS, Y[:, 0]), a)
    np.testing.assert_array_equal(npmdn.mixture_cdf(L, MU, LS, np.arange(5)),
                                  npmdn.mixture_cdf(L, MU, LS, np.arange(5.0)))


BAD_LEVELS = [
    (0.0, ValueError, "strictly between 0 and 1, got 0.0"),
    (1.0, ValueError, "strictly between 0 and 1, got 1.0"),
    (-0.1, ValueError, "strictly between 0 and 1"),
    ([0.5, 1.5], ValueError, "strictly between 0 and 1, got 1.5"),
    (np.nan, ValueError, "strictly between 0 and 1, got nan"),
    ([[0.5]], ValueError, "1-D sequence"),
    ([], ValueError, "empty"),
    ("0.5", TypeError, "real numbers"),
    ([True], TypeError, "real numbers"),
]


@pytest.mark.parametrize("bad,exc,msg", BAD_LEVELS)
def test_bad_levels(bad, exc, msg):
    with pytest.raises(exc, match=r"^q .*" + msg):
        npmdn.mixture_quantile(L, MU, LS, bad)
    with pytest.raises(exc, match=r"^coverage "):
        npmdn.mixture_interval(L, MU, LS, bad)
    with pytest.raises(exc, match=r"^levels "):
        metrics.calibration(L, MU, LS, Y, bad)
    with pytest.raises(exc, match=r"^levels "):
        metrics.coverage(np.full(4, 0.5), bad)


@pytest.mark.parametrize("opts,exc,msg", [
    (dict(tol=0.0), ValueError, "tol must be > 0"),
    (dict(tol=-1.0), ValueError, "tol must be > 0"),
    (dict(max_iter=0), ValueError, "max_iter must be >= 1"),
    (dict(max_iter=2.5), TypeError, "max_iter must be an integer"),
    (dict(merge_tol="a"), TypeError, "merge_tol must be a real number"),
    (dict(merge_tol=np.nan), ValueError, "merge_tol must be finite"),
])
def test_bad_mode_options(opts, exc, msg):
    with pytest.raises(exc, match=msg):
        npmdn.mixture_modes(L, MU, LS, **opts)


@pytest.mark.parametrize("bad,msg", [
    (np.array([0.2, 1.2]), r"pit_values must lie in \[0, 1\]"),
    (np.array([0.2, np.nan]), r"pit_values must lie in \[0, 1\]"),
    (np.array([]), "pit_values is empty"),
])
def test_bad_pit_values(bad, msg):
    with pytest.raises(ValueError, match=msg):
        metrics.coverage(bad)
    with pytest.raises(ValueError, match=msg):
        metrics.pit_ks(bad)


@pytest.fixture
def model():
    return npmdn.MDN(2, 1, 3, hidden=(4,), seed=0, backend="numpy")


X2 = np.zeros((5, 2))
Y1 = np.zeros(5)


def test_model_methods_check_before_work(model, monkeypatch):
    # mixture_raw runs the network: it must not be reached with a bad argument
    def boom(*a, **k):
        raise AssertionError("the network ran before the arguments were checked")

    monkeypatch.setattr(model, "mixture_raw", boom)
    cases = [
        (lambda: model.predict(X2, kind="median"), ValueError,
         "kind must be one of 'mean', 'mode', 'component'"),
        (lambda: model.quantile(X2, 1.0), ValueError, "q must lie strictly between 0 and 1"),
        (lambda: model.quantile(X2, [0.1, -0.1]), ValueError, "q must lie strictly"),
        (lambda: model.interval(X2, 0.0), ValueError, "coverage must lie strictly"),
        (lambda: model.interval(X2, "wide"), TypeError, "coverage must hold real numbers"),
        (lambda: model.modes(X2, tol=-1.0), ValueError, "tol must be > 0"),
        (lambda: model.cdf(X2, np.zeros(4)), ValueError, "same number of rows"),
        (lambda: model.crps(X2, np.full(5, np.nan)), ValueError, "finite"),
        (lambda: model.score(X2, np.zeros((5, 2))), ValueError, r"shape \[N, 1\]"),
        (lambda: model.score(X2, Y1, levels=[0.5, 1.0]), ValueError, "levels must lie strictly"),
        (lambda: model.cdf(np.zeros((5, 3)), Y1), ValueError, r"x must have shape \[N, 2\]"),
    ]
    for call, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            call()


@pytest.mark.parametrize("bad,exc,msg", [
    (np.full((5, 2), np.nan), ValueError, "finite"),
    (np.zeros((5, 3)), ValueError, r"shape \[N, 2\]"),
    (np.zeros((0, 2)), ValueError, "empty"),
    (np.zeros((5, 2), dtype=complex), TypeError, "real numbers"),
])
def test_model_methods_reject_bad_x(model, bad, exc, msg):
    for call in (
        lambda: model.modes(bad),
        lambda: model.predict(bad, kind="mode"),
        lambda: model.predict(bad, kind="component"),
        lambda: model.quantile(bad, 0.5),
        lambda: model.interval(bad, 0.9),
    ):
        with pytest.raises(exc, match=msg):
            call()
