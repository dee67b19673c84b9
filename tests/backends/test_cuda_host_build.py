"""The CUDA kernels' math, built for the CPU and checked against the NumPy reference.

``kernels/mdn_math.cuh`` holds the per-sample math as ``__host__ __device__``
functions. Here it is compiled with the system C++ compiler together with
``tests/cuda_host_shim.cpp``, whose entry points take exactly the kernels'
parameter lists, and called through ctypes with the argument tuples that
:mod:`npmdn._kernel_args` builds for the GPU launches. So everything but the
launch itself runs on machines without a GPU: Philox, uniforms, component
choices, normals, NLL and gradient, log-density, sampling, strided layouts.
"""

import ctypes
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import random_mixture
from test_mixture import _hard_inputs
from test_philox import KAT

from npmdn import _kernel_args as ka
from npmdn import _kernel_sources as ks
from npmdn import mixture, philox

SHIM = Path(__file__).with_name("cuda_host_shim.cpp")
CXX_FLAGS = ["-std=c++17", "-O2", "-ffp-contract=off", "-fPIC", "-shared",
             "-Wall", "-Wextra", "-Werror"]
DTYPES = [np.float64, np.float32]
COVS = ["diagonal", "isotropic"]


def _compiler():
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    cxx = _compiler()
    if cxx is None:
        pytest.skip("no C++ compiler ($CXX, c++, g++ or clang++) on PATH: "
                    "the host build of kernels/mdn_math.cuh cannot be made")
    out = tmp_path_factory.mktemp("cuda_host") / "mdn_host.so"
    cmd = [cxx, *CXX_FLAGS, "-I", str(ks.kernel_dir()), str(SHIM), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout}{res.stderr}"
    return ctypes.CDLL(str(out))


_CTYPES = {np.int64: ctypes.c_int64, np.int32: ctypes.c_int32, np.uint64: ctypes.c_uint64,
           np.uint32: ctypes.c_uint32,
           np.float64: ctypes.c_double}


def _c(v):
    if isinstance(v, np.ndarray):
        return ctypes.c_void_p(v.ctypes.data)
    return _CTYPES[type(v)](v)


def call(lib, name, *args):
    fn = getattr(lib, name)
    fn.restype = None
    fn(*(_c(a) for a in args))


def run(lib, plan):
    """What npmdn._cupy_kernels._run does, with the host build in place of the GPU."""
    if plan.total > 0:
        call(lib, "host_" + plan.name, *plan.args)
    return plan.finish()


def _tol(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)


def _close(got, want, dtype, name):
    assert got.dtype == want.dtype, name
    np.testing.assert_allclose(got, want, err_msg=f"{name} ({np.dtype(dtype).name})",
                               **_tol(dtype))


# ----------------------------------------------------------------------- Philox


def test_philox_known_answers(lib):
    ctr = np.array([k[0] for k in KAT], np.uint32)
    key = np.array([k[1] for k in KAT], np.uint32)
    out = np.zeros_like(ctr)
    call(lib, "host_philox4x32_10", np.int64(len(KAT)), ctr, key, out)
    assert out.tolist() == [list(k[2]) for k in KAT]


def test_philox_random_counters_match_reference(lib, rng):
    ctr = rng.integers(0, 2**32, (1000, 4), dtype=np.uint32)
    key = rng.integers(0, 2**32, (1000, 2), dtype=np.uint32)
    out = np.zeros_like(ctr)
    call(lib, "host_philox4x32_10", np.int64(1000), ctr, key, out)
    np.testing.assert_array_equal(out, philox.philox4x32(ctr, key))


ROWS = np.array([0, 1, 2, 17, 2**32 - 1, 2**32, 2**32 + 5, 2**63 + 12345], dtype=np.uint64)
SEEDS = [0, 7, 2**32 + 3, 2**64 - 1]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_words", [1, 4, 5, 9])
def test_choice_uniforms_identical(lib, seed, n_words):
    j = 6
    out = np.empty((len(ROWS), j, n_words))
    call(lib, "host_choice_uniforms", np.uint64(seed), np.int64(len(ROWS)), ROWS, np.int64(j),
         np.int32(n_words), out)
    np.testing.assert_array_equal(out, philox.choice_uniforms(seed, ROWS, np.arange(j), n_words))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 8, 11])
@pytest.mark.parametrize("first", [0, 2, 6])
def test_normals_match(lib, seed, d, first):
    j = 6
    out = np.empty((len(ROWS), j, d))
    call(lib, "host_normals", np.uint64(seed), np.int64(len(ROWS)), ROWS, np.int64(j),
         np.int32(d), np.uint32(first), out)
    # libm (here) and NumPy's log/cos/sin may differ in the last bit
    np.testing.assert_allclose(out, philox.normals(seed, ROWS, np.arange(j), d, first),
                               rtol=1e-13, atol=1e-14)


# ------------------------------------------------------------ component choice


def _choices_host(lib, logits, n_draws, seed, row_offset, method, temperature):
    n, k = logits.shape
    out = np.empty((n, n_draws), dtype=np.int64)
    call(lib, f"host_mdn_choose_{ka._suffix(logits.dtype)}", np.int64(n), np.int64(n_draws),
         np.int32(k), logits, np.int64(k), np.uint64(seed), np.uint64(row_offset),
         np.int32(mixture.SAMPLE_METHODS.index(method)), np.float64(temperature), out)
    return out


def _choices_ref(logits, n_draws, seed, row_offset, method, temperature):
    n, k = logits.shape
    rows = row_offset + np.arange(n, dtype=np.uint64)
    u = philox.choice_uniforms(seed, rows, np.arange(n_draws), k if method == "gumbel" else 1)
    return mixture.choose_components(logits, u, method, temperature)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", mixture.SAMPLE_METHODS)
@pytest.mark.parametrize("k", [1, 3, 7, 64])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0, 0.0])
def test_component_choices_identical(lib, rng, dtype, method, k, temperature):
    logits = rng.normal(0, 2, (40, k)).astype(dtype)
    logits[:5] = np.round(logits[:5])  # ties: the lowest index must win everywhere
    logits[5, :] = 1.5
    if k > 2:
        logits[6, 1] = -1e4  # a weight that underflows to exactly 0
    args = (logits, 50, 2**40 + 9, 2**33, method, temperature)
    got = _choices_host(lib, *args)
    want = _choices_ref(*args)
    np.testing.assert_array_equal(got, want)
    if k > 1 and temperature != 0:
        assert len(np.unique(got)) > 1  # the draws do vary


# ------------------------------------------------------------ NLL and gradient

SHAPES = [(1, 1, 1, 1), (7, 3, 1, 1), (6, 4, 3, 3), (6, 4, 3, 1), (5, 1, 2, 2), (3, 64, 8, 8),
          (4, 9, 5, 1), (3, 130, 9, 9)]  # K, D past the 8- and 128-element summation blocks


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k,d,s", SHAPES)
def test_nll_grad_and_log_prob_match_reference(lib, rng, dtype, n, k, d, s):
    args = random_mixture(rng, n, k, d, s, dtype)
    got = run(lib, ka.plan_nll_grad(np, *args))
    want = mixture.nll_grad(*args)
    for name, g, w in zip(("nll", "d_logits", "d_mu", "d_log_sigma"), got, want):
        _close(g, w, dtype, name)
    _close(run(lib, ka.plan_log_prob(np, *args)), mixture.log_prob(*args), dtype, "log_prob")


@pytest.mark.parametrize("cov", COVS)
def test_hard_inputs_float64(lib, rng, cov):
    """y hundreds of sigmas away, sigma near 1e-30 and 1e30, K=64, D=8: finite and equal."""
    args = _hard_inputs(rng, cov)
    got = run(lib, ka.plan_nll_grad(np, *args))
    want = mixture.nll_grad(*args)
    for name, g, w in zip(("nll", "d_logits", "d_mu", "d_log_sigma"), got, want):
        assert np.isfinite(g).all(), name
        # the reference meets PyTorch at this tolerance on these inputs (test_mixture.py)
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-300, err_msg=name)
    assert np.all(got[0] > 1e4)  # densities far below the smallest float, still in log space
    lp = run(lib, ka.plan_log_prob(np, *args))
    np.testing.assert_allclose(lp, -want[0], rtol=1e-12)


@pytest.mark.parametrize("cov", COVS)
def test_hard_inputs_float32(lib, rng, cov):
    """The same rows in float32 (1e-30 and 1e30 are still normal floats): finite,
    and equal to the float32 reference relative to each row's scale."""
    args = [a.astype(np.float32) for a in _hard_inputs(rng, cov)]
    got = run(lib, ka.plan_nll_grad(np, *args))
    want = mixture.nll_grad(*args)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    for name, g, w in zip(("d_logits", "d_mu", "d_log_sigma"), got[1:], want[1:]):
        assert np.isfinite(g).all(), name
        scale = np.abs(w).reshape(len(w), -1).max(axis=1)
        scale = scale.reshape((-1,) + (1,) * (w.ndim - 1))
        np.testing.assert_allclose(g / scale, w / scale, atol=1e-4, err_msg=name)


def test_float32_close_to_float64(lib, rng):
    args = random_mixture(rng, 40, 5, 2, 2)
    got32 = run(lib, ka.plan_nll_grad(np, *(a.astype(np.float32) for a in args)))
    got64 = run(lib, ka.plan_nll_grad(np, *args))
    for g32, g64 in zip(got32, got64):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=2e-5, atol=2e-5)


# --------------------------------------------------------------------- layouts


def _head(rng, n, k, d, s, dtype=np.float64):
    """A model-like head output [N, P] and row-strided views of it."""
    logits, mu, ls, y = random_mixture(rng, n, k, d, s, dtype)
    head = np.concatenate([logits, mu.reshape(n, -1), ls.reshape(n, -1)], axis=1)
    return head, _split(head, k, d, s), y


def _split(h, k, d, s):
    n = h.shape[0]
    return h[:, :k], h[:, k:k + k * d].reshape(n, k, d), h[:, k + k * d:].reshape(n, k, s)


@pytest.mark.parametrize("s", [3, 1])
def test_head_views_read_and_written_in_place(lib, rng, s):
    n, k, d = 9, 4, 3
    head, views, y = _head(rng, n, k, d, s)
    grad = np.full_like(head, np.nan)
    nll = np.full(n, np.nan)
    gviews = _split(grad, k, d, s)
    plan = ka.plan_nll_grad(np, *views, y, out=(nll, *gviews))
    # no copies: the kernels get the views themselves, with the head's row stride
    assert plan.args[4] is views[0] and plan.args[6] is views[1] and plan.args[8] is views[2]
    assert [int(plan.args[i]) for i in (5, 7, 9)] == [head.shape[1]] * 3
    assert plan.writeback == []
    res = run(lib, plan)
    assert res[0] is nll and all(r is v for r, v in zip(res[1:], gviews))
    want = mixture.nll_grad(*(np.ascontiguousarray(v) for v in views), y)
    np.testing.assert_allclose(nll, want[0], rtol=1e-12)
    for v, w in zip(gviews, want[1:]):
        np.testing.assert_allclose(v, w, rtol=1e-12, atol=1e-12)
    assert np.isfinite(grad).all()  # every element of the gradient buffer was written


def test_other_layouts_are_copied_or_written_back(lib, rng):
    n, k, d = 8, 3, 2
    logits, mu, ls, y = random_mixture(rng, n, k, d, d)
    want = mixture.nll_grad(logits, mu, ls, y)
    # trailing axes not contiguous (Fortran order), rows reversed (negative stride)
    mu_f = np.asfortranarray(mu)
    logits_r = logits[::-1].copy()[::-1]
    assert ka.row_stride(mu_f) is None and ka.row_stride(logits_r) == -k
    got = run(lib, ka.plan_nll_grad(np, logits_r, mu_f, ls, y))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    # outputs: Fortran-ordered d_mu, and d_logits written over the logits input
    lg = logits.copy()
    out = (np.empty(n), lg, np.asfortranarray(np.empty((n, k, d))), np.empty((n, k, d)))
    plan = ka.plan_nll_grad(np, lg, mu, ls, y, out=out)
    assert {id(dst) for dst, _ in plan.writeback} == {id(out[1]), id(out[2])}
    got = run(lib, plan)
    assert all(g is o for g, o in zip(got, out))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_row_stride():
    a = np.zeros((5, 4, 3))
    assert ka.row_stride(a) == 12
    assert ka.row_stride(a[::2]) == 24
    assert ka.row_stride(a[:, 1:]) == 12  # rows of 3x3 inside rows of 4x3
    assert ka.row_stride(a[:, :, :2]) is None  # last axis strided
    assert ka.row_stride(a[:1, :, :2]) is None
    assert ka.row_stride(np.zeros((1, 4))[:, ::2]) is None
    assert ka.row_stride(np.zeros((0, 4))) == 4
    assert ka.row_stride(np.zeros((6, 4, 1))[:, :, :]) == 4
    raw = np.zeros(80, np.uint8)
    assert raw.ctypes.data % 8 == 0
    assert ka.row_stride(raw[8:72].view(np.float64).reshape(2, 4)) == 4
    assert ka.row_stride(raw[4:68].view(np.float64).reshape(2, 4)) is None  # misaligned start


def test_overlap_exact_for_interleaved_views():
    h = np.zeros((6, 10))
    a, b, c = h[:, :3], h[:, 3:9], h[:, 9:]
    assert not ka.overlap(a, 10, b, 10) and not ka.overlap(b, 10, c, 10)
    assert not ka.overlap(c, 10, a, 10) and not ka.overlap(a[::-1], -10, b[::-1], -10)
    assert ka.overlap(h[:, :4], 10, b, 10) and ka.overlap(a, 10, a, 10)
    assert ka.overlap(h[:, 8:], 10, b, 10)
    # c's row i ends where a's row i + 1 starts; rows running one element past it meet
    assert not ka.overlap(h[1:, :3], 10, h[:-1, 9:], 10)
    wrap = np.lib.stride_tricks.as_strided(h.ravel()[8:], (5, 3), (80, 8))  # cols 8, 9, 0
    assert ka.overlap(h[1:, :3], 10, wrap, 10) and ka.overlap(wrap, 10, h[1:, :1], 10)
    assert not ka.overlap(h[1:, 1:3], 10, wrap, 10)
    assert not ka.overlap(h[:1, :3], 10, h[:, 3:], 10)  # one row against many
    assert ka.overlap(h[2:3, 4:6], 10, b, 10)
    assert not ka.overlap(a, 10, np.zeros((6, 3)), 3)  # different buffers
    # brute force on random interleavings
    rng = np.random.default_rng(0)
    flat = np.zeros(400)
    for _ in range(300):
        views = []
        for _ in range(2):
            n, L = rng.integers(1, 6), rng.integers(1, 9)
            ld = int(rng.choice([9, 10, 12]))
            start = int(rng.integers(0, 400 - (n - 1) * ld - L))
            views.append((np.lib.stride_tricks.as_strided(
                flat[start:], (n, L), (ld * 8, 8)), ld, {start + i * ld + x for i in range(n)
                                                          for x in range(L)}))
        (x, lx, sx), (y, ly, sy) = views
        got = ka.overlap(x, lx, y, ly)
        if lx == ly:
            assert got == bool(sx & sy)  # exact for a common stride
        else:
            assert got or not (sx & sy)  # never misses an overlap


def test_empty_batch_launches_nothing(lib):
    z = np.zeros((0, 3))
    plan = ka.plan_nll_grad(np, z, np.zeros((0, 3, 2)), np.zeros((0, 3, 1)), np.zeros((0, 2)))
    assert plan.total == 0
    assert [r.shape for r in run(lib, plan)] == [(0,), (0, 3), (0, 3, 2), (0, 3, 1)]


def test_plan_checks():
    a = np.zeros((2, 3))
    mu = np.zeros((2, 3, 2))
    ls = np.zeros((2, 3, 2))
    y = np.zeros((2, 2))
    with pytest.raises(TypeError, match="one float32 or float64"):
        ka.plan_nll_grad(np, a.astype(np.float32), mu, ls, y)
    with pytest.raises(ValueError, match="log_sigma"):
        ka.plan_nll_grad(np, a, mu, np.zeros((2, 3, 4)), y)
    with pytest.raises(ValueError, match="y must have shape"):
        ka.plan_log_prob(np, a, mu, ls, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="out d_mu"):
        ka.plan_nll_grad(np, a, mu, ls, y, out=(np.zeros(2), np.zeros((2, 3)),
                                                 np.zeros((2, 3, 3)), np.zeros((2, 3, 2))))
    with pytest.raises(ValueError, match="method"):
        ka.plan_sample(np, a, mu, ls, 1, 0, method="inverse")
    with pytest.raises(ValueError, match="seed"):
        ka.plan_sample(np, a, mu, ls, 1, 2**64)


# -------------------------------------------------------------------- sampling


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cov", COVS)
@pytest.mark.parametrize("method", mixture.SAMPLE_METHODS)
@pytest.mark.parametrize("k,d", [(1, 1), (5, 3), (9, 5), (64, 8)])
def test_sample_matches_reference(lib, rng, dtype, cov, method, k, d):
    s = d if cov == "diagonal" else 1
    logits, mu, ls, _ = random_mixture(rng, 12, k, d, s, dtype)
    for seed, row_offset, temperature, sigma_scale in [
        (3, 0, 1.0, 1.0), (2**64 - 1, 2**32 - 5, 0.5, 2.5), (2**33, 7, 0.0, 1.0),
        (11, 2**40, 2.0, 0.0),
    ]:
        args = (logits, mu, ls, 7, seed, row_offset, method, temperature, sigma_scale)
        got = run(lib, ka.plan_sample(np, *args))
        want = mixture.sample(*args)
        assert got.shape == want.shape == (12, 7, d) and got.dtype == want.dtype
        ch = _choices_host(lib, logits, 7, seed, row_offset, method, temperature)
        np.testing.assert_array_equal(ch, _choices_ref(logits, 7, seed, row_offset, method,
                                                       temperature))
        if dtype == np.float64:
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
        else:
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


def test_sample_split_batches_and_prefix(lib, rng):
    logits, mu, ls, _ = random_mixture(rng, 20, 4, 2, 2)
    whole = run(lib, ka.plan_sample(np, logits, mu, ls, 5, 42))
    parts = [run(lib, ka.plan_sample(np, logits[a:a + 6], mu[a:a + 6], ls[a:a + 6], 5, 42, a))
             for a in range(0, 20, 6)]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
    np.testing.assert_array_equal(run(lib, ka.plan_sample(np, logits, mu, ls, 2, 42)),
                                  whole[:, :2])


def test_sample_statistics(lib):
    """A heavy draw count through the host build: the mixture's mean and variance."""
    logits = np.log(np.array([[0.5, 0.3, 0.2]]))
    mu = np.array([[[-3.0], [0.5], [4.0]]])
    ls = np.log(np.array([[[0.7], [1.5], [0.4]]]))
    x = run(lib, ka.plan_sample(np, logits, mu, ls, 200_000, 11))[0, :, 0]
    m = mixture.mean(logits, mu)[0, 0]
    v = mixture.variance(logits, mu, ls)[0, 0]
    assert abs(x.mean() - m) < 5 * math.sqrt(v / x.size)
    assert abs(x.var() / v - 1) < 0.02
