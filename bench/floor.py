"""The head kernels' arithmetic alone, against the time 2x the copy bound allows.

    python -m bench.floor [--k 5] [--runs 15]

``bench.kernels`` measures the fused NLL + gradient and log-density kernels against
a bound set by memory bandwidth. This script times the same kernels' mixture math
with no data movement around it: :func:`npmdn._numba.head.density_soa` and
``head_soa`` themselves (the code the kernels inline), called over and over on one
256-sample structure-of-arrays tile that sits in L1, laid out as the kernel lays
out its scratch, for diagonal rows with D = 1, float32. What the kernels do besides
(the transposes between row-major rows and the tile, prefetch, the per-row output)
is left out, so this is a floor for them. The log-density's math may run on the
same tile again and again (it shifts the logits by their row max, which leaves them
as they are the second time); the NLL + gradient's overwrites its tile with the
gradient, so each pass first restores the inputs by a copy in L1, timed alone too.

It prints the floor on one thread and on two (one tile per thread), the real
kernels at (1048576, 5, 1) on two threads, the copy bandwidth
(``bench.machine.bandwidth``) sampled before, between and after, and for each sample
the time per row that "within 2x of the bound" allows (bytes per row as in
``bench.kernels``: at K = 5, 128 for the NLL + gradient, 68 for the log-density). The
math on the tile is checked against the NumPy reference (:mod:`npmdn.mixture`) first.
"""

import argparse
import json
import os
import sys

import numpy as np
from numba import njit, prange

from npmdn import config, mixture
from npmdn._numba import kernels as nk
from npmdn._numba.head import FASTMATH, ROW_PAD, density_soa, head_soa_inline
from npmdn._numba.memory import aligned_zeros
from npmdn._numba.vmath import as_type

from .kernels import make_inputs, split
from .machine import bandwidth, bound_from, bound_line, loadavg, machine, median_time, versions

T = config.HEAD_TILE  # samples in a tile, as in the head kernels
T2 = T + ROW_PAD  # a scratch row, as in the head kernels


def row_bytes(name, k):
    """Bytes a row moves, float32, D = 1, as ``bench.kernels`` counts them: the head row
    (3K values) and y in; the log-density out, or the NLL and the gradient row (128 and
    68 at K = 5)."""
    return 4 * ((3 * k + 1) + (1 if name == "log_prob" else 3 * k + 1))


def rows(k):
    """The tile's rows: the head row's 3K values (logits, means, log sigmas) and 8 to
    spare, y and 7 to spare, the kernel's scratch ``EA``, ``TT`` (K each) and its five
    per-sample vectors; ``vd`` (log p) is the last."""
    return 3 * k + 8 + 8 + 2 * k + 5


@njit(fastmath=FASTMATH, error_model="numpy")
def tile_math(W, W0, k, grad, restore, reps):
    """``reps`` passes of the kernels' math over the tile ``W`` ([rows(k), T2]):
    ``density_soa``, or (``grad``) ``head_soa`` with the inputs first restored from
    ``W0``; ``restore`` alone: the restoring copies and nothing else."""
    P = 3 * k
    XA, XM, XS = W[:k], W[k:2 * k], W[2 * k:P]
    XY = W[P + 8:P + 16]
    EA = W[P + 16:P + 16 + k]
    TT = W[P + 16 + k:P + 16 + 2 * k]
    v0 = P + 16 + 2 * k
    va, vb, vc, vq, vd = W[v0, :T], W[v0 + 1, :T], W[v0 + 2, :T], W[v0 + 3, :T], W[v0 + 4, :T]
    zero = as_type(0.0, W)
    for _ in range(reps):
        if grad or restore:
            for j in range(P):
                for t in range(T):
                    W[j, t] = W0[j, t]
        if restore:
            continue
        if grad:
            head_soa_inline(T, k, 1, False, XA, XM, XS, XY, EA, TT, va, vb, vc, vd, vq, zero)
        else:
            density_soa(T, k, 1, False, XA, XM, XS, XY, EA, TT, va, vb, vc, vd, vq)


@njit(parallel=True, fastmath=FASTMATH, error_model="numpy")
def tile_math_2(W2, W0, k, grad, restore, reps):
    """:func:`tile_math` on two threads, a tile each (``W2`` [2, rows(k), T2])."""
    for c in prange(2):
        tile_math(W2[c], W0, k, grad, restore, reps)


def tile(k, seed=0):
    """A tile of ``bench.kernels``' inputs (diagonal, D = 1) in the kernel's scratch
    layout, on 64-byte lines as the kernel's, and the row-major inputs it came from."""
    head, y = make_inputs(T, k, 1, np.float32, seed=seed)
    W = aligned_zeros((rows(k), T2), np.float32)
    W[:3 * k, :T] = head.T
    W[3 * k + 8, :T] = y[:, 0]
    return W, head, y


def check(k):
    """The math on a tile against the NumPy reference (float64), as the kernels are
    tested: raises ``RuntimeError`` if log p, the NLL or the gradient is off by more
    than 1e-5 (relative to ``max(1, |value|)``; the gradient relative to its largest
    entry), which a tile laid out other than as the math reads it would be."""
    W, head, y = tile(k, seed=1)
    logits, mu, ls = (v.astype(np.float64) for v in split(head, k, 1))
    y64 = y.astype(np.float64)
    ref_lp = mixture.log_prob(logits, mu, ls, y64)
    ref = mixture.nll_grad(logits, mu, ls, y64)
    ref_g = np.concatenate([ref[1], ref[2][..., 0], ref[3][..., 0]], axis=1).T
    for grad in (False, True):
        Wc = W.copy()
        tile_math(Wc, W, k, grad, False, 2)  # twice: the second pass is the one timed
        got = Wc[-1, :T]
        err = float(np.max(np.abs(got - ref_lp) / np.maximum(1, np.abs(ref_lp))))
        gerr = (float(np.max(np.abs(Wc[:3 * k, :T] - ref_g)) / np.max(np.abs(ref_g)))
                if grad else 0.0)
        if err > 1e-5 or gerr > 1e-5:
            what = "NLL + gradient" if grad else "log-density"
            raise RuntimeError(f"the {what} math on the tile (K = {k}) is not the "
                               f"reference's: log p error {err:.2e}, gradient error {gerr:.2e}")


def time_floor(k, grad, restore, threads, runs, reps):
    """ns per sample of :func:`tile_math` (``threads`` 1 or 2), the median of ``runs``."""
    W, _, _ = tile(k)
    args = (np.stack([W, W]) if threads == 2 else W.copy(), W, k, grad, restore)
    fn = tile_math_2 if threads == 2 else tile_math
    fn(*args, 1)
    return median_time(lambda: fn(*args, reps), runs, warmup=0)["median_s"] / (
        threads * T * reps) * 1e9


def time_kernels(runs):
    """The real kernels at (1048576, 5, 1) on two threads, as ``bench.kernels`` calls them."""
    n = 1 << 20
    head, y = make_inputs(n, 5, 1, np.float32)
    v = split(head, 5, 1)
    g = np.zeros_like(head)
    gv = split(g, 5, 1)
    nll = np.empty(n, np.float32)
    out = {}
    for name, f in (("nll_grad", lambda: nk.nll_grad(*v, y, out=(nll, *gv))),
                    ("log_prob", lambda: nk.log_prob(*v, y))):
        out[name] = median_time(f, runs)["median_s"] / n * 1e9
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--reps", type=int, default=2000, help="passes over the tile per timing")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "floor.json"))
    args = ap.parse_args()
    k = args.k
    check(k)
    import numba

    info = {"machine": machine(numba.get_num_threads(), None), "versions": versions(),
            "k": k, "tile": T, "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
    samples = [bandwidth()]
    res = {}
    for name, grad in (("log_prob", False), ("nll_grad", True)):
        r = {"floor_1_thread_ns": time_floor(k, grad, False, 1, args.runs, args.reps),
             "floor_2_threads_ns": time_floor(k, grad, False, 2, args.runs, args.reps)}
        if grad:
            r["restore_2_threads_ns"] = time_floor(k, grad, True, 2, args.runs, args.reps)
        res[name] = r
    samples.append(bandwidth())
    if k == 5:
        for name, ns in time_kernels(args.runs).items():
            res[name]["kernel_2_threads_ns"] = ns
        samples.append(bandwidth())
    bw = bound_from(samples)
    info["bandwidth"] = bw
    info["machine"]["loadavg_end"] = loadavg()
    gb = bw["samples_best_GBps"] + [bw["best_GBps"]]
    for name, r in res.items():
        r["bytes_per_row"] = row_bytes(name, k)
        r["allowed_at_GBps"] = gb  # the samples, then their median
        r["allowed_ns"] = [2 * row_bytes(name, k) / b for b in gb]  # 2 * bytes / (GB/s)
    m = info["machine"]
    print(f"`{info['command']}`  \n{m['cpu']}, {m['logical_cpus']} logical CPUs; load "
          f"average {m['loadavg_start']} at start, {m['loadavg_end']} at end; K = {k}, "
          f"D = 1, float32, tile {T}; median of {args.runs} timings of {args.reps} passes.  \n"
          + bound_line(bw) + "\n")
    heads = [f"{b:.1f} GB/s" for b in bw["samples_best_GBps"]] + [f"median {bw['best_GBps']:.1f}"]
    print("| kernel | floor, 1 thread | floor, 2 threads | of which restoring the tile | "
          "kernel, (1048576, 5, 1), 2 threads | "
          + " | ".join(f"2x the bound at {h}" for h in heads) + " |")
    print("|---|---|---|---|---|" + "---|" * len(heads))
    for name, r in res.items():
        kt = f"{r['kernel_2_threads_ns']:.2f}" if "kernel_2_threads_ns" in r else "-"
        rt = f"{r['restore_2_threads_ns']:.2f}" if "restore_2_threads_ns" in r else "-"
        print(f"| {name} | {r['floor_1_thread_ns']:.2f} | {r['floor_2_threads_ns']:.2f} | {rt} | "
              f"{kt} | "
              + " | ".join(f"{a:.2f}" for a in r["allowed_ns"]) + " |")
    print("\nns per row. The floor is the kernels' own mixture math on a tile in L1 (no "
          "transposes, no rows from memory; the NLL + gradient's includes restoring its "
          "inputs, timed alone in the fourth column); a kernel within 2x of the bound takes "
          "at most the last columns' time per row on two threads.")
    with open(args.json, "w") as f:
        json.dump({"info": info, "results": res}, f, indent=1)
    print(f"(JSON: {args.json})")


if __name__ == "__main__":
    main()
