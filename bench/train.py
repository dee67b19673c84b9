"""Training an MDN end to end: npmdn (numba backend) against the same model in PyTorch.

    python -m bench.train [--setups seed large large-full] [--json bench/train.json]

Set-ups (float32, inverted sinusoid, 1 input, tanh trunk, K = 5, Adam):

* ``seed``: the seed problems' set-up, 20 tanh units, 1000 points, full
  batch, 10000 steps, lr 1e-2.
* ``large``: the same network on 65536 points, shuffled minibatches of 8192,
  1000 steps (125 epochs), lr 1e-2.
* ``large-full``: 65536 points, full batch, 1000 steps, lr 1e-2.

Both sides start from the same weights (npmdn's initialisation, copied into
the PyTorch modules), see the same standardized data and the same minibatch
order, and run the same number of Adam steps, so they should end at the same
NLL. Wall time covers the whole training call (npmdn: ``MDN.fit``, after a
two-epoch warm-up fit of the same configuration has loaded or compiled its kernels;
PyTorch: the step loop), the median of ``--repeats`` (3) such fits of each: one fit's
time moved by 10-20% from run to run on the development VM. The final NLL of each
is the mean NLL over the training set (user units) of the final weights, evaluated
by npmdn's NumPy reference for both. Prints a markdown table, writes JSON.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

import npmdn
from npmdn import datasets

from . import machine as _machine

SETUPS = {
    "seed": dict(n=1000, hidden=(20,), batch_size=None, steps=10000, lr=1e-2),
    "large": dict(n=65536, hidden=(20,), batch_size=8192, steps=1000, lr=1e-2),
    "large-full": dict(n=65536, hidden=(20,), batch_size=None, steps=1000, lr=1e-2),
}
K = 5


def torch_train(model, xs, ys, orders, bs, steps, lr, threads):
    """The npmdn model's architecture in PyTorch, from its weights; returns
    (seconds, flat parameters in npmdn's layout)."""
    import torch

    torch.set_num_threads(threads)
    net = model.net
    layers = []
    for i, (off, n_in, n_out) in enumerate(net.shapes):
        lin = torch.nn.Linear(n_in, n_out)
        w = model.params[off:off + n_in * n_out].reshape(n_in, n_out)
        b = model.params[off + n_in * n_out:off + n_in * n_out + n_out]
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        layers.append(lin)
        if i < len(net.shapes) - 1:
            layers.append(torch.nn.Tanh())
    tnet = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(tnet.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    tx, ty = torch.from_numpy(xs), torch.from_numpy(ys)
    d = ys.shape[1]
    c = 0.5 * d * math.log(2 * math.pi)

    def loss_fn(h, y):
        a, mu, s = h[:, :K], h[:, K:K + K * d].reshape(-1, K, d), h[:, K + K * d:].reshape(-1, K, d)
        z = (y[:, None, :] - mu) * torch.exp(-s)
        log_n = -0.5 * (z * z).sum(-1) - s.sum(-1) - c
        return -torch.logsumexp(torch.log_softmax(a, -1) + log_n, -1).mean()

    n = xs.shape[0]
    steps_per_epoch = -(-n // bs)
    t0 = time.perf_counter()
    step = 0
    for order in orders:
        for k in range(steps_per_epoch):
            if order is None:
                xb, yb = tx, ty
            else:
                idx = torch.from_numpy(order[k * bs:(k + 1) * bs])
                xb, yb = tx[idx], ty[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(tnet(xb), yb)
            loss.backward()
            opt.step()
            step += 1
    seconds = time.perf_counter() - t0
    flat = []
    for lin in (m for m in tnet if isinstance(m, torch.nn.Linear)):
        flat += [lin.weight.detach().numpy().T.ravel(), lin.bias.detach().numpy().ravel()]
    return seconds, np.concatenate(flat)


def run(name, cfg, threads, repeats, seed=0):
    data = datasets.inverted_sinusoid(cfg["n"], seed=seed)
    x, y = data.x, data.y
    bs = cfg["n"] if cfg["batch_size"] is None else cfg["batch_size"]
    epochs = cfg["steps"] * bs // cfg["n"]
    assert epochs * -(-cfg["n"] // bs) == cfg["steps"]
    opts = dict(hidden=cfg["hidden"], dtype="float32", seed=seed)

    fit_opts = dict(batch_size=cfg["batch_size"], lr=cfg["lr"], seed=seed,
                    lr_schedule="constant", validation_split=0, verbose=False)
    # warm-up, outside the timing: load (or compile) the numba kernels of exactly the
    # timed fit's configuration (the same rows and batch size choose the same threaded
    # or serial epoch kernel; a smaller fit would leave the timed one to compile its own)
    npmdn.MDN(1, 1, K, backend="numba", **opts).fit(x, y, epochs=2, **fit_opts)

    times = []
    for _ in range(repeats):  # the same fit from the same weights each time
        model = npmdn.MDN(1, 1, K, backend="numba", **opts)
        init = model.params
        t0 = time.perf_counter()
        hist = model.fit(x, y, epochs=epochs, **fit_opts)
        times.append(time.perf_counter() - t0)
        assert hist.epochs == epochs
    t_npmdn = float(np.median(times))

    # the same data, standardization, weights and minibatch order for PyTorch
    ref = npmdn.MDN(1, 1, K, backend="numpy", **opts)
    ref.set_params(init)
    ref._set_standardization(x, y)
    xs = ((x - ref.x_shift) / ref.x_scale).astype(np.float32)
    ys = ((y - ref.y_shift) / ref.y_scale).astype(np.float32)
    rng = np.random.default_rng(seed)
    steps_per_epoch = -(-cfg["n"] // bs)
    orders = [rng.permutation(cfg["n"]) if steps_per_epoch > 1 else None for _ in range(epochs)]
    torch_times = []
    for _ in range(repeats):
        t, torch_params = torch_train(ref, xs, ys, orders, bs, cfg["steps"], cfg["lr"], threads)
        torch_times.append(t)
    t_torch = float(np.median(torch_times))

    def final_nll(params):
        m = npmdn.MDN(1, 1, K, backend="numpy", **opts)
        m.set_params(params)
        m.x_shift, m.x_scale, m.y_shift, m.y_scale = (ref.x_shift, ref.x_scale, ref.y_shift,
                                                      ref.y_scale)
        return m.nll(x, y)

    return {"setup": name, **{k: v for k, v in cfg.items() if k != "hidden"},
            "hidden": list(cfg["hidden"]), "epochs": epochs,
            "npmdn_numba_s": t_npmdn, "torch_s": t_torch, "speedup": t_torch / t_npmdn,
            "npmdn_numba_runs_s": times, "torch_runs_s": torch_times,
            "npmdn_final_nll": final_nll(model.params), "torch_final_nll": final_nll(torch_params),
            "npmdn_last_epoch_train_nll": hist.train_nll[-1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "train.json"))
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed fits per implementation and set-up (the median is reported)")
    args = ap.parse_args()
    import numba
    import torch

    threads = os.cpu_count()
    info = {"machine": _machine.machine(numba.get_num_threads(), threads),
            "versions": _machine.versions(),
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
    rows = [run(s, SETUPS[s], threads, args.repeats) for s in args.setups]
    info["machine"]["loadavg_end"] = _machine.loadavg()
    info["machine"]["torch_threads"] = torch.get_num_threads()
    m = info["machine"]
    print("# Training end to end, float32, inverted sinusoid, 1 input, tanh, K = 5, Adam\n")
    print(f"`{info['command']}`  \n{m['cpu']}, {m['logical_cpus']} logical CPUs; numba "
          f"{m['numba_threads']} threads, torch {m['torch_threads']} threads; load average "
          f"{m['loadavg_start']} at start, {m['loadavg_end']} at end.  \nVersions: "
          + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".\n")
    print(f"Seconds: the median of {args.repeats} timed fits of each (all of them in the "
          "last two columns).\n")
    print("| set-up | points | hidden | batch | steps | npmdn numba s | PyTorch s | speed-up | "
          "final NLL npmdn | final NLL PyTorch | difference | npmdn runs s | PyTorch runs s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        runs = [" ".join(f"{t:.2f}" for t in r[k]) for k in ("npmdn_numba_runs_s",
                                                              "torch_runs_s")]
        print(f"| {r['setup']} | {r['n']} | {tuple(r['hidden'])} | "
              f"{r['batch_size'] or 'full'} | {r['steps']} | {r['npmdn_numba_s']:.2f} | "
              f"{r['torch_s']:.2f} | {r['speedup']:.1f}x | {r['npmdn_final_nll']:.4f} | "
              f"{r['torch_final_nll']:.4f} | "
              f"{r['npmdn_final_nll'] - r['torch_final_nll']:+.4f} | {runs[0]} | {runs[1]} |")
    with open(args.json, "w") as f:
        json.dump({"info": info, "results": rows}, f, indent=1)
    print(f"\n(JSON: {args.json})")


if __name__ == "__main__":
    main()
