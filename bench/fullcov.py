"""Full-covariance mixture heads on the CPU: npmdn numpy, npmdn numba, PyTorch.

    python -m bench.fullcov [--dtype float32] [--runs 10] [--json bench/fullcov.json]

For each (N, K, D) with ``covariance="full"`` (``S = D (D + 1) / 2`` per component)
and each kernel (NLL with its gradient with respect to the head output, the
log-density alone, sampling), every implementation is first validated, then
timed: median of ``--runs`` wall-clock runs after two warm-ups. The inputs are
what a model hands over: row-strided views of one [N, P] head output, the
gradient written into views of one [N, P] buffer.

Implementations:

* ``npmdn numpy`` (the reference) and ``npmdn numba`` (``_numba/full.py``, the
  sampler's back substitution);
* ``torch MSF`` (what a PyTorch user writes): the head's raw numbers as the
  lower Cholesky factor ``L`` of each covariance (exp on its diagonal), then
  ``MixtureSameFamily(Categorical(logits), MultivariateNormal(mu, scale_tril=L))``,
  forward and ``backward``; its NLL is checked against npmdn's reference on the
  same density (``L`` turned into npmdn's factor: ``U = J L^-1 J`` on the reversed
  coordinates ``J y``, see ``tests/reference/test_fullcov.py``);
* ``torch MSF, npmdn's factor``: npmdn's own parametrisation built in PyTorch
  (``U`` from the packed head, ``scale_tril = J U^-1 J`` by a triangular solve,
  then the same ``MixtureSameFamily``), so that its NLL *and gradient* are
  checked against npmdn's;
* sampling: ``npmdn numba`` (Gumbel-max and cumulative), ``npmdn numpy`` and
  ``torch MSF .sample`` with ``scale_tril = L``, the draws checked for the
  mixture's mean and variance.

GB/s, % bw and x bound as in ``bench/kernels.py``. Prints markdown tables,
writes JSON.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from npmdn import fullcov, mixture
from npmdn._numba import kernels as nk

from . import machine as _machine
from .kernels import check_grad, run_kernel, table

SHAPES = [(65536, 8, 4), (65536, 4, 2), (16384, 8, 8)]


def make_inputs(n, k, d, dtype, seed=0):
    """A head output [N, P] with P = K (1 + D + S), its views and y: logits, means,
    log scales N(0, 0.3) and off-diagonal entries N(0, 0.3) (well conditioned)."""
    rng = np.random.default_rng(seed)
    s = fullcov.n_scales(d)
    p = k * (1 + d + s)
    head = np.empty((n, p), dtype)
    head[:, :k] = rng.normal(0, 1.5, (n, k))
    head[:, k:k + k * d] = rng.normal(0, 2, (n, k * d))
    head[:, k + k * d:] = rng.normal(0, 0.3, (n, k * s))
    y = rng.normal(0, 2, (n, d)).astype(dtype)
    return head, y


def split(h, k, d):
    n, s = h.shape[0], fullcov.n_scales(d)
    return (h[:, :k], h[:, k:k + k * d].reshape(n, k, d),
            h[:, k + k * d:].reshape(n, k, s))


def lower_as_npmdn(logits, mu, raw, y=None):
    """The density torch's natural form gives the raw numbers (``L`` lower, ``L_ii =
    exp(raw_i)``, ``L_ij = raw`` below the diagonal, packed in npmdn's order), as npmdn
    raw parameters on the reversed coordinates (float64): ``U = J L^-1 J``."""
    d = mu.shape[-1]
    raw = raw.astype(np.float64)
    rows, cols = fullcov.pairs(d)
    idx = np.arange(d)
    lower = np.zeros(raw.shape[:-1] + (d, d))
    lower[..., idx, idx] = np.exp(raw[..., :d])
    lower[..., cols, rows] = raw[..., d:]  # L_ji = the packed (i, j) entry
    u = np.linalg.inv(lower)[..., ::-1, ::-1]  # J L^-1 J: upper triangular
    out = [logits.astype(np.float64), mu[..., ::-1].astype(np.float64), fullcov.pack(u)]
    if y is not None:
        out.append(y[:, ::-1].astype(np.float64))
    return out


def torch_fns(head, y, k, d, n_samples):
    import torch

    D = torch.distributions
    s = fullcov.n_scales(d)
    th = torch.from_numpy(head).requires_grad_(True)
    ty = torch.from_numpy(y)
    rows, cols = np.triu_indices(d, 1)
    lin_upper = torch.tensor(rows * d + cols)
    lin_lower = torch.tensor(cols * d + rows)
    eye = torch.eye(d, dtype=th.dtype)

    def parts(h):
        return h[:, :k], h[:, k:k + k * d].reshape(-1, k, d), h[:, k + k * d:].reshape(-1, k, s)

    def square(packed, lin, diag):
        n = packed.shape[0]
        flat = torch.zeros(n, k, d * d, dtype=packed.dtype).index_add(-1, lin, packed[..., d:])
        return torch.diag_embed(diag) + flat.reshape(n, k, d, d)

    def natural(h):  # the raw numbers as the covariance's lower Cholesky factor
        a, mu, raw = parts(h)
        lower = square(raw, lin_lower, torch.exp(raw[..., :d]))
        return D.MixtureSameFamily(D.Categorical(logits=a),
                                   D.MultivariateNormal(mu, scale_tril=lower))

    def npmdn_factor(h):  # npmdn's parametrisation: U, then scale_tril = J U^-1 J
        a, mu, packed = parts(h)
        u = square(packed, lin_upper, torch.exp(-packed[..., :d]))
        lower = torch.linalg.solve_triangular(u, eye.expand_as(u), upper=True).flip(-1, -2)
        return D.MixtureSameFamily(D.Categorical(logits=a),
                                   D.MultivariateNormal(mu.flip(-1), scale_tril=lower))

    def grad_of(make, flip):
        def f():
            th.grad = None
            nll = -make(th).log_prob(ty.flip(-1) if flip else ty)
            nll.sum().backward()
            return nll.detach().numpy(), th.grad.numpy()
        return f

    def lp_of(make, flip):
        def f():
            with torch.no_grad():
                return make(th).log_prob(ty.flip(-1) if flip else ty).numpy()
        return f

    def msf_sample():
        with torch.no_grad():
            return natural(th).sample((n_samples,)).transpose(0, 1).numpy()

    return {
        "nll_grad": {"torch MSF": grad_of(natural, False),
                     "torch MSF, npmdn's factor": grad_of(npmdn_factor, True)},
        "log_prob": {"torch MSF": lp_of(natural, False),
                     "torch MSF, npmdn's factor": lp_of(npmdn_factor, True)},
        "sample": {"torch MSF": msf_sample},
    }


def check_draws(name, draws, logits, mu, ls):
    """Draws of a full-covariance mixture: standardized by each row's mixture mean and
    marginal sd, they average 0 and have unit variance within 6 standard errors."""
    args = [v.astype(np.float64) for v in (logits, mu, ls)]
    m = mixture.mean(*args[:2])
    sd = np.sqrt(mixture.variance(*args))
    zs = (draws.astype(np.float64) - m[:, None, :]) / sd[:, None, :]
    n = zs.size
    assert abs(zs.mean()) < 6 / math.sqrt(n), f"{name}: mean of standardized draws {zs.mean()}"
    assert abs(zs.var() - 1) < 6 * math.sqrt(2 / n) + 0.01, f"{name}: variance {zs.var()}"


def bench_shape(n, k, d, dtype, runs, have_torch):
    head, y = make_inputs(n, k, d, dtype)
    p = head.shape[1]
    item = head.dtype.itemsize
    views = split(head, k, d)
    grad = np.zeros_like(head)
    gviews = split(grad, k, d)
    nll = np.empty(n, dtype)
    j = 16  # draws per row
    out = {"shape": [n, k, d], "S": fullcov.n_scales(d), "P": p, "draws_per_row": j,
           "kernels": {}}
    want = mixture.nll_grad(*views, y)
    truth_nll, *truth_g = mixture.nll_grad(*(v.astype(np.float64) for v in views),
                                           y.astype(np.float64))
    truth = np.concatenate([g.reshape(n, -1) for g in truth_g], 1)
    natural_nll = mixture.nll_grad(*lower_as_npmdn(*views, y))[0]
    torch_set = torch_fns(head, y, k, d, j) if have_torch else None

    # -------- NLL + gradient
    def npmdn_grad(be):
        def f():
            be.nll_grad(*views, y, out=(nll, *gviews))
            return nll, grad
        return f

    def check(name, r):
        if name == "torch MSF":  # another parametrisation: its NLL, its gradient finite
            np.testing.assert_allclose(r[0], natural_nll, rtol=1e-4, atol=1e-4, err_msg=name)
            assert np.isfinite(r[1]).all(), name
        else:
            check_grad(name, (np.array(r[0]), np.array(r[1])), want, truth)

    impls = {"npmdn numpy": npmdn_grad(mixture), "npmdn numba": npmdn_grad(nk)}
    if torch_set:
        impls.update(torch_set["nll_grad"])
    out["kernels"]["nll_grad"] = run_kernel(impls, check, runs, item * n * (2 * p + d + 1), n)

    # -------- log-density
    def check_lp(name, r):
        ref = -natural_nll if name == "torch MSF" else -want[0]
        np.testing.assert_allclose(r, ref, rtol=1e-4, atol=1e-4, err_msg=name)

    impls = {"npmdn numpy": lambda: mixture.log_prob(*views, y),
             "npmdn numba": lambda: nk.log_prob(*views, y)}
    if torch_set:
        impls.update(torch_set["log_prob"])
    out["kernels"]["log_prob"] = run_kernel(impls, check_lp, runs, item * n * (p + d + 1), n)

    # -------- sampling
    ref = mixture.sample(*views, j, 7)
    ref_cum = mixture.sample(*views, j, 7, 0, "cumulative")
    natural = lower_as_npmdn(*views)

    def check_sample(name, r):
        assert r.shape == (n, j, d), name
        if name.startswith("npmdn"):  # the same stream: the same draws to rounding
            want_s = ref_cum if "cumulative" in name else ref
            np.testing.assert_allclose(r, want_s, rtol=1e-4, atol=1e-4 * np.abs(want_s).max(),
                                       err_msg=name)
            check_draws(name, r, *views)
        else:
            check_draws(name, r[..., ::-1], *natural)

    impls = {"npmdn numpy": lambda: mixture.sample(*views, j, 7),
             "npmdn numba": lambda: nk.sample(*views, j, 7),
             "npmdn numba cumulative": lambda: nk.sample(*views, j, 7, 0, "cumulative")}
    if torch_set:
        impls.update(torch_set["sample"])
    out["kernels"]["sample"] = run_kernel(impls, check_sample, max(3, runs // 3),
                                          item * (n * p + n * j * d), n * j)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--shapes", default=None, help="e.g. 65536,8,4;16384,8,8")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "fullcov.json"))
    args = ap.parse_args()
    assert args.runs >= 10, "the medians are of at least 10 runs (sampling: a third of them)"
    shapes = SHAPES if args.shapes is None else [
        tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]
    have_torch = not args.no_torch
    torch_threads = None
    if have_torch:
        import torch

        torch_threads = torch.get_num_threads()
    import numba

    info = {"machine": _machine.machine(numba.get_num_threads(), torch_threads),
            "versions": _machine.versions(), "dtype": args.dtype, "covariance": "full",
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
    h, yy = make_inputs(64, 2, 2, args.dtype)  # compile (or load) before timing
    nk.nll_grad(*split(h, 2, 2), yy)
    nk.log_prob(*split(h, 2, 2), yy)
    nk.sample(*split(h, 2, 2), 2, 0)
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
    print(f"# Full-covariance mixture heads, {args.dtype}\n")
    print(f"`{info['command']}`  \n{m['cpu']}, {m['logical_cpus']} logical CPUs; numba "
          f"{m['numba_threads']} threads ({m['numba_threading_layer']}), torch "
          f"{m['torch_threads']} threads; load average {m['loadavg_start']} at start, "
          f"{m['loadavg_end']} at end.  \nVersions: "
          + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".  \n"
          + _machine.bound_line(bw) + " Median of "
          f"{args.runs} runs after 2 warm-ups (sampling: {max(3, args.runs // 3)}).\n")
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
