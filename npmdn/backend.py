"""The one backend switch.

A backend names an array module (``xp``) and the three mixture-head kernels
every backend provides with the same signatures and the same results as the
NumPy reference in :mod:`npmdn.mixture`:

``nll_grad(logits, mu, log_sigma, y, out=None) -> (nll, d_logits, d_mu, d_log_sigma)``
``log_prob(logits, mu, log_sigma, y) -> [N]``
``sample(logits, mu, log_sigma, n_samples, seed, row_offset, method, temperature, sigma_scale)``

The kernels take arrays already checked (see :mod:`npmdn._checks`); the
head's arrays may be row-strided views of one ``[N, P]`` head output, with
contiguous trailing axes.

A backend may also offer a fused training epoch, ``fused_fit(net, head, opt,
xs, ys, batch_size, steps, clip_norm, noise=None, rows=None, log_floor=None)``
(the noise of :class:`npmdn.regularization.Noise` and the rows' indices in its
stream, the sigma floor's ``log f`` per scale column), returning an object
with the interface of :class:`npmdn.training.StepLoop` (or None where it does
not apply); the numba backend does (:mod:`npmdn._numba.train`). A minibatch
fit draws its rows' order each epoch with ``permutation(rng, n)``:
``rng.permutation(n)``, or a faster draw of exactly the same that leaves ``rng``
in the same state (the numba backend's: :mod:`npmdn._numba.permute`).

Where each backend lives: ``numpy`` is :mod:`npmdn.mixture` itself;
``numba`` is :mod:`npmdn._numba.kernels`; ``cupy`` is :mod:`npmdn._cuda.kernels`.

Which backend runs, first match wins:

1. the ``backend=`` argument of the call or model;
2. :func:`set_backend`;
3. the environment variable ``NPMDN_BACKEND``;
4. automatically: ``cupy`` when CuPy is installed and a CUDA device answers,
   else ``numba`` when Numba imports, else ``numpy``.

Asking for a backend that cannot run here raises :class:`BackendUnavailable`
naming what is missing; npmdn never falls back silently to another backend.

BLAS threads (:func:`one_blas_thread`): the network's matrix products in
training are small (a batch of 256 rows by 64 units, the diagnostics' rows
each epoch), gain nothing from BLAS threads and lose badly when other
processes compete for the cores (a numpy-backend fit took 3x to 15x longer
with OpenBLAS's default threads beside two busy processes on a 2-core
machine); OpenBLAS's idle threads also spin after each product, against the
numba backend's own threads. So ``fit`` holds BLAS at one thread, through
``threadpoolctl`` (``pip install npmdn[fast]``), and gives the caller's
setting back afterwards. Inference keeps the caller's setting: a float32
row's result may depend on BLAS's threads (``config.NETWORK_PASS``), and
Dask's worker threads, where OpenBLAS takes no thread count, must give the
rows of the main thread. Without threadpoolctl BLAS keeps its threads in
``fit`` too: set ``OPENBLAS_NUM_THREADS=1`` (or ``OMP_NUM_THREADS=1``,
``MKL_NUM_THREADS=1``) instead.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from . import config
from ._arrays import is_device_array

BACKENDS = ("numpy", "numba", "cupy")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine."""


def _numpy_permutation(rng, n):
    return rng.permutation(n)


@dataclass(frozen=True)
class Backend:
    name: str
    xp: ModuleType
    nll_grad: Callable
    log_prob: Callable
    sample: Callable
    on_device: bool = False
    fused_fit: Callable | None = None
    permutation: Callable = _numpy_permutation

    def asarray(self, a, dtype=None):
        """Move a host array to this backend's memory (no copy when already there)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_host(self, a) -> np.ndarray:
        """A NumPy array, copied from the device if needed."""
        return a.get() if self.on_device else np.asarray(a)

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"


_selected: str | None = None
_cache: dict[str, Backend] = {}
_auto_choice: str | None = None


def _load_numpy() -> Backend:
    from . import mixture

    return Backend("numpy", np, mixture.nll_grad, mixture.log_prob, mixture.sample)


def _load_numba() -> Backend:
    if importlib.util.find_spec("numba") is None:
        raise BackendUnavailable(
            "backend 'numba' needs the numba package, which is not installed "
            "(pip install numba)"
        )
    try:
        from ._numba import kernels as nk
        from ._numba import permute, warm
    except ImportError as exc:  # e.g. numba present but llvmlite broken
        raise BackendUnavailable(f"backend 'numba' could not load: {exc}") from exc
    # the fused epoch (npmdn._numba.train), with a first run's background compile
    return Backend("numba", np, nk.nll_grad, nk.log_prob, nk.sample, fused_fit=warm.plan,
                   permutation=permute.permutation)


def _load_cupy() -> Backend:
    if importlib.util.find_spec("cupy") is None:
        raise BackendUnavailable(
            "backend 'cupy' needs CuPy, which is not installed "
            "(pip install cupy-cuda12x or cupy-cuda13x to match your CUDA)"
        )
    try:
        import cupy
    except Exception as exc:  # CuPy installed but broken (missing CUDA libraries)
        raise BackendUnavailable(f"backend 'cupy': CuPy failed to import: {exc}") from exc
    try:
        n_dev = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise BackendUnavailable(
            f"backend 'cupy' needs a CUDA device, and none answered: {_why_no_device(exc)}"
        ) from exc
    if n_dev < 1:
        raise BackendUnavailable("backend 'cupy' needs a CUDA device, and none was found")
    try:  # the kernels are compiled at first use; a missing compiler should fail here
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:
        raise BackendUnavailable(
            "backend 'cupy' compiles its CUDA kernels with NVRTC, which CuPy could not "
            f"load ({type(exc).__name__}: {exc}); install it, e.g. pip install "
            "'cupy-cuda13x[ctk]' (or nvidia-cuda-nvrtc for your CUDA version)"
        ) from exc
    try:
        from ._cuda import kernels as ck
    except ImportError as exc:
        raise BackendUnavailable(f"backend 'cupy' could not load its kernels: {exc}") from exc
    return Backend("cupy", cupy, ck.nll_grad, ck.log_prob, ck.sample, on_device=True)


def _why_no_device(exc) -> str:
    """Name the missing piece behind a failed CUDA device query.

    With no NVIDIA driver at all, the CUDA runtime reports an *insufficient*
    driver, which sends people looking for an upgrade of something absent.
    """
    import ctypes

    try:
        ctypes.CDLL("nvcuda.dll" if os.name == "nt" else "libcuda.so.1")
    except OSError:
        return f"no NVIDIA driver is installed here (libcuda cannot be loaded; CUDA said: {exc})"
    if "InsufficientDriver" in str(exc):
        return (
            f"the NVIDIA driver is older than the CUDA runtime CuPy was built for ({exc}); "
            "update the driver or install the cupy-cuda* package that matches it"
        )
    return str(exc)


_LOADERS = {"numpy": _load_numpy, "numba": _load_numba, "cupy": _load_cupy}


def check_name(name) -> str:
    """``name`` lower-cased if it is one of :data:`BACKENDS`, else a ValueError."""
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}")
    return name.lower()


def _auto() -> str:
    global _auto_choice
    if _auto_choice is None:
        for name in ("cupy", "numba"):
            try:
                get_backend(name)
            except BackendUnavailable:
                continue
            _auto_choice = name
            break
        else:
            _auto_choice = "numpy"
    return _auto_choice


def _from_env() -> str | None:
    """``NPMDN_BACKEND`` checked: a backend's name, or None when unset or empty. A bad
    value is an error that names the variable, since nothing else the user typed is."""
    value = os.environ.get(config.ENV_BACKEND)
    if not value:
        return None
    if value.strip().lower() not in BACKENDS:
        raise ValueError(
            f"the environment variable {config.ENV_BACKEND} is {value!r}, which is not a "
            f"backend: set it to one of {', '.join(BACKENDS)}, or unset it for the automatic "
            "choice"
        )
    return value.strip().lower()


def get_backend(name: str | Backend | None = None) -> Backend:
    """Resolve a backend by the rules in the module docstring and load it (cached)."""
    if isinstance(name, Backend):
        return name
    if name is None:
        name = _selected or _from_env() or _auto()
    name = check_name(name)
    if name not in _cache:
        _cache[name] = _LOADERS[name]()
    return _cache[name]


def set_backend(name: str | None) -> Backend | None:
    """Choose the default backend for this process (``None`` restores the automatic choice).

    The backend is loaded at once, so an unusable choice fails here, not later.
    """
    global _selected
    if name is None:
        _selected = None
        return None
    backend = get_backend(check_name(name))
    _selected = backend.name
    return backend


def available_backends() -> list[str]:
    """The backends that can run on this machine."""
    out = []
    for name in BACKENDS:
        try:
            get_backend(name)
        except BackendUnavailable:
            continue
        out.append(name)
    return out


def backend_for_arrays(arrays, name=None) -> Backend:
    """The backend for a functional call on raw arrays.

    An explicit ``name``, :func:`set_backend` or ``NPMDN_BACKEND`` decide as
    usual. Otherwise the arrays do: CuPy arrays run on ``cupy``, NumPy arrays
    on the fastest CPU backend (``numba``, else ``numpy``).
    """
    if name is None:
        name = _selected or _from_env()
    if name is not None:
        return get_backend(name)
    if any(is_device_array(a) for a in arrays):
        return get_backend("cupy")
    try:
        return get_backend("numba")
    except BackendUnavailable:
        return get_backend("numpy")


# --------------------------------------------------------------------------
# BLAS threads
# --------------------------------------------------------------------------

_blas_lock = threading.Lock()
_blas_users = 0  # callers inside one_blas_thread (main thread)
_blas_limiter = None  # threadpoolctl's limiter while any is, to give the setting back


def _limit_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    try:
        return threadpool_limits(limits=1, user_api="blas")
    except Exception:  # noqa: BLE001 - a BLAS threadpoolctl cannot drive: leave it be
        return None


@contextlib.contextmanager
def one_blas_thread(backend: Backend):
    """Hold the host's BLAS at one thread inside (CPU backends; with threadpoolctl).

    Nests: the outermost gives back the setting found on entry. Acts in the
    main thread only: OpenBLAS takes a thread count set from the main thread
    and ignores one set from another (measured, OpenBLAS 0.3.31), so a limit
    set or given back from another thread could not be undone (Dask's workers
    run BLAS on one thread anyway). Without ``threadpoolctl`` it does nothing
    (see the module docstring).
    """
    global _blas_users, _blas_limiter
    if backend.on_device or threading.current_thread() is not threading.main_thread():
        yield
        return
    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = _limit_blas()
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                limiter, _blas_limiter = _blas_limiter, None
                limiter.restore_original_limits()
