"""Bad input gets a clear ValueError/TypeError naming what was expected, before any work."""

import numpy as np
import pytest

import npmdn


@pytest.fixture
def model():
    return npmdn.MDN(2, 1, 3, hidden=(4,), seed=0, backend="numpy")


GOOD_X = np.zeros((5, 2))
GOOD_Y = np.zeros(5)

BAD_X = [
    (np.full((5, 2), np.nan), ValueError, "finite"),
    (np.array([[0, np.inf]] * 5), ValueError, "finite"),
    (np.zeros((5, 3)), ValueError, r"shape \[N, 2\]"),
    (np.zeros(5), ValueError, r"shape \[N, 2\]"),
    (np.zeros((0, 2)), ValueError, "empty"),
    (np.array([["a", "b"]] * 5), TypeError, "real numbers"),
    (np.zeros((5, 2), dtype=complex), TypeError, "real numbers"),
    (np.zeros((5, 2), dtype=bool), TypeError, "real numbers"),
    (np.array([[object(), 1]] * 5, dtype=object), TypeError, "real numbers"),
]


@pytest.mark.parametrize("bad,exc,msg", BAD_X)
def test_bad_x_everywhere(model, bad, exc, msg):
    p0 = model.params
    calls = [
        lambda: model.fit(bad, GOOD_Y, epochs=1, verbose=False),
        lambda: model.log_prob(bad, GOOD_Y),
        lambda: model.predict(bad),
        lambda: model.mixture(bad),
        lambda: model.sample(bad, 2, seed=0),
    ]
    for call in calls:
        with pytest.raises(exc, match=msg):
            call()
    np.testing.assert_array_equal(model.params, p0)  # nothing changed
    assert not model.fitted


def test_dtype_errors_are_also_value_errors(model):
    with pytest.raises(ValueError):
        model.predict(np.zeros((5, 2), dtype=complex))


@pytest.mark.parametrize("bad_y,msg", [
    (np.zeros(4), "same number of rows"),
    (np.zeros((5, 2)), r"shape \[N, 1\]"),
    (np.array([1, 2, np.nan, 4, 5.0]), "finite"),
])
def test_bad_y(model, bad_y, msg):
    with pytest.raises(ValueError, match=msg):
        model.fit(GOOD_X, bad_y, epochs=1, verbose=False)
    with pytest.raises(ValueError, match=msg):
        model.log_prob(GOOD_X, bad_y)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(epochs=0), "epochs must be >= 1"),
    (dict(epochs=2.5), "epochs must be an integer"),
    (dict(batch_size=0), "batch_size"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(lr=float("nan")), "lr must be finite"),
    (dict(optimizer="rmsprop"), "optimizer must be one of"),
    (dict(optimizer_options={"nope": 1}), "optimizer_options"),
    (dict(validation_split=1.0), "validation_split"),
    (dict(validation_split=0.2, validation_data=(GOOD_X, GOOD_Y)), "not both"),
    (dict(validation_data=(GOOD_X,)), "pair"),
    (dict(validation_data=(np.zeros((3, 5)), np.zeros(3))), "validation x"),
    (dict(lr_schedule="step"), "lr_schedule"),
    (dict(patience=0), "patience"),
    (dict(clip_norm=-1.0), "clip_norm"),
    (dict(callback=3), "callable"),
])
def test_bad_fit_arguments_change_nothing(model, kwargs, msg):
    p0 = model.params
    opts = dict(epochs=1, verbose=False)
    opts.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=msg):
        model.fit(GOOD_X, GOOD_Y, **opts)
    np.testing.assert_array_equal(model.params, p0)
    assert not model.fitted and (model.y_scale == 1).all()


@pytest.mark.parametrize("kwargs,msg", [
    (dict(in_dim=0), "in_dim"),
    (dict(n_components=0), "n_components"),
    (dict(hidden=(4, 0)), "hidden layer width"),
    (dict(hidden="abc"), "integer"),
    (dict(activation="swish"), "activation must be one of"),
    (dict(covariance="tied"), "covariance must be one of"),
    (dict(dtype="float16"), "float32' or 'float64"),
    (dict(backend="torch"), "backend must be one of"),
])
def test_bad_constructor(kwargs, msg):
    opts = dict(in_dim=1, out_dim=1, n_components=2)
    opts.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=msg):
        npmdn.MDN(**opts)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(n_samples=0), "n_samples"),
    (dict(seed=-1), "seed"),
    (dict(seed=1.5), "seed must be an integer"),
    (dict(method="inverse"), "method must be one of"),
    (dict(temperature=-1.0), "temperature"),
    (dict(sigma_scale=float("inf")), "sigma_scale"),
])
def test_bad_sample_arguments(model, kwargs, msg):
    opts = dict(n_samples=2, seed=0)
    opts.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=msg):
        model.sample(GOOD_X, **opts)


def test_ints_and_lists_are_accepted(model):
    assert model.predict([[1, 2], [3, 4]]).shape == (2, 1)
    assert model.log_prob(np.array([[1, 2]]), [3]).shape == (1,)


# ------------------------------------------------------------ functional API


def _args(n=4, k=3, d=2, s=2, dtype=np.float64):
    rng = np.random.default_rng(0)
    shapes = ((n, k), (n, k, d), (n, k, s), (n, d))
    return [rng.normal(size=shape).astype(dtype) for shape in shapes]


@pytest.mark.parametrize("mutate,exc,msg", [
    (lambda a: a.__setitem__(3, a[3][:, :1]), ValueError, r"y must have shape \[N, D\]"),
    (lambda a: a.__setitem__(1, a[1][:2]), ValueError, r"mu must have shape \[N, K, D\]"),
    (lambda a: a.__setitem__(2, a[2][:, :, :1].repeat(4, 2)), ValueError, "log_sigma"),
    (lambda a: a.__setitem__(0, a[0][0]), ValueError, "logits must be 2-D"),
    (lambda a: a.__setitem__(0, a[0].astype(np.float32)), TypeError, "share one float dtype"),
    (lambda a: a.__setitem__(3, a[3].astype(complex)), TypeError, "y must hold real numbers"),
    (lambda a: a[1].__setitem__((0, 0, 0), np.nan), ValueError, "mu must be finite"),
    (lambda a: a[2].__setitem__((1, 0, 0), np.inf), ValueError, "log_sigma must be finite"),
])
def test_functional_bad_inputs(mutate, exc, msg):
    args = _args()
    mutate(args)
    with pytest.raises(exc, match=msg):
        npmdn.mixture_nll(*args, backend="numpy")
    with pytest.raises(exc, match=msg):
        npmdn.mixture_log_prob(*args, backend="numpy")


def test_functional_empty_batch():
    args = [a[:0] for a in _args()]
    with pytest.raises(ValueError, match="empty"):
        npmdn.mixture_nll(*args, backend="numpy")
    with pytest.raises(ValueError, match="empty"):
        npmdn.mixture_sample(*args[:3], 1, seed=0, backend="numpy")


def test_float32_arguments_are_shown_as_given(model):
    """A float32 in a message reads as it was typed, not as the double it widens to."""
    with pytest.raises(ValueError, match=r"lr must be > 0.0, got -0.04729$"):
        model.fit(GOOD_X, GOOD_Y, epochs=1, lr=np.float32(-0.04729), verbose=False)
    with pytest.raises(ValueError, match=r"temperature must be >= 0.0, got -0.1$"):
        model.sample(GOOD_X, temperature=np.float32(-0.1))
