"""Copy bandwidth with plain stores and with streaming (non-temporal) stores.

    python -m bench.streaming_copy [--mbytes 64] [--runs 15]

For comparison with the bound ``bench.kernels`` uses (``bench.machine.bandwidth``:
the better of a NumPy copy on one thread and a Numba parallel copy), which stays the
bound: this measures, in one process and in alternating rounds, a NumPy copy, the
same Numba parallel copy, and a two-thread copy written with the streaming stores
of the head kernel's large gradients (``npmdn._numba.transpose.stream_line``,
64-byte lines to a 64-byte-aligned destination, a fence at the end), float32.
Prints GB/s counted as bytes read + bytes written.
"""

import argparse

import numpy as np
from numba import njit, prange

from npmdn._numba.transpose import LINE, store_fence, stream_line

from .machine import cpu_model, loadavg, median_time


@njit(parallel=True, cache=False)
def _plain_copy(src, dst):
    for i in prange(src.shape[0]):
        dst[i] = src[i]


@njit(parallel=True, cache=False)
def streaming_copy_2t(src, dst, per):
    n = src.shape[0]
    lines = n // per
    for c in prange(2):
        for q in range(c * lines // 2, (c + 1) * lines // 2):
            stream_line(dst, q * LINE, src, q * per)
        store_fence()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mbytes", type=int, default=64)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    per = LINE // 4
    n = args.mbytes * 2**20 // 4 // per * per
    src = np.random.default_rng(0).random(n).astype(np.float32)
    buf = np.empty(n + per, np.float32)
    dst = buf[(-buf.ctypes.data % LINE) // 4:][:n]  # 64-byte aligned
    assert dst.ctypes.data % LINE == 0
    b = 2 * src.nbytes
    fns = {"NumPy copy (1 thread)": lambda: np.copyto(dst, src),
           "Numba parallel copy (plain stores)": lambda: _plain_copy(src, dst),
           "streaming-store copy (2 threads)": lambda: streaming_copy_2t(src, dst, per)}
    for f in fns.values():
        f()
    np.testing.assert_array_equal(dst, src)
    print(f"`python -m bench.streaming_copy --mbytes {args.mbytes}`: {cpu_model()}, "
          f"load {loadavg()}; GB/s (read + write), median of {args.runs} copies per round\n")
    print("| copy | " + " | ".join(f"round {r + 1}" for r in range(args.rounds)) + " |")
    print("|---|" + "---|" * args.rounds)
    res = {name: [] for name in fns}
    for _ in range(args.rounds):
        for name, f in fns.items():
            res[name].append(b / median_time(f, args.runs)["median_s"] / 1e9)
    for name, v in res.items():
        print(f"| {name} | " + " | ".join(f"{x:.1f}" for x in v) + " |")


if __name__ == "__main__":
    main()
