"""Shared by the bench scripts: what machine, what versions, what bandwidth."""

import os
import platform
import time

import numpy as np


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


def versions() -> dict:
    import llvmlite
    import numba

    import npmdn

    out = {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
           "llvmlite": llvmlite.__version__, "npmdn": npmdn.__version__}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = None
    return out


def median_time(fn, runs: int, warmup: int = 2) -> dict:
    """Wall time of ``fn()``: median (and min) of ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"median_s": float(np.median(times)), "min_s": float(np.min(times)), "runs": runs}


def bandwidth(runs: int = 10, mbytes: int = 256) -> dict:
    """Copy bandwidth, counted as bytes read + bytes written per second, of a
    large NumPy copy (one thread) and of a Numba parallel copy (all threads): the
    better is the bound (``best_GBps``). Also, for comparison and not in the bound,
    a two-thread copy with streaming stores (``bench.streaming_copy``), which skips
    the read for ownership of every line written: the head kernel writes a large
    gradient that way."""
    from numba import njit, prange

    from .streaming_copy import LINE, streaming_copy_2t

    @njit(parallel=True, cache=False)
    def pcopy(src, dst):
        for i in prange(src.shape[0]):
            dst[i] = src[i]

    per = LINE // 8
    n = mbytes * 2**20 // 8 // per * per
    src = np.random.default_rng(0).random(n)
    buf = np.empty(n + per)  # touched by the warm-up calls, so no page faults are timed
    dst = buf[(-buf.ctypes.data % LINE) // 8:][:n]  # 64-byte aligned, for the streaming copy
    t1 = median_time(lambda: np.copyto(dst, src), runs)
    pcopy(src, dst)
    t2 = median_time(lambda: pcopy(src, dst), runs)
    streaming_copy_2t(src, dst, per)
    t3 = median_time(lambda: streaming_copy_2t(src, dst, per), runs)
    b = 2 * src.nbytes
    return {"numpy_copy_GBps": b / t1["median_s"] / 1e9,
            "numba_parallel_copy_GBps": b / t2["median_s"] / 1e9,
            "streaming_copy_GBps": b / t3["median_s"] / 1e9,
            "bytes_per_copy": b,
            "best_GBps": max(b / t1["median_s"], b / t2["median_s"]) / 1e9}


def bound_from(samples: list) -> dict:
    """The copy bandwidth a script's bound uses, from :func:`bandwidth` measured several
    times in its run (before, between and after its shapes): the median of each
    sample's best, with every sample kept. One sample is not enough on a shared VM:
    within minutes the parallel copy measured 39-42 GB/s, and once 57 (another day,
    77), twice the bound of every other run."""
    best = [s["best_GBps"] for s in samples]
    return {"numpy_copy_GBps": [s["numpy_copy_GBps"] for s in samples],
            "numba_parallel_copy_GBps": [s["numba_parallel_copy_GBps"] for s in samples],
            "samples_best_GBps": best, "bytes_per_copy": samples[0]["bytes_per_copy"],
            "best_GBps": float(np.median(best)),
            "streaming_copy_GBps": [s["streaming_copy_GBps"] for s in samples],
            "streaming_median_GBps": float(np.median([s["streaming_copy_GBps"]
                                                      for s in samples]))}


def apply_bound(results: list, gbps: float) -> None:
    """``pct_bw`` and ``x_bound`` of every timed kernel in ``results`` (the scripts'
    ``{"kernels": {kernel: {implementation: timing}}}`` rows) against ``gbps``."""
    for r in results:
        for impls in r["kernels"].values():
            for t in impls.values():
                t["pct_bw"] = 100 * t["GBps"] / gbps
                t["x_bound"] = t["median_s"] / (t["bytes"] / (gbps * 1e9))


def bound_line(bw: dict) -> str:
    """The report's line on the bound: every sample and the median used."""
    samples = ", ".join(f"{v:.1f}" for v in bw["samples_best_GBps"])
    streaming = ", ".join(f"{v:.1f}" for v in bw["streaming_copy_GBps"])
    stream = bw["streaming_median_GBps"]
    return (f"Copy bandwidth (read + write; the better of a NumPy copy on 1 thread and a "
            f"Numba parallel copy), measured before, between and after the shapes: "
            f"{samples} GB/s; the bound uses their median, {bw['best_GBps']:.1f} GB/s. "
            f"Not in the bound, for comparison: a copy with streaming stores (2 threads, "
            f"no read for ownership) at the same times: {streaming} GB/s, median "
            f"{stream:.1f} GB/s (an \"x bound\" below times {stream / bw['best_GBps']:.2f} "
            f"is the same against it).")


def machine(threads_numba: int, threads_torch) -> dict:
    from numba import config

    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "numba_threads": threads_numba, "numba_threading_layer": config.THREADING_LAYER,
            "torch_threads": threads_torch, "loadavg_start": loadavg()}
