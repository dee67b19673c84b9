"""The whole MDN on the numpy and numba backends: the same initial weights give
the same loss and gradients, training gives the same weights and history
(the numba backend runs fit's epochs fused, npmdn._numba.train, with the NumPy
loop as the reference; with noise regularisation and the sigma floor too),
failures raise the same errors, and a model trained on one backend saves,
loads on the other and answers the same.
"""

import numpy as np
import pytest

import npmdn
from npmdn import NonFiniteLossError, config, philox, training
from npmdn._numba import regularization as _nb_reg
from npmdn._numba import train as _nb_train
from npmdn._numba.memory import aligned_zeros


def _data(n=300, d_in=2, d_out=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_in))
    y = np.sin(x @ rng.normal(size=(d_in, d_out))) + 0.3 * rng.normal(size=(n, d_out))
    return x, y


def _pair(dtype="float64", **kw):
    opts = dict(in_dim=2, out_dim=2, n_components=3, hidden=(8, 6), seed=3, dtype=dtype)
    opts.update(kw)
    return npmdn.MDN(**opts, backend="numpy"), npmdn.MDN(**opts, backend="numba")


def _tol(dtype):
    return dict(rtol=1e-9, atol=1e-11) if dtype == "float64" else dict(rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cov", ["diagonal", "isotropic"])
def test_same_weights_same_loss_and_gradient(dtype, cov):
    x, y = _data()
    a, b = _pair(dtype, covariance=cov)
    np.testing.assert_array_equal(a.params, b.params)
    for m in (a, b):
        m._set_standardization(x, y)
    out = []
    for m in (a, b):
        xs, ys = m._std_x(x), m._std_y(y)
        nll = np.empty(len(x), m.dtype)
        grad = np.empty((len(x), m.head_size), m.dtype)
        loss, g2 = training.batch_loss_grad(m, xs, ys, nll, grad)
        out.append((loss, g2, m.net.grads.copy()))
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1][0], out[0][0], **tol)
    np.testing.assert_allclose(out[1][2], out[0][2], **tol)


FIT_CASES = [
    dict(activation="tanh"),
    dict(activation="relu", optimizer="sgd", lr=0.05),
    dict(activation="sigmoid", weight_decay=0.01, clip_norm=0.5),
    dict(activation="softplus", lr_schedule="cosine", batch_size=None),
    dict(activation="elu", optimizer="sgd", lr=0.02, optimizer_options=dict(nesterov=True)),
    dict(activation="identity", covariance="isotropic", batch_size=50),
    dict(hidden=(), n_components=2),
    dict(hidden=(16,), covariance="isotropic", validation_split=0.2, patience=3),
    # noise regularisation and the sigma floor: the kernel's own noise and floor
    dict(noise_x=0.1, noise_y="auto"),
    dict(activation="relu", min_sigma=0.3, noise_y=0.2, batch_size=None),
    dict(covariance="isotropic", min_sigma=0.5, noise_x="auto", noise_y="auto",
         validation_split=0.2, patience=3, batch_size=50),
    dict(hidden=(), n_components=2, min_sigma=0.4, optimizer="sgd", lr=0.05),
]


def _fit_kw(case):
    fit = {k: case[k] for k in ("optimizer", "lr", "weight_decay", "clip_norm", "lr_schedule",
                                "batch_size", "optimizer_options", "validation_split", "patience",
                                "noise_x", "noise_y")
           if k in case}
    model = {k: case[k] for k in ("activation", "covariance", "hidden", "n_components",
                                  "min_sigma")
             if k in case}
    fit.setdefault("batch_size", 64)
    fit.setdefault("lr", 0.01)
    return model, fit


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", FIT_CASES,
                         ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_training_matches_numpy_path(dtype, case):
    x, y = _data()
    model_kw, fit_kw = _fit_kw(case)
    a, b = _pair(dtype, **model_kw)
    ha = a.fit(x, y, epochs=12, seed=5, verbose=False, **fit_kw)
    hb = b.fit(x, y, epochs=12, seed=5, verbose=False, **fit_kw)
    tol = _tol(dtype)
    np.testing.assert_allclose(hb.train_nll, ha.train_nll, **tol)
    np.testing.assert_allclose(hb.val_nll, ha.val_nll, **tol)
    assert (hb.best_epoch, hb.stopped_early, hb.epochs) == (ha.best_epoch, ha.stopped_early,
                                                            ha.epochs)
    np.testing.assert_allclose(b.params, a.params, **tol)
    np.testing.assert_allclose(b.log_prob(x, y), a.log_prob(x, y), **tol)


def test_fused_path_is_taken_and_can_be_turned_off(monkeypatch):
    x, y = _data()
    calls = []
    real = _nb_train.FusedFit.epoch

    def spy(self, *args):
        calls.append(1)
        return real(self, *args)

    monkeypatch.setattr(_nb_train.FusedFit, "epoch", spy)
    _, b = _pair()
    b.fit(x, y, epochs=3, verbose=False)
    assert len(calls) == 3
    monkeypatch.setenv(config.ENV_FUSED_FIT, "0")
    _, c = _pair()
    c.fit(x, y, epochs=3, verbose=False)
    assert len(calls) == 3  # the NumPy loop ran
    np.testing.assert_allclose(c.params, b.params, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kw", [dict(), dict(min_sigma=0.3, noise_y=0.2, lr_schedule="cosine")],
                         ids=["plain", "floor-noise-cosine"])
def test_full_batch_epochs_run_ahead_match_numpy_path(monkeypatch, dtype, kw):
    """Full-batch epochs with nothing to look at in between run several to a kernel call
    (``FusedFit.epochs``, blocks of 5 here, the last one short), the collapse
    diagnostics taken inside it: the same history, diagnostics included, and weights."""
    monkeypatch.setattr(training._Run, "EPOCHS_AHEAD", 5)
    calls = []
    real = _nb_train.FusedFit.epochs

    def spy(self, lrs, *args):
        calls.append(len(lrs))
        return real(self, lrs, *args)

    monkeypatch.setattr(_nb_train.FusedFit, "epochs", spy)
    x, y = _data()
    model_kw = {k: kw[k] for k in ("min_sigma",) if k in kw}
    fit_kw = {k: v for k, v in kw.items() if k not in model_kw}
    a, b = _pair(dtype, **model_kw)
    hist = [m.fit(x, y, epochs=12, batch_size=None, validation_split=0, seed=5, verbose=False,
                  **fit_kw) for m in (a, b)]
    assert calls == [5, 5, 2]
    tol = _tol(dtype)
    for key in ("train_nll", "lr", "effective_components", "narrowest_sigma"):
        assert len(hist[1][key]) == 12
        np.testing.assert_allclose(hist[1][key], hist[0][key], **tol)
    np.testing.assert_allclose(b.params, a.params, **tol)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the numpy reference diverging on purpose
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_divergence_in_epochs_run_ahead_raises_the_same_error(monkeypatch, dtype):
    """A block of full-batch epochs that fails part-way: the history holds the epochs
    before it, the error and the weights kept are the step loop's."""
    monkeypatch.setattr(training._Run, "EPOCHS_AHEAD", 4)
    x, y = _data()
    out = []
    for m in _pair(dtype, activation="relu"):
        with pytest.raises(NonFiniteLossError) as exc:
            m.fit(x, y, epochs=50, batch_size=None, validation_split=0, lr=100.0,
                  optimizer="sgd", seed=2, verbose=False)
        out.append((str(exc.value), m.params))
    (ea, pa), (eb, pb) = out
    assert ea == eb and "at epoch 3, step 1" in ea  # the middle of the first block
    np.testing.assert_allclose(pb, pa, **_tol(dtype))
    assert np.isfinite(pb).all()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("small_data", [False, True])
def test_parallel_steps_match(monkeypatch, dtype, small_data):
    """Batches split over threads (here forced at 64 rows per thread) sum to
    the same gradient as the NumPy loop; each chunk draws its own rows' noise."""
    monkeypatch.setattr(config, "TRAIN_MIN_ROWS_PER_THREAD", 64)
    monkeypatch.setattr(config, "TRAIN_CHUNK", 32)
    monkeypatch.setattr(config, "TRAIN_CHUNK_MAX", 0)  # 32-row chunks, several a thread
    x, y = _data(n=700)
    kw = dict(min_sigma=0.2) if small_data else {}
    fit = dict(noise_x=0.05, noise_y=0.3) if small_data else {}
    a, b = _pair(dtype, **kw)
    a.fit(x, y, epochs=4, batch_size=300, seed=1, verbose=False, **fit)
    b.fit(x, y, epochs=4, batch_size=300, seed=1, verbose=False, **fit)
    np.testing.assert_allclose(b.params, a.params, **_tol(dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_batch_in_one_chunk_or_many(monkeypatch, dtype):
    """A thread's share of a batch is one chunk when its scratch fits
    (``config.TRAIN_CHUNK_MAX``, ``TRAIN_CHUNK_BYTES``): the same training, to
    rounding, as the same batch cut into 32-row chunks and as the NumPy loop."""
    from npmdn._numba import train as nt

    chunks = []
    real = nt.FusedFit.__init__

    def spy(self, *a, **k):
        real(self, *a, **k)
        chunks.append((self.chunk, self.n_threads))

    monkeypatch.setattr(nt.FusedFit, "__init__", spy)
    x, y = _data(n=500)  # a chunk of 512 rows: 105 scratch values each, 430 kB in float64
    fit = dict(batch_size=None, seed=1, verbose=False, validation_split=0)
    ref, one = _pair(dtype)
    ref.fit(x, y, epochs=5, **fit)
    one.fit(x, y, epochs=5, **fit)
    assert chunks[-1] == (512, 1)  # 500 rows rounded up to 16
    monkeypatch.setattr(config, "TRAIN_CHUNK", 32)
    monkeypatch.setattr(config, "TRAIN_CHUNK_MAX", 0)
    _, many = _pair(dtype)
    many.fit(x, y, epochs=5, **fit)
    assert chunks[-1] == (32, 1)
    np.testing.assert_allclose(one.params, ref.params, **_tol(dtype))
    np.testing.assert_allclose(many.params, one.params, **_tol(dtype))
    # over the scratch budget: the configured chunk
    monkeypatch.setattr(config, "TRAIN_CHUNK_MAX", 1024)
    monkeypatch.setattr(config, "TRAIN_CHUNK_BYTES", 1000)
    _, small = _pair(dtype)
    small.fit(x, y, epochs=1, **fit)
    assert chunks[-1] == (32, 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_in,d", [(1, 1), (2, 3), (5, 2)])
def test_fused_noise_is_the_reference_stream(dtype, n_in, d):
    """The kernel's noise (``add_noise``: Philox inside the kernel, the vmath
    Box-Muller) is ``philox.noise_normals`` of the same rows and epoch, to the
    rounding of the normals, in a shuffled order, with and without a row map (the
    streamed fit's global rows), over several Philox blocks per row."""
    rng = np.random.default_rng(0)
    n, chunk, r0, nc = 50, 16, 8, 13
    order = rng.permutation(n).astype(np.int64)
    seed, epoch, sx, sy = 2**33 + 17, 9, 0.3, 1.7
    k0, k1 = (np.uint64(k) for k in philox.noise_key(seed))
    for rows in (np.zeros(0, np.int64), rng.integers(0, 2**40, n)):
        X0, XY = np.zeros((n_in, chunk), dtype), np.zeros((d, chunk), dtype)
        _nb_reg.add_noise(X0, XY, nc, order, rows, r0, sx, sy, k0, k1, np.uint64(epoch))
        idx = order[r0:r0 + nc]
        stream = idx if rows.size == 0 else rows[idx]
        eps = philox.noise_normals(seed, stream, epoch, n_in + d)
        tol = dict(rtol=1e-13, atol=1e-13) if dtype == np.float64 else dict(rtol=1e-6, atol=0)
        np.testing.assert_allclose(X0[:, :nc].T, (sx * eps[:, :n_in]).astype(dtype), **tol)
        np.testing.assert_allclose(XY[:, :nc].T, (sy * eps[:, n_in:]).astype(dtype), **tol)
        assert not X0[:, nc:].any() and not XY[:, nc:].any()  # only the chunk's rows


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the numpy reference diverging on purpose
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_divergence_raises_the_same_error(dtype):
    x, y = _data()
    errors, weights = [], []
    for m in _pair(dtype, activation="relu"):
        with pytest.raises(NonFiniteLossError) as exc:
            m.fit(x, y, epochs=50, batch_size=32, lr=1e6, optimizer="sgd", seed=2,
                  verbose=False)
        errors.append(str(exc.value))
        weights.append(m.params)
    where = [e.split(": the")[0] for e in errors]
    assert where[0] == where[1] and "epoch" in where[0]
    assert errors[0].split(";")[1] == errors[1].split(";")[1]  # which weights were kept
    np.testing.assert_allclose(weights[1], weights[0], **_tol(dtype))
    assert np.isfinite(weights[1]).all()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("trained_on,loaded_on", [("numba", "numpy"), ("numpy", "numba")])
def test_save_on_one_backend_load_on_the_other(tmp_path, dtype, trained_on, loaded_on):
    x, y = _data()
    m = npmdn.MDN(2, 2, 3, hidden=(8,), seed=0, dtype=dtype, backend=trained_on)
    m.fit(x, y, epochs=5, verbose=False)
    path = tmp_path / "m.npz"
    m.save(path)
    other = npmdn.load(path, backend=loaded_on)
    assert other.backend.name == loaded_on
    np.testing.assert_array_equal(other.params, m.params)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == "float64" else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(other.log_prob(x, y), m.log_prob(x, y), **tol)
    np.testing.assert_allclose(other.predict(x), m.predict(x), **tol)
    for method in ("gumbel", "cumulative"):
        s1 = m.sample(x, 4, seed=77, method=method)
        s2 = other.sample(x, 4, seed=77, method=method)
        np.testing.assert_allclose(s2, s1, **tol)
    np.testing.assert_array_equal(other.sample(x, 3, seed=5, sigma_scale=0.0),
                                  m.sample(x, 3, seed=5, sigma_scale=0.0))


def test_serial_and_parallel_epochs_cache_apart():
    """Numba names its disk cache after the function: the two compilations of the
    epoch kernel must not share a name, or one loads the other's machine code
    (this happened: the parallel path ran serially)."""
    names = {_nb_train.train_epoch_parallel.py_func.__qualname__,
             _nb_train.train_epoch_serial.py_func.__qualname__}
    assert len(names) == 2
    assert _nb_train.train_epoch_parallel.targetoptions.get("parallel")
    assert not _nb_train.train_epoch_serial.targetoptions.get("parallel")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cov", ["diagonal", "isotropic"])
def test_a_collapsed_component_trains_through(dtype, cov):
    """A component collapsed far from the data (log sigma -50 in float32, -400 in
    float64: z and z / sigma overflow) has responsibility 0 for every row; its
    gradient is 0, not 0 * inf = NaN, so training goes on (issue 11, item 7: a
    default float32 fit stopped with "the gradient norm is nan"). Both the step
    loop and the fused epoch, whose floor zeroes tiny responsibilities."""
    x, y = _data()
    k, d = 3, 2
    s = d if cov == "diagonal" else 1
    for m in _pair(dtype, hidden=(), covariance=cov):
        m._set_standardization(x, y)
        m.fitted = True  # keep the standardization the head below is written for
        p = np.zeros(m.n_params)
        bias = m.n_params - m.head_size  # the linear head: W [2, P], then b [P]
        far = [bias + k + 1 * d + j for j in range(d)]  # component 1's mean
        slow = [bias + k + k * d + 1 * s + j for j in range(s)]  # its log sigma
        p[far] = 8.0
        p[slow] = -50.0 if dtype == "float32" else -400.0
        m.set_params(p)
        loss, grad = m.loss_grad(x, y)
        assert np.isfinite(loss) and np.isfinite(grad).all()
        np.testing.assert_array_equal(grad[far + slow], 0.0)
        h = m.fit(x, y, epochs=3, batch_size=100, verbose=False)
        assert np.isfinite(h.train_nll).all() and h.train_nll[-1] < h.train_nll[0]
        np.testing.assert_array_equal(m.params[far + slow], p[far + slow])  # Adam: 0 / eps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 7), (2, 1000), (3, 16)])
def test_aligned_zeros(dtype, shape):
    """The training scratch's allocator: zeros of the shape and dtype, C-contiguous,
    starting on a 64-byte line whatever NumPy's allocator returns (16-byte aligned)."""
    for _ in range(20):  # several allocations: some come back aligned by chance
        a = aligned_zeros(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.ctypes.data % 64 == 0
        assert not a.any()


def test_fused_fit_scratch_is_on_cache_lines():
    """The epoch kernel's scratch and per-thread gradients start on a cache line and
    every block of the scratch is a multiple of 16 elements in (chunks are rounded up
    to 16 rows): a misaligned scratch made 512-bit loads straddle lines (a chunk 15%
    slower in some fits and not others)."""
    seen = []
    real = _nb_train.FusedFit.__init__

    def spy(self, *a, **k):
        real(self, *a, **k)
        seen.append(self)

    x, y = _data(n=333)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_nb_train.FusedFit, "__init__", spy)
        for dtype in ("float32", "float64"):
            npmdn.MDN(2, 2, 3, hidden=(7, 5), dtype=dtype, backend="numba", seed=0).fit(
                x, y, epochs=1, batch_size=None, verbose=False, validation_split=0)
    assert len(seen) == 2
    for f in seen:
        assert f.scratch.ctypes.data % 64 == 0 and f.GT.ctypes.data % 64 == 0
        assert f.chunk % 16 == 0 and (f.aoffs % 16 == 0).all()
        assert f.scratch.shape[1] % 16 == 0 and f.GT.shape[1] % 16 == 0  # each thread's row too


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nc", [1, 5, 16, 17, 33, 100, 256, 1001])
def test_mixing_stats_match_numpy(dtype, nc):
    """The diagnostics kernel (``_mixing_stats``: the mean mixing weights and the
    smallest log sigma of a live component, taken row by row and then by halving)
    against NumPy for row counts on both sides of the halving's steps; a NaN log
    sigma is passed over, as the kernel's running minimum always did; no live
    component gives inf."""
    from npmdn.regularization import LIVE_WEIGHT

    rng = np.random.default_rng(nc)
    k, s = 4, 2
    xa = (3 * rng.normal(size=(k, nc))).astype(dtype)
    xa[3] = -40  # a component that is never live
    xs = rng.normal(size=(k * s, nc)).astype(dtype)
    xs[6:] = -99  # ... the smallest log sigmas, which must not count
    xs[0, nc // 2] = np.nan
    pi = np.exp(xa - xa.max(0))
    pi /= pi.sum(0)
    live_s = np.where(np.repeat(pi > LIVE_WEIGHT, s, axis=0), xs, np.inf)
    want = np.nanmin(live_s) if not np.isnan(live_s).all() else np.inf
    scratch = np.empty((k + 3, nc), dtype)
    pbar = np.zeros(k)
    got = _nb_train._mixing_stats(xa, xs, nc, k, s, scratch[:k], scratch[k], scratch[k + 1],
                                  scratch[k + 2], pbar, dtype(np.inf))
    assert got == want
    np.testing.assert_allclose(pbar, pi.sum(1), rtol=1e-5 if dtype == np.float32 else 1e-12)
    pbar[:] = 0
    dead = _nb_train._mixing_stats(xa[3:].copy(), xs[6:].copy(), nc, 1, s, scratch[:1],
                                   scratch[k], scratch[k + 1], scratch[k + 2], pbar,
                                   dtype(np.inf))
    assert dead == -99  # one component alone weighs 1: live
    got_dead = _nb_train._mixing_stats(xa, np.full_like(xs, np.nan), nc, k, s, scratch[:k],
                                       scratch[k], scratch[k + 1], scratch[k + 2], pbar,
                                       dtype(np.inf))
    assert got_dead == np.inf
