"""The public functional API: results equal the reference, arrays in = arrays out."""

import numpy as np
import pytest
from cases import random_mixture

import npmdn
from npmdn import backend as B
from npmdn import config, mixture


@pytest.mark.parametrize("s", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mixture_nll_matches_reference(rng, s, dtype):
    args = random_mixture(rng, 20, 4, 3, s, dtype)
    nll, grads = npmdn.mixture_nll(*args, backend="numpy")
    want = mixture.nll_grad(*args)
    np.testing.assert_array_equal(nll, want[0])
    for g, w in zip(grads, want[1:]):
        assert g.dtype == dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(npmdn.mixture_log_prob(*args, backend="numpy"), -want[0])


def test_mixture_sample_and_params(rng):
    logits, mu, ls, _ = random_mixture(rng, 6, 3, 2, 2)
    a = npmdn.mixture_sample(logits, mu, ls, 5, seed=1, backend="numpy")
    np.testing.assert_array_equal(a, mixture.sample(logits, mu, ls, 5, 1))
    b = npmdn.mixture_sample(logits, mu, ls, 5, seed=1, method="cumulative", temperature=0.5,
                             sigma_scale=2.0, row_offset=7, backend="numpy")
    np.testing.assert_array_equal(
        b, mixture.sample(logits, mu, ls, 5, 1, 7, "cumulative", 0.5, 2.0))
    # no seed: fresh entropy, different draws
    assert not np.array_equal(npmdn.mixture_sample(logits, mu, ls, 5, backend="numpy"),
                              npmdn.mixture_sample(logits, mu, ls, 5, backend="numpy"))
    pi, m, sigma = npmdn.mixture_params(logits, mu, ls)
    np.testing.assert_allclose(pi.sum(1), 1)
    np.testing.assert_allclose(sigma, np.exp(ls))


def test_backend_switch(monkeypatch):
    monkeypatch.setattr(B, "_selected", None)
    monkeypatch.setenv(config.ENV_BACKEND, "numpy")
    assert B.get_backend().name == "numpy"
    monkeypatch.delenv(config.ENV_BACKEND)
    assert B.set_backend("numpy").name == "numpy"
    assert B.get_backend().name == "numpy"
    assert npmdn.MDN(1, 1, 1, hidden=()).backend.name == "numpy"
    B.set_backend(None)
    with pytest.raises(ValueError, match="backend must be one of"):
        B.set_backend("jax")
    assert "numpy" in B.available_backends()


def test_unavailable_backend_is_a_clear_error(monkeypatch):
    """No silent fallback: an unusable backend names what is missing."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("cupy", "numba") else real(name, *a))
    monkeypatch.setattr(B, "_cache", {})
    with pytest.raises(B.BackendUnavailable, match="needs CuPy"):
        B.get_backend("cupy")
    with pytest.raises(B.BackendUnavailable, match="needs the numba package"):
        B.get_backend("numba")
    with pytest.raises(B.BackendUnavailable, match="needs CuPy"):
        npmdn.MDN(1, 1, 2, backend="cupy")


def test_targets_of_any_real_dtype_take_the_mixtures_dtype():
    """``mixture_nll(*model.mixture_raw(x), y)`` with float64 y and a float32 model: y is
    rounded to float32 (the documented rule), never an error from a private module."""
    m = npmdn.MDN(1, 1, 2, hidden=(3,), seed=0, backend="numpy")
    x, y = np.linspace(-1, 1, 5), np.linspace(0, 1, 5)[:, None]
    raw = m.mixture_raw(x)
    nll, grads = npmdn.mixture_nll(*raw, y, backend="numpy")
    want, want_grads = npmdn.mixture_nll(*raw, y.astype(np.float32), backend="numpy")
    assert nll.dtype == np.float32 and nll.tobytes() == want.tobytes()
    for g, w in zip(grads, want_grads, strict=True):
        assert g.tobytes() == w.tobytes()
    lp = npmdn.mixture_log_prob(*raw, np.arange(5)[:, None], backend="numpy")  # ints too
    assert lp.dtype == np.float32
    # mixed parameters are still an error, of a public type that is both kinds
    assert issubclass(npmdn.InputDTypeError, TypeError)
    assert issubclass(npmdn.InputDTypeError, ValueError)
    assert npmdn.InputDTypeError.__module__ == "npmdn"
    with pytest.raises(npmdn.InputDTypeError, match="share one float dtype"):
        npmdn.mixture_nll(raw[0], raw[1].astype(np.float64), raw[2], y)
