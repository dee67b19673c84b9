"""The numba kernels give the same bits however a call's chunks run: on one thread, on
Numba's threads through a launcher (npmdn._numba.kernels.launch_head/launch_sample), or
on the Python pool where the launchers may not be used; and from several Python threads
at once."""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import get_num_threads, set_num_threads  # noqa: E402

from npmdn._numba import kernels as nk  # noqa: E402

# enough rows (draws) for two threads: 2 x HEAD_MIN_ROWS_PER_THREAD, 2 x SAMPLE_MIN_DRAWS
N = 20000


def _head(k, d, s, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(N, k)).astype(dtype), rng.normal(size=(N, k, d)).astype(dtype),
            (0.3 * rng.normal(size=(N, k, s))).astype(dtype),
            rng.normal(size=(N, d)).astype(dtype))


def _calls(dtype):
    """name -> a call of one kernel through npmdn._numba.kernels, returning arrays."""
    diag = _head(5, 2, 2, dtype)
    full = _head(3, 3, 6, dtype, seed=1)  # 3-D targets, packed full factors
    return {
        "nll_grad": lambda: nk.nll_grad(*diag),
        "log_prob": lambda: (nk.log_prob(*diag),),
        "full nll_grad": lambda: nk.nll_grad(*full),
        "gumbel": lambda: (nk.sample(*diag[:3], 2, seed=7, row_offset=3),),
        "cumulative": lambda: (nk.sample(*diag[:3], 2, seed=7, method="cumulative"),),
    }


def _on_one_thread(call):
    threads = get_num_threads()
    set_num_threads(1)
    try:
        return call()
    finally:
        set_num_threads(threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_same_bits_on_one_thread_the_launchers_and_the_pool(dtype, monkeypatch):
    if get_num_threads() < 2:
        pytest.skip("one Numba thread here: every call runs on it")
    for name, call in _calls(dtype).items():
        one = _on_one_thread(call)
        team = call()
        with monkeypatch.context() as m:  # as where the threading layer is workqueue
            m.setattr(nk, "_team", False)
            m.setattr(nk, "_launchers", {})
            pool = call()
            assert all(v is None for v in nk._launchers.values())
        for a, b, c in zip(one, team, pool, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
            np.testing.assert_array_equal(a, c, err_msg=name)


def test_the_launchers_run_where_the_threading_layer_allows():
    import numba

    if get_num_threads() < 2:
        pytest.skip("one Numba thread here: every call runs on it")
    nk.log_prob(*_head(5, 1, 1, np.float32))
    launch = nk._launchers[("density_kernel", np.dtype(np.float32))]
    if numba.threading_layer() in ("omp", "tbb"):
        assert launch is not None
    else:
        assert launch is None  # workqueue: concurrent launches would abort; the pool runs


def test_calls_from_several_python_threads_at_once():
    args = _head(4, 2, 2, np.float32, seed=3)
    want = nk.log_prob(*args)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: nk.log_prob(*args), range(16)))
    for g in got:
        np.testing.assert_array_equal(g, want)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_forked_child_computes_on_the_pool_instead_of_being_terminated():
    """GNU OpenMP is not fork-safe: Numba terminates a forked child that starts a
    parallel region after the parent used one. A child uses the pool instead."""
    args = _head(5, 1, 1, np.float32, seed=4)
    want = nk.log_prob(*args)  # the parent: the launcher where the layer allows
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without running pytest's teardown
        try:
            ok = nk.forked() and bool(np.array_equal(nk.log_prob(*args), want))
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    got = os.read(read, 1)
    os.close(read)
    assert status == 0 and got == b"1"
    assert not nk.forked()
