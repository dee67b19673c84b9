"""8 x 8 block transposes between row-major data and tile scratch.

The head kernels work on structure-of-arrays scratch ``X[param, sample]``
while the data arrive row-major (one row per sample, any row stride). A
scalar transpose costs ~1 ns per element, as much as the mixture math, so
these emit LLVM IR directly: eight (masked) vector loads of eight columns,
a three-stage ``shufflevector`` transpose, eight vector stores. LLVM lowers
the shuffles to unpack/shuffle/permute instructions of the host ISA.

``tr_load8(A, i0, c0, nv, X, r0, t0)``:
    ``X[r0 + k, t0 + t] = A[i0 + t, c0 + k]`` for ``t < 8`` and ``k < nv``.
``tr_store8(X, r0, t0, nv, A, i0, c0)``:
    ``A[i0 + t, c0 + k] = X[r0 + k, t0 + t]`` for ``t < 8`` and ``k < nv``;
    reads rows ``r0 .. r0 + 7`` of X (pad X so they exist).

The caller guarantees: ``1 <= nv <= 8``, rows ``i0 .. i0 + 7`` and columns
``c0 .. c0 + nv - 1`` exist in A, A's column stride is its itemsize, and X
is C-contiguous (both checked by the Python wrappers and the tile loops).
Only the ``nv`` valid columns of A are touched (masked loads and stores), so
no element outside A's columns is read or written.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_W = 8

# the three-stage 8 x 8 transpose (verified by the tests through the kernels)
_S1 = ([0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15])
_S2 = ([0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15])
_S3 = ([0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15])


def _shuffle(builder, a, b, mask):
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), _W), mask))


def _transpose(builder, r):
    t = [None] * 8
    for p in range(4):
        t[2 * p] = _shuffle(builder, r[2 * p], r[2 * p + 1], _S1[0])
        t[2 * p + 1] = _shuffle(builder, r[2 * p], r[2 * p + 1], _S1[1])
    u = [None] * 8
    for q in range(2):
        a, b, c, d = t[4 * q : 4 * q + 4]
        u[4 * q + 0] = _shuffle(builder, a, c, _S2[0])
        u[4 * q + 1] = _shuffle(builder, a, c, _S2[1])
        u[4 * q + 2] = _shuffle(builder, b, d, _S2[0])
        u[4 * q + 3] = _shuffle(builder, b, d, _S2[1])
    out = [None] * 8
    for j in range(4):
        out[j] = _shuffle(builder, u[j], u[j + 4], _S3[0])
        out[j + 4] = _shuffle(builder, u[j], u[j + 4], _S3[1])
    return out


def _lane_mask(builder, nv, intp):
    """<8 x i1>: lane k < nv."""
    vty = ir.VectorType(intp, _W)
    zero = ir.Constant(ir.IntType(32), 0)
    splat = builder.insert_element(ir.Constant(vty, ir.Undefined), nv, zero)
    splat = builder.shuffle_vector(splat, ir.Constant(vty, ir.Undefined),
                                   ir.Constant(ir.VectorType(ir.IntType(32), _W), [0] * _W))
    return builder.icmp_signed("<", ir.Constant(vty, list(range(_W))), splat)


def _masked_fns(module, vty):
    ptr = ir.PointerType()
    m1 = ir.VectorType(ir.IntType(1), _W)
    ename = "f32" if isinstance(vty.element, ir.FloatType) else "f64"
    load = cgutils.get_or_insert_function(
        module, ir.FunctionType(vty, [ptr, ir.IntType(32), m1, vty]),
        f"llvm.masked.load.v{_W}{ename}.p0")
    store = cgutils.get_or_insert_function(
        module, ir.FunctionType(ir.VoidType(), [vty, ptr, ir.IntType(32), m1]),
        f"llvm.masked.store.v{_W}{ename}.p0")
    return load, store


def _addr(builder, data, byte_off):
    i8p = ir.IntType(8).as_pointer()
    return builder.gep(builder.bitcast(data, i8p), [byte_off])


def _check(A, X):
    ok = (isinstance(A, types.Array) and isinstance(X, types.Array) and A.ndim == 2
          and X.ndim == 2 and A.dtype == X.dtype and isinstance(A.dtype, types.Float))
    return ok


@intrinsic
def tr_load8(typingctx, A, i0, c0, nv, X, r0, t0):
    if not _check(A, X):
        return None
    sig = types.void(A, i0, c0, nv, X, r0, t0)

    def codegen(context, builder, signature, args):
        aty, xty = signature.args[0], signature.args[4]
        intp_t = types.intp
        intp = context.get_value_type(intp_t)
        A_, i0_, c0_, nv_, X_, r0_, t0_ = args
        i0_, c0_, nv_, r0_, t0_ = (
            context.cast(builder, v, ty, intp_t)
            for v, ty in zip((i0_, c0_, nv_, r0_, t0_), (signature.args[1], signature.args[2],
                             signature.args[3], signature.args[5], signature.args[6]), strict=True)
        )
        a = context.make_array(aty)(context, builder, A_)
        x = context.make_array(xty)(context, builder, X_)
        fty = context.get_value_type(aty.dtype)
        vty = ir.VectorType(fty, _W)
        size = ir.Constant(intp, aty.dtype.bitwidth // 8)
        a_s0 = cgutils.unpack_tuple(builder, a.strides, 2)[0]
        x_s0 = cgutils.unpack_tuple(builder, x.strides, 2)[0]
        mload, _ = _masked_fns(builder.module, vty)
        mask = _lane_mask(builder, nv_, intp)
        align = ir.Constant(ir.IntType(32), aty.dtype.bitwidth // 8)
        zero = ir.Constant(vty, [0.0] * _W)
        col = builder.mul(c0_, size)
        rows = []
        for t in range(_W):
            off = builder.add(builder.mul(builder.add(i0_, ir.Constant(intp, t)), a_s0), col)
            rows.append(builder.call(mload, [_addr(builder, a.data, off), align, mask, zero]))
        cols = _transpose(builder, rows)
        tcol = builder.mul(t0_, size)
        for k in range(_W):
            kk = ir.Constant(intp, k)
            with builder.if_then(builder.icmp_signed("<", kk, nv_), likely=True):
                off = builder.add(builder.mul(builder.add(r0_, kk), x_s0), tcol)
                p = builder.bitcast(_addr(builder, x.data, off), vty.as_pointer())
                builder.store(cols[k], p, align=aty.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def tr_store8(typingctx, X, r0, t0, nv, A, i0, c0):
    if not _check(A, X):
        return None
    sig = types.void(X, r0, t0, nv, A, i0, c0)

    def codegen(context, builder, signature, args):
        xty, aty = signature.args[0], signature.args[4]
        intp_t = types.intp
        intp = context.get_value_type(intp_t)
        X_, r0_, t0_, nv_, A_, i0_, c0_ = args
        r0_, t0_, nv_, i0_, c0_ = (
            context.cast(builder, v, ty, intp_t)
            for v, ty in zip((r0_, t0_, nv_, i0_, c0_), (signature.args[1], signature.args[2],
                             signature.args[3], signature.args[5], signature.args[6]), strict=True)
        )
        a = context.make_array(aty)(context, builder, A_)
        x = context.make_array(xty)(context, builder, X_)
        fty = context.get_value_type(aty.dtype)
        vty = ir.VectorType(fty, _W)
        size = ir.Constant(intp, aty.dtype.bitwidth // 8)
        a_s0 = cgutils.unpack_tuple(builder, a.strides, 2)[0]
        x_s0 = cgutils.unpack_tuple(builder, x.strides, 2)[0]
        _, mstore = _masked_fns(builder.module, vty)
        mask = _lane_mask(builder, nv_, intp)
        align = ir.Constant(ir.IntType(32), aty.dtype.bitwidth // 8)
        tcol = builder.mul(t0_, size)
        rows = []
        for k in range(_W):
            off = builder.add(builder.mul(builder.add(r0_, ir.Constant(intp, k)), x_s0), tcol)
            p = builder.bitcast(_addr(builder, x.data, off), vty.as_pointer())
            rows.append(builder.load(p, align=aty.dtype.bitwidth // 8))
        cols = _transpose(builder, rows)
        col = builder.mul(c0_, size)
        for t in range(_W):
            off = builder.add(builder.mul(builder.add(i0_, ir.Constant(intp, t)), a_s0), col)
            builder.call(mstore, [cols[t], _addr(builder, a.data, off), align, mask])
        return context.get_dummy_value()

    return sig, codegen



def _prefetch_codegen(rw):
    def codegen(context, builder, signature, args):
        aty = signature.args[0]
        intp_t = types.intp
        A_, row_, byte_ = args
        row_ = context.cast(builder, row_, signature.args[1], intp_t)
        byte_ = context.cast(builder, byte_, signature.args[2], intp_t)
        a = context.make_array(aty)(context, builder, A_)
        s0 = cgutils.unpack_tuple(builder, a.strides, aty.ndim)[0]
        off = builder.add(builder.mul(row_, s0), byte_)
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ir.PointerType(), i32, i32, i32]),
            "llvm.prefetch.p0")
        # rw (an immediate), locality 3 (keep in every level), the data cache
        builder.call(fn, [_addr(builder, a.data, off), ir.Constant(i32, rw),
                          ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return codegen


@intrinsic
def prefetch_read(typingctx, A, row, byte):
    """Hint the cache to fetch the line holding byte ``byte`` past the start of row
    ``row`` of ``A``. Only an address is formed, never dereferenced: a hint cannot
    fault, but the tile loops keep theirs inside the array anyway."""
    if not isinstance(A, types.Array):
        return None
    return types.void(A, row, byte), _prefetch_codegen(0)


@intrinsic
def prefetch_write(typingctx, A, row, byte):
    """:func:`prefetch_read` for a line about to be written (its ownership fetched too)."""
    if not isinstance(A, types.Array):
        return None
    return types.void(A, row, byte), _prefetch_codegen(1)


# Rows ahead of the ones being loaded that the tile loops prefetch, eight at a time
# as a tile's rows are loaded: the hardware prefetchers alone left the head kernels
# ~2x slower per row out of cache than in it (and the sampler's row tables 3-10x)
PREFETCH_ROWS = 192
# ... at most this many bytes of a head row's data ahead (wide rows: fewer rows, so
# that the lines fetched are not evicted from L1 before their tile reaches them)
PREFETCH_BYTES = 24 * 1024


@njit(inline="always")
def rows_ahead(row_bytes):
    """The prefetch distance in rows (a multiple of 8) for rows of ``row_bytes``."""
    return max(8, min(PREFETCH_ROWS, PREFETCH_BYTES // max(1, row_bytes)) // 8 * 8)


@njit(inline="always")
def prefetch_rows(A, r0, r1, write):
    """Prefetch hints for rows ``r0 .. r1 - 1`` of a 2-D array (every 64-byte line
    from the first row's start to the last row's last column)."""
    prefetch_span(A, r0, r1, A.shape[1], write)


@njit(inline="always")
def prefetch_span(A, r0, r1, width, write):
    """:func:`prefetch_rows` over ``width`` columns from ``A``'s first, which may be
    more than ``A``'s own where ``A`` is a view of wider rows (:func:`one_buffer`)."""
    if r1 > r0:
        span = (r1 - r0 - 1) * A.strides[0] + width * A.itemsize
        for b in range(0, span, 64):
            if write:
                prefetch_write(A, r0, b)
            else:
                prefetch_read(A, r0, b)


@njit(inline="always")
def prefetch_head(L, M, LS, r0, r1, width, one, write):
    """Prefetch hints for rows ``r0 .. r1 - 1`` of a head's three parts (or of its
    gradient's): one span of ``width`` values a row where they are one array (``one``,
    from :func:`one_buffer`), so that the lines they share are hinted once, else each
    part's own rows."""
    if one:
        prefetch_span(L, r0, r1, width, write)
    else:
        prefetch_rows(L, r0, r1, write)
        prefetch_rows(M, r0, r1, write)
        prefetch_rows(LS, r0, r1, write)


@njit(inline="always")
def one_buffer(L, M, LS):
    """True where ``M`` and ``LS`` continue ``L``'s rows: the columns of one [N, P]
    array, as a model's head output (and its gradient) is split."""
    isz = L.itemsize
    return (L.strides[0] == M.strides[0] and L.strides[0] == LS.strides[0]
            and M.ctypes.data == L.ctypes.data + L.shape[1] * isz
            and LS.ctypes.data == M.ctypes.data + M.shape[1] * isz)


# --------------------------------------------------------------------------
# streaming (non-temporal) stores: a large output written past the caches, without
# the read for ownership a plain store makes of every line it writes
# --------------------------------------------------------------------------

LINE = 64  # bytes a streaming store writes at once (one cache line)


@intrinsic
def stream_line(typingctx, A, byte, S, i):
    """Store the 64 bytes at ``S[i]`` onward (a 1-D C-contiguous array) to the address
    ``byte`` bytes past ``A``'s first element, with a non-temporal hint. That address
    must be 64-byte aligned and inside the buffer ``A`` views (the caller checks;
    nothing else does). Orders nothing: end a run of them with :func:`store_fence`."""
    if not (isinstance(A, types.Array) and isinstance(S, types.Array) and S.ndim == 1
            and A.dtype == S.dtype and isinstance(A.dtype, types.Float)):
        return None
    sig = types.void(A, byte, S, i)

    def codegen(context, builder, signature, args):
        aty, bty, sty, ity = signature.args
        intp_t = types.intp
        a = context.make_array(aty)(context, builder, args[0])
        s = context.make_array(sty)(context, builder, args[2])
        byte_ = context.cast(builder, args[1], bty, intp_t)
        i_ = context.cast(builder, args[3], ity, intp_t)
        fty = context.get_value_type(aty.dtype)
        vty = ir.VectorType(fty, LINE // (aty.dtype.bitwidth // 8))
        src = builder.bitcast(builder.gep(s.data, [i_]), vty.as_pointer())
        v = builder.load(src, align=aty.dtype.bitwidth // 8)
        dst = builder.bitcast(_addr(builder, a.data, byte_), vty.as_pointer())
        st = builder.store(v, dst, align=LINE)
        st.set_metadata("nontemporal", builder.module.add_metadata(
            [ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def store_at(typingctx, A, byte, value):
    """``A``'s element type ``value`` stored ``byte`` bytes past ``A``'s first element
    (inside the buffer ``A`` views: the caller checks)."""
    if not (isinstance(A, types.Array) and isinstance(A.dtype, types.Float)):
        return None
    sig = types.void(A, byte, A.dtype)

    def codegen(context, builder, signature, args):
        aty, bty, _ = signature.args
        a = context.make_array(aty)(context, builder, args[0])
        byte_ = context.cast(builder, args[1], bty, types.intp)
        fty = context.get_value_type(aty.dtype)
        dst = builder.bitcast(_addr(builder, a.data, byte_), fty.as_pointer())
        builder.store(args[2], dst, align=aty.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def store_fence(typingctx):
    """A full memory fence: the streaming stores before it are visible to every
    thread before any store after it (x86: ``mfence``)."""
    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@njit(inline="always")
def stream_out(A, byte, S, count):
    """``S[:count]`` (1-D, C-contiguous, of ``A``'s dtype) to the ``count`` elements
    from ``byte`` bytes past ``A``'s first element (inside the buffer ``A`` views):
    plain stores up to the first 64-byte boundary and after the last, streaming
    stores between them."""
    isz = S.itemsize
    addr = A.ctypes.data + byte
    head = ((LINE - addr % LINE) % LINE) // isz
    head = min(head, count)
    for q in range(head):
        store_at(A, byte + q * isz, S[q])
    per = LINE // isz
    q = head
    while q + per <= count:
        stream_line(A, byte + q * isz, S, q)
        q += per
    for r in range(q, count):
        store_at(A, byte + r * isz, S[r])


# --------------------------------------------------------------------------
# the parts of a mixture head (logits, means, scales) between rows and a tile,
# shared by the head kernels (head.py, full.py); inlined by Numba, so that no call
# passes arrays (each array argument of a call costs atomic reference counts)
# --------------------------------------------------------------------------


@intrinsic
def rows_c(typingctx, A, i0, m):
    """Elements ``i0 .. i0 + m - 1`` along the first axis of ``A`` (1-D, or 2-D read at
    column 0) as a 1-D array of layout C, for the caller to use only where that axis's
    stride is the itemsize (it checks; nothing here does). The kernels take their
    vectors with layout A (any stride), and Numba compiles a loop over such an array
    element by element with the stride multiplied in; over a view typed contiguous
    the same loop is vectorised: the tile loop's target copy and density output, 0.45
    and 0.39 ns a row of the log-density's 6.0 (16384 rows, one thread), were both
    such loops."""
    if not (isinstance(A, types.Array) and A.ndim in (1, 2) and isinstance(A.dtype, types.Float)
            and isinstance(i0, types.Integer) and isinstance(m, types.Integer)):
        return None
    rty = types.Array(A.dtype, 1, "C")
    sig = rty(A, i0, m)

    def codegen(context, builder, signature, args):
        from numba.core.imputils import impl_ret_borrowed

        aty = signature.args[0]
        intp_t = types.intp
        intp = context.get_value_type(intp_t)
        a = context.make_array(aty)(context, builder, args[0])
        i0_ = context.cast(builder, args[1], signature.args[1], intp_t)
        m_ = context.cast(builder, args[2], signature.args[2], intp_t)
        s0 = cgutils.unpack_tuple(builder, a.strides, aty.ndim)[0]
        out = context.make_array(rty)(context, builder)
        size = ir.Constant(intp, aty.dtype.bitwidth // 8)
        data = builder.bitcast(_addr(builder, a.data, builder.mul(i0_, s0)), a.data.type)
        context.populate_array(out, data=data, shape=[m_], strides=[size], itemsize=size,
                               meminfo=a.meminfo, parent=a.parent)
        return impl_ret_borrowed(context, builder, rty, out._getvalue())

    return sig, codegen


@njit(inline="always")
def store_rows(out, i0, nt, v, negate):
    """``out[i0 + t] = v[t]`` (``-v[t]`` with ``negate``) for ``t < nt``: the tile's
    per-row NLL or log-density. Through a :func:`rows_c` view (a vectorised loop) where
    ``out``'s stride is its itemsize, else element by element (a view of the rows: its
    ``o[t]`` needs no wraparound check, ``out[i0 + t]`` would)."""
    if out.strides[0] == out.itemsize:
        oc = rows_c(out, i0, nt)
        for t in range(nt):
            oc[t] = -v[t] if negate else v[t]
    else:
        o = out[i0:i0 + nt]
        for t in range(nt):
            o[t] = -v[t] if negate else v[t]


@njit(inline="always")
def load_rows(L, M, LS, Y, i0, t0, nt, XA, XM, XS, XY):
    """Rows ``i0 + t0 .. i0 + nt - 1`` into the tile, one element at a time (the rows
    left after the 8 x 8 blocks): ``XA[j, t] = L[i0 + t, j]``, and so on."""
    for t in range(t0, nt):
        for j in range(L.shape[1]):
            XA[j, t] = L[i0 + t, j]
        for j in range(M.shape[1]):
            XM[j, t] = M[i0 + t, j]
        for j in range(LS.shape[1]):
            XS[j, t] = LS[i0 + t, j]
        for j in range(Y.shape[1]):
            XY[j, t] = Y[i0 + t, j]


@njit(inline="always")
def store_parts(XA, XM, XS, blocks, nt, GL, GM, GS, i0):
    """The tile's gradient into rows ``i0 ..`` of ``GL, GM, GS``: ``GL[i0 + t, j] =
    XA[j, t]`` (and so on) by 8 x 8 blocks for ``t < blocks`` (a multiple of 8), one
    element at a time from the last whole block (``nt - nt % 8``) to ``nt``."""
    K, KM, KS = GL.shape[1], GM.shape[1], GS.shape[1]
    for g in range(0, blocks, 8):
        for j in range(0, K, 8):
            tr_store8(XA, j, g, min(8, K - j), GL, i0 + g, j)
        for j in range(0, KM, 8):
            tr_store8(XM, j, g, min(8, KM - j), GM, i0 + g, j)
        for j in range(0, KS, 8):
            tr_store8(XS, j, g, min(8, KS - j), GS, i0 + g, j)
    for t in range(nt - nt % 8, nt):
        for j in range(K):
            GL[i0 + t, j] = XA[j, t]
        for j in range(KM):
            GM[i0 + t, j] = XM[j, t]
        for j in range(KS):
            GS[i0 + t, j] = XS[j, t]
