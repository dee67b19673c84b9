"""The head kernels' arithmetic alone, against the time 2x the copy bound allows.

    python -m bench.floor [--k 5] [--runs 15]

``bench.kernels`` measures the fused NLL + gradient and log-density kernels against
a bound set by memory bandwidth. This script measures how long the same arithmetic
takes with no data movement at all, for diagonal rows with D = 1, float32: the
kernels' formulas (:func:`npmdn._numba.head.density_soa`, ``head_soa``) written as
one loop over a tile's samples with the K components unrolled (source generated for
the given K), every value in registers, reading structure-of-arrays inputs that sit
in L1 (one 256-sample tile, transposed once, outside the timing) and writing the
results into it. The real kernels do more: they transpose row-major rows into such
tiles and back, prefetch, and run the mixture math in passes over scratch. So this
is a floor for them, not a kernel: no row of real input goes through it.

It prints the floor on one thread and on two (one tile per thread, each thread its
own copy), the real kernels at (1048576, 5, 1) on two threads, the copy bandwidth
(``bench.machine.bandwidth``) sampled before, between and after, and for each sample the
time per row that "within 2x of the bound" allows (bytes per row as in
``bench.kernels``: at K = 5, 128 for the NLL + gradient, 68 for the log-density). Every
function is checked against the NumPy reference (:mod:`npmdn.mixture`) first.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
from numba import njit, prange

from npmdn import config, mixture
from npmdn._numba import kernels as nk
from npmdn._numba.head import FASTMATH, HALF_LOG_2PI
from npmdn._numba.vmath import as_type, prefer_wide_vectors, unshifted_floor, vexp, vlog

from .kernels import make_inputs, split
from .machine import bandwidth, bound_from, bound_line, loadavg, machine, median_time, versions

T = config.HEAD_TILE  # samples in a tile, as in the head kernels


def row_bytes(name, k):
    """Bytes a row moves, float32, D = 1, as ``bench.kernels`` counts them: the head row
    (3K values) and y in; the log-density out, or the NLL and the gradient row (128 and
    68 at K = 5)."""
    return 4 * ((3 * k + 1) + (1 if name == "log_prob" else 3 * k + 1))


def _source(k, grad):
    """One loop over the tile's samples, components unrolled. The flat tile ``X``
    holds row ``j`` of the structure-of-arrays layout at ``X[j * T + t]`` (the
    compile-time stride lets LLVM see that the in-place stores do not overlap the
    loads of other rows): logits in rows ``0..k-1``, means ``k..2k-1``, log sigmas
    ``2k..3k-1``, y in row ``3k``; out: log p (or the NLL) in row ``3k + 1`` and,
    with ``grad``, the gradient over the inputs' rows; row ``3k + 2`` is scratch."""
    K = range(k)
    a = [f"X[{j} * T + t]" for j in K]
    mu = [f"X[{k + j} * T + t]" for j in K]
    s = [f"X[{2 * k + j} * T + t]" for j in K]
    y = f"X[{3 * k} * T + t]"
    o = f"X[{3 * k + 1} * T + t]"
    ln = ["for t in range(T):",
          f"    y = {y}"]
    ln += [f"    a{j} = {a[j]}" for j in K]
    ln += ["    m = a0"] + [f"    m = a{j} if a{j} > m else m" for j in K[1:]]
    ln += ["    m = m if abs(m) < inf else zero"]
    for j in K:
        ln += [f"    b{j} = a{j} - m",
               f"    e{j} = vexp(b{j})",
               f"    s{j} = {s[j]}",
               f"    i{j} = vexp(-s{j})",
               f"    dy{j} = y - {mu[j]}",
               f"    z{j} = zero if dy{j} == zero else dy{j} * i{j}"]
    ln += ["    c = " + " + ".join(f"e{j}" for j in K)]
    if not grad:  # density_soa: the mixture's sum unshifted, one log
        ln += [f"    q{j} = vexp(b{j} - ((half * z{j}) * z{j} + s{j}))" for j in K]
        ln += ["    q = " + " + ".join(f"q{j}" for j in K),
               f"    X[{3 * k + 2} * T + t] = q",
               f"    {o} = vlog(q / c) - c0"]
        # the samples far in a tail (the kernel's fallback), counted in a loop of their
        # own: an int64 count in the loop above would halve its vector width
        ln += ["for t in range(T):",
               f"    q = X[{3 * k + 2} * T + t]",
               "    far += 0 if (q >= floor and q < inf) else 1"]
        return ln
    # head_soa: t_k, its max, the shifted log-sum-exp, r and pi, the gradient
    ln += ["    vb = vlog(c) + c0", "    ic = one / c"]
    ln += [f"    t{j} = b{j} - vb - ((half * z{j}) * z{j} + s{j})" for j in K]
    ln += ["    M = t0"] + [f"    M = t{j} if t{j} > M else M" for j in K[1:]]
    ln += ["    M = M if abs(M) < inf else zero"]
    ln += [f"    E{j} = vexp(t{j} - M)" for j in K]
    ln += ["    Q = " + " + ".join(f"E{j}" for j in K),
           f"    {o} = -(M + vlog(Q))",
           "    iQ = one / Q"]
    for j in K:
        ln += [f"    r{j} = E{j} * iQ",
               f"    {a[j]} = e{j} * ic - r{j}",
               f"    zi{j} = zero if z{j} == zero else z{j} * i{j}",
               f"    {mu[j]} = zero if r{j} == zero else -r{j} * zi{j}",
               f"    {s[j]} = zero if r{j} == zero else r{j} - (r{j} * z{j}) * z{j}"]
    return ln


def build(k, grad):
    """``(one, two)``: the floor's loop ``reps`` times over one tile, on one thread
    and on two (``X2``: one tile per thread, [2, (3k + 3) T])."""
    body = "\n".join("        " + s for s in _source(k, grad))
    src = f"""
def tile_math(X, reps):
    prefer_wide_vectors()
    zero = as_type(0.0, X)
    one = as_type(1.0, X)
    half = as_type(0.5, X)
    inf = as_type(np.inf, X)
    c0 = as_type(HALF_LOG_2PI, X)
    floor = unshifted_floor(zero)
    far = 0
    for _ in range(reps):
{body}
    return far
"""
    g = {"np": np, "T": T, "HALF_LOG_2PI": HALF_LOG_2PI, "as_type": as_type,
         "prefer_wide_vectors": prefer_wide_vectors, "unshifted_floor": unshifted_floor,
         "vexp": vexp, "vlog": vlog}
    exec(src, g)  # noqa: S102 - our own generated source
    one = njit(fastmath=FASTMATH, error_model="numpy")(g["tile_math"])

    @njit(parallel=True, fastmath=FASTMATH, error_model="numpy")
    def two(X2, reps):
        far = 0
        for c in prange(2):
            far += one(X2[c], reps)
        return far

    return one, two


def tile(k, seed=0):
    """A tile of ``bench.kernels``' inputs (diagonal, D = 1) in the floor's layout,
    and the row-major inputs it came from."""
    head, y = make_inputs(T, k, 1, np.float32, seed=seed)
    X = np.zeros((3 * k + 3, T), np.float32)
    X[:3 * k] = head.T
    X[3 * k] = y[:, 0]
    return X.reshape(-1), head, y


def check(k):
    """Both floors against the NumPy reference (float64), as the kernels are tested:
    raises ``RuntimeError`` if either is off by more than 1e-5 (relative to
    ``max(1, |value|)``; the gradient relative to its largest entry), or if the
    log-density's floor marks as far in a tail (the kernel's fallback) a sample whose
    log p is not below -60."""
    X, head, y = tile(k, seed=1)
    logits, mu, ls = (v.astype(np.float64) for v in split(head, k, 1))
    y64 = y.astype(np.float64)
    ref_lp = mixture.log_prob(logits, mu, ls, y64)
    ref = mixture.nll_grad(logits, mu, ls, y64)
    ref_g = np.concatenate([ref[1], ref[2][..., 0], ref[3][..., 0]], axis=1).T
    for grad in (False, True):
        one, _ = build(k, grad)
        Xc = X.copy()
        far = one(Xc, 1)
        out = Xc.reshape(3 * k + 3, T)
        got, want = out[3 * k + 1], (ref[0] if grad else ref_lp)
        if not grad:  # samples far in a tail take the kernel's fallback, not timed here
            near = (out[3 * k + 2] >= 2.0 ** -90) & np.isfinite(out[3 * k + 2])
            got, want = got[near], want[near]
            far = 0 if np.all(ref_lp[~near] < -60) else far
        err = float(np.max(np.abs(got - want) / np.maximum(1, np.abs(want))))
        gerr = float(np.max(np.abs(out[:3 * k] - ref_g)) / np.max(np.abs(ref_g))) if grad else 0.0
        if far != 0 or err > 1e-5 or gerr > 1e-5:
            what = "NLL + gradient" if grad else "log-density"
            raise RuntimeError(f"the {what} floor (K = {k}) is not the reference's math: "
                               f"value error {err:.2e}, gradient error {gerr:.2e}, {far} far")


def time_floor(fn, X, rows, runs, reps):
    fn(X.copy(), 1)
    ts = []
    for _ in range(runs):
        Xc = X.copy()
        t = time.perf_counter()
        fn(Xc, reps)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) / (rows * reps) * 1e9


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
    X, _, _ = tile(k)
    X2 = np.stack([X, X])
    fns = {name: build(k, grad) for name, grad in (("log_prob", False), ("nll_grad", True))}
    for one, two in fns.values():  # compiled before anything is timed
        one(X.copy(), 1)
        two(X2.copy(), 1)
    samples = [bandwidth()]
    rows = {name: {"floor_1_thread_ns": time_floor(one, X, T, args.runs, args.reps),
                   "floor_2_threads_ns": time_floor(two, X2, 2 * T, args.runs, args.reps)}
            for name, (one, two) in fns.items()}
    samples.append(bandwidth())
    if k == 5:
        for name, ns in time_kernels(args.runs).items():
            rows[name]["kernel_2_threads_ns"] = ns
        samples.append(bandwidth())
    bw = bound_from(samples)
    info["bandwidth"] = bw
    info["machine"]["loadavg_end"] = loadavg()
    gb = bw["samples_best_GBps"] + [bw["best_GBps"]]
    for name, r in rows.items():
        r["bytes_per_row"] = row_bytes(name, k)
        r["allowed_at_GBps"] = gb  # the samples, then their median
        r["allowed_ns"] = [2 * row_bytes(name, k) / b for b in gb]  # 2 * bytes / (GB/s)
    m = info["machine"]
    print(f"`{info['command']}`  \n{m['cpu']}, {m['logical_cpus']} logical CPUs; load "
          f"average {m['loadavg_start']} at start, {m['loadavg_end']} at end; K = {k}, "
          f"D = 1, float32, tile {T}; median of {args.runs} timings of {args.reps} passes.  \n"
          + bound_line(bw) + "\n")
    heads = [f"{b:.1f} GB/s" for b in bw["samples_best_GBps"]] + [f"median {bw['best_GBps']:.1f}"]
    print("| kernel | floor, 1 thread | floor, 2 threads | kernel, (1048576, 5, 1), 2 threads | "
          + " | ".join(f"2x the bound at {h}" for h in heads) + " |")
    print("|---|---|---|---|" + "---|" * len(heads))
    for name, r in rows.items():
        kt = f"{r['kernel_2_threads_ns']:.2f}" if "kernel_2_threads_ns" in r else "-"
        print(f"| {name} | {r['floor_1_thread_ns']:.2f} | {r['floor_2_threads_ns']:.2f} | {kt} | "
              + " | ".join(f"{a:.2f}" for a in r["allowed_ns"]) + " |")
    print("\nns per row. The floor is the arithmetic alone (no transposes, nothing beyond L1); "
          "a kernel within 2x of the bound takes at most the last columns' time per row on "
          "two threads.")
    with open(args.json, "w") as f:
        json.dump({"info": info, "results": rows}, f, indent=1)
    print(f"(JSON: {args.json})")


if __name__ == "__main__":
    main()
