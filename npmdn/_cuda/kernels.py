"""The GPU backend's kernels: CUDA C from ``kernels/`` through CuPy ``RawModule``.

``nll_grad``, ``log_prob`` and ``sample`` have the signatures and results of
the NumPy reference in :mod:`npmdn.mixture`; they take and return CuPy
arrays. The source (``mdn_kernels.cu`` with ``mdn_math.cuh`` inlined) is
compiled by NVRTC once per device and cached (in memory per process, and by
CuPy on disk across processes, keyed by the source text).

Argument checks and layouts are in :mod:`npmdn._cuda.plan`, shared with
the host-build tests; this module only launches.

CuPy compiles with ``-ftz=true``: float32 results below the smallest normal
float (1.2e-38) are flushed to zero on the GPU, where NumPy keeps them as
subnormals. Float64, and the float64 component choice, are unaffected.
"""

from __future__ import annotations

import cupy

from .. import config
from .._arrays import is_device_array
from .._checks import InputDTypeError
from . import plan as ka
from . import sources as ks

# Pinned because NVRTC's default C++ dialect differs between CUDA versions.
NVRTC_OPTIONS = ("--std=c++17",)
THREADS = ks.threads_per_block()  # must equal MDN_THREADS (the kernels' launch bounds)


@cupy.memoize(for_each_device=True)
def module() -> cupy.RawModule:
    """The compiled module for the current device (compiled on first use, then cached)."""
    return cupy.RawModule(code=ks.source(), options=NVRTC_OPTIONS)


@cupy.memoize(for_each_device=True)
def _function(name: str):
    return module().get_function(name)


def _on_device(arrays):
    bad = [type(a).__name__ for a in arrays if not is_device_array(a)]
    if bad:
        raise InputDTypeError(
            f"the cupy backend's kernels take CuPy arrays, got {', '.join(sorted(set(bad)))}; "
            "move them with cupy.asarray first"
        )
    devices = {a.device.id for a in arrays}
    if len(devices) > 1:
        raise ValueError(f"the arrays are on different devices: {sorted(devices)}")


def _run(make_plan, device):
    # the current device decides where temporaries live and which compiled module runs
    with device:
        plan = make_plan()
        if plan.total > 0:
            blocks = min(config.CUDA_MAX_BLOCKS, -(-plan.total // THREADS))
            _function(plan.name)((blocks,), (THREADS,), plan.args)
        return plan.finish()


def nll_grad(logits, mu, log_sigma, y, out=None):
    """Per-row NLL [N] and its gradient; see :func:`npmdn.mixture.nll_grad`."""
    _on_device([logits, mu, log_sigma, y, *(out or ())])
    return _run(lambda: ka.plan_nll_grad(cupy, logits, mu, log_sigma, y, out), logits.device)


def log_prob(logits, mu, log_sigma, y):
    """``log p(y | mixture)`` per row [N]; see :func:`npmdn.mixture.log_prob`."""
    _on_device([logits, mu, log_sigma, y])
    return _run(lambda: ka.plan_log_prob(cupy, logits, mu, log_sigma, y), logits.device)


def sample(logits, mu, log_sigma, n_samples, seed, row_offset=0, method="gumbel",
           temperature=1.0, sigma_scale=1.0):
    """[N, n_samples, D] draws on the Philox stream; see :func:`npmdn.mixture.sample`."""
    _on_device([logits, mu, log_sigma])
    return _run(
        lambda: ka.plan_sample(cupy, logits, mu, log_sigma, n_samples, seed, row_offset,
                               method, temperature, sigma_scale),
        logits.device,
    )
