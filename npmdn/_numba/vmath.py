"""Vectorisable exp, log and sin/cos for Numba kernels.

Numba calls libm for ``math.exp`` and ``math.log``; LLVM cannot vectorise a
libm call without a vector math library (SVML), and the llvmlite in use is
not built with the SVML patch (``numba -s``: "SVML Operational: False").
A scalar libm ``exp`` costs ~4-5 ns, which would make the fused kernels no
faster than PyTorch. The functions here are plain arithmetic and bit casts,
so LLVM inlines them and vectorises the loops that call them (innermost loop
over a tile of samples, see ``head.py``).

Accuracy (checked against NumPy in ``tests/backends/test_numba_internals.py``):
float64 within 2 ulp, float32 within 4 ulp, overflow to inf, exp(-inf) = 0,
log(0) = -inf, log of a subnormal, and NaN in -> NaN out.

``exp`` flushes results below the smallest normal number (2.2e-308 in
float64, 1.2e-38 in float32) to zero instead of returning a subnormal:
arithmetic on subnormals takes a ~100-cycle microcode assist on x86, and in
a mixture the far components' ``exp(t_k - max t)`` land there often. The
change is below 1e-307 (1e-37) in absolute terms.

Kernels must be compiled WITHOUT the ``reassoc`` fast-math flag: the
round-to-integer step ``(x + MAGIC) - MAGIC`` is exactly what reassociation
would delete. ``contract`` (FMA) is welcome.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

# --------------------------------------------------------------------------
# bit casts (a plain LLVM bitcast: vectorises, no memory round trip)
# --------------------------------------------------------------------------


@intrinsic
def f2i(typingctx, x):
    """The bits of a float as a signed integer of the same width."""
    if x == types.float64:
        sig, llty = types.int64(types.float64), ir.IntType(64)
    elif x == types.float32:
        sig, llty = types.int32(types.float32), ir.IntType(32)
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llty)

    return sig, codegen


def _int_to_float(width):
    llint = ir.IntType(width)
    llflt = ir.DoubleType() if width == 64 else ir.FloatType()
    fty = types.float64 if width == 64 else types.float32

    def typer(typingctx, i):
        if not isinstance(i, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            v = args[0]
            if i.bitwidth > width:
                v = builder.trunc(v, llint)
            elif i.bitwidth < width:
                v = builder.sext(v, llint) if i.signed else builder.zext(v, llint)
            return builder.bitcast(v, llflt)

        return fty(i), codegen

    typer.__name__ = f"i2f{width}"
    return typer


# numba widens int32 arithmetic to int64, so these take any integer and
# truncate (or extend) it to the float's width before the bitcast
i2f64 = intrinsic(_int_to_float(64))
i2f64.__doc__ = "The float64 whose bits are the low 64 bits of integer ``i``."
i2f32 = intrinsic(_int_to_float(32))
i2f32.__doc__ = "The float32 whose bits are the low 32 bits of integer ``i``."


@intrinsic
def always_inline(typingctx):
    """Mark the calling function ``alwaysinline`` for LLVM.

    A call that LLVM leaves out of line inside a loop stops that loop from
    vectorising; the Philox rounds (10 unrolled rounds) are over LLVM's
    default inlining threshold, so the functions that loops call say so.
    """
    sig = types.void()

    def codegen(context, builder, signature, args):
        attrs = builder.function.attributes
        if "noinline" not in attrs:  # debug builds (NUMBA_DEBUGINFO) ask for noinline
            attrs.add("alwaysinline")
        return context.get_dummy_value()

    return sig, codegen


# --------------------------------------------------------------------------
# constants cast to the working precision (numba promotes f32 * f64-literal
# to f64, which would silently run float32 kernels in float64)
# --------------------------------------------------------------------------


def as_type(value, like):
    """``value`` converted to the float type of ``like`` (a scalar or an array)."""
    raise NotImplementedError  # only callable from jitted code


@overload(as_type)
def _as_type_ol(value, like):
    ty = like.dtype if isinstance(like, types.Array) else like
    if not isinstance(ty, types.Float):
        return None

    def impl(value, like):
        return ty(value)

    return impl


def negligible(like):
    """A value far below anything that matters in a gradient, yet far above the
    subnormal range: 1e-30 for float32, 1e-280 for float64 (jitted code only)."""
    raise NotImplementedError


@overload(negligible)
def _negligible_ol(like):
    ty = like.dtype if isinstance(like, types.Array) else like
    if ty == types.float32:
        return lambda like: np.float32(1e-30)
    if ty == types.float64:
        return lambda like: 1e-280
    return None


def unshifted_floor(like):
    """The smallest sum of ``vexp`` terms that may stand for a log-sum-exp without a
    shift: 2**-90 (8.1e-28) in float32, 2**-960 (1.0e-289) in float64, far enough
    above the smallest normal number that the terms ``vexp`` flushed to zero change
    such a sum by less than 1e-10 relative (jitted code only)."""
    raise NotImplementedError


@overload(unshifted_floor)
def _unshifted_floor_ol(like):
    ty = like.dtype if isinstance(like, types.Array) else like
    if ty == types.float32:
        return lambda like: np.float32(2.0 ** -90)
    if ty == types.float64:
        return lambda like: 2.0 ** -960
    return None


# --------------------------------------------------------------------------
# exp
# --------------------------------------------------------------------------

# FMA contraction only: see the module docstring for why not the other flags
_FM = {"contract", "nsz"}

_LOG2E = 1.4426950408889634
_MAGIC64 = 6755399441055744.0  # 1.5 * 2**52: x + MAGIC rounds x to an integer
_MAGIC32 = 12582912.0  # 1.5 * 2**23
# Cody-Waite split of ln 2: n * LN2_HI is exact for |n| < 2**11 (fdlibm)
_LN2_HI64 = 6.93147180369123816490e-01
_LN2_LO64 = 1.90821492927058770002e-10
_LN2_HI32 = 0.693359375
_LN2_LO32 = -2.12194440e-4


_FLUSH64 = -708.39  # exp(-708.39) = 2.2265e-308, just above the smallest normal
_FLUSH32 = -87.3  # exp(-87.3) = 1.2189e-38


@njit(fastmath=_FM, error_model="numpy")
def exp64(x):
    always_inline()
    tiny = x < _FLUSH64  # flushed to 0 below (false for NaN, which passes through)
    # clamp: above 710 exp overflows to inf; NaN passes (comparisons are false)
    x = -709.0 if x < -709.0 else x
    x = 710.0 if x > 710.0 else x
    t = x * _LOG2E + _MAGIC64
    kf = t - _MAGIC64  # round(x / ln 2)
    n = f2i(t) - f2i(_MAGIC64)  # the same integer, from the mantissa bits
    r = (x - kf * _LN2_HI64) - kf * _LN2_LO64  # |r| <= ln2/2
    # Taylor to r^13: truncation < 5e-18 on |r| <= 0.347
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    # 2**n as two factors: n = 1024 (x near 709.8) still gives a finite result
    h = n >> 1
    s1 = i2f64((h + 1023) << 52)
    s2 = i2f64((n - h + 1023) << 52)
    return 0.0 if tiny else p * s1 * s2


# exp(r) on |r| <= ln2/2 as 1 + r + r^2 q(r), q of degree 4: a weighted least-squares
# fit iterated to minimax (Lawson) of the relative error, 3.1e-9 (2**-28.3) with float64
# coefficients; with these float32 ones the whole exp32 is within 0.91 ulp of the exact
# value over every float32 in [-87.3, 88.72] (the Cephes degree-7 polynomial it replaced:
# 1.02 ulp)
_EXPQ32 = (0.4999999403953552, 0.1666652113199234, 0.04166838899254799,
           0.008368710055947304, 0.001381461275741458)
_EXP_MAX32 = 88.72283935546875  # the first float32 above log(FLT_MAX): exp overflows


@njit(fastmath=_FM, error_model="numpy")
def exp32(x):
    """float32 ``exp``: ``2**n p(r)`` with the power of two added to ``p``'s exponent
    bits (one integer add: ``n << 23`` is the bits of ``t`` shifted, the magic
    constant's low bits being zero), which is exact while the result is normal;
    below ``_FLUSH32`` the result is 0, from ``_EXP_MAX32`` up inf, NaN stays NaN."""
    always_inline()
    f = np.float32
    t = x * f(_LOG2E) + f(_MAGIC32)  # bits: those of MAGIC + n, n = round(x / ln 2)
    kf = t - f(_MAGIC32)
    r = (x - kf * f(_LN2_HI32)) - kf * f(_LN2_LO32)
    p = f(_EXPQ32[4])
    p = p * r + f(_EXPQ32[3])
    p = p * r + f(_EXPQ32[2])
    p = p * r + f(_EXPQ32[1])
    p = p * r + f(_EXPQ32[0])
    p = p * r + f(1.0)
    p = p * r + f(1.0)
    # p in [0.70, 1.42]: exponent 126 or 127, plus n in [-126, 128] on [-87.3, 88.72)
    y = i2f32(f2i(p) + (f2i(t) << np.int32(23)))
    y = f(0.0) if x < f(_FLUSH32) else y
    y = f(np.inf) if x >= f(_EXP_MAX32) else y
    return x if x != x else y


def vexp(x):
    """``exp(x)`` in the precision of ``x``, vectorisable (jitted code only)."""
    raise NotImplementedError


@overload(vexp)
def _vexp_ol(x):
    if x == types.float64:
        return lambda x: exp64(x)
    if x == types.float32:
        return lambda x: exp32(x)
    return None


# --------------------------------------------------------------------------
# log (fdlibm's e_log.c / e_logf.c: log(1+f) = f - f^2/2 + s (f^2/2 + R(s^2)), s = f/(2+f))
# --------------------------------------------------------------------------

_LG64 = (
    6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
    2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
    1.479819860511658591e-01,
)
_LG1_64, _LG2_64, _LG3_64, _LG4_64, _LG5_64, _LG6_64, _LG7_64 = _LG64
_MANT64 = 0x000FFFFFFFFFFFFF
_SQRT2_BITS64 = 0x3FF6A09E667F3BCD  # bits of sqrt(2)
_ONE_BITS64 = 0x3FF0000000000000


@njit(fastmath=_FM, error_model="numpy")
def log64(x):
    always_inline()
    # subnormals: scale into the normal range first
    sub = x < 2.2250738585072014e-308
    xs = x * 18014398509481984.0 if sub else x  # * 2**54
    bits = f2i(xs)
    # exponent e with mantissa m in [sqrt(2)/2, sqrt(2)): add (1 - sqrt2/2)'s offset trick
    # from musl: shift so that m >= sqrt(2) carries into the exponent
    ib = bits + (_ONE_BITS64 - 0x3FE6A09E667F3BCD)  # 0x3FE6A09E667F3BCD = bits of sqrt(2)/2
    e = (ib >> 52) - 1023
    m = i2f64((ib & _MANT64) + 0x3FE6A09E667F3BCD)
    e = e - 54 if sub else e
    f = m - 1.0
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2_64 + w * (_LG4_64 + w * _LG6_64))
    t2 = z * (_LG1_64 + w * (_LG3_64 + w * (_LG5_64 + w * _LG7_64)))
    R = t2 + t1
    dk = float(e)
    out = dk * _LN2_HI64 - ((hfsq - (s * (hfsq + R) + dk * _LN2_LO64)) - f)
    # specials: log(0) = -inf, log(<0) = NaN, log(inf) = inf, log(NaN) = NaN
    out = -np.inf if x == 0.0 else out
    out = np.nan if x < 0.0 else out
    out = x if not (x < np.inf) else out  # inf and NaN pass through
    return out


_LG1_32 = 0.66666662693  # FreeBSD e_logf.c, |error| < 2**-25.7 on the reduced range
_LG2_32 = 0.40000972152
_LG3_32 = 0.28498786688
_LG4_32 = 0.24279078841


@njit(fastmath=_FM, error_model="numpy")
def _log_core32_lo(f, dk, lo):
    """``dk ln 2 + log(1 + f)`` for ``1 + f`` in [sqrt(2)/2, sqrt(2)], float32, with
    ``lo`` the low-order part added beside ``dk`` times the low half of ln 2 (that
    product itself, or it plus a correction; see :func:`neglog_word_f32`)."""
    always_inline()
    f32 = np.float32
    hfsq = f32(0.5) * f * f
    s = f / (f32(2.0) + f)
    z = s * s
    w = z * z
    t1 = w * (f32(_LG2_32) + w * f32(_LG4_32))
    t2 = z * (f32(_LG1_32) + w * f32(_LG3_32))
    R = t2 + t1
    return dk * f32(_LN2_HI32) - ((hfsq - (s * (hfsq + R) + lo)) - f)


@njit(fastmath=_FM, error_model="numpy")
def _log_core32(f, dk):
    """``dk ln 2 + log(1 + f)`` for ``1 + f`` in [sqrt(2)/2, sqrt(2)], float32."""
    always_inline()
    return _log_core32_lo(f, dk, dk * np.float32(_LN2_LO32))


@njit(fastmath=_FM, error_model="numpy")
def _reduce32(x):
    """``x = 2**e (1 + f)`` with ``1 + f`` in [sqrt(2)/2, sqrt(2)), x positive and normal."""
    always_inline()
    ib = f2i(x) + np.int32(0x3F800000 - 0x3F3504F3)  # 0x3F3504F3 = bits of sqrt(2)/2
    e = (ib >> np.int32(23)) - np.int32(127)
    m = i2f32((ib & np.int32(0x007FFFFF)) + np.int32(0x3F3504F3))
    return m - np.float32(1.0), e


@njit(fastmath=_FM, error_model="numpy")
def log32(x):
    always_inline()
    f32 = np.float32
    sub = x < f32(1.17549435e-38)
    xs = x * f32(33554432.0) if sub else x  # * 2**25
    f, e = _reduce32(xs)
    e = e - np.int32(25) if sub else e
    out = _log_core32(f, f32(e))
    out = f32(-np.inf) if x == f32(0.0) else out
    out = f32(np.nan) if x < f32(0.0) else out
    out = x if not (x < f32(np.inf)) else out
    return out


NEGLOG32_REL = 2e-5  # relative error bound of neglog_word32 (tested at a 4x margin)
# log(1 + f) ~ f P(f) for 1 + f in [sqrt(2)/2, sqrt(2)]: least-squares fit (relative, at
# Chebyshev nodes), degree 6, max relative error 1.3e-6 with these float32 coefficients
_L1P = (1.000001072883606, -0.5000084638595581, 0.3331342935562134, -0.2492186278104782,
        0.20529605448246002, -0.18560294806957245, 0.11623602360486984)
_W_SQRT_HALF = 3037000500  # the first word with u = (w + 0.5) 2**-32 >= sqrt(2) / 2
_TWO_M32_F = 2.3283064365386963e-10  # 2**-32, exact in float32
_TWO_M33_F = 1.1641532182693481e-10  # 2**-33


@njit(fastmath=_FM, error_model="numpy")
def _word_reduce32(x):
    """The reduction of ``u = (x + 0.5) 2**-32`` shared by :func:`neglog_word32` and
    :func:`neglog_word_f32` (see the latter): ``log u = k ln 2 + log(1 + f)``, ``f``
    from one float32 conversion ``nf`` of the integer ``N`` (``X = 2x + 1`` mod
    2**32, or ``-X mod 2**32 = (1 - u) 2**33`` near ``u = 1``). Returns
    ``(N, nf, f, k, ea, low, high)``: ``low`` for ``u < 1/2`` (where ``u = 2**(ea -
    33) (1 + f)``), ``high`` for ``u >= sqrt(2)/2``."""
    always_inline()
    f32 = np.float32
    xi = np.uint32(x)
    X = np.uint32(np.uint32(xi << np.uint32(1)) | np.uint32(1))  # 2x + 1 mod 2**32
    low = xi < np.uint32(0x80000000)
    high = xi >= np.uint32(_W_SQRT_HALF)
    N = np.uint32(np.uint32(0) - X) if high else X
    nf = f32(N)
    fa, ea = _reduce32(nf)  # u < 1/2: u = nf 2**-33 = 2**(ea - 33) (1 + fa)
    fb = nf * f32(_TWO_M32_F)  # 1/2 <= u < sqrt(2)/2: u = (1 + fb) / 2
    fc = -(nf * f32(_TWO_M33_F))  # u >= sqrt(2)/2: u = 1 + fc
    f = fa if low else (fc if high else fb)
    k = f32(ea - np.int32(33)) if low else (f32(0.0) if high else f32(-1.0))
    return N, nf, f, k, ea, low, high


@njit(fastmath=_FM, error_model="numpy")
def neglog_word32(x):
    """``-log u`` in float32 for the uniform ``u = (x + 0.5) 2**-32`` of a 32-bit
    word ``x``, within a relative error of ``NEGLOG32_REL``, with no division.

    ``log u = k ln 2 + log(1 + f)``, ``1 + f`` in [sqrt(2)/2, sqrt(2)), from one
    float32 conversion of an integer made from the word (the reduction of
    ``neglog_word_f32``, which see): ``X = 2x + 1`` (mod 2**32), or near ``u = 1``
    ``-X mod 2**32 = (1 - u) 2**33``, so that ``-log u ~ 1 - u`` keeps its relative
    precision down to ``1 - u = 2**-33``; then ``log(1 + f) = f P(f)`` with a
    degree-6 polynomial (1.3e-6) instead of fdlibm's division. Used to pre-screen
    the Gumbel choice (see ``sample.py``), which only needs relative accuracy.
    """
    always_inline()
    f32 = np.float32
    _, _, f, k, _, _, _ = _word_reduce32(x)
    p = f32(_L1P[6])
    p = p * f + f32(_L1P[5])
    p = p * f + f32(_L1P[4])
    p = p * f + f32(_L1P[3])
    p = p * f + f32(_L1P[2])
    p = p * f + f32(_L1P[1])
    p = p * f + f32(_L1P[0])
    return -(k * f32(0.6931471805599453) + f * p)


def vlog(x):
    """``log(x)`` in the precision of ``x``, vectorisable (jitted code only)."""
    raise NotImplementedError


@overload(vlog)
def _vlog_ol(x):
    if x == types.float64:
        return lambda x: log64(x)
    if x == types.float32:
        return lambda x: log32(x)
    return None


# --------------------------------------------------------------------------
# cos(2 pi u), sin(2 pi u) for the Box-Muller transform (float64)
# --------------------------------------------------------------------------

_TWO_PI = 6.283185307179586


@njit(fastmath=_FM, error_model="numpy")
def _sin_poly(a):
    always_inline()
    # Taylor to a^17 on |a| <= pi/4: truncation < 3e-17
    z = a * a
    p = 1.0 / 355687428096000.0
    p = p * z - 1.0 / 1307674368000.0
    p = p * z + 1.0 / 6227020800.0
    p = p * z - 1.0 / 39916800.0
    p = p * z + 1.0 / 362880.0
    p = p * z - 1.0 / 5040.0
    p = p * z + 1.0 / 120.0
    p = p * z - 1.0 / 6.0
    return a + a * z * p


@njit(fastmath=_FM, error_model="numpy")
def _cos_poly(a):
    always_inline()
    # Taylor to a^18 on |a| <= pi/4: truncation < 3e-18
    z = a * a
    p = 1.0 / 6402373705728000.0
    p = p * z - 1.0 / 20922789888000.0
    p = p * z + 1.0 / 87178291200.0
    p = p * z - 1.0 / 479001600.0
    p = p * z + 1.0 / 3628800.0
    p = p * z - 1.0 / 40320.0
    p = p * z + 1.0 / 720.0
    p = p * z - 1.0 / 24.0
    p = p * z + 0.5
    return 1.0 - z * p


@njit(fastmath=_FM, error_model="numpy")
def cos_sin_2pi(u):
    """``(cos(2 pi u), sin(2 pi u))`` for u in [0, 1], float64.

    The quarter-turn reduction ``u = q/4 + v`` is exact in u (no 2 pi rounding
    before the reduction), so the result is accurate for every u.
    """
    always_inline()
    t = 4.0 * u + _MAGIC64
    qf = t - _MAGIC64  # nearest quarter turn
    q = f2i(t) - f2i(_MAGIC64)
    v = u - 0.25 * qf  # exact, |v| <= 1/8
    a = _TWO_PI * v
    c = _cos_poly(a)
    s = _sin_poly(a)
    # rotate by q quarter turns, (c, s) -> (-s, c) per quarter: swap when q is
    # odd, then flip signs through the sign bit (a compare chain here becomes a
    # switch, which stops the loop vectoriser)
    odd = (q & 1) != 0
    x = s if odd else c
    y = c if odd else s
    cc = i2f64(f2i(x) ^ (((q + 1) & 2) << 62))  # cos negative for q = 1, 2 (mod 4)
    ss = i2f64(f2i(y) ^ ((q & 2) << 62))  # sin negative for q = 2, 3
    return cc, ss


# --------------------------------------------------------------------------
# Box-Muller in float32 from the 32-bit words (the float32 sampler)
# --------------------------------------------------------------------------

# Measured against float64 over all 2**32 words, relative to each value (no absolute
# floor: near u = 1 and near the zeros of cos and sin too): -log u within 1.406 * 2**-24,
# r = sqrt(-2 log u) within 1.651 * 2**-24, cos and sin of 2 pi u within 2.221 * 2**-24;
# so r cos and r sin within 4.87 * 2**-24 = 2.9e-7 (npmdn.philox.NORMALS_FLOAT32_RTOL = 3e-7),
# (python -m bench.normals_float32), tested on the extremes and random words in
# tests/backends/test_numba_internals.py


@njit(fastmath=_FM, error_model="numpy")
def neglog_word_f32(x):
    """``-log u`` in float32 for the uniform ``u = (x + 0.5) 2**-32`` of a 32-bit
    word ``x``, to a few float32 ulp (relative) for every word, with no float64.

    ``u`` is never rounded to float32 first: that would cost an absolute error
    of 2**-25 in ``log u``, all of ``-log u`` near ``u = 1``. Instead ``log u =
    k ln 2 + log(1 + f)`` with ``1 + f`` in [sqrt(2)/2, sqrt(2)) and ``f`` formed
    from the odd integer ``X = 2x + 1`` (mod 2**32) with a single rounding:

    - ``u < 1/2`` (``x < 2**31``): ``u = X 2**-33``, ``X < 2**32``; k and f from
      the float32 ``X`` (one rounding) as in ``log32``.
    - ``1/2 <= u < sqrt(2)/2``: ``2u - 1 = X 2**-32`` (X wrapped), ``k = -1``.
    - ``u >= sqrt(2)/2``: ``1 - u = (-X mod 2**32) 2**-33``, ``k = 0``, ``f = -(1 - u)``:
      relative precision down to ``1 - u = 2**-33`` (``-log u ~ 1 - u``).

    ``log(1 + f)`` is fdlibm's float32 kernel (``_log_core32``), and the rounding
    of the integer to float32 (its exact rest, at most ``2**-24 |f|``) enters
    as the first-order correction ``rest / (1 + f)``, so that ``f`` is in effect
    exact and the result carries the kernel's error only.
    """
    always_inline()
    f32 = np.float32
    # the one integer converted (X, or (1 - u) 2**33 = -X mod 2**32 near u = 1), f and k
    N, nf, f, k, ea, low, high = _word_reduce32(x)
    # ... and the exact rest N - nf (|rest| <= 128): N's halves are exact floats and
    # (N >> 16) 2**16 - nf is exact (Sterbenz)
    rest = (f32(N >> np.uint32(16)) * f32(65536.0) - nf) + f32(N & np.uint32(0xFFFF))
    # the rest in f's units: 2**-ea, 2**-32, -2**-33
    sa = i2f32((np.int32(127) - ea) << np.int32(23))
    scale = sa if low else (f32(-_TWO_M33_F) if high else f32(_TWO_M32_F))
    # log(1 + f + d) = log(1 + f) + d / (1 + f) + O(d^2), d = rest * scale <= 2**-24 |f|;
    # 1 / (1 + f) ~ 1 - f + f^2 within 7% on the range: the correction to 1e-8 ulp
    corr = rest * scale * (f32(1.0) - f + f * f)
    # the correction folded in beside the low part of k ln 2
    return -_log_core32_lo(f, k, k * f32(_LN2_LO32) + corr)


# Cephes sinf/cosf minimax polynomials on |a| <= pi/4
_SINF = (-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1)
_COSF = (2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2)
# 2 pi 2**-33 = HI + LO, both float32 (HI + LO within 1.2e-15 relative)
_TWO_PI_M33_HI = 7.31459059988282e-10
_TWO_PI_M33_LO = -2.035470133961082e-17


@njit(fastmath=_FM, error_model="numpy")
def cos_sin_2pi_word32(x):
    """``(cos 2 pi u, sin 2 pi u)`` in float32 for ``u = (x + 0.5) 2**-32`` of a
    32-bit word ``x``, each to a few float32 ulp relative to its own value.

    The range reduction is exact and on the integer: the nearest quarter turn
    ``q`` is the top two bits of ``x + 2**29``, and the rest of the turn is
    ``(2 r + 1) 2**-33`` with ``r`` the signed low 30 bits, so the reduced angle
    ``a = 2 pi (2 r + 1) 2**-33`` lies in ``[-pi/4, pi/4]``; it is formed from
    the odd integer ``z = 2 r + 1`` (< 2**30, split into its float32 rounding and
    the exact rest) and ``2 pi 2**-33`` as a float32 pair, so that it carries a
    single rounding. Then Cephes' float32 sine and cosine polynomials, and the
    rotation by ``q`` quarter turns through swaps and sign bits (as ``cos_sin_2pi``).
    """
    always_inline()
    f32 = np.float32
    xi = np.uint32(x)
    xs = np.uint32(xi + np.uint32(0x20000000))  # + 2**29 (mod 2**32): round to a quarter
    q = np.int32(xs >> np.uint32(30))
    rr = np.int32(xs & np.uint32(0x3FFFFFFF))  # r + 2**29, r in [-2**29, 2**29)
    z = np.int32(np.int32(rr << np.int32(1)) - np.int32(0x3FFFFFFF))  # 2 r + 1, odd
    zf = f32(z)  # z rounded to 24 bits, and the exact rest (|zr| <= 32)
    zr = f32(np.int32(z - np.int32(zf)))
    # a = 2 pi z 2**-33 with one rounding: zf * HI is exact inside the FMA
    a = zf * f32(_TWO_PI_M33_HI) + (zr * f32(_TWO_PI_M33_HI) + zf * f32(_TWO_PI_M33_LO))
    s2 = a * a
    ps = f32(_SINF[0])
    ps = ps * s2 + f32(_SINF[1])
    ps = ps * s2 + f32(_SINF[2])
    sn = a + a * s2 * ps
    pc = f32(_COSF[0])
    pc = pc * s2 + f32(_COSF[1])
    pc = pc * s2 + f32(_COSF[2])
    cs = f32(1.0) - f32(0.5) * s2 + s2 * s2 * pc
    odd = (q & np.int32(1)) != np.int32(0)
    c0 = sn if odd else cs
    s0 = cs if odd else sn
    cc = i2f32(f2i(c0) ^ np.int32(((q + np.int32(1)) & np.int32(2)) << np.int32(30)))
    ss = i2f32(f2i(s0) ^ np.int32((q & np.int32(2)) << np.int32(30)))
    return cc, ss


# --------------------------------------------------------------------------
# vector width
# --------------------------------------------------------------------------


@intrinsic
def prefer_wide_vectors(typingctx):
    """Mark the calling function ``"prefer-vector-width"="512"``.

    LLVM's tuning for Intel server cores (Skylake-X to Sapphire Rapids) caps
    auto-vectorisation at 256 bits, a guard against the AVX-512 clock drop of
    the early parts. The head kernels are arithmetic-bound (polynomial exp and
    log), where 512-bit vectors measured ~1.6x faster here. On a CPU without
    AVX-512 the attribute changes nothing. If llvmlite ever refuses the raw
    attribute the call is a no-op.
    """
    sig = types.void()

    def codegen(context, builder, signature, args):
        try:
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        except Exception:  # pragma: no cover - depends on llvmlite internals
            pass
        return context.get_dummy_value()

    return sig, codegen



# --------------------------------------------------------------------------
# activations of the fused training step (the formulas of npmdn.nn)
# --------------------------------------------------------------------------

# Cephes tanh.c (float64): tanh x = x + x^3 P(x^2) / Q(x^2) on |x| < 0.625
_TP0, _TP1, _TP2 = -9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3
_TQ0, _TQ1, _TQ2 = 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3
# Cephes tanhf.c (float32): tanh x = x + x^3 P(x^2) on |x| < 0.625
_TF = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
       -3.33332819422e-1)


@njit(fastmath=_FM, error_model="numpy")
def tanh64(x):
    always_inline()
    a = abs(x)
    z = x * x
    small = x + x * z * (((_TP0 * z + _TP1) * z + _TP2) / (((z + _TQ0) * z + _TQ1) * z + _TQ2))
    big = 1.0 - 2.0 / (exp64(2.0 * a) + 1.0)  # exp overflows to inf above a = 355: 1
    big = -big if x < 0.0 else big
    return small if a < 0.625 else big


@njit(fastmath=_FM, error_model="numpy")
def tanh32(x):
    always_inline()
    f = np.float32
    a = abs(x)
    z = x * x
    p = f(_TF[0])
    p = p * z + f(_TF[1])
    p = p * z + f(_TF[2])
    p = p * z + f(_TF[3])
    p = p * z + f(_TF[4])
    small = x + x * z * p
    big = f(1.0) - f(2.0) / (exp32(f(2.0) * a) + f(1.0))
    big = -big if x < f(0.0) else big
    return small if a < f(0.625) else big


def vtanh(x):
    """``tanh(x)`` in the precision of ``x``, vectorisable (jitted code only)."""
    raise NotImplementedError


@overload(vtanh)
def _vtanh_ol(x):
    if x == types.float64:
        return lambda x: tanh64(x)
    if x == types.float32:
        return lambda x: tanh32(x)
    return None


@njit(fastmath=_FM, error_model="numpy")
def vlog1p(t):
    """``log(1 + t)`` for ``t > -1``, accurate for tiny t (Goldberg's trick:
    the rounding of ``u = 1 + t`` cancels in ``log(u) t / (u - 1)``)."""
    always_inline()
    u = t + as_type(1.0, t)
    d = u - as_type(1.0, t)
    return t if d == as_type(0.0, t) else vlog(u) * (t / d)


@njit(fastmath=_FM, error_model="numpy")
def vexpm1(x):
    """``exp(x) - 1``, accurate for tiny x (Kahan: ``(u - 1) x / log u``)."""
    always_inline()
    one = as_type(1.0, x)
    u = vexp(x)
    um1 = u - one
    out = um1 * (x / vlog(u))
    out = x if um1 == as_type(0.0, x) else out
    out = -one if um1 == -one else out  # exp(x) rounds to 0
    return um1 if u == as_type(np.inf, x) else out
