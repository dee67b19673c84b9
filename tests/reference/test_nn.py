"""The dense layer and each activation on their own (docs/derivation.md sections 7
and 8), forward and backward, against PyTorch float64 autograd and against central
finite differences; and the initialisation. The whole model's gradient is checked
in test_gradients.py."""

import math

import numpy as np
import pytest

from npmdn import nn

torch = pytest.importorskip("torch")

SIZES = [(1, 1, 1), (5, 3, 4), (17, 8, 2)]  # (B, n_in, n_out)
TORCH_ACTS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "softplus": torch.nn.functional.softplus,
    "elu": lambda v: torch.nn.functional.elu(v, alpha=1.0),  # npmdn's ELU has alpha = 1
    "identity": lambda v: v,
}


def _dense(rng, b, n_in, n_out):
    return (rng.normal(size=(b, n_in)), rng.normal(size=(n_in, n_out)), rng.normal(size=n_out),
            rng.normal(size=(b, n_out)))


@pytest.mark.parametrize("b,n_in,n_out", SIZES)
def test_dense_matches_torch(rng, b, n_in, n_out):
    x, w, bias, g = _dense(rng, b, n_in, n_out)
    out, cache = nn.dense_forward(x, w, bias)
    dw, db = np.empty_like(w), np.empty_like(bias)
    dx = nn.dense_backward(g, cache, w, dw, db)
    tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (x, w, bias))
    tout = tx @ tw + tb
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-13, atol=1e-14)
    for mine, theirs in ((dw, tw), (db, tb), (dx, tx)):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("b,n_in,n_out", SIZES)
def test_dense_finite_differences(rng, b, n_in, n_out):
    x, w, bias, g = _dense(rng, b, n_in, n_out)
    dw, db = np.empty_like(w), np.empty_like(bias)
    dx = nn.dense_backward(g, nn.dense_forward(x, w, bias)[1], w, dw, db)

    def loss(x, w, bias):  # L = sum(G * out), so that dL/d(out) = G
        return float((g * nn.dense_forward(x, w, bias)[0]).sum())

    h = 1e-6
    for which, (arr, grad) in enumerate(((x, dx), (w, dw), (bias, db))):
        fd = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            args = [x.copy(), w.copy(), bias.copy()]
            args[which][i] += h
            up = loss(*args)
            args[which][i] -= 2 * h
            fd[i] = (up - loss(*args)) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-8)


def test_dense_backward_writes_views_of_the_flat_gradient(rng):
    x, w, bias, g = _dense(rng, 4, 3, 2)
    flat = np.full(3 * 2 + 2, np.nan)  # W then b, as nn.MLP lays them out
    dw, db = flat[:6].reshape(3, 2), flat[6:]
    assert nn.dense_backward(g, x, w, dw, db, need_dx=False) is None  # the first layer's case
    np.testing.assert_allclose(flat, np.concatenate([(x.T @ g).ravel(), g.sum(axis=0)]),
                               rtol=1e-14)


@pytest.mark.parametrize("name", nn.ACTIVATIONS)
def test_activation_matches_torch(rng, name):
    # the grid includes 0, where relu' is 0 in npmdn and in PyTorch; |x| <= 15 stays
    # below torch's softplus threshold (20), above which it returns x itself
    x = np.concatenate([np.linspace(-15, 15, 61), rng.normal(0, 3, 40)])
    dout = rng.normal(size=x.shape)
    out, cache = nn.activation_forward(name, x)
    dx = nn.activation_backward(name, dout, cache)
    tx = torch.tensor(x, requires_grad=True)
    tout = TORCH_ACTS[name](tx)
    tout.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-14, atol=1e-15,
                               err_msg=f"{name}: mine vs torch (forward)")
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-13, atol=1e-15,
                               err_msg=f"{name}: mine vs torch (backward)")


@pytest.mark.parametrize("name", nn.ACTIVATIONS)
def test_activation_finite_differences(name):
    x = np.concatenate([np.linspace(-8, -0.01, 40), np.linspace(0.01, 8, 40)])  # not relu's kink
    h = 1e-6
    grad = nn.activation_backward(name, np.ones_like(x), nn.activation_forward(name, x)[1])
    fd = (nn.activation_forward(name, x + h)[0] - nn.activation_forward(name, x - h)[0]) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("name", nn.ACTIVATIONS)
def test_activation_extreme_inputs_finite_without_warnings(name):
    x = np.array([-1e4, -800.0, -40.0, 0.0, 40.0, 800.0, 1e4])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is right
        out, cache = nn.activation_forward(name, x)
        dx = nn.activation_backward(name, np.ones_like(x), cache)
    assert np.isfinite(out).all() and np.isfinite(dx).all()


def test_sigmoid_tanh_form_loses_relative_not_absolute_accuracy():
    # docs/derivation.md section 8: 0.5 (tanh(x/2) + 1) is within an ulp of 1 of the
    # sigmoid everywhere (absolute), but far left the sigmoid is tiny and the relative
    # error grows until the form returns 0 (below about x = -38 in float64)
    x = np.linspace(-60, 60, 2401)
    exact = np.array([1 / (1 + math.exp(-v)) for v in x])  # relative-accurate here
    out = nn.activation_forward("sigmoid", x)[0]
    assert np.abs(out - exact).max() < 2.3e-16
    rel = np.abs(out - exact) / exact
    assert rel[x >= -10].max() < 1e-12
    assert rel[x <= -40].min() == 1.0  # 0 returned for a value near 1e-18


# --------------------------------------------------------------------------
# the initialisation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("activation", nn.ACTIVATIONS)
def test_initialisation_is_pytorchs_default_for_every_activation(activation):
    """``U(+-1/sqrt(n_in))`` for weights and biases of every layer whatever the
    activation, as torch.nn.Linear draws them (chosen by measurement, bench/RESULTS.md,
    "Initialisation": He-uniform relu lost 0.14-0.22 nats on small real data sets
    and diverged on one)."""
    net = nn.MLP((40, 300, 200, 10), activation, np.float64)
    net.init(np.random.default_rng(0))
    torch.manual_seed(0)
    for (w, b), (_, n_in, n_out) in zip(net.layers, net.shapes, strict=True):
        lim = 1.0 / math.sqrt(n_in)
        ref = torch.nn.Linear(n_in, n_out)
        for mine, theirs in ((w, ref.weight), (b, ref.bias)):
            theirs = theirs.detach().double().numpy()
            assert np.abs(mine).max() <= lim and np.abs(theirs).max() <= lim
        assert np.abs(w).max() > 0.99 * lim  # the whole range is used
        assert abs(w.std() - lim / math.sqrt(3)) < 0.02 * lim  # uniform on it


def test_initialisation_does_not_depend_on_the_activation():
    nets = [nn.MLP((3, 8, 8, 6), a, np.float64) for a in nn.ACTIVATIONS]
    for net in nets:
        net.init(np.random.default_rng(4))
    for net in nets[1:]:
        assert net.params.tobytes() == nets[0].params.tobytes()
