"""Mixture-head kernels on the CPU: npmdn numpy, npmdn numba, PyTorch.

    python -m bench.kernels [--dtype float32] [--runs 15] [--json bench/kernels.json]

For each (N, K, D) (diagonal covariance) and each kernel — NLL with its
gradient with respect to the head output, the log-density alone, sampling —
every implementation is first validated against the NumPy reference
(npmdn.mixture), then timed: median of ``--runs`` wall-clock runs after two
warm-up runs. The inputs are what a model hands over: row-strided views of
one [N, P] head output, the gradient written into views of one [N, P] buffer.

Implementations: ``npmdn numpy`` (the reference), ``npmdn numba`` (the
fused kernels), ``torch stable`` (log_softmax + logsumexp, autograd), and
``torch MSF`` (torch.distributions.MixtureSameFamily). Sampling: ``npmdn
numba`` with Gumbel-max (the default) and with the cumulative method,
``torch stable`` (Gumbel-max over logits, then mu + sigma * randn) and
``torch MSF .sample``.

GB/s counts the bytes a kernel must move (inputs read once, outputs
written once) over its median time; ``% bw`` is that against the copy
bandwidth measured in the same run (before, between and after the shapes; the
median of those samples, all of them printed), and ``x bound`` is the time
over the time those bytes take at that bandwidth. Prints markdown tables, writes JSON.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from npmdn import mixture
from npmdn._numba import kernels as nk

from . import machine as _machine

SHAPES = [(65536, 5, 1), (65536, 30, 1), (65536, 8, 4), (1048576, 5, 1)]
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def make_inputs(n, k, d, dtype, seed=0, s=None):
    """A head output [N, P] with P = K (1 + D + S) (``s``: scales per component, D
    unless given; 1 is isotropic), and y."""
    s = d if s is None else s
    rng = np.random.default_rng(seed)
    head = np.empty((n, k * (1 + d + s)), dtype)
    head[:, :k] = rng.normal(0, 1.5, (n, k))
    head[:, k:k + k * d] = rng.normal(0, 2, (n, k * d))
    head[:, k + k * d:] = rng.normal(0, 0.5, (n, k * s))
    y = rng.normal(0, 2, (n, d)).astype(dtype)
    return head, y


def split(h, k, d, s=None):
    """The (logits, mu, log sigma) views of a head output from :func:`make_inputs`."""
    n = h.shape[0]
    s = d if s is None else s
    return h[:, :k], h[:, k:k + k * d].reshape(n, k, d), h[:, k + k * d:].reshape(n, k, s)


# ------------------------------------------------------------------ torch versions


def torch_fns(head, y, k, d, n_samples):
    import torch

    D = torch.distributions
    th = torch.from_numpy(head).requires_grad_(True)
    ty = torch.from_numpy(y)

    def parts(h):
        return h[:, :k], h[:, k:k + k * d].reshape(-1, k, d), h[:, k + k * d:].reshape(-1, k, d)

    def stable_nll(h):
        a, mu, s = parts(h)
        z = (ty[:, None, :] - mu) * torch.exp(-s)
        log_n = -0.5 * (z * z).sum(-1) - s.sum(-1) - d * HALF_LOG_2PI
        return -torch.logsumexp(torch.log_softmax(a, -1) + log_n, -1)

    def msf(h):
        a, mu, s = parts(h)
        return D.MixtureSameFamily(D.Categorical(logits=a),
                                   D.Independent(D.Normal(mu, torch.exp(s)), 1))

    def stable_grad():
        th.grad = None
        nll = stable_nll(th)
        nll.sum().backward()
        return nll.detach().numpy(), th.grad.numpy()

    def msf_grad():
        th.grad = None
        nll = -msf(th).log_prob(ty)
        nll.sum().backward()
        return nll.detach().numpy(), th.grad.numpy()

    def stable_lp():
        with torch.no_grad():
            return (-stable_nll(th)).numpy()

    def msf_lp():
        with torch.no_grad():
            return msf(th).log_prob(ty).numpy()

    def stable_sample():
        with torch.no_grad():
            a, mu, s = parts(th)
            u = torch.rand(a.shape[0], n_samples, k, dtype=a.dtype)
            comp = torch.argmax(a[:, None, :] - torch.log(-torch.log(u)), -1)  # Gumbel-max
            idx = comp[..., None].expand(-1, -1, d)
            m = torch.gather(mu, 1, idx)
            sg = torch.exp(torch.gather(s, 1, idx))
            return (m + sg * torch.randn_like(m)).numpy()

    def msf_sample():
        with torch.no_grad():
            return msf(th).sample((n_samples,)).transpose(0, 1).numpy()

    return {"nll_grad": {"torch stable": stable_grad, "torch MSF": msf_grad},
            "log_prob": {"torch stable": stable_lp, "torch MSF": msf_lp},
            "sample": {"torch stable": stable_sample, "torch MSF": msf_sample}}


# ------------------------------------------------------------------ validation


def check_grad(name, got, want, truth):
    """NLL within 1e-4 relative; each gradient within 1e-3 of its row's largest
    entry (float32 implementations differ from each other by float32 rounding
    of t_k, ~|t_k| 2**-24, relative to r)."""
    nll, g = got
    np.testing.assert_allclose(nll, want[0], rtol=1e-4, atol=1e-4, err_msg=name)
    scale = np.abs(truth).max(axis=1, keepdims=True) + 1e-30
    err = float(np.max(np.abs(g - truth) / scale))
    assert err < 1e-3, f"{name}: gradient error {err:.2e} of the row scale"


def check_draws(name, draws, logits, mu, ls):
    """Different generators: the draws must have the mixture's moments. With the
    row's mean m and sd s, the standardized draws must average 0 and have unit
    variance, within 6 standard errors."""
    a = logits.astype(np.float64)
    pi = np.exp(a - a.max(1, keepdims=True))
    pi /= pi.sum(1, keepdims=True)
    mu64, sig = mu.astype(np.float64), np.exp(ls.astype(np.float64))
    m = np.einsum("nk,nkd->nd", pi, mu64)
    var = np.einsum("nk,nkd->nd", pi, sig**2 + mu64**2) - m**2
    zs = (draws.astype(np.float64) - m[:, None, :]) / np.sqrt(var)[:, None, :]
    n = zs.size
    assert abs(zs.mean()) < 6 / math.sqrt(n), f"{name}: mean of standardized draws {zs.mean()}"
    assert abs(zs.var() - 1) < 6 * math.sqrt(2 / n) + 0.01, f"{name}: variance {zs.var()}"


# ------------------------------------------------------------------ one shape


def bench_shape(n, k, d, dtype, runs, have_torch):
    head, y = make_inputs(n, k, d, dtype)
    p = head.shape[1]
    item = head.dtype.itemsize
    views = split(head, k, d)
    grad = np.zeros_like(head)
    gviews = split(grad, k, d)
    nll = np.empty(n, dtype)
    j = 16 if n <= 65536 else 1  # draws per row
    out = {"shape": [n, k, d], "P": p, "draws_per_row": j, "kernels": {}}

    want = mixture.nll_grad(*views, y)
    truth_nll, *truth_g = mixture.nll_grad(*(v.astype(np.float64) for v in views),
                                           y.astype(np.float64))
    truth = np.concatenate([truth_g[0], truth_g[1].reshape(n, -1), truth_g[2].reshape(n, -1)], 1)
    torch_set = torch_fns(head, y, k, d, j) if have_torch else None

    # -------- NLL + gradient
    def npmdn_grad(be):
        def f():
            be.nll_grad(*views, y, out=(nll, *gviews))
            return nll, grad
        return f

    impls = {"npmdn numpy": npmdn_grad(mixture), "npmdn numba": npmdn_grad(nk)}
    if torch_set:
        impls.update(torch_set["nll_grad"])
    bytes_moved = item * n * (2 * p + d + 1)
    out["kernels"]["nll_grad"] = run_kernel(impls, lambda name, r: check_grad(
        name, (np.array(r[0]), np.array(r[1])), want, truth), runs, bytes_moved, n)

    # -------- log-density
    want_lp = -want[0]
    impls = {"npmdn numpy": lambda: mixture.log_prob(*views, y),
             "npmdn numba": lambda: nk.log_prob(*views, y)}
    if torch_set:
        impls.update(torch_set["log_prob"])
    bytes_moved = item * n * (p + d + 1)
    out["kernels"]["log_prob"] = run_kernel(impls, lambda name, r: np.testing.assert_allclose(
        r, want_lp, rtol=1e-4, atol=1e-4, err_msg=name), runs, bytes_moved, n)

    # -------- sampling
    ref = mixture.sample(*views, j, 7)
    impls = {"npmdn numpy": lambda: mixture.sample(*views, j, 7),
             "npmdn numba": lambda: nk.sample(*views, j, 7),
             "npmdn numba cumulative": lambda: nk.sample(*views, j, 7, 0, "cumulative")}
    if torch_set:
        impls.update(torch_set["sample"])
    ref_cum = mixture.sample(*views, j, 7, 0, "cumulative")

    def check_sample(name, r):
        assert r.shape == (n, j, d), name
        if name.startswith("npmdn"):
            # the same stream: same choices, the same values to rounding
            want_s = ref_cum if "cumulative" in name else ref
            np.testing.assert_allclose(r, want_s, rtol=1e-5, atol=1e-5 * np.abs(want_s).max(),
                                       err_msg=name)
        check_draws(name, r, *views)

    bytes_moved = item * (n * p + n * j * d)
    out["kernels"]["sample"] = run_kernel(impls, check_sample, runs, bytes_moved, n * j)
    return out


def run_kernel(impls, check, runs, bytes_moved, items):
    """Each implementation validated, then timed; ``% bw`` and ``x bound`` are added once
    the run's bandwidth is known (:func:`bench.machine.apply_bound`)."""
    res = {}
    for name, fn in impls.items():
        check(name, fn())  # validate before timing
        t = _machine.median_time(fn, runs)
        t.update(items_per_s=items / t["median_s"], GBps=bytes_moved / t["median_s"] / 1e9,
                 bytes=bytes_moved)
        res[name] = t
    return res


# ------------------------------------------------------------------ report


def table(results, kernel):
    unit = "draws/s" if kernel == "sample" else "samples/s"
    lines = [f"| N, K, D | implementation | median ms | {unit} | GB/s | % bw | x bound | "
             "numba faster by |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        ks = r["kernels"][kernel]
        nb = ks["npmdn numba"]["median_s"]
        shape = "{}, {}, {}".format(*r["shape"]) + (
            f" x {r['draws_per_row']}" if kernel == "sample" else "")
        for name, t in ks.items():
            speed = "" if name.startswith("npmdn numba") else f"{t['median_s'] / nb:.1f}x"
            lines.append(f"| {shape} | {name} | {t['median_s'] * 1e3:.2f} | "
                         f"{t['items_per_s']:.3g} | {t['GBps']:.2f} | {t['pct_bw']:.1f} | "
                         f"{t['x_bound']:.1f} | {speed} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--shapes", default=None, help="e.g. 65536,5,1;1048576,5,1")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "kernels.json"))
    args = ap.parse_args()
    assert args.runs >= 10, "the medians are of at least 10 runs"
    shapes = SHAPES if args.shapes is None else [
        tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]
    have_torch = not args.no_torch
    torch_threads = None
    if have_torch:
        import torch

        torch_threads = torch.get_num_threads()
    import numba

    info = {"machine": _machine.machine(numba.get_num_threads(), torch_threads),
            "versions": _machine.versions(), "dtype": args.dtype, "covariance": "diagonal",
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
    # compile (or load from the disk cache) before anything is timed
    h, yy = make_inputs(64, 2, 1, args.dtype)
    nk.nll_grad(*split(h, 2, 1), yy)
    nk.log_prob(*split(h, 2, 1), yy)
    nk.sample(*split(h, 2, 1), 2, 0)
    info["machine"]["numba_threading_layer"] = numba.threading_layer()
    samples = [_machine.bandwidth()]
    t0 = time.perf_counter()
    results = []
    for n, k, d in shapes:
        results.append(bench_shape(n, k, d, args.dtype, args.runs, have_torch))
        samples.append(_machine.bandwidth())
    info["seconds"] = time.perf_counter() - t0
    info["bandwidth"] = bw = _machine.bound_from(samples)
    _machine.apply_bound(results, bw["best_GBps"])
    info["machine"]["loadavg_end"] = _machine.loadavg()
    m = info["machine"]
    print(f"# Mixture-head kernels, {args.dtype}, diagonal covariance\n")
    print(f"`{info['command']}`  \n{m['cpu']}, {m['logical_cpus']} logical CPUs; numba "
          f"{m['numba_threads']} threads ({m['numba_threading_layer']}), torch "
          f"{m['torch_threads']} threads; load average {m['loadavg_start']} at start, "
          f"{m['loadavg_end']} at end.  \nVersions: "
          + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".  \n"
          + _machine.bound_line(bw) + f" Median of {args.runs} runs after 2 warm-ups.\n")
    for kernel, title in (("nll_grad", "NLL + gradient w.r.t. the head output"),
                          ("log_prob", "log-density"), ("sample", "sampling")):
        print(f"## {title}\n")
        print(table(results, kernel))
        print()
    with open(args.json, "w") as f:
        json.dump({"info": info, "results": results}, f, indent=1)
    print(f"(JSON: {args.json})")


if __name__ == "__main__":
    main()
