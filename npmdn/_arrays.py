"""NumPy or CuPy: which array module an array belongs to, found without importing CuPy
(and whether it is a lazy Dask array, without importing Dask)."""

from __future__ import annotations

import numpy as np


def is_device_array(a) -> bool:
    """True for a CuPy array, found without importing CuPy."""
    return type(a).__module__.startswith("cupy")


def is_lazy_array(a) -> bool:
    """True for a Dask array (whose blocks are checked when computed), without importing Dask."""
    return type(a).__module__.startswith("dask.")


def array_module(a):
    """``cupy`` for a CuPy array, else ``numpy``."""
    if is_device_array(a):
        import cupy

        return cupy
    return np
