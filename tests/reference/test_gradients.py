"""Every parameter gradient of the whole model, checked two ways in float64:
central finite differences, and PyTorch autograd on the same weights (full
covariance: torch's ``MultivariateNormal`` with ``scale_tril``, see
``test_fullcov.py``), for D = 1, 2, 3, 5, 8 with full covariance; with and
without the sigma floor (``min_sigma``)."""

import numpy as np
import pytest

import npmdn

# (K, D, input width, hidden layers, activation)
CASES = [
    (1, 1, 1, (3,), "tanh"),
    (3, 2, 4, (5, 4), "tanh"),
    (4, 3, 2, (), "identity"),
    (2, 1, 3, (4, 4, 3), "sigmoid"),
    (5, 2, 2, (6,), "softplus"),
    (3, 2, 3, (5,), "elu"),
    (2, 3, 2, (6, 5), "relu"),
]
COVS = ["diagonal", "isotropic"]
# full covariance: (K, D, input width, hidden layers, activation), D = 1, 2, 3, 5, 8
FULL_CASES = [
    (3, 1, 2, (4,), "tanh"),
    (3, 2, 3, (5, 4), "tanh"),
    (2, 3, 2, (4,), "softplus"),
    (2, 5, 3, (), "identity"),
    (2, 8, 2, (3,), "elu"),
]


def _model(k, d, n_in, hidden, act, cov, seed=0, min_sigma=None):
    rng = np.random.default_rng(seed)
    m = npmdn.MDN(n_in, d, k, hidden=hidden, activation=act, covariance=cov,
                  dtype="float64", backend="numpy", seed=seed, min_sigma=min_sigma)
    # weights and biases away from zero, so that a wrong backward cannot hide
    params = rng.normal(0, 0.6, m.n_params)
    if cov == "full":
        # a full factor's off-diagonal outputs scaled down: at D = 8, N(0, 0.6) weights give
        # factors of condition number ~1e12, where torch's route through U^-1 loses 1e-7
        # of the loss (the reference keeps 1e-16: test_fullcov.py::test_ill_conditioned...)
        off, rows, width = m.net.shapes[-1]
        cols = np.arange(width)
        first = k * (1 + d)
        is_off = (cols >= first) & ((cols - first) % m.scale_dim >= d)
        shrink = np.where(is_off, 0.15, 1.0)
        params[off : off + rows * width] *= np.tile(shrink, rows)
        params[off + rows * width : off + rows * width + width] *= shrink
    m.set_params(params)
    # a non-trivial standardization, so that the user-unit paths are exercised
    m.x_shift, m.x_scale = rng.normal(0, 1, n_in), rng.uniform(0.5, 2, n_in)
    m.y_shift = rng.normal(0, 1, d)
    m.y_scale = np.full(d, 1.7) if cov == "isotropic" else rng.uniform(0.5, 2, d)
    x = rng.normal(0, 1.5, (13, n_in))
    y = rng.normal(0, 1.5, (13, d))
    return m, x, y


ALL_CASES = [(*c, cov) for cov in COVS for c in CASES] + [(*c, "full") for c in FULL_CASES]


@pytest.mark.parametrize("k,d,n_in,hidden,act,cov", ALL_CASES)
def test_finite_differences(k, d, n_in, hidden, act, cov):
    _finite_differences(*_model(k, d, n_in, hidden, act, cov))


def _finite_differences(m, x, y):
    _, grad = m.loss_grad(x, y)
    p0 = m.params
    h = 1e-6
    fd = np.empty_like(p0)
    for i in range(p0.size):
        p = p0.copy()
        p[i] += h
        m.set_params(p)
        up, _ = m.loss_grad(x, y)
        p[i] -= 2 * h
        m.set_params(p)
        dn, _ = m.loss_grad(x, y)
        fd[i] = (up - dn) / (2 * h)
    m.set_params(p0)
    err = np.abs(grad - fd) / np.maximum(1.0, np.abs(fd))
    worst = int(np.argmax(err))
    assert err.max() < 1e-6, f"param {worst}: mine {grad[worst]!r}, finite diff {fd[worst]!r}"


def _torch_loss_and_grads(m, x, y):
    torch = pytest.importorskip("torch")
    acts = {
        "tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
        "softplus": torch.nn.functional.softplus, "elu": torch.nn.functional.elu,
        "identity": lambda v: v,
    }
    params = torch.tensor(m.params, dtype=torch.float64, requires_grad=True)
    xs = torch.tensor((x - m.x_shift) / m.x_scale)
    ys = torch.tensor((y - m.y_shift) / m.y_scale)
    h = xs
    for i, (off, n_in, n_out) in enumerate(m.net.shapes):
        w = params[off : off + n_in * n_out].view(n_in, n_out)
        b = params[off + n_in * n_out : off + n_in * n_out + n_out]
        h = h @ w + b
        if i < len(m.net.shapes) - 1:
            h = acts[m.activation](h)
    k, d, s = m.n_components, m.out_dim, m.scale_dim
    logits = h[:, :k]
    mu = h[:, k : k + k * d].reshape(-1, k, d)
    if m.covariance == "full":
        log_n = _full_log_normal(torch, mu, h[:, k + k * d :].reshape(-1, k, s), ys)
    else:
        sigma = torch.exp(h[:, k + k * d :].reshape(-1, k, s))
        if m.min_sigma is not None:  # the floor's own form: sigma' = e^s + min_sigma / y_scale
            sigma = sigma + torch.tensor(m.min_sigma / m.y_scale[:s])
        sigma = sigma.expand(-1, k, d)
        log_n = torch.distributions.Normal(mu, sigma).log_prob(ys[:, None, :]).sum(-1)
    nll = -torch.logsumexp(torch.log_softmax(logits, -1) + log_n, -1)
    loss = nll.mean()
    loss.backward()
    return loss.item() + float(np.log(m.y_scale).sum()), params.grad.numpy()


def _full_log_normal(torch, mu, packed, ys):
    """log N_k [B, K] of packed full factors by ``MultivariateNormal(scale_tril=L)`` on
    the reversed coordinates, ``L = J U^-1 J`` (``Sigma = U^-1 U^-T``)."""
    b, k, d = mu.shape
    rows, cols = np.triu_indices(d, 1)
    flat = torch.zeros(b, k, d * d, dtype=packed.dtype).index_add(
        -1, torch.tensor(rows * d + cols), packed[..., d:])
    u = torch.diag_embed(torch.exp(-packed[..., :d])) + flat.reshape(b, k, d, d)
    eye = torch.eye(d, dtype=packed.dtype).expand_as(u)
    lower = torch.linalg.solve_triangular(u, eye, upper=True).flip(-1, -2)
    mvn = torch.distributions.MultivariateNormal(mu.flip(-1), scale_tril=lower)
    return mvn.log_prob(ys.flip(-1)[:, None, :])


@pytest.mark.parametrize("k,d,n_in,hidden,act,cov", ALL_CASES)
def test_matches_pytorch(k, d, n_in, hidden, act, cov):
    m, x, y = _model(k, d, n_in, hidden, act, cov, seed=3)
    loss, grad = m.loss_grad(x, y)
    t_loss, t_grad = _torch_loss_and_grads(m, x, y)
    assert abs(loss - t_loss) <= 1e-12 * max(1.0, abs(t_loss)), (loss, t_loss)
    err = np.abs(grad - t_grad) / np.maximum(1.0, np.abs(t_grad))
    worst = int(np.argmax(err))
    assert err.max() < 1e-10, f"param {worst}: mine {grad[worst]!r}, torch {t_grad[worst]!r}"


def test_loss_is_the_mean_user_nll():
    m, x, y = _model(3, 2, 4, (5, 4), "tanh", "diagonal")
    loss, _ = m.loss_grad(x, y)
    assert abs(loss - m.nll(x, y)) < 1e-12


# the sigma floor: min_sigma comparable to the sigmas, so that it bends every gradient
FLOOR_CASES = [(3, 2, 4, (5, 4), "tanh", "diagonal"), (2, 3, 2, (6,), "relu", "isotropic"),
               (4, 1, 2, (), "identity", "diagonal")]


@pytest.mark.parametrize("k,d,n_in,hidden,act,cov", FLOOR_CASES)
def test_sigma_floor_finite_differences(k, d, n_in, hidden, act, cov):
    _finite_differences(*_model(k, d, n_in, hidden, act, cov, seed=5, min_sigma=0.6))


@pytest.mark.parametrize("k,d,n_in,hidden,act,cov", FLOOR_CASES)
def test_sigma_floor_matches_pytorch(k, d, n_in, hidden, act, cov):
    m, x, y = _model(k, d, n_in, hidden, act, cov, seed=6, min_sigma=0.6)
    loss, grad = m.loss_grad(x, y)
    t_loss, t_grad = _torch_loss_and_grads(m, x, y)
    assert abs(loss - t_loss) <= 1e-12 * max(1.0, abs(t_loss)), (loss, t_loss)
    np.testing.assert_allclose(grad, t_grad, rtol=1e-10, atol=1e-10)
    # the floor changes the loss and the gradient: the check above is not the unfloored one
    m.min_sigma = None
    loss0, grad0 = m.loss_grad(x, y)
    assert abs(loss0 - loss) > 1e-3 and np.abs(grad0 - grad).max() > 1e-3


def test_sigma_floor_reference_matches_pytorch():
    """``floor_log_sigma`` and its gradient against torch's logaddexp and autograd,
    from far below the floor to far above it."""
    torch = pytest.importorskip("torch")
    from npmdn import mixture

    s = np.linspace(-60.0, 40.0, 1001).reshape(-1, 1, 1)
    log_f = np.array([np.log(0.03)])
    got = mixture.floor_log_sigma(s, log_f)
    ts = torch.tensor(s, requires_grad=True)
    want = torch.logaddexp(ts, torch.tensor(log_f))
    want.sum().backward()
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(mixture.floor_log_sigma_grad(s, got), ts.grad.numpy(),
                               rtol=1e-14, atol=1e-300)
    assert (np.exp(got) >= 0.03 * (1 - 1e-15)).all()  # at least the floor, to rounding
