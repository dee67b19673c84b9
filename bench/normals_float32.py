"""The float32 Box-Muller's error over every 32-bit word, against float64.

    python -m bench.normals_float32          (all 2**32 words: ~2-5 min on 2 cores)

Each piece of the float32 normals of the numba sampler is a function of one
word: ``-log u`` and ``r = sqrt(-2 log u)`` of the first word of a pair,
``cos 2 pi u`` and ``sin 2 pi u`` of the second (``npmdn._numba.vmath``:
``neglog_word_f32``, ``cos_sin_2pi_word32``). This prints each piece's
largest error relative to its value, over all words, against the float64
transform (``log64``, ``cos_sin_2pi``: within a few float64 ulps), and the
bound it gives on ``r cos`` and ``r sin``: the two pieces' maxima plus the
product's rounding. That bound is ``npmdn.philox.NORMALS_FLOAT32_RTOL``
(3e-7), which the tests use.
"""

import time

import numpy as np
from numba import njit, prange

from npmdn import philox
from npmdn._numba import vmath as vm
from npmdn._numba.sample import uniform


@njit(parallel=True, error_model="numpy")
def _errors(lo, hi, n_chunks):
    """Per chunk of the words lo .. hi - 1: the largest relative error of each
    piece and the word where it occurs."""
    acc = np.zeros((n_chunks, 4))
    arg = np.zeros((n_chunks, 4), np.int64)
    for c in prange(n_chunks):
        for i in range(lo + c * (hi - lo) // n_chunks, lo + (c + 1) * (hi - lo) // n_chunks):
            x = np.uint32(i)
            u = uniform(x)
            s64 = -vm.log64(u)
            s32 = vm.neglog_word_f32(x)
            r64 = np.sqrt(2.0 * s64)
            r32 = np.sqrt(np.float32(2.0) * s32)
            c64, sn64 = vm.cos_sin_2pi(u)
            c32, sn32 = vm.cos_sin_2pi_word32(x)
            e = (abs(np.float64(s32) - s64) / s64, abs(np.float64(r32) - r64) / r64,
                 abs(np.float64(c32) - c64) / abs(c64), abs(np.float64(sn32) - sn64) / abs(sn64))
            for k in range(4):
                if e[k] > acc[c, k]:
                    acc[c, k] = e[k]
                    arg[c, k] = i
    return acc, arg


def main():
    t = time.time()
    best = np.zeros(4)
    where = np.zeros(4, np.int64)
    step = 1 << 28
    for lo in range(0, 1 << 32, step):
        acc, arg = _errors(lo, lo + step, 16)
        for k in range(4):
            j = np.argmax(acc[:, k])
            if acc[j, k] > best[k]:
                best[k], where[k] = acc[j, k], arg[j, k]
    ulp = 2.0**-24
    for k, name in enumerate(["-log u", "r", "cos", "sin"]):
        print(f"{name:7s} max relative error {best[k]:.4e} = {best[k] / ulp:.3f} * 2**-24 "
              f"(word {where[k]})")
    bound = best[1] + max(best[2], best[3]) + ulp
    print(f"r cos, r sin: within {bound:.4e} = {bound / ulp:.3f} * 2**-24 "
          f"(NORMALS_FLOAT32_RTOL = {philox.NORMALS_FLOAT32_RTOL:g}: "
          f"{'holds' if bound <= philox.NORMALS_FLOAT32_RTOL else 'EXCEEDED'})")
    print(f"all 2**32 words in {time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
