"""The cupy backend on a real device: what only it has (a compiled module per
device, grid-stride loops, arrays kept on the device), and the whole MDN
trained on the GPU against the same MDN trained on the CPU. The kernels'
contract (values, gradients, draws against the reference) runs on cupy in
test_contract.py.

Run with ``pytest -m gpu``. Skips as a module, saying why, without CuPy or
without a CUDA device; with both, a backend that cannot load (NVRTC missing,
say) is a failure, not a skip.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from cases import random_mixture

cupy = pytest.importorskip("cupy", reason="CuPy is not installed: the GPU tests need CuPy "
                                          "and a CUDA device")
try:
    _N_DEVICES = cupy.cuda.runtime.getDeviceCount()
except Exception as exc:  # no driver, or one too old for this CuPy
    from npmdn.backend import _why_no_device

    pytest.skip(f"no CUDA device answers: {_why_no_device(exc)}", allow_module_level=True)
if _N_DEVICES < 1:
    pytest.skip("CuPy finds no CUDA device", allow_module_level=True)

import npmdn  # noqa: E402
from npmdn import config, mixture  # noqa: E402
from npmdn._cuda import kernels as ck  # noqa: E402
from npmdn._cuda import sources as ks  # noqa: E402
from npmdn.backend import get_backend  # noqa: E402

pytestmark = pytest.mark.gpu

DTYPES = [np.float64, np.float32]
SHAPES = [(1, 1, 1, 1), (7, 3, 1, 1), (6, 4, 3, 3), (6, 4, 3, 1), (5, 1, 2, 2), (300, 64, 8, 8),
          (40, 9, 5, 1), (3, 130, 9, 9), (1000, 5, 2, 2)]
NAMES = ("nll", "d_logits", "d_mu", "d_log_sigma")


def _tol(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)


def _dev(arrays):
    return [cupy.asarray(a) for a in arrays]


def test_backend_loads_and_reports_device():
    be = get_backend("cupy")
    assert be.on_device and be.xp is cupy
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print(f"\ndevice: {name}, compute capability {props['major']}.{props['minor']}")


def test_module_compiled_once_per_device():
    assert ck.module() is ck.module()
    for name in ks.kernel_names():
        assert ck.module().get_function(name) is not None


# ----------------------------------------------------------------- kernels


def test_grid_stride_loops_cover_every_row(rng, monkeypatch):
    """Fewer blocks than rows: every row and draw is still computed."""
    monkeypatch.setattr(config, "CUDA_MAX_BLOCKS", 2)
    args = random_mixture(rng, 3000, 3, 2, 2)
    got = ck.nll_grad(*_dev(args))
    for g, w in zip(got, mixture.nll_grad(*args)):
        np.testing.assert_allclose(g.get(), w, rtol=1e-12, atol=1e-12)
    x = ck.sample(*_dev(args[:3]), 5, 9)
    np.testing.assert_allclose(x.get(), mixture.sample(*args[:3], 5, 9), rtol=1e-12, atol=1e-12)


def test_functional_api_keeps_arrays_on_the_device(rng):
    args = _dev(random_mixture(rng, 20, 3, 2, 1))
    nll, grads = npmdn.mixture_nll(*args)
    assert all(isinstance(a, cupy.ndarray) for a in (nll, *grads))
    x = npmdn.mixture_sample(*args[:3], 4, seed=3)
    assert isinstance(x, cupy.ndarray) and x.shape == (20, 4, 2)
    with pytest.raises(TypeError):
        ck.nll_grad(*[a.get() for a in args])


# ---------------------------------------------------------------- sampling




def test_many_draws_statistics():
    logits = np.log(np.array([[0.5, 0.3, 0.2]]))
    mu = np.array([[[-3.0], [0.5], [4.0]]])
    ls = np.log(np.array([[[0.7], [1.5], [0.4]]]))
    x = ck.sample(*_dev((logits, mu, ls)), 2_000_000, 11).get()[0, :, 0]
    m = mixture.mean(logits, mu)[0, 0]
    v = mixture.variance(logits, mu, ls)[0, 0]
    assert abs(x.mean() - m) < 5 * np.sqrt(v / x.size)
    assert abs(x.var() / v - 1) < 0.01
    np.testing.assert_allclose(x[:1000], mixture.sample(logits, mu, ls, 1000, 11)[0, :, 0],
                               rtol=1e-12)


# ------------------------------------------------------------ the whole MDN


def _data(n=600, d=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (n, 3))
    branch = rng.integers(0, 2, n)
    y = np.stack([np.sin(x[:, 0]) * (2 * branch - 1), x[:, 1] * x[:, 2]], axis=1)[:, :d]
    return x, y + 0.1 * rng.standard_normal((n, d))


@pytest.mark.parametrize("cov", ["diagonal", "isotropic"])
def test_mdn_trained_on_gpu_matches_cpu(cov):
    x, y = _data()
    kw = dict(hidden=(16, 16), covariance=cov, dtype="float64", seed=4)
    fit = dict(epochs=4, batch_size=128, lr=3e-3, seed=5, verbose=False,
               validation_data=(x[:100], y[:100]))
    gpu = npmdn.MDN(3, 2, 4, backend="cupy", **kw)
    cpu = npmdn.MDN(3, 2, 4, backend="numpy", **kw)
    np.testing.assert_array_equal(gpu.params, cpu.params)  # same initial weights
    hg = gpu.fit(x, y, **fit)
    hc = cpu.fit(x, y, **fit)
    # cuBLAS sums in its own order: agreement to rounding, compounded over the steps
    np.testing.assert_allclose(hg.train_nll, hc.train_nll, rtol=1e-9)
    np.testing.assert_allclose(hg.val_nll, hc.val_nll, rtol=1e-9)
    np.testing.assert_allclose(gpu.params, cpu.params, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(gpu.log_prob(x, y), cpu.log_prob(x, y), rtol=1e-8)
    assert hg.train_nll[-1] < hg.train_nll[0]  # it learned


@pytest.mark.parametrize("cov", ["diagonal", "isotropic"])
def test_small_data_settings_on_gpu_match_cpu(cov):
    """Noise regularisation (drawn on the host, sent with each batch), the sigma floor
    around the CUDA head kernel and the collapse diagnostics, as on the CPU."""
    x, y = _data(n=300)
    kw = dict(hidden=(16, 16), covariance=cov, dtype="float64", seed=4, min_sigma=0.05)
    fit = dict(epochs=4, batch_size=32, lr=3e-3, seed=5, verbose=False, validation_split=0,
               noise_x="auto", noise_y="auto")
    gpu = npmdn.MDN(3, 2, 4, backend="cupy", **kw)
    cpu = npmdn.MDN(3, 2, 4, backend="numpy", **kw)
    hg = gpu.fit(x, y, **fit)
    hc = cpu.fit(x, y, **fit)
    np.testing.assert_allclose(hg.train_nll, hc.train_nll, rtol=1e-9)
    np.testing.assert_allclose(hg.narrowest_sigma, hc.narrowest_sigma, rtol=1e-8)
    np.testing.assert_allclose(hg.effective_components, hc.effective_components, rtol=1e-8)
    np.testing.assert_allclose(gpu.params, cpu.params, rtol=1e-7, atol=1e-9)
    assert gpu.mixture(x)[2].min() >= 0.05 * (1 - 1e-12)


def test_mdn_float32_trains_on_gpu():
    x, y = _data()
    kw = dict(hidden=(32,), dtype="float32", seed=1)
    gpu = npmdn.MDN(3, 2, 3, backend="cupy", **kw)
    cpu = npmdn.MDN(3, 2, 3, backend="numpy", **kw)
    hg = gpu.fit(x, y, epochs=3, batch_size=64, lr=3e-3, seed=2, verbose=False)
    hc = cpu.fit(x, y, epochs=3, batch_size=64, lr=3e-3, seed=2, verbose=False)
    assert gpu.net.params.dtype == np.float32 and isinstance(gpu.net.params, cupy.ndarray)
    np.testing.assert_allclose(hg.train_nll, hc.train_nll, rtol=1e-3)
    assert hg.train_nll[-1] < hg.train_nll[0]


_CPU_SCRIPT = """
import json, sys
import numpy as np
import npmdn
m = npmdn.load(sys.argv[1])
x = np.load(sys.argv[2])
y = np.load(sys.argv[3])
print(json.dumps({
    "backend": m.backend.name,
    "log_prob": m.log_prob(x, y).tolist(),
    "predict": m.predict(x).tolist(),
    "sample": m.sample(x, 3, seed=17).tolist(),
}))
"""


def test_gpu_model_saved_and_loaded_on_cpu(tmp_path):
    x, y = _data(300)
    model = npmdn.MDN(3, 2, 3, hidden=(16,), dtype="float64", seed=2, backend="cupy")
    model.fit(x, y, epochs=3, batch_size=64, lr=3e-3, verbose=False)
    path = tmp_path / "gpu_model.npz"
    model.save(path)
    # same process, CPU backend
    cpu = npmdn.load(path, backend="numpy")
    np.testing.assert_array_equal(cpu.params, model.params)
    np.testing.assert_allclose(cpu.log_prob(x, y), model.log_prob(x, y), rtol=1e-10)
    np.testing.assert_allclose(cpu.predict(x), model.predict(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cpu.sample(x, 3, seed=17), model.sample(x, 3, seed=17),
                               rtol=1e-10, atol=1e-10)
    # a process that sees no GPU at all, as on a CPU-only machine
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    env = {k: v for k, v in os.environ.items() if k != "NPMDN_BACKEND"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    res = subprocess.run([sys.executable, "-c", _CPU_SCRIPT, str(path), str(tmp_path / "x.npy"),
                          str(tmp_path / "y.npy")], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["backend"] in ("numpy", "numba")
    np.testing.assert_allclose(out["log_prob"], model.log_prob(x, y), rtol=1e-10)
    np.testing.assert_allclose(out["predict"], model.predict(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out["sample"], model.sample(x, 3, seed=17), rtol=1e-10,
                               atol=1e-10)


def test_model_moves_between_backends():
    x, y = _data(200)
    model = npmdn.MDN(3, 2, 3, hidden=(8,), dtype="float64", seed=3, backend="numpy")
    model.fit(x, y, epochs=2, batch_size=50, verbose=False)
    lp = model.log_prob(x, y)
    model.to("cupy")
    assert isinstance(model.net.params, cupy.ndarray)
    np.testing.assert_allclose(model.log_prob(x, y), lp, rtol=1e-10)
    model.to("numpy")
    np.testing.assert_allclose(model.log_prob(x, y), lp, rtol=1e-12)
