"""The ``numba`` backend's face: fused CPU kernels with the reference's signatures.

:mod:`npmdn.backend` takes ``nll_grad``, ``log_prob`` and ``sample`` from
here (and the fused training epoch from :mod:`npmdn._numba.train`); each has
the signature and results of its NumPy reference in :mod:`npmdn.mixture`.

Importing this module imports Numba but compiles nothing; each kernel is
compiled on first use for the dtypes it meets and cached on disk
(``cache=True``), so a later process loads machine code instead of
compiling. ``import npmdn`` does not import this package at all; the backend
switch does, when the numba backend is first asked for.

The modules of ``npmdn/_numba``, each with the why of its layout in its docstring:
``vmath`` (vectorisable exp, log, tanh, sin/cos; no SVML here),
``transpose`` (8 x 8 register transposes between rows and tiles, and the streaming
stores a large gradient goes out by),
``head`` (NLL + gradient and log-density), ``full`` (the same for full-covariance
factors), ``sample`` (Philox sampling),
``train`` (fused training epochs for ``MDN.fit``), ``kernels`` (this file: each call's
chunks on Numba's threads through a launcher), ``warm`` (a first run's compiles in
background processes), ``compiling`` (a kernel's call tree optimised once, there, with
code and wrappers for the kernel alone), ``permute`` (a minibatch fit's order,
NumPy's ``Generator.permutation`` bit for bit) and ``memory`` (the kernels' tile
buffers on 64-byte cache lines).
Their tunables (tile sizes, rows per thread) are in :mod:`npmdn.config`.

Caching caveat for whoever edits these files: Numba checks only the source
file of the cached function itself, so after changing ``vmath.py`` or
``transpose.py`` delete ``npmdn/_numba/__pycache__/*.nb*`` (an install or
upgrade rewrites every file and so invalidates everything). Builds made with
``NUMBA_DEBUGINFO=1`` are cached under the same names as optimised ones.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import config as _nb_config
from numba import get_num_threads, njit, prange, set_num_threads, set_parallel_chunksize, types

from .. import config
from ..fullcov import is_full
from . import full as _full
from . import head as _head
from . import sample as _sample

_A1 = {dt: types.Array(types.float32 if dt == np.float32 else types.float64, 1, "A")
       for dt in (np.dtype(np.float32), np.dtype(np.float64))}
_A2 = {dt: types.Array(_A1[dt].dtype, 2, "A") for dt in _A1}


def _head_sig(dt):
    """The head kernels' one signature (``L, M, LS, Y, out, GL, GM, GS, grad, tile,
    n_chunks, c0, c1``): the gradient's, the log-density's and the full factors'."""
    return (_A2[dt],) * 4 + (_A1[dt],) + (_A2[dt],) * 3 + (types.boolean,) + (types.intp,) * 4


# (the last two arguments of each: the range of chunks [c0, c1) that one call runs)
_SIGS = {
    "head_kernel": _head_sig,
    "density_kernel": _head_sig,
    "full_kernel": _head_sig,
    "sample_kernel": lambda dt: (_A2[dt],) * 3
    + (types.intp, types.uint64, types.uint64, types.uint64, types.boolean, types.float64,
       types.float64, types.Array(_A1[dt].dtype, 2, "C"), types.intp, types.intp,
       types.float64, types.intp, types.intp),
}
_MODULES = {"head_kernel": _head, "density_kernel": _head, "full_kernel": _full,
            "sample_kernel": _sample}
GUMBEL_MARGIN = _sample.GUMBEL_MARGIN  # see npmdn._numba.sample; tests raise it to force float64
_entries: dict = {}
# called with a kernel's name before it compiles here; npmdn._numba.warm sets it to wait
# for a background process that is compiling that kernel
before_compile = None


# The launchers: the chunks [0, n_chunks) of one call on Numba's threads (as many as
# set_num_threads allows), a chunk at a time to whichever thread is free (parallel
# chunksize 1), the kernel called through its address (a first-class function, so a
# launcher compiles in about 0.4 s and never inlines the kernel). Numba's OpenMP or TBB
# team starts the chunks sooner than this module's Python thread pool wakes up: at
# (65536, 5, 1) float32 on 2 threads, NLL + gradient 0.39 ms against 0.46 ms, the
# log-density 0.28 ms against 0.35 ms (the kernels' serial time: 0.72 and 0.53 ms).
@njit(parallel=True, nogil=True, cache=True)
def launch_head(fn, L, M, LS, Y, out, GL, GM, GS, grad, tile, n_chunks):
    for c in prange(n_chunks):
        c0 = np.intp(c)
        fn(L, M, LS, Y, out, GL, GM, GS, grad, tile, n_chunks, c0, c0 + 1)


@njit(parallel=True, nogil=True, cache=True)
def launch_sample(fn, L, M, LS, n_samples, k0, k1, row0, gumbel, temp, scale, out, tile,
                  n_chunks, margin):
    for c in prange(n_chunks):
        c0 = np.intp(c)
        fn(L, M, LS, n_samples, k0, k1, row0, gumbel, temp, scale, out, tile, n_chunks, margin,
           c0, c0 + 1)


_LAUNCHERS = {"head_kernel": launch_head, "density_kernel": launch_head,
              "full_kernel": launch_head, "sample_kernel": launch_sample}
_launchers: dict = {}
_team = None  # whether Numba's threading layer takes launches from any thread (see _teams)
_forked = False  # set in the child of a fork (see forked)


def _after_fork_in_child():
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def forked() -> bool:
    """Whether this process is the child of a ``fork()`` made after this module was
    imported. There, Numba's OpenMP layer is off limits: GNU OpenMP is not fork-safe,
    and Numba terminates a forked child that starts a parallel region once the parent
    had set the layer up ("Terminating: fork() called from a process already using GNU
    OpenMP, this is unsafe."), which a child cannot tell from here."""
    return _forked


def _teams() -> bool:
    """Whether the launchers may be used: Numba's threading layer is OpenMP or TBB,
    which take parallel launches from several threads at once (``workqueue``, the layer
    of last resort, aborts the process on concurrent launches: then the pool runs the
    chunks, as it does for every call before this is known). :func:`_launcher` asks
    this only outside a forked child (:func:`forked`)."""
    global _team
    if _team is None:
        try:
            import numba
            from numba.np.ufunc import parallel

            parallel._launch_threads()
            _team = numba.threading_layer() in ("omp", "tbb")
        except Exception:  # noqa: BLE001 - Numba internals differ: the pool it is
            _team = False
    return _team


def _launcher(name, dtype):
    """``(launcher, kernel as a first-class function)`` for the kernel ``name``, compiled
    (or loaded from the disk cache) the first time; None where the launchers may not be
    used."""
    key = (name, np.dtype(dtype))
    if _forked:
        return None
    if key not in _launchers:
        _launchers[key] = None
        if _teams():
            from numba.core.types.function_type import CompileResultWAP

            sig = _SIGS[name](key[1])
            kernel = CompileResultWAP(dispatcher(name).get_compile_result(types.none(*sig)))
            fn_type = types.FunctionType(types.none(*sig))
            launcher = _LAUNCHERS[name].compile((fn_type,) + sig[:-2])
            _launchers[key] = (launcher, kernel)
    return _launchers[key]


def _entry(name, dtype):
    """The compiled kernel for ``dtype``, called without Numba's dispatcher.

    Every array argument is typed as any-layout ('A'), so one compilation per
    dtype serves contiguous arrays and strided views alike (the kernels read
    the strides), and the call skips the dispatcher's type matching.
    ``compile`` loads from the on-disk cache when it can; where a background
    process (:mod:`npmdn._numba.warm`) is compiling this kernel, it waits for
    that process first and then loads what it wrote.
    """
    key = (name, dtype)
    fn = _entries.get(key)
    if fn is None:
        if before_compile is not None:
            before_compile(name)
        fn = _entries[key] = dispatcher(name).compile(_SIGS[name](dtype))
    return fn


def dispatcher(name):
    """Numba's dispatcher of the kernel ``name`` (a key of :data:`_SIGS`)."""
    return getattr(_MODULES[name], name)


def signature(name, dtype):
    """The one signature ``name`` is compiled for, for arrays of ``dtype``."""
    return _SIGS[name](np.dtype(dtype))


def _n_chunks(items, tile):
    """The chunks of ``tile``-item tiles that a call over ``items`` items is cut into:
    ``CHUNKS_PER_THREAD`` per thread.

    A chunk is a range of whole tiles, and a tile's result depends on the tile
    only, so the results are the same bit for bit for any number of chunks."""
    n_tiles = -(-items // tile)
    return max(1, min(n_tiles, config.CHUNKS_PER_THREAD * get_num_threads()))


# The kernels are serial and release the GIL (``nogil=True``); where the launchers may
# not be used (_teams), a call runs the chunks of its work on the calling thread and on
# up to get_num_threads() - 1 threads of this pool, each taking the next chunk not yet
# taken. A parallel (prange) kernel would cost 2-3 times the compile time on a fresh
# install; a launcher calling the serial kernel costs 0.4 s.
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _workers():
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max(1, _nb_config.NUMBA_NUM_THREADS - 1),
                                           thread_name_prefix="npmdn-kernel")
    return _pool


def _call(name, dtype, work, per_thread, n_chunks, *args):
    """The kernel ``name``: ``fn(*args, c0, c1)`` over the chunks ``[0, n_chunks)`` on at
    most ``work // per_thread`` threads (at least one, the caller's; at most
    ``numba.get_num_threads()``): by a launcher on Numba's threads where it may
    (:func:`_teams`), else on the caller's thread and this module's pool."""
    fn = _entry(name, dtype)
    use = min(get_num_threads(), work // per_thread, n_chunks)
    if use <= 1:
        return fn(*args, 0, n_chunks)
    launch = _launcher(name, dtype)
    if launch is not None:
        launcher, kernel = launch
        # (set here: in the launcher, these calls would keep it out of the disk cache)
        threads, chunk = get_num_threads(), set_parallel_chunksize(1)
        set_num_threads(use)
        try:
            return launcher(kernel, *args)
        finally:
            set_num_threads(threads)
            set_parallel_chunksize(chunk)
    lock = threading.Lock()
    nxt = [0]

    def run():
        while True:
            with lock:
                c = nxt[0]
                nxt[0] = c + 1
            if c >= n_chunks:
                return
            fn(*args, c, c + 1)

    futures = [_workers().submit(run) for _ in range(use - 1)]
    try:
        run()
    finally:
        # A helper that has not started yet finds nothing left to do: cancel it rather
        # than wait for it to be scheduled (milliseconds on a busy machine).
        for f in futures:
            if not f.cancel():
                f.result()


def _rows2d(a, n, width):
    """A [n, width] view of ``a`` (no copy) with unit inner stride, or None."""
    try:
        v = a.reshape(n, width, copy=False)
    except ValueError:
        return None
    if width > 1 and v.strides[1] != v.itemsize:
        return None
    return v


def _in2d(a, n, width):
    v = _rows2d(a, n, width)
    return np.ascontiguousarray(a).reshape(n, width) if v is None else v


def _head_args(logits, mu, log_sigma, y):
    n, k = logits.shape
    d = mu.shape[2]
    s = log_sigma.shape[2]
    return (n, k, d, s), (
        _in2d(logits, n, k), _in2d(mu, n, k * d), _in2d(log_sigma, n, k * s), _in2d(y, n, d),
    )


def _head_name(d, s, grad=True):
    """The head kernel for these scales: full factors have their own (``full.py``);
    diagonal and isotropic ones one for the NLL with its gradient and one for the
    log-density alone (``head.py``)."""
    if is_full(d, s):
        return "full_kernel"
    return "head_kernel" if grad else "density_kernel"


def nll_grad(logits, mu, log_sigma, y, out=None):
    """Per-row NLL and its gradient; see :func:`npmdn.mixture.nll_grad`."""
    (n, k, d, s), ins = _head_args(logits, mu, log_sigma, y)
    dtype = logits.dtype
    name = _head_name(d, s)
    if out is None:  # one [n, P] gradient, returned as views (as a model's head output)
        g = np.empty((n, k * (1 + d + s)), dtype)
        out = (np.empty(n, dtype), g[:, :k], g[:, k:k + k * d].reshape(n, k, d),
               g[:, k + k * d:].reshape(n, k, s))
    nll, dl, dm, ds = out
    outs2d = [_rows2d(nll, n, 1), _rows2d(dl, n, k), _rows2d(dm, n, k * d), _rows2d(ds, n, k * s)]
    tmp = [np.empty((n, w), dtype) if v is None else v
           for v, w in zip(outs2d, (1, k, k * d, k * s), strict=True)]
    tile = config.HEAD_TILE
    chunks = _n_chunks(n, tile)
    _call(name, dtype, n, config.HEAD_MIN_ROWS_PER_THREAD, chunks,
          *ins, tmp[0][:, 0], tmp[1], tmp[2], tmp[3], True, tile, chunks)
    for dst, v, t in zip(out, outs2d, tmp, strict=True):
        if v is None:  # an output the kernel could not write in place
            dst[...] = t.reshape(dst.shape)
    return tuple(out)


def log_prob(logits, mu, log_sigma, y):
    """Per-row ``log p(y)``; see :func:`npmdn.mixture.log_prob`."""
    (n, _, d, s), ins = _head_args(logits, mu, log_sigma, y)
    name = _head_name(d, s, grad=False)
    out = np.empty(n, logits.dtype)
    unused = np.empty((1, 1), logits.dtype)
    tile = config.HEAD_TILE
    chunks = _n_chunks(n, tile)
    _call(name, logits.dtype, n, config.HEAD_MIN_ROWS_PER_THREAD, chunks,
          *ins, out, unused, unused, unused, False, tile, chunks)
    return out


def sample(logits, mu, log_sigma, n_samples, seed, row_offset=0, method="gumbel",
           temperature=1.0, sigma_scale=1.0):
    """Draws [N, n_samples, D]; the same stream as :func:`npmdn.mixture.sample`."""
    if method not in ("gumbel", "cumulative"):
        raise ValueError(f"method must be 'gumbel' or 'cumulative', got {method!r}")
    n, k = logits.shape
    d = mu.shape[2]
    s = log_sigma.shape[2]
    dtype = mu.dtype
    ins = (_in2d(logits, n, k), _in2d(mu, n, k * d), _in2d(log_sigma, n, k * s))
    out = np.empty((n, n_samples, d), dtype)
    seed = int(seed)
    tile = config.SAMPLE_TILE
    chunks = _n_chunks(n * n_samples, tile)
    _call(
        "sample_kernel", dtype, n * n_samples, config.SAMPLE_MIN_DRAWS_PER_THREAD,
        chunks, *ins, int(n_samples), np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32),
        np.uint64(row_offset), method == "gumbel", float(temperature), float(sigma_scale),
        out.reshape(n * n_samples, d), tile, chunks, GUMBEL_MARGIN,
    )
    return out


# --------------------------------------------------------------------------
# first-run compilation, said out loud
# --------------------------------------------------------------------------

# the kernels a run compiles and what each does
KERNELS = {"head_kernel": "log-likelihood gradient", "density_kernel": "log-likelihood",
           "full_kernel": "full-covariance log-likelihood", "sample_kernel": "sampling",
           "train_epoch_parallel": "training", "train_epoch_serial": "training",
           "shuffle_arange": "minibatch order"}
# about how long each takes to compile on one core of the 2-core development machine
# (measured; for the messages only): here, and in a process that only compiles where that
# is faster (npmdn._numba.warm, npmdn._numba.compiling)
COMPILE_SECONDS = {"head_kernel": 5, "density_kernel": 4, "full_kernel": 5, "sample_kernel": 6,
                   "shuffle_arange": 1,
                   "train_epoch_parallel": 25, "train_epoch_serial": 17}
COMPILE_SECONDS_APART = {"train_epoch_parallel": 11, "train_epoch_serial": 9, "density_kernel": 3}
_notes: list = []  # callbacks registered by on_compile


def compile_seconds(name, apart=False) -> float:
    """About how long ``name`` takes to compile (``apart``: in a compile-only process)."""
    if apart and name in COMPILE_SECONDS_APART:
        return COMPILE_SECONDS_APART[name]
    return COMPILE_SECONDS.get(name, 10)


def say(message) -> None:
    """Pass ``message`` (a sentence about compiling) to every :func:`on_compile` callback."""
    for note in list(_notes):
        note(message)


def on_compile(callback) -> None:
    """Call ``callback(message)`` whenever one of :data:`KERNELS` starts compiling
    (``message``: what compiles and about how long it takes), and when a
    background compile starts or is waited for (:mod:`npmdn._numba.warm`).

    Loading a kernel from Numba's on-disk cache is no compilation and calls
    nothing, so this fires on the first run on a machine (or after an upgrade)
    only. Uses Numba's event API (``numba:compile``), which fires exactly
    when the dispatcher compiles and not when its cache answers.
    """
    from numba.core import event

    class _Listener(event.Listener):
        def on_start(self, ev):
            fn = getattr(ev.data.get("dispatcher"), "py_func", None)
            name = getattr(fn, "__name__", None)
            if name in KERNELS and getattr(fn, "__module__", "").startswith(__package__):
                callback(f"compiling the numba {KERNELS[name]} kernel for this machine "
                         f"(first run only, about {compile_seconds(name)} s)...")

        def on_end(self, ev):
            pass

    _notes.append(callback)
    event.register("numba:compile", _Listener())
