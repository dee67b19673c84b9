"""``Generator.permutation(n)`` of NumPy's default generator, bit for bit, compiled.

A minibatch fit draws a fresh order of its rows every epoch from a
``numpy.random.default_rng(seed)`` (:mod:`npmdn.training`), so that every
backend, and the PyTorch comparison in ``bench/train.py``, sees the same
batches. NumPy takes about 8 ns per row for it (0.52 ms for 65536 rows),
a quarter of a numba-backend epoch at the benchmark's large set-up. This
module draws the same permutation in compiled code and leaves the generator
in the same state, so the next draw from it is the one NumPy would make.

What NumPy does (``numpy/random/_generator.pyx``: ``permutation(int n)`` is
``shuffle(arange(n))``, whose ``_shuffle_raw`` is a Fisher-Yates pass with
``j = random_interval(bitgen, i)`` for ``i = n - 1 .. 1``), with the bit
generator PCG64:

* the state is a 128-bit LCG, ``s <- s * MULT + inc (mod 2**128)``, and each
  64-bit output is ``rotr64(hi(s) ^ lo(s), hi(s) >> 58)`` of the new state
  (PCG's XSL-RR 128/64);
* ``next_uint32`` hands out a 64-bit output's low half and keeps the high half
  for the next call (``has_uint32``, ``uinteger`` in the state);
* ``random_interval(max)`` draws ``next_uint32() & mask`` (``mask`` the
  smallest all-ones number >= ``max``) until the value is at most ``max``
  (``max`` < 2**32 here; a larger ``n`` goes to NumPy).

:func:`permutation` checks itself once per process against NumPy on fresh
generators; if they ever differ (another NumPy), it returns NumPy's. On a
fresh install the kernel compiles in the background process of a first fit
(:mod:`npmdn._numba.warm`), and NumPy draws until it is in the disk cache.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_MULT = 0x2360ED051FC65DA44385DF649FCCF645  # PCG_DEFAULT_MULTIPLIER_128
_MULT_HI = np.uint64(_MULT >> 64)
_MULT_LO = np.uint64(_MULT & (2**64 - 1))
_M64 = 2**64 - 1
# the largest n drawn here: random_interval(i) uses 32-bit draws for i < 2**32
MAX_N = 2**32


@intrinsic
def _mul_add128(typingctx, a_hi, a_lo, b_hi, b_lo, c_hi, c_lo):
    """``(a * b + c) mod 2**128`` of 128-bit numbers given as uint64 halves:
    ``(hi, lo)``."""
    u64 = types.uint64
    if not all(t == u64 for t in (a_hi, a_lo, b_hi, b_lo, c_hi, c_lo)):
        return None
    sig = types.UniTuple(u64, 2)(u64, u64, u64, u64, u64, u64)

    def codegen(context, builder, signature, args):
        i128 = ir.IntType(128)
        shift = ir.Constant(i128, 64)

        def wide(hi, lo):
            return builder.or_(builder.shl(builder.zext(hi, i128), shift),
                               builder.zext(lo, i128))

        a, b, c = wide(*args[0:2]), wide(*args[2:4]), wide(*args[4:6])
        r = builder.add(builder.mul(a, b), c)
        i64 = ir.IntType(64)
        hi = builder.trunc(builder.lshr(r, shift), i64)
        lo = builder.trunc(r, i64)
        return context.make_tuple(builder, signature.return_type, (hi, lo))

    return sig, codegen


@njit(inline="always")
def _next64(s_hi, s_lo, inc_hi, inc_lo):
    """PCG64's next state and its 64-bit output."""
    s_hi, s_lo = _mul_add128(s_hi, s_lo, _MULT_HI, _MULT_LO, inc_hi, inc_lo)
    x = s_hi ^ s_lo
    rot = s_hi >> np.uint64(58)
    out = (x >> rot) | (x << ((np.uint64(64) - rot) & np.uint64(63)))
    return s_hi, s_lo, out


@njit(nogil=True, cache=True, error_model="numpy")
def shuffle_arange(out, s_hi, s_lo, inc_hi, inc_lo, has32, u32):
    """``out[:] = NumPy's permutation(len(out))`` from the PCG64 state ``(s_hi, s_lo,
    inc_hi, inc_lo, has32, u32)`` (uint64 halves; ``has32`` 0 or 1); returns the state
    after it ``(s_hi, s_lo, has32, u32)``."""
    n = out.shape[0]
    for i in range(n):
        out[i] = i
    lo32 = np.uint64(0xFFFFFFFF)
    for i in range(n - 1, 0, -1):
        mx = np.uint64(i)
        mask = mx
        mask |= mask >> np.uint64(1)
        mask |= mask >> np.uint64(2)
        mask |= mask >> np.uint64(4)
        mask |= mask >> np.uint64(8)
        mask |= mask >> np.uint64(16)
        while True:
            if has32:
                v = u32
                has32 = 0
            else:
                s_hi, s_lo, r = _next64(s_hi, s_lo, inc_hi, inc_lo)
                v = r & lo32
                u32 = r >> np.uint64(32)
                has32 = 1
            v &= mask
            if v <= mx:
                break
        j = np.int64(v)
        t = out[i]
        out[i] = out[j]
        out[j] = t
    return s_hi, s_lo, has32, u32


def _draw(rng, n):
    bg = rng.bit_generator
    st = bg.state
    s, inc = st["state"]["state"], st["state"]["inc"]
    out = np.empty(n, np.int64)
    s_hi, s_lo, has32, u32 = shuffle_arange(
        out, np.uint64(s >> 64), np.uint64(s & _M64), np.uint64(inc >> 64),
        np.uint64(inc & _M64), np.uint64(st["has_uint32"]), np.uint64(st["uinteger"]))
    bg.state = {"bit_generator": "PCG64",
                "state": {"state": (int(s_hi) << 64) | int(s_lo), "inc": inc},
                "has_uint32": int(has32), "uinteger": int(u32)}
    return out


# the one signature shuffle_arange is compiled for (its argument types, as the disk cache
# keys it: npmdn._numba.warm looks it up the same way)
ARGS = (types.Array(types.int64, 1, "C"),) + (types.uint64,) * 6
# set by npmdn._numba.warm: busy(name) is True while a background process of this one is
# compiling ``name`` into the disk cache (then NumPy draws, which draws the same)
busy = None
_agrees: list = []  # [bool] once decided in this process


def compiled() -> bool:
    """Whether :func:`shuffle_arange` is compiled (or loaded) in this process."""
    return bool(shuffle_arange.overloads)


def entry():
    """Compile :func:`shuffle_arange` (or load it from the disk cache)."""
    shuffle_arange.compile(ARGS)


def _ready() -> bool:
    """Whether :func:`permutation` draws here: decided once, when the kernel is in this
    process or can be had (loaded from the cache, or compiled here where no background
    process is compiling it: until then NumPy draws)."""
    if _agrees:
        return _agrees[0]
    if not compiled() and busy is not None and busy("shuffle_arange"):
        return False
    entry()
    _agrees.append(_self_check())
    return _agrees[0]


def _self_check() -> bool:
    """Whether this module draws what this NumPy draws (and leaves the same state),
    on generators in both halves of the 32-bit buffer and sizes around the masks."""
    try:
        for seed, n, skip in ((0, 1, 0), (1, 2, 1), (2, 257, 0), (3, 1000, 1), (4, 4097, 3)):
            a = np.random.default_rng(seed)
            b = np.random.default_rng(seed)
            a.integers(0, 2**32, size=skip, dtype=np.uint32)  # odd counts leave a half buffered
            b.integers(0, 2**32, size=skip, dtype=np.uint32)
            if not np.array_equal(_draw(a, n), b.permutation(n)):
                return False
            if a.bit_generator.state != b.bit_generator.state:
                return False
        return True
    except Exception:  # noqa: BLE001 - another NumPy or Numba: use NumPy's own
        return False


def permutation(rng, n):
    """``rng.permutation(n)`` (int64), drawn here where ``rng`` is a
    ``numpy.random.Generator`` on ``PCG64`` and this NumPy draws the same (checked
    once per process), else by NumPy. Either way ``rng`` ends in the same state."""
    if (type(rng) is np.random.Generator and type(rng.bit_generator) is np.random.PCG64
            and 1 < n < MAX_N and _ready()):
        return _draw(rng, n)
    return rng.permutation(n)
