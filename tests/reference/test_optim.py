"""Adam and SGD over the flat buffer, step for step against torch.optim (float64)."""

import numpy as np
import pytest

from npmdn import optim

torch = pytest.importorskip("torch")


def _run(ours, theirs, n=40, steps=25, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=n)
    tp = torch.tensor(p.copy(), requires_grad=True)
    topt = theirs([tp])
    for _ in range(steps):
        g = rng.normal(size=n)
        ours.step(p, g)
        tp.grad = torch.tensor(g.copy())
        topt.step()
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-13)


def test_adam_matches_torch():
    _run(optim.Adam(40, lr=1e-2, dtype=np.float64),
         lambda ps: torch.optim.Adam(ps, lr=1e-2))


def test_adamw_matches_torch():
    _run(optim.Adam(40, lr=1e-2, weight_decay=0.1, dtype=np.float64),
         lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1))


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_torch(momentum, nesterov):
    _run(optim.SGD(40, lr=1e-2, momentum=momentum, nesterov=nesterov, dtype=np.float64),
         lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=momentum, nesterov=nesterov))


def test_clip_by_global_norm():
    g = np.array([3.0, 4.0])
    assert optim.clip_by_global_norm(g, 1.0) == 5.0
    np.testing.assert_allclose(g, [0.6, 0.8])
    g = np.array([0.3, 0.4])
    optim.clip_by_global_norm(g, 1.0)
    np.testing.assert_array_equal(g, [0.3, 0.4])
