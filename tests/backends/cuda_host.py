"""The host build of the CUDA kernels' math: compile, load through ctypes, call.

``kernels/mdn_math.cuh`` holds the per-sample math as ``__host__ __device__``
functions; ``cuda_host_shim.cpp`` wraps it in entry points that take exactly
the kernels' parameter lists (``host_mdn_nll_grad_f64`` for
``mdn_nll_grad_f64``, and so on), so the argument tuples that
:mod:`npmdn._cuda.plan` builds for the GPU launches run here unchanged.

Importable without pytest: ``docs/derivation_check.py`` loads this file by
path and calls :func:`build_library` (the tests call :func:`build`, which
turns a missing compiler into a skip).
"""

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from npmdn._cuda import sources as ks

SHIM = Path(__file__).with_name("cuda_host_shim.cpp")
CXX_FLAGS = ["-std=c++17", "-O2", "-ffp-contract=off", "-fPIC", "-shared",
             "-Wall", "-Wextra", "-Werror"]


def compiler():
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class NoCompiler(RuntimeError):
    """No C++ compiler on PATH: the host build cannot be made here."""


def build_library(directory):
    """Compile the host build into ``directory`` and load it through ctypes.

    Raises :class:`NoCompiler` without a compiler, ``RuntimeError`` (with the
    command and its output) when the compilation fails.
    """
    cxx = compiler()
    if cxx is None:
        raise NoCompiler("no C++ compiler ($CXX, c++, g++ or clang++) on PATH: "
                         "the host build of kernels/mdn_math.cuh cannot be made")
    out = Path(directory) / "mdn_host.so"
    cmd = [cxx, *CXX_FLAGS, "-I", str(ks.kernel_dir()), str(SHIM), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{res.stdout}{res.stderr}")
    return ctypes.CDLL(str(out))


def build(directory):
    """:func:`build_library` for the tests: skipped, saying why, without a compiler."""
    import pytest

    try:
        return build_library(directory)
    except NoCompiler as exc:
        pytest.skip(str(exc))


_CTYPES = {np.int64: ctypes.c_int64, np.int32: ctypes.c_int32, np.uint64: ctypes.c_uint64,
           np.uint32: ctypes.c_uint32, np.float64: ctypes.c_double}


def _c(v):
    if isinstance(v, np.ndarray):
        return ctypes.c_void_p(v.ctypes.data)
    return _CTYPES[type(v)](v)


def call(lib, name, *args):
    fn = getattr(lib, name)
    fn.restype = None
    fn(*(_c(a) for a in args))


def run(lib, plan):
    """What npmdn._cuda.kernels does with a plan, with the host build in place of the GPU."""
    if plan.total > 0:
        call(lib, "host_" + plan.name, *plan.args)
    return plan.finish()
