"""The backends under test, as one fixture: ``be`` runs the backend contract
(tests/backends/test_contract.py) on numpy, numba, cuda-host and cupy.

``cuda-host`` is the CUDA kernels' per-sample math compiled for the CPU
(``cuda_host.py``) and called with the argument tuples that
:mod:`npmdn._cuda.plan` builds for the GPU launches: everything but the
launch itself. Each parameter names its backend; one that cannot run here
is skipped with the reason (no C++ compiler; no CUDA device), never silently.
"""

import cuda_host
import numpy as np
import pytest
from cases import cupy_or_skip

from npmdn import mixture
from npmdn._cuda import plan as ka

BACKENDS = ["numpy", "numba", "cuda-host", pytest.param("cupy", marks=pytest.mark.gpu)]
ACCELERATED = BACKENDS[1:]  # checked against the NumPy reference, which numpy itself is


@pytest.fixture(scope="session")
def host_lib(tmp_path_factory):
    """The host build of the CUDA math (skipped, saying why, without a C++ compiler)."""
    return cuda_host.build(tmp_path_factory.mktemp("cuda_host"))


class Kernels:
    """One backend's ``nll_grad``, ``log_prob`` and ``sample``, with the signatures of
    :mod:`npmdn.mixture`, and ``put``/``get`` to move arrays to it and back."""

    def __init__(self, name, nll_grad, log_prob, sample, xp=np):
        self.name, self.xp = name, xp
        self.nll_grad, self.log_prob, self.sample = nll_grad, log_prob, sample

    def put(self, arrays):
        return [self.xp.asarray(a) for a in arrays]

    def get(self, a):
        return a.get() if hasattr(a, "get") else np.asarray(a)

    def __repr__(self):
        return self.name


def _cupy_kernels():
    cupy = cupy_or_skip()
    from npmdn._cuda import kernels as ck

    return Kernels("cupy", ck.nll_grad, ck.log_prob, ck.sample, xp=cupy)


def _host_kernels(lib):
    return Kernels(
        "cuda-host",
        lambda *a, out=None: cuda_host.run(lib, ka.plan_nll_grad(np, *a, out=out)),
        lambda *a: cuda_host.run(lib, ka.plan_log_prob(np, *a)),
        lambda *a: cuda_host.run(lib, ka.plan_sample(np, *a)),
    )


def make_kernels(name, request):
    if name == "numpy":
        return Kernels("numpy", mixture.nll_grad, mixture.log_prob, mixture.sample)
    if name == "numba":
        from npmdn._numba import kernels as nk

        return Kernels("numba", nk.nll_grad, nk.log_prob, nk.sample)
    if name == "cuda-host":
        return _host_kernels(request.getfixturevalue("host_lib"))
    return _cupy_kernels()


@pytest.fixture(params=BACKENDS)
def be(request):
    """Every backend, the NumPy reference included."""
    return make_kernels(request.param, request)


@pytest.fixture(params=ACCELERATED)
def fast(request):
    """The backends held to the NumPy reference."""
    return make_kernels(request.param, request)
