"""Scoring and sampling past one process: npmdn on a Dask LocalCluster of 1 and 2 workers.

    python -m bench.dask_scaling [--rows 50000000] [--block-rows 2097152]
                                 [--slice-rows 2097152] [--fit-rows 0] [--fit-block-mib 16]
                                 [--json bench/dask_scaling.json]

A float32 model (4 inputs, 2 outputs, K = 5, hidden 32 x 32, numba backend)
scores (``log_prob``) and samples (``sample``, one draw per row) a Dask array
of ``--rows`` rows generated lazily on the workers (uniform x and y, float32,
blocks of ``--block-rows`` rows). Each worker is one process with one thread
(Numba and BLAS on one thread too), so 1 and 2 workers use 1 and 2 cores. The
results are summed on the workers (the sum costs far less than the model), so
nothing of size N comes back.

Against it: the same calls in this one process on a NumPy slice of
``--slice-rows`` rows that fits in memory, with all threads (numba and BLAS
defaults) and with one thread; and the time to generate the data alone on the
cluster, which is part of every cluster row. Before timing, a slice computed on
the cluster is checked against the in-memory result bit for bit.

Workers run with glibc's own malloc settings, except the rows marked with
distributed's default ``MALLOC_TRIM_THRESHOLD_=65536`` (set by its nanny):
that setting turns off glibc's adaptive mmap threshold, so every NumPy
temporary over 128 KiB becomes a fresh mmap and its pages fault in again, which
slows npmdn's inference several times (``--workers-trim`` chooses those runs).

Peak memory: VmHWM of each worker process (``/proc/self/status``), reset
before each call (``/proc/self/clear_refs``), so it is the peak of that call
with the worker's own baseline (Python, Dask, Numba) included.

With ``--fit-rows N`` it also trains the model for one epoch on N rows
(float64 x and y generated on 2 workers, blocks of ``--fit-block-mib`` MiB of
x and y) first, and reports this process's peak RSS during the fit against its
RSS before (imports, a cluster, a fit on 1000 rows): what the streaming fit
holds, next to the size of the data. Prints markdown tables, writes JSON.
"""

import argparse
import json
import os
import time

import numpy as np

from . import machine as _machine

IN_DIM, OUT_DIM, K, HIDDEN = 4, 2, 5, (32, 32)


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _model():
    import npmdn

    return npmdn.MDN(IN_DIM, OUT_DIM, K, hidden=HIDDEN, dtype="float32", backend="numba", seed=0)


def _warm_up():
    """Load the model's kernels from Numba's disk cache in this (worker) process."""
    x = np.zeros((8, IN_DIM), dtype=np.float32)
    m = _model()
    m.log_prob(x, np.zeros((8, OUT_DIM), dtype=np.float32))
    m.sample(x, 1, seed=0)


def _data(rows, block_rows, seed=0):
    import dask.array as da

    gen = da.random.default_rng(seed)
    x = gen.random((rows, IN_DIM), chunks=(block_rows, IN_DIM), dtype=np.float32)
    y = gen.random((rows, OUT_DIM), chunks=(block_rows, OUT_DIM), dtype=np.float32)
    return x, y


def _in_memory(model, n, seed=1):
    """rows/s of log_prob and sample on n rows in this process, all threads and one."""
    import numba
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    x = rng.random((n, IN_DIM), dtype=np.float32)
    y = rng.random((n, OUT_DIM), dtype=np.float32)
    calls = {"log_prob": lambda: model.log_prob(x, y),
             "sample": lambda: model.sample(x, 1, seed=3)}
    out = {}
    threads = numba.get_num_threads()
    for label, n_threads in (("all threads", threads), ("one thread", 1)):
        numba.set_num_threads(n_threads)
        try:
            with threadpool_limits(n_threads, user_api="blas"):
                for op, fn in calls.items():
                    t = _machine.median_time(fn, runs=3, warmup=1)["median_s"]
                    out[(op, label)] = {"rows": n, "seconds": t, "threads": n_threads}
        finally:
            numba.set_num_threads(threads)
    return out


TRIM = "MALLOC_TRIM_THRESHOLD_"


def _trim_setting():
    return os.environ.get(TRIM)


def _local_cluster(n_workers, trim):
    """A LocalCluster of one-thread workers; ``trim=False`` unsets distributed's
    MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's adaptive mmap threshold
    so that every NumPy temporary over 128 KiB is a fresh mmap (page faults)."""
    import dask
    from distributed import LocalCluster

    os.environ.pop(TRIM, None)  # a nanny sets it in this process too; workers inherit it
    env = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    setting = {} if trim else {f"distributed.nanny.pre-spawn-environ.{TRIM}": None}
    with dask.config.set(setting):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                            memory_limit="4GiB", dashboard_address=None, env=env)


def _cluster_runs(model, n_workers, trim, rows, block_rows, check_rows):
    import dask
    from distributed import Client
    from threadpoolctl import threadpool_limits

    out = {}
    with _local_cluster(n_workers, trim) as cluster, Client(cluster) as client:
        assert all((v is not None) == trim for v in client.run(_trim_setting).values())
        x, y = _data(rows, block_rows)
        # validate before timing: a slice on the cluster equals the in-memory result
        xs, ys = dask.compute(x[:check_rows], y[:check_rows])
        with threadpool_limits(1, user_api="blas"):
            want = model.log_prob(xs, ys), model.sample(xs, 1, seed=3)
        got = dask.compute(model.log_prob(x[:check_rows], y[:check_rows]),
                           model.sample(x[:check_rows], 1, seed=3))
        if not (np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])):
            raise AssertionError("the cluster's results differ from the in-memory ones")
        work = {
            "generate x and y": lambda: (x.sum() + y.sum()).compute(),
            "log_prob": lambda: model.log_prob(x, y).sum(dtype=np.float64).compute(),
            "sample": lambda: model.sample(x, 1, seed=3).sum(dtype=np.float64).compute(),
        }
        client.run(_warm_up)
        for op, fn in work.items():
            client.run(_reset_peak)
            t = time.perf_counter()
            fn()
            seconds = time.perf_counter() - t
            peaks = sorted(client.run(_peak_mib).values())
            out[(op, n_workers, trim)] = {"rows": rows, "seconds": seconds, "peak_mib": peaks}
    return out


def _rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _streaming_fit(rows, block_mib):
    """One epoch of a streamed fit on 2 workers: seconds, RSS before, peak RSS during."""
    import dask.array as da
    from distributed import Client

    import npmdn

    row_bytes = 8 * (IN_DIM + OUT_DIM)
    block_rows = max(1, int(block_mib * 2**20) // row_bytes)
    with _local_cluster(2, False) as cluster, Client(cluster):
        gen = da.random.default_rng(5)
        x = gen.standard_normal((rows, IN_DIM), chunks=(block_rows, IN_DIM))
        y = da.sin(x[:, :OUT_DIM]) + 0.1 * gen.standard_normal((rows, OUT_DIM),
                                                              chunks=(block_rows, OUT_DIM))
        model = npmdn.MDN(IN_DIM, OUT_DIM, K, hidden=HIDDEN, backend="numba", seed=0)
        model.fit(x[:1000], y[:1000], epochs=1, verbose=False)  # kernels loaded, little held
        model = npmdn.MDN(IN_DIM, OUT_DIM, K, hidden=HIDDEN, backend="numba", seed=0)
        before = _rss_mib()
        _reset_peak()
        t = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=512, verbose=False)
        seconds = time.perf_counter() - t
        return {"rows": rows, "block_rows": block_rows, "block_mib": block_rows * row_bytes / 2**20,
                "data_mib": rows * row_bytes / 2**20, "seconds": seconds,
                "rss_before_mib": before, "peak_mib": _peak_mib()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--block-rows", type=int, default=1 << 21)
    ap.add_argument("--slice-rows", type=int, default=1 << 21)
    ap.add_argument("--workers", default="1,2", help="worker counts, glibc's malloc")
    ap.add_argument("--workers-trim", default="2", help="worker counts, distributed's "
                    "default MALLOC_TRIM_THRESHOLD_=65536 ('' for none)")
    ap.add_argument("--fit-rows", type=int, default=0)
    ap.add_argument("--fit-block-mib", type=float, default=16.0)
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__),
                                                   "dask_scaling.json"))
    args = ap.parse_args(argv)
    import dask
    import distributed
    import numba

    info = _machine.machine(numba.get_num_threads(), None)
    info.update(_machine.versions())
    info.update(dask=dask.__version__, distributed=distributed.__version__, rows=args.rows,
                block_rows=args.block_rows, slice_rows=args.slice_rows)
    model = _model()
    memory, cluster, fit = {}, {}, None
    if args.fit_rows:  # first, before this process has held anything large
        fit = _streaming_fit(args.fit_rows, args.fit_block_mib)
    if args.rows:
        memory = _in_memory(model, args.slice_rows)
        runs = [(int(w), False) for w in args.workers.split(",") if w]
        runs += [(int(w), True) for w in args.workers_trim.split(",") if w]
        for w, trim in runs:
            cluster.update(_cluster_runs(model, w, trim, args.rows, args.block_rows,
                                         min(args.rows, 3 * args.block_rows // 2)))
    info["loadavg_end"] = _machine.loadavg()
    if args.rows:
        _print_inference(args, info, memory, cluster)
    if fit is not None:
        print(f"\nStreaming fit, one epoch on 2 workers, batch 512: {fit['rows']:,} rows "
              f"({fit['data_mib']:.0f} MiB of x and y) in blocks of {fit['block_rows']:,} rows "
              f"({fit['block_mib']:.1f} MiB); load {info['loadavg_start']} -> "
              f"{info['loadavg_end']}\n")
        print("| rows/s | this process's RSS before | peak RSS during the fit | growth |")
        print("|---|---|---|---|")
        print(f"| {fit['rows'] / fit['seconds']:,.0f} | {fit['rss_before_mib']:.0f} MiB | "
              f"{fit['peak_mib']:.0f} MiB | {fit['peak_mib'] - fit['rss_before_mib']:.0f} MiB |")
    with open(args.json, "w") as f:
        json.dump({"info": info,
                   "in_memory": {f"{k[0]}, {k[1]}": v for k, v in memory.items()},
                   "cluster": {f"{k[0]}, {k[1]} workers" + (f", {TRIM}=65536" if k[2] else ""): v
                               for k, v in cluster.items()},
                   "streaming_fit": fit}, f, indent=1)
    print(f"\n(JSON: {args.json})")


def _print_inference(args, info, memory, cluster):
    print(f"\n{args.rows:,} rows in blocks of {args.block_rows:,}; in memory: {args.slice_rows:,} "
          f"rows; {info['cpu']}, {info['logical_cpus']} logical CPUs; "
          f"load {info['loadavg_start']} -> {info['loadavg_end']}\n")
    print("| call | where | rows/s | vs in memory (all threads) | peak RSS per worker |")
    print("|---|---|---|---|---|")
    for op in ("log_prob", "sample"):
        base = memory[(op, "all threads")]
        base_rate = base["rows"] / base["seconds"]
        for label in ("all threads", "one thread"):
            r = memory[(op, label)]
            rate = r["rows"] / r["seconds"]
            print(f"| {op} | in memory, {label} | {rate:,.0f} | {rate / base_rate:.2f}x | |")
        for (name, w, trim), r in sorted(cluster.items()):
            if name == op:
                rate = r["rows"] / r["seconds"]
                print(f"| {op} | {_where(w, trim)} | {rate:,.0f} | {rate / base_rate:.2f}x | "
                      f"{_peaks(r)} |")
    for (name, w, trim), r in sorted(cluster.items()):
        if name == "generate x and y":
            print(f"| (generating x and y alone) | {_where(w, trim)} | "
                  f"{r['rows'] / r['seconds']:,.0f} | | {_peaks(r)} |")


def _where(w, trim):
    return (f"Dask, {w} worker{'s' * (w > 1)}"
            + (f", {TRIM}=65536 (distributed's default)" if trim else ""))


def _peaks(r):
    return ", ".join(f"{p:.0f}" for p in r["peak_mib"]) + " MiB"


if __name__ == "__main__":
    main()
