"""What only the CUDA code has, checked through its host build (cuda_host.py).

The contract every backend meets (NLL, gradient, log-density, sampling
against the reference) is in test_contract.py, which runs the host build as
the ``cuda-host`` backend. Here: Philox known answers and the stream's
uniforms and normals through the header's own functions, the component
choice function on its own, and :mod:`npmdn._cuda.plan`'s layouts (row
strides, overlap detection, in-place views without copies, argument checks).
"""

import numpy as np
import pytest
from cases import PHILOX_KAT as KAT
from cases import random_mixture
from cuda_host import call, run

from npmdn import mixture, philox
from npmdn._cuda import plan as ka

DTYPES = [np.float64, np.float32]
COVS = ["diagonal", "isotropic"]


@pytest.fixture
def lib(host_lib):
    return host_lib


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
