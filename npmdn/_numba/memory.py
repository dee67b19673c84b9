"""Scratch arrays on cache lines, inside jitted code: :func:`empty_lines`.

Numba's ``np.empty`` asks its allocator for 32-byte alignment ("AVX prefers
32-byte alignment", ``BaseContext.get_preferred_array_alignment``), so a
kernel's tile buffer starts on a 64-byte line or half-way into one, a coin
toss per allocation. The head kernels' loops load and store whole tile rows
with 512-bit vectors (``prefer_wide_vectors``); from a buffer that starts
half-way into a line every such access straddles two lines. With every
buffer on a line the head kernels ran 0.91-1.00 of their time at every
shape of ``bench.ab_kernels --same-process`` (NLL + gradient at (2^20, 5, 1)
float32 0.96, at (65536, 8, 4) 0.91) and the sampling kernel ~0.9
(alternating processes).

``empty_lines(shape, dtype)`` is ``np.empty(shape, dtype)`` (C order) with
the allocation asked for 64-byte alignment: Numba's own lowering of
``np.empty`` (``numba.np.arrayobj._empty_nd_impl``) with the context's
preferred alignment answered 64 for that one call. Those are Numba internals;
where they are missing (another Numba) it is plain ``np.empty``, as fast as
before and as correct.

The training epoch's scratch is allocated by NumPy on the Python side:
:func:`aligned_zeros` puts it on a line.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import intrinsic, overload

CACHE_LINE = 64


def aligned_zeros(shape, dtype, align=CACHE_LINE):
    """``np.zeros(shape, dtype)`` (host side) starting on an ``align``-byte boundary.

    NumPy's buffers are 16-byte aligned: a large one comes from ``mmap`` 16 bytes
    into a page, so a 512-bit load of a row of the training scratch straddled two
    cache lines in some fits and not in others (whatever address the allocator gave);
    a chunk of the seed set-up took 26 us aligned and 30-31 us misaligned by 16 or 32
    bytes in the same process."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape))
    buf = np.zeros(n + align // dt.itemsize, dt)
    skip = (-buf.ctypes.data % align) // dt.itemsize
    return buf[skip:skip + n].reshape(shape)


def empty_lines(shape, dtype):
    """``np.empty(shape, dtype)`` starting on a 64-byte line (jitted code only)."""
    raise NotImplementedError


try:
    from numba.core.typing.npydecl import parse_dtype, parse_shape
    from numba.np.arrayobj import _empty_nd_impl, _parse_empty_args

    @intrinsic
    def _empty_on_lines(typingctx, ty_shape, ty_dtype, ty_retty_ref):
        ty_retty = ty_retty_ref.instance_type
        sig = ty_retty(ty_shape, ty_dtype, ty_retty_ref)

        def codegen(context, builder, signature, args):
            arrtype, shapes = _parse_empty_args(context, builder, signature, args)
            # an instance attribute shadows the context's method for this one lowering
            # (code generation runs under Numba's compiler lock)
            context.get_preferred_array_alignment = lambda ty: CACHE_LINE
            try:
                ary = _empty_nd_impl(context, builder, arrtype, shapes)
            finally:
                del context.get_preferred_array_alignment
            return ary._getvalue()

        return sig, codegen

    @overload(empty_lines)
    def _empty_lines_ol(shape, dtype):
        nb_dtype = parse_dtype(dtype)
        ndim = parse_shape(shape)
        if nb_dtype is None or ndim is None:
            return None
        retty = types.Array(nb_dtype, ndim, "C")
        return lambda shape, dtype: _empty_on_lines(shape, dtype, retty)

    HAVE_LINES = True
except ImportError:  # pragma: no cover - another Numba's internals
    HAVE_LINES = False

    @overload(empty_lines)
    def _empty_lines_plain(shape, dtype):
        return lambda shape, dtype: np.empty(shape, dtype)
