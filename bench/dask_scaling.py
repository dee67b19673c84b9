"""Scoring and sampling past one process: npmdn on a Dask LocalCluster of 1 and 2 workers.

    python -m bench.dask_scaling [--rows 50000000] [--block-rows 2097152]
                                 [--slice-rows 2097152] [--json bench/dask_scaling.json]

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

Peak memory: VmHWM of each worker process (``/proc/self/status``), reset
before each call (``/proc/self/clear_refs``), so it is the peak of that call
with the worker's own baseline (Python, Dask, Numba) included. Prints a
markdown table, writes JSON.
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


def _cluster_runs(model, n_workers, rows, block_rows, check_rows):
    import dask
    from distributed import Client, LocalCluster
    from threadpoolctl import threadpool_limits

    env = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = {}
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      memory_limit="4GiB", dashboard_address=None, env=env) as cluster, \
            Client(cluster) as client:
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
            out[(op, n_workers)] = {"rows": rows, "seconds": seconds, "peak_mib": peaks}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--block-rows", type=int, default=1 << 21)
    ap.add_argument("--slice-rows", type=int, default=1 << 21)
    ap.add_argument("--workers", default="1,2")
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
    memory = _in_memory(model, args.slice_rows)
    cluster = {}
    for w in (int(s) for s in args.workers.split(",")):
        cluster.update(_cluster_runs(model, w, args.rows, args.block_rows,
                                     min(args.rows, 3 * args.block_rows // 2)))
    info["loadavg_end"] = _machine.loadavg()

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
        for (name, w), r in sorted(cluster.items()):
            if name == op:
                rate = r["rows"] / r["seconds"]
                peaks = ", ".join(f"{p:.0f}" for p in r["peak_mib"])
                print(f"| {op} | Dask, {w} worker{'s' * (w > 1)} | {rate:,.0f} | "
                      f"{rate / base_rate:.2f}x | {peaks} MiB |")
    for (name, w), r in sorted(cluster.items()):
        if name == "generate x and y":
            peaks = ", ".join(f"{p:.0f}" for p in r["peak_mib"])
            print(f"| (generating x and y alone) | Dask, {w} worker{'s' * (w > 1)} | "
                  f"{r['rows'] / r['seconds']:,.0f} | | {peaks} MiB |")
    with open(args.json, "w") as f:
        json.dump({"info": info,
                   "in_memory": {f"{k[0]}, {k[1]}": v for k, v in memory.items()},
                   "cluster": {f"{k[0]}, {k[1]} workers": v for k, v in cluster.items()}},
                  f, indent=1)
    print(f"\n(JSON: {args.json})")


if __name__ == "__main__":
    main()
