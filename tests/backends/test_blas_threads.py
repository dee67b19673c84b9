"""BLAS threads during a fit: held at one, the caller's setting given back
(npmdn.backend.one_blas_thread; issue 16 item 4). Inference keeps the caller's
BLAS threads: a float32 row's result may depend on them, and Dask's worker threads
(where OpenBLAS takes no thread count) must give the same rows as the main thread."""

import threading

import numpy as np
import pytest

import npmdn

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads():
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "blas"]


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1))
    return x, np.sin(2 * x) + 0.1 * rng.normal(size=(n, 1))


def _two_blas_threads():
    """BLAS at two threads for the test (so that one thread is a change), then as before."""
    limits = threadpoolctl.threadpool_limits(limits=2, user_api="blas")
    if not _blas_threads() or max(_blas_threads()) < 2:
        limits.restore_original_limits()
        pytest.skip("no BLAS here that runs two threads")
    return limits


@pytest.fixture
def two_blas_threads():
    limits = _two_blas_threads()
    yield _blas_threads()
    limits.restore_original_limits()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_fit_holds_blas_at_one_thread_and_gives_the_setting_back(backend):
    if backend not in npmdn.available_backends():
        pytest.skip(f"no {backend} backend here")
    x, y = _data()
    # a first fit loads every library a fit loads (the numba backend brings SciPy's
    # BLAS, which numpy does not use), so that the limits below cover all of them
    npmdn.MDN(1, 1, 3, hidden=(16,), backend=backend, seed=0).fit(x, y, epochs=1,
                                                                   verbose=False)
    limits = _two_blas_threads()
    try:
        _fit_and_infer(backend, x, y)
    finally:
        limits.restore_original_limits()


def _fit_and_infer(backend, x, y):
    two_blas_threads = _blas_threads()
    seen = []
    model = npmdn.MDN(1, 1, 3, hidden=(16,), backend=backend, seed=0)
    model.fit(x, y, epochs=3, batch_size=64, verbose=False,
              callback=lambda epoch, history: seen.append(_blas_threads()))
    assert len(seen) == 3 and all(max(s) == 1 for s in seen), seen
    assert _blas_threads() == two_blas_threads


def test_nested_users_restore_once_and_other_threads_leave_it_alone(two_blas_threads):
    """The outermost user gives the setting back, not an inner one; another thread
    neither sets nor gives back (OpenBLAS ignores a thread count set there)."""
    from npmdn.backend import get_backend, one_blas_thread

    be = get_backend("numpy")
    seen = []

    def other():
        with one_blas_thread(be):
            seen.append(_blas_threads())

    with one_blas_thread(be):
        with one_blas_thread(be):
            assert max(_blas_threads()) == 1
        assert max(_blas_threads()) == 1
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert max(_blas_threads()) == 1
    assert _blas_threads() == two_blas_threads
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert _blas_threads() == two_blas_threads


def test_without_threadpoolctl_nothing_changes(two_blas_threads, monkeypatch):
    import sys

    from npmdn.backend import get_backend, one_blas_thread

    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # its import fails
    with one_blas_thread(get_backend("numpy")):
        inside = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                  if lib["user_api"] == "blas"]
    assert inside == two_blas_threads
