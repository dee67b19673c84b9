"""Argument plans for the CUDA kernels: checks, layouts, and the argument tuples.

Written against an array module ``xp`` (CuPy for the GPU launches in
:mod:`npmdn._cuda.kernels`; NumPy for the tests, which hand the same tuples
to a host build of the kernels through ctypes), so everything but the launch
itself is exercised on machines without a GPU.

Kernels ignore strides, so each array goes in as a pointer plus a row
stride in elements. That covers the layout the model uses, row-strided views
of one ``[N, P]`` head output and of one gradient buffer, without copies.
An input in any other layout is copied to a contiguous one; an output that
cannot be written in place (other layout, or overlapping an input or another
output) is computed into a fresh array and copied back, as the reference does.

Argument order and types match ``MDN_*_PARAMS`` in ``kernels/mdn_math.cuh``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .._arrays import is_device_array
from .._checks import FLOAT_DTYPES, InputDTypeError
from ..fullcov import is_full, n_scales
from ..mixture import SAMPLE_METHODS


def _address(a) -> int:
    return a.data.ptr if is_device_array(a) else a.ctypes.data


def row_stride(a):
    """Row stride in elements when ``a`` is ``[N, ...]`` with C-contiguous trailing
    axes and an element-aligned start; ``None`` when the kernels cannot read it."""
    item = a.itemsize
    if a.size == 0:
        return math.prod(a.shape[1:])  # nothing is read or written
    if _address(a) % item:
        return None
    expect = item
    for size, stride in zip(reversed(a.shape[1:]), reversed(a.strides[1:])):
        if size != 1 and stride != expect:
            return None
        expect *= size
    if a.shape[0] <= 1:
        return math.prod(a.shape[1:])  # one row: its stride never matters
    if a.strides[0] % item:
        return None
    return a.strides[0] // item


def _rows_bytes(a, ld):
    """(start, stride, row length) in bytes, the stride made positive."""
    item = a.itemsize
    start, stride, length = _address(a), ld * item, math.prod(a.shape[1:]) * item
    if stride < 0:
        start += (a.shape[0] - 1) * stride
        stride = -stride
    return start, stride, length


def overlap(a, lda, b, ldb) -> bool:
    """Whether two row-strided arrays (row strides in elements) share a byte.

    Exact for what the model passes, views of one buffer interleaved row by
    row with the same stride; otherwise it compares the bounds, which may
    report an overlap that is not there (costing a copy, never a wrong result).
    Pure host arithmetic: no device work, unlike CuPy's exact ``shares_memory``.
    """
    if a.size == 0 or b.size == 0:
        return False
    (pa, sa, ra), (pb, sb, rb) = _rows_bytes(a, lda), _rows_bytes(b, ldb)
    na, nb = a.shape[0], b.shape[0]
    if pa + (na - 1) * sa + ra <= pb or pb + (nb - 1) * sb + rb <= pa:
        return False  # disjoint bounds
    if na == 1:
        sa = sb
    if nb == 1:
        sb = sa
    if sa != sb or sa == 0 or ra > sa or rb > sb:
        return True
    # row i of a meets row j of b iff -rb < (pb - pa) + (j - i) s < ra; that open
    # interval is shorter than 2 s, so only t = j - i next to -(pb - pa) / s can.
    delta, s = pb - pa, sa
    t0 = -delta // s
    for t in range(max(-(na - 1), t0 - 1), min(nb - 1, t0 + 1) + 1):
        if -rb < delta + t * s < ra:
            return True
    return False


def _dims(logits, mu, log_sigma, y=None):
    """(N, K, D, S, dtype) after checking shapes and one float dtype."""
    arrays = [("logits", logits, 2), ("mu", mu, 3), ("log_sigma", log_sigma, 3)]
    if y is not None:
        arrays.append(("y", y, 2))
    for name, a, nd in arrays:
        if a.ndim != nd:
            raise ValueError(f"{name} must be {nd}-D, got shape {tuple(a.shape)}")
    dtype = logits.dtype
    if dtype not in FLOAT_DTYPES or any(a.dtype != dtype for _, a, _ in arrays):
        desc = ", ".join(f"{nm}={a.dtype}" for nm, a, _ in arrays)
        raise InputDTypeError(f"the CUDA kernels need one float32 or float64 dtype, got {desc}")
    n, k = logits.shape
    d = mu.shape[2]
    s = log_sigma.shape[2]
    if mu.shape[:2] != (n, k) or log_sigma.shape[:2] != (n, k) or s not in (1, d, n_scales(d)):
        raise ValueError(
            f"expected logits [N, K], mu [N, K, D], log_sigma [N, K, 1, D or D (D + 1) / 2]; "
            f"got {tuple(logits.shape)}, {tuple(mu.shape)}, {tuple(log_sigma.shape)}"
        )
    if y is not None and y.shape != (n, d):
        raise ValueError(f"y must have shape [N, D] = [{n}, {d}], got {tuple(y.shape)}")
    if k < 1 or d < 1:
        raise ValueError(f"need K >= 1 components and D >= 1 dimensions, got K={k}, D={d}")
    if max(k, d) >= 2**31:
        raise ValueError(f"K and D must be below 2**31, got K={k}, D={d}")
    return n, k, d, s, dtype


def _inputs(xp, arrays):
    """[(array, row stride)], copying only arrays whose layout the kernels cannot read."""
    out = []
    for a in arrays:
        ld = row_stride(a)
        if ld is None:
            a = xp.ascontiguousarray(a)
            ld = math.prod(a.shape[1:])
        out.append((a, ld))
    return out


@dataclass
class Plan:
    """One launch: ``args`` in kernel order over ``total`` threads' worth of work;
    after it, :meth:`finish` copies temporaries back into the caller's outputs."""

    name: str  # kernel name, mdn_<op>_<f32|f64>
    total: int  # rows (or rows x draws): 0 means nothing to launch
    args: tuple
    result: object
    writeback: list = field(default_factory=list)

    def finish(self):
        for dst, tmp in self.writeback:
            dst[...] = tmp
        return self.result


def _suffix(dtype) -> str:
    return {"float32": "f32", "float64": "f64"}[np.dtype(dtype).name]


def _kernel(op, d, s, dtype) -> str:
    """``mdn_<op>_<f32|f64>``, or ``mdn_<op>_full_<...>`` for full-covariance factors."""
    return f"mdn_{op}_{'full_' if is_full(d, s) else ''}{_suffix(dtype)}"


def _i64(v):
    return np.int64(v)


def _i32(v):
    return np.int32(v)


def plan_nll_grad(xp, logits, mu, log_sigma, y, out=None) -> Plan:
    n, k, d, s, dtype = _dims(logits, mu, log_sigma, y)
    ins = _inputs(xp, (logits, mu, log_sigma, y))
    shapes = [(n,), (n, k), (n, k, d), (n, k, s)]
    names = ("nll", "d_logits", "d_mu", "d_log_sigma")
    writeback = []
    if out is None:
        outs = [xp.empty(sh, dtype=dtype) for sh in shapes]
        result = tuple(outs)
        dests = [(o, math.prod(sh[1:])) for o, sh in zip(outs, shapes)]
    else:
        out = tuple(out)
        if len(out) != 4:
            raise ValueError(f"out must be a tuple of 4 arrays {names}, got {len(out)}")
        for nm, o, sh in zip(names, out, shapes):
            if tuple(o.shape) != sh or o.dtype != dtype:
                raise ValueError(
                    f"out {nm} must have shape {sh} and dtype {dtype}, "
                    f"got {tuple(o.shape)} and {o.dtype}"
                )
        result = out
        dests = []
        out_ld = [row_stride(o) for o in out]
        for i, (o, sh) in enumerate(zip(out, shapes)):
            ld = out_ld[i]
            row = math.prod(sh[1:])
            others = ins + [(b, lb) for j, (b, lb) in enumerate(zip(out, out_ld)) if j != i]
            safe = (
                ld is not None
                and (n <= 1 or abs(ld) >= row)  # rows must not overlap each other
                and not any(
                    xp.may_share_memory(o, b) if lb is None else overlap(o, ld, b, lb)
                    for b, lb in others
                )
            )
            if not safe:
                tmp = xp.empty(sh, dtype=dtype)
                writeback.append((o, tmp))
                o, ld = tmp, row
            dests.append((o, ld))
    args = [_i64(n), _i32(k), _i32(d), _i32(s)]
    for a, ld in ins + dests:
        args += [a, _i64(ld)]
    return Plan(_kernel("nll_grad", d, s, dtype), n, tuple(args), result, writeback)


def plan_log_prob(xp, logits, mu, log_sigma, y) -> Plan:
    n, k, d, s, dtype = _dims(logits, mu, log_sigma, y)
    out = xp.empty((n,), dtype=dtype)
    args = [_i64(n), _i32(k), _i32(d), _i32(s)]
    for a, ld in _inputs(xp, (logits, mu, log_sigma, y)) + [(out, 1)]:
        args += [a, _i64(ld)]
    return Plan(_kernel("log_prob", d, s, dtype), n, tuple(args), out)


def plan_sample(xp, logits, mu, log_sigma, n_samples, seed, row_offset=0, method="gumbel",
                temperature=1.0, sigma_scale=1.0) -> Plan:
    n, k, d, s, dtype = _dims(logits, mu, log_sigma)
    if method not in SAMPLE_METHODS:
        raise ValueError(f"method must be one of {SAMPLE_METHODS}, got {method!r}")
    n_samples, seed, row_offset = int(n_samples), int(seed), int(row_offset)
    if not 0 <= n_samples < 2**32:
        raise ValueError(f"n_samples must be in [0, 2**32), got {n_samples}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    if not 0 <= row_offset < 2**64:
        raise ValueError(f"row_offset must be in [0, 2**64), got {row_offset}")
    out = xp.empty((n, n_samples, d), dtype=dtype)
    (a, lda), (m, ldm), (ls, lds) = _inputs(xp, (logits, mu, log_sigma))
    args = (
        _i64(n), _i64(n_samples), _i32(k), _i32(d), _i32(s),
        a, _i64(lda), m, _i64(ldm), ls, _i64(lds),
        np.uint64(seed), np.uint64(row_offset), _i32(SAMPLE_METHODS.index(method)),
        np.float64(temperature), np.float64(sigma_scale), out,
    )
    return Plan(_kernel("sample", d, s, dtype), n * n_samples, args, out)
