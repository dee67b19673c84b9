"""Run the derivation: every result of docs/derivation.md, checked in float64.

    python docs/derivation_check.py

One block per section of derivation.md, in its order and with its symbols:
a batch of ``B`` rows, ``K`` components, ``D`` target dimensions, ``S`` scales
per component; logits ``a``, means ``mu``, log-sigmas ``s``, targets ``y``,
``z = (y - mu) / sigma``, ``t = log pi + log N``, responsibilities ``r``.
Each block

* checks the section's results against central finite differences of the
  forward computation they differentiate (float64, step ``h = 1e-6``) and
  prints the error ``max |g - fd| / max |fd|``, which must be below 1e-6
  (the results that are not derivatives, in sections 5 and 10-13, are
  checked against an identity, the textbook form or quadrature, and say so);
* feeds the same inputs to the NumPy reference (``npmdn/mixture.py``,
  ``nn.py``, ``optim.py``) and to the kernels: the Numba code in
  ``npmdn/_numba/`` and the CUDA math of ``kernels/mdn_math.cuh`` compiled for
  the CPU (``tests/backends/cuda_host.py``; skipped, saying why, when there is
  no C++ compiler). It prints their largest difference from the reference,
  relative to the reference's largest entry: the bridge from the page to the code.

The exit status is 0 when every check is below 1e-6 and every kernel agrees
with the reference to 1e-10. ``tests/app/test_derivation_check.py`` runs this
script in CI.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

import npmdn
from npmdn import conditional, fullcov, mixture, nn, optim, regularization, training
from npmdn._cuda import plan
from npmdn._numba import train as numba_train
from npmdn.backend import Backend, get_backend

ROOT = Path(__file__).resolve().parents[1]
H = 1e-6  # finite-difference step
CHECK_TOL, AGREE_TOL = 1e-6, 1e-10
rng = np.random.default_rng(2024)


# --------------------------------------------------------------------------
# tools: finite differences, errors, the backends, the report
# --------------------------------------------------------------------------


def fd_grad(f, x):
    """Central differences ``(f(x + h e_i) - f(x - h e_i)) / 2h`` of a scalar ``f``."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = H
        g[i] = (f(x + e) - f(x - e)) / (2 * H)
    return g


def rel(got, want):
    """``max |got - want| / max |want|``: the error relative to the largest entry."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.abs(want).max()
    return float(np.abs(got - want).max() / (scale if scale > 0 else 1.0))


def rel_all(got, want):
    """:func:`rel` over matching sequences of arrays, the largest."""
    return max(rel(g, w) for g, w in zip(got, want))


def cuda_host_backend(directory):
    """The CUDA math built for the CPU, as a backend (or the reason it cannot be built).

    The argument tuples are the ones npmdn._cuda.plan builds for the GPU
    launches; only the launch differs (a loop over rows instead of a grid).
    """
    spec = importlib.util.spec_from_file_location(
        "cuda_host", ROOT / "tests" / "backends" / "cuda_host.py")
    host = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host)
    try:
        lib = host.build_library(directory)
    except host.NoCompiler as exc:
        return str(exc)
    return Backend(
        "cuda-host", np,
        lambda a, mu, s, y, out=None: host.run(lib, plan.plan_nll_grad(np, a, mu, s, y, out=out)),
        lambda a, mu, s, y: host.run(lib, plan.plan_log_prob(np, a, mu, s, y)),
        lambda *args, **kw: host.run(lib, plan.plan_sample(np, *args, **kw)),
    )


class Report:
    """Prints each block's lines and keeps one summary row per section."""

    def __init__(self, backends):
        self.backends = backends  # name -> Backend, or the reason it is missing
        self.rows = {}

    def section(self, n, title):
        self.row = self.rows[n] = {"kind": "", "error": 0.0}
        print(f"\n{n}. {title}")

    def say(self, text):
        print("   " + text)

    def check(self, what, err, kind="finite diff."):
        """One result against its check: finite differences unless ``kind`` says otherwise."""
        if kind not in self.row["kind"]:
            self.row["kind"] = "+".join(filter(None, (self.row["kind"], kind)))
        self.row["error"] = max(self.row["error"], err)
        print(f"   check     {what:<58} {kind:>14}  {err:.1e}")

    def grad_check(self, what, g, f, x):
        """``g`` against the finite differences of the scalar ``f`` at ``x``."""
        self.check(what, rel(g, fd_grad(f, x)))

    def compare(self, what, diff_of, only=None, why=""):
        """``diff_of(backend)`` for each backend (with ``only``, the others print ``why``)."""
        for name, be in self.backends.items():
            if only is not None and name not in only:
                self.row[name] = "n/a"
                print(f"   {name:<9} {why}")
            elif isinstance(be, str):
                self.row[name] = "skipped"
                print(f"   {name:<9} skipped (see the first lines)")
            else:
                d = diff_of(be)
                self.row[name] = max(d, self.row.get(name, 0.0))
                print(f"   {name:<9} {what:<58} {'agrees to':>14}  {d:.1e}")

    def summary(self):
        print("\n14. Summary: each section's check, and each kernel's largest difference from "
              "the NumPy reference")
        names = list(self.backends)
        width = [max(len(n), 7) for n in names]
        print("   " + " | ".join(["section", f"{'check':<30}", "error  ",
                                  *(f"{n:<{w}}" for n, w in zip(names, width))]).rstrip())
        ok = True
        for n, row in self.rows.items():
            ok &= row["error"] < CHECK_TOL
            cells = [f"{n:>7}", f"{row['kind']:<30}", f"{row['error']:.1e}"]
            for name, w in zip(names, width):
                v = row[name]
                ok &= not isinstance(v, float) or v < AGREE_TOL
                cells.append(f"{v:.1e}" if isinstance(v, float) else f"{v:<{w}}")
            print(("   " + " | ".join(cells)).rstrip())
        print(f"all checks below {CHECK_TOL:.0e} and all kernels within {AGREE_TOL:.0e} "
              f"of the reference: {'yes' if ok else 'NO'}")
        return ok


def small_model(backend, hidden=(4,), activation="tanh", k=2, d=2, n_in=3, seed=0,
                min_sigma=None):
    """A float64 MDN with weights away from zero and a non-trivial standardization
    (the same on every backend), and ``B = 5`` rows ``x [B, n_in]``, ``y [B, D]``."""
    r = np.random.default_rng(seed)
    m = npmdn.MDN(n_in, d, k, hidden=hidden, activation=activation, dtype="float64",
                  backend=backend, seed=seed, min_sigma=min_sigma)
    m.set_params(r.normal(0, 0.6, m.n_params))
    m.x_shift, m.x_scale = r.normal(0, 1, n_in), r.uniform(0.5, 2, n_in)
    m.y_shift, m.y_scale = r.normal(0, 1, d), r.uniform(0.5, 2, d)
    return m, r.normal(0, 1.5, (5, n_in)), r.normal(0, 1.5, (5, d))


def models(backends, **kw):
    """The same small model on numpy and on every kernel backend there is."""
    out = {"numpy": small_model("numpy", **kw)}
    out.update({n: small_model(be, **kw) for n, be in backends.items() if not isinstance(be, str)})
    return out


def one_step(model, x, y, lr=1e-2, clip_norm=None, weight_decay=0.0, noise=None):
    """One full-batch Adam step of ``MDN.fit``: (gradient, parameters after the step).

    On numba it is the fused training kernel (npmdn/_numba/train.py: ``_chunk``
    for the forward and backward passes, clipping in ``train_epoch``, then
    ``_update``); elsewhere the NumPy step loop (training.StepLoop) with the
    backend's head kernel, as the cupy backend runs it.
    """
    net, xs, ys = model.net, model._std_x(x), model._std_y(y)
    opt = optim.Adam(net.n_params, lr=lr, weight_decay=weight_decay,
                     decay_mask=net.weight_mask(), dtype=model.dtype)
    b, fused = xs.shape[0], model.backend.fused_fit
    head = (model.n_components, model.out_dim, model.scale_dim)
    engine = fused(net, head, opt, xs, ys, b, 1, clip_norm, noise=noise,
                   log_floor=model._log_floor()) if fused else None
    engine = engine or training.StepLoop(model, opt, xs, ys, b, 1, clip_norm, noise)
    engine.epoch(None, lr, net.params.copy())
    return net.grads.copy(), net.params.copy()


def head_random(b, k, d, s):
    """Random ``a [B, K]``, ``mu [B, K, D]``, ``s [B, K, S]``, ``y [B, D]``."""
    return (rng.normal(0, 1.5, (b, k)), rng.normal(0, 2, (b, k, d)),
            rng.normal(0, 0.5, (b, k, s)), rng.normal(0, 2, (b, d)))


def nll_sum(a, mu, s, y):
    """The loss of sections 2-5, ``L = sum over rows of -log p(y)``."""
    return -mixture.log_prob(a, mu, s, y).sum()


# --------------------------------------------------------------------------
# the sections of derivation.md
# --------------------------------------------------------------------------


def section_1(rep):
    rep.section(1, "The model as a chain of functions")
    ms = models(rep.backends)
    m, x, y = ms["numpy"]
    k, d, s, b = m.n_components, m.out_dim, m.scale_dim, x.shape[0]
    rep.say(f"x [B, n_in] = {list(x.shape)}; h [B, P] = [{b}, {m.head_size}], "
            f"P = K (1 + D + S) = {k} (1 + {d} + {s})")
    xs = m._std_x(x)  # x' = (x - x_shift) / x_scale
    h, cache = m.net.forward(xs)
    a, mu, ls = m._split(h)  # views of h: a_k = h[:, k], mu_kd = h[:, K + k D + d], ...
    assert np.shares_memory(mu, h) and mu[0, 1, 0] == h[0, k + 1 * d + 0]
    rep.say(f"h = [a | mu | s], mu component-major: mu[0, 1, 0] = h[0, K + 1 D + 0] = "
            f"h[0, {k + d}]")
    # backward through the chain: dL/dh (section 6), the trunk (9), dx'/dx = 1 / x_scale
    grad = np.empty_like(h)
    mixture.nll_grad(a, mu, ls, m._std_y(y), out=(np.empty(b), *m._split(grad)))
    dxs = m.net.backward(grad / b, cache, need_dx=True)
    rep.grad_check("dL/dx, L = mean NLL, by the chain rule", dxs / m.x_scale,
                   lambda v: m.nll(v, y), x)
    want = m.log_prob(x, y)
    rep.compare("log p(y | x) through the whole chain (MDN.log_prob)",
                lambda be: rel(ms[be.name][0].log_prob(x, y), want))


def section_2(rep):
    rep.section(2, "Log-sum-exp, softmax and log-softmax")
    big = np.array([[1000.0, 0.0]])
    with np.errstate(over="ignore"):
        literal = np.log(np.exp(big).sum())
    rep.say(f"t = [1000, 0]: literal log(sum(exp(t))) = {literal}, shifted lse(t) = "
            f"{mixture.logsumexp(big)[0]}")
    t = rng.normal(0, 3, (3, 4))  # B = 3 rows, K = 4
    rep.grad_check("d lse / d t_k = softmax(t)_k", mixture.softmax(t),
                   lambda v: mixture.logsumexp(v).sum(), t)
    a = rng.normal(0, 2, (3, 4))
    jac = np.eye(4)[None] - mixture.softmax(a)[:, None, :]  # [B, k, j]: delta_kj - pi_j
    fd = np.stack([fd_grad(lambda v, k=k: mixture.log_softmax(v)[:, k].sum(), a)
                   for k in range(4)], axis=1)
    rep.check("d log pi_k / d a_j = delta_kj - pi_j", rel(jac, fd))
    # a = 0 (pi = 1/K), D = 1, mu = y and s = -t make log N_k = t_k - log(2 pi)/2, so
    # log p = lse(t) - log K - log(2 pi)/2, r = softmax(t) and d_logits = 1/K - softmax(t)
    rep.say("the kernels compute lse inline; given a = 0, D = 1, mu = y, s = -t they return")
    rep.say("log p = lse(t) - log K - log(2 pi)/2 and d_logits = 1/K - softmax(t):")
    args = (np.zeros_like(t), np.zeros(t.shape + (1,)), -t[..., None], np.zeros((3, 1)))
    shift = math.log(4) + 0.5 * mixture.LOG_2PI
    rep.compare("lse(t), softmax(t) through log_prob and nll_grad",
                lambda be: max(rel(be.log_prob(*args) + shift, mixture.logsumexp(t)),
                               rel(0.25 - be.nll_grad(*args)[1], mixture.softmax(t))))


def section_3(rep):
    rep.section(3, "The Gaussian log-density")
    b, k, d = 3, 2, 2
    _, mu, s, y = head_random(b, k, d, d)
    log_n, z, inv_sigma, _ = mixture.component_log_density(mu, s, y)
    rep.say("log N_k = -1/2 sum_d z_kd^2 - sum_d s_kd - D/2 log(2 pi), "
            "sum_d s_kd = log det diag(sigma_k)")
    rep.grad_check("d log N_k / d mu_kd = z_kd / sigma_kd", z * inv_sigma,
                   lambda v: mixture.component_log_density(v, s, y)[0].sum(), mu)
    rep.grad_check("d log N_k / d s_kd = (-z)(-z) - 1 = z^2 - 1", z * z - 1,
                   lambda v: mixture.component_log_density(mu, v, y)[0].sum(), s)
    # each component as a mixture of one: K = 1 makes r = 1, log p = log N_k,
    # d_mu = -z / sigma and d_s = 1 - z^2
    one = (np.zeros((b * k, 1)), mu.reshape(b * k, 1, d), s.reshape(b * k, 1, d),
           np.repeat(y, k, axis=0))
    want = (log_n.reshape(-1), (-z * inv_sigma).reshape(b * k, 1, d),
            (1 - z * z).reshape(b * k, 1, d))
    rep.compare("log N_k and both partials (each component alone, K = 1)",
                lambda be: rel_all((be.log_prob(*one), *be.nll_grad(*one)[2:]), want))


def worked_example(rep):
    """K = 2, D = 1, one row: every quantity of sections 2-4, small enough to check by hand."""
    a, mu, y = np.array([[1.0, 0.0]]), np.array([[[0.0], [2.0]]]), np.array([[1.5]])
    s = np.array([[[0.0], [math.log(2)]]])
    log_n, z, _, _ = mixture.component_log_density(mu, s, y)
    t = mixture.log_softmax(a) + log_n
    nll, d_a, d_mu, d_s = out = mixture.nll_grad(a, mu, s, y)

    def fmt(v):
        return "[" + ", ".join(f"{x:.6f}" for x in np.ravel(v)) + "]"

    rep.say("worked example (K = 2, D = 1, one row):")
    rep.say("  a = [1, 0], mu = [0, 2], s = [0, log 2], y = 1.5")
    for name, v, how in [
        ("sigma", np.exp(s), "exp(s)"), ("pi", mixture.softmax(a), "softmax(a)"),
        ("z", z, "(y - mu) / sigma"), ("log N", log_n, "-z^2/2 - s - log(2 pi)/2"),
        ("t", t, "log pi + log N"), ("log p", mixture.logsumexp(t), "lse(t)"),
        ("NLL", nll, "-log p"), ("r", mixture.softmax(t), "exp(t - lse(t))"),
        ("dL/da", d_a, "pi - r"), ("dL/dmu", d_mu, "-r z / sigma"),
        ("dL/ds", d_s, "r (1 - z^2)"),
    ]:
        rep.say(f"  {name:<6} = {fmt(v):<24} {how}")
    rep.check("the worked example's three gradients", max(
        rel(d_a, fd_grad(lambda v: nll_sum(v, mu, s, y), a)),
        rel(d_mu, fd_grad(lambda v: nll_sum(a, v, s, y), mu)),
        rel(d_s, fd_grad(lambda v: nll_sum(a, mu, v, y), s))))
    rep.compare("the worked example: NLL and its gradient",
                lambda be: rel_all(be.nll_grad(a, mu, s, y), out))


def section_4(rep):
    rep.section(4, "The mixture NLL and the responsibilities")
    a, mu, s, y = head_random(4, 3, 2, 2)  # B = 4, K = 3, D = S = 2
    out = mixture.nll_grad(a, mu, s, y)
    t = mixture.log_softmax(a) + mixture.component_log_density(mu, s, y)[0]
    rep.grad_check("dL/dt_k = -r_k, r = softmax(t)", -mixture.softmax(t),
                   lambda v: -mixture.logsumexp(v).sum(), t)
    rep.grad_check("dL/da_k = pi_k - r_k", out[1], lambda v: nll_sum(v, mu, s, y), a)
    rep.grad_check("dL/dmu_kd = -r_k z_kd / sigma_kd", out[2], lambda v: nll_sum(a, v, s, y), mu)
    rep.grad_check("dL/ds_kd = r_k (1 - z_kd^2)", out[3], lambda v: nll_sum(a, mu, v, y), s)
    rep.compare("nll_grad: NLL, d_logits, d_mu, d_log_sigma",
                lambda be: rel_all(be.nll_grad(a, mu, s, y), out))
    worked_example(rep)


def section_5(rep):
    rep.section(5, "The isotropic case")
    a, mu, s, y = head_random(3, 2, 3, 1)  # S = 1, D = 3
    out = mixture.nll_grad(a, mu, s, y)
    rep.grad_check("dL/ds_k = r_k (D - sum_d z_kd^2)", out[3], lambda v: nll_sum(a, mu, v, y), s)
    tied = mixture.nll_grad(a, mu, np.repeat(s, 3, axis=-1), y)[3].sum(-1, keepdims=True)
    rep.check("the same as the sum of the untied dL/ds_kd", rel(tied, out[3]), "identity")
    rep.compare("nll_grad, isotropic", lambda be: rel_all(be.nll_grad(a, mu, s, y), out))


def section_6(rep):
    rep.section(6, "From one row to a batch: the head output")
    m, _, _ = small_model("numpy")
    b = 5
    h, y = rng.normal(0, 1, (b, m.head_size)), rng.normal(0, 1.5, (b, m.out_dim))

    def head_grad(nll_grad):
        grad = np.empty_like(h)  # written through the views [a | mu | s] of each row
        nll_grad(*m._split(h), y, out=(np.empty(b), *m._split(grad)))
        return grad / b  # d(mean NLL) = d(sum NLL) / B

    g = head_grad(mixture.nll_grad)
    rep.grad_check("dL/dh = [pi - r | -r z / sigma | r (1 - z^2)] / B", g,
                   lambda v: -mixture.log_prob(*m._split(v), y).mean(), h)
    rep.compare("the head gradient written into the [B, P] buffer's views",
                lambda be: rel(head_grad(be.nll_grad), g))
    # the sigma floor: s' = logaddexp(s, log f), dL/ds = dL/ds' exp(s - s')
    log_f = np.log(rng.uniform(0.3, 1.0, m.scale_dim))

    def floored(v):
        a, mu, s = m._split(v)
        return a, mu, mixture.floor_log_sigma(s, log_f)

    gf = np.empty_like(h)
    mixture.nll_grad(*floored(h), y, out=(np.empty(b), *m._split(gf)))
    m._split(gf)[2][...] *= mixture.floor_log_sigma_grad(m._split(h)[2], floored(h)[2])
    rep.grad_check("dL/dh with the sigma floor: dL/ds' exp(s - s')", gf / b,
                   lambda v: -mixture.log_prob(*floored(v), y).mean(), h)
    ms = models(rep.backends, min_sigma=0.8)
    want = one_step(*ms["numpy"])[0]
    rep.compare("a training step with min_sigma (numba: floor_scales)",
                lambda be: rel(one_step(*ms[be.name])[0], want))


def section_7(rep):
    rep.section(7, "The dense layer")
    x, w, bias = rng.normal(size=(5, 3)), rng.normal(size=(3, 4)), rng.normal(size=4)
    g = rng.normal(size=(5, 4))  # G = dL/d(out) for L = sum(G * out)
    dw, db = np.empty_like(w), np.empty_like(bias)
    dx = nn.dense_backward(g, nn.dense_forward(x, w, bias)[1], w, dw, db)
    rep.grad_check("dL/dW = x^T G", dw, lambda v: (g * nn.dense_forward(x, v, bias)[0]).sum(), w)
    rep.grad_check("dL/db = column sums of G", db,
                   lambda v: (g * nn.dense_forward(x, w, v)[0]).sum(), bias)
    rep.grad_check("dL/dx = G W^T", dx, lambda v: (g * nn.dense_forward(v, w, bias)[0]).sum(), x)
    ms = models(rep.backends, hidden=())  # no hidden layer: the trunk is one dense layer
    ref, _ = one_step(*ms["numpy"])
    rep.compare("one dense layer's dW, db (hidden=(): x^T G, sums of G)",
                lambda be: rel(one_step(*ms[be.name])[0], ref))


def section_8(rep):
    rep.section(8, "The activations")
    x = np.concatenate([np.linspace(-6, -0.01, 25), np.linspace(0.01, 6, 25)])  # not relu's kink
    n = x.size
    for name in nn.ACTIVATIONS:
        out, cache = nn.activation_forward(name, x)
        g = nn.activation_backward(name, np.ones_like(x), cache)
        f = lambda v, name=name: nn.activation_forward(name, v)[0]  # noqa: E731
        rep.check(f"{name}'(x), elementwise", rel(g, (f(x + H) - f(x - H)) / (2 * H)))

        def fused(be, name=name, out=out, g=g):  # the training kernel's own copies
            code, a, da = numba_train.ACTIVATIONS[name], np.empty((1, n)), np.ones((1, n))
            z = x.reshape(1, n)  # the kernels take a layer's units [m, n]: here one unit
            numba_train._act_forward(code, z, a, 1, n)
            numba_train._act_backward(code, z, a, da, 1, n)
            a, da = a[0], da[0]
            return max(rel(a, out), rel(da, g))

        rep.compare(f"{name}: train._act_forward, _act_backward", fused, only=("numba",),
                    why="n/a: the cupy backend runs nn.py's code on CuPy arrays")
    for v in (-10.0, -20.0, -30.0, -40.0):
        tanh_form = float(nn.activation_forward("sigmoid", np.array(v))[0])
        exact = 1 / (1 + math.exp(-v))
        err = abs(tanh_form - exact)
        rep.say(f"sigmoid({v:g}) = {exact:.3e}, tanh form {tanh_form:.3e}: absolute error "
                f"{err:.1e}, relative {err / exact:.1e}")


def section_9(rep):
    rep.section(9, "Back through the whole network")
    ms = models(rep.backends, hidden=(4, 3))
    m, x, y = ms["numpy"]
    _, grad = m.loss_grad(x, y)
    p0 = m.params

    def loss(p):
        m.set_params(p)
        return m.loss_grad(x, y)[0]

    fd = fd_grad(loss, p0)
    m.set_params(p0)
    rep.check(f"dL/d(params), all {p0.size} weights and biases (MLP.backward)", rel(grad, fd))
    ref, _ = one_step(m, x, y)
    rep.compare("the gradient of one training step",
                lambda be: rel(one_step(*ms[be.name])[0], ref))


def section_10(rep):
    rep.section(10, "Standardization and its Jacobian")
    ms = models(rep.backends)
    m, x, y = ms["numpy"]
    h = m._head(m._std_x(x))
    log_p_std = mixture.log_prob(*m._split(h), m._std_y(y))  # log p'(y' | x')
    # dy'/dy by finite differences of the map y -> y' (affine, so one row will do)
    jac = np.stack([(m._std_y(y[:1] + e) - m._std_y(y[:1] - e))[0] / (2 * H)
                    for e in H * np.eye(m.out_dim)], axis=1)
    log_det = np.linalg.slogdet(jac)[1]
    rep.say(f"log |det dy'/dy| = {log_det:.9f}, -sum_d log y_scale_d = {-m.log_jacobian:.9f}")
    log_p = m.log_prob(x, y)
    rep.check("log p(y | x) = log p'(y' | x') + log |det dy'/dy|", rel(log_p, log_p_std + log_det))
    user = m._user_mixture(*m._split(h))  # mu = y_shift + y_scale mu', s = s' + log y_scale
    rep.check("the mixture in user units has the same density",
              rel(mixture.log_prob(*user, y), log_p), "identity")
    rep.compare("MDN.log_prob in user units",
                lambda be: rel(ms[be.name][0].log_prob(x, y), log_p))


def section_11(rep):
    rep.section(11, "Adam (and SGD)")
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 1e-2
    p0, grads = rng.normal(size=6), rng.normal(size=(5, 6))
    opt, p, q = optim.Adam(6, lr=lr, dtype=np.float64), p0.copy(), p0.copy()
    m = v = np.zeros(6)
    for t, g in enumerate(grads, start=1):
        opt.step(p, g)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)  # Kingma and Ba, Algorithm 1
        q -= lr * m_hat / (np.sqrt(v_hat) + eps)
    rep.check("Adam.step = Kingma and Ba's hatted form (5 steps)", rel(p - p0, q - p0),
              "textbook")
    g, m = grads[0], np.zeros(6)
    for _ in range(7):
        m = b1 * m + (1 - b1) * g
    rep.check("constant g: m_t / (1 - b1^t) = g (t = 7)", rel(m / (1 - b1**7), g), "textbook")
    rates = [training.learning_rate("cosine", lr, e, 11) for e in range(1, 12)]
    formula = [lr * (0.01 + 0.99 * (1 + math.cos(math.pi * (e - 1) / 10)) / 2)
               for e in range(1, 12)]
    rep.check("cosine: lr (0.01 + 0.99 (1 + cos(pi f)) / 2)", rel(rates, formula), "textbook")
    rep.say(f"cosine over 11 epochs: {rates[0]:.4g} at the first, {rates[-1]:.4g} at the last")
    ms = models(rep.backends)
    m0, x, y = ms["numpy"]
    g_raw, _ = one_step(small_model("numpy")[0], x, y)
    clip = 0.5 * np.linalg.norm(g_raw)
    g_clip, p_clip = one_step(m0, x, y, clip_norm=clip, weight_decay=0.1)
    rep.check("clipping first: the step's gradient is g c / |g|",
              rel(g_clip, g_raw * clip / (np.linalg.norm(g_raw) + 1e-12)), "textbook")
    rep.compare("one step: clip, weight decay, Adam (train_epoch, _update)",
                lambda be: rel(one_step(*ms[be.name], clip_norm=clip, weight_decay=0.1)[1],
                               p_clip), only=("numba",),
                why="n/a: the cupy backend runs optim.py's code on CuPy arrays")


def integral(f, x):
    """The trapezoid rule on a uniform grid ``x``."""
    return float((f[1:] + f[:-1]).sum() * (x[1] - x[0]) / 2)


def box_muller(u):
    """(u1, u2) -> (z0, z1) = r (cos 2 pi u2, sin 2 pi u2), r = sqrt(-2 log u1)."""
    r = np.sqrt(-2 * np.log(u[0]))
    return np.array([r * np.cos(2 * np.pi * u[1]), r * np.sin(2 * np.pi * u[1])])


def section_12(rep):
    rep.section(12, "Two results used at prediction time")
    a, mu, s = rng.normal(0, 1, (1, 3)), rng.normal(0, 2, (1, 3, 1)), rng.normal(0, 0.4, (1, 3, 1))
    yy = np.linspace((mu - 12 * np.exp(s)).min(), (mu + 12 * np.exp(s)).max(), 200_001)
    dens = np.exp(mixture.log_prob(*(np.repeat(v, yy.size, 0) for v in (a, mu, s)), yy[:, None]))
    mean = integral(yy * dens, yy)
    var = integral((yy - mean) ** 2 * dens, yy)
    rep.check("mean and variance against quadrature of p(y)",
              max(rel(mixture.mean(a, mu)[0, 0], mean),
                  rel(mixture.variance(a, mu, s)[0, 0], var)), "quadrature")
    g = np.linspace(-6.0, 45.0, 200_001)
    cdf = lambda v: np.exp(-np.exp(-v))  # noqa: E731  the Gumbel CDF F(g)
    probs, step = [], 0.0
    for k in range(3):
        direct = np.exp(-g) * cdf(g) * np.prod([cdf(a[0, k] + g - a[0, j])
                                                for j in range(3) if j != k], axis=0)
        merged = np.exp(-g) * np.exp(-np.exp(-g) * np.exp(a[0] - a[0, k]).sum())
        step = max(step, rel(merged, direct))  # the intermediate step, at every g
        probs.append(integral(direct, g))
    rep.check("Gumbel-max: int f(g) prod F(a_k + g - a_j) dg = softmax(a)_k",
              max(step, rel(probs, mixture.softmax(a)[0])), "quadrature")
    errs = []
    for u in ([0.3, 0.1], [0.7, 0.55], [0.05, 0.9]):
        u = np.array(u)
        jac = np.stack([(box_muller(u + e) - box_muller(u - e)) / (2 * H) for e in H * np.eye(2)],
                       axis=1)
        z0, z1 = box_muller(u)
        errs.append(rel(1 / abs(np.linalg.det(jac)), np.exp(-(z0**2 + z1**2) / 2) / (2 * np.pi)))
    rep.check("Box-Muller: 1 / |det d(z0, z1)/d(u1, u2)| = phi(z0) phi(z1)", max(errs))
    rep.say(f"the largest |eps| the stream gives: sqrt(-2 log(2^-33)) = "
            f"{math.sqrt(-2 * math.log(2.0**-33)):.3f}")
    a, mu, s, _ = head_random(4, 3, 2, 2)
    ref = mixture.sample(a, mu, s, 64, seed=7)
    rep.compare("sample: Philox stream, Gumbel-max choice, Box-Muller",
                lambda be: rel(be.sample(a, mu, s, 64, 7), ref))
    ms, noise = models(rep.backends), regularization.Noise(0.3, 0.2, seed=11)
    want = one_step(*ms["numpy"], noise=noise)[0]
    rep.compare("a training step with noise (the Philox noise stream)",
                lambda be: rel(one_step(*ms[be.name], noise=noise)[0], want))


def section_13(rep):
    rep.section(13, "Full covariance")
    b, k, d = 4, 2, 3  # B = 4, K = 2, D = 3: S = D (D + 1) / 2 = 6
    a, mu, _, y = head_random(b, k, d, d)
    ls = np.concatenate([rng.normal(0, 0.4, (b, k, d)), rng.normal(0, 0.6, (b, k, 3))], -1)
    rep.say(f"a component's scales [s_0, s_1, s_2 | U_01, U_02, U_12]; U_12 is column "
            f"D + 1 D - 1 (1 + 1) / 2 + (2 - 1 - 1) = {fullcov.off_index(1, 2, d)}")
    u = fullcov.factor(ls, d)
    sigma = np.linalg.inv(np.swapaxes(u, -1, -2) @ u)  # (U^T U)^-1
    delta = y[:, None, :] - mu
    textbook = (-0.5 * np.einsum("bki,bkij,bkj->bk", delta, np.linalg.inv(sigma), delta)
                - 0.5 * np.linalg.slogdet(2 * np.pi * sigma)[1])
    log_n, z, u_diag, _ = mixture.component_log_density(mu, ls, y)
    rep.check("log N_k = -|z|^2/2 - sum_i s_i - D/2 log(2 pi), z = U (y - mu)",
              rel(log_n, textbook), "textbook")
    rep.grad_check("d log N_k / d mu = U^T z", np.einsum("bkij,bki->bkj", u, z),
                   lambda v: mixture.component_log_density(v, ls, y)[0].sum(), mu)
    rows, cols = fullcov.pairs(d)
    partial = np.concatenate([z * u_diag * delta - 1, -z[..., rows] * delta[..., cols]], -1)
    rep.grad_check("d log N_k / d s_i = z_i U_ii delta_i - 1, d / dU_ij = -z_i delta_j",
                   partial, lambda v: mixture.component_log_density(mu, v, y)[0].sum(), ls)
    out = mixture.nll_grad(a, mu, ls, y)
    rep.grad_check("dL/dmu = -r U^T z", out[2], lambda v: nll_sum(a, v, ls, y), mu)
    rep.grad_check("dL/ds_i = r (1 - z_i U_ii delta_i), dL/dU_ij = r z_i delta_j", out[3],
                   lambda v: nll_sum(a, mu, v, y), ls)
    diag = np.concatenate([ls[..., :d], np.zeros((b, k, 3))], -1)
    same = mixture.nll_grad(a, mu, diag, y)
    ref = mixture.nll_grad(a, mu, ls[..., :d], y)
    rep.check("zero off-diagonal entries: the diagonal model's NLL and gradients",
              rel_all((same[0], same[1], same[2], same[3][..., :d]), ref), "identity")
    eye = np.broadcast_to(np.eye(d), (b, k, d, d))  # eps = e_j: v = U^-1 e_j, V V^T = Sigma
    v = np.stack([fullcov.solve_draws(np.zeros((b, k, d)), ls, eye[..., j], 1.0)
                  for j in range(d)], -1)
    rep.check("draws: U v = eps gives Cov(v) = U^-1 U^-T = Sigma",
              rel(v @ np.swapaxes(v, -1, -2), sigma), "identity")
    dims, rest = [2, 0], [1]
    joint = mixture.log_prob(a, mu, ls, y)
    cond = conditional.condition(a, mu, ls, y[:, dims], dims)
    marg = conditional.marginal(a, mu, ls, dims)
    rep.check("p(y_B | y_A) p(y_A) = p(y) (one QR, one triangular solve)",
              rel(mixture.log_prob(*cond, y[:, rest]) + mixture.log_prob(*marg, y[:, dims]),
                  joint), "identity")
    rep.compare("nll_grad and log_prob with full factors",
                lambda be: max(rel_all(be.nll_grad(a, mu, ls, y), out),
                               rel(be.log_prob(a, mu, ls, y), -out[0])))
    draws = mixture.sample(a, mu, ls, 64, seed=7)
    rep.compare("sample: the same choices, U v = eps by back substitution",
                lambda be: rel(be.sample(a, mu, ls, 64, 7), draws))


SECTIONS = (section_1, section_2, section_3, section_4, section_5, section_6, section_7,
            section_8, section_9, section_10, section_11, section_12, section_13)


def main():
    print(f"npmdn {npmdn.__version__}: docs/derivation.md, section by section, in float64")
    with tempfile.TemporaryDirectory() as tmp:
        rep = Report({"numba": get_backend("numba"), "cuda-host": cuda_host_backend(tmp)})
        for name, be in rep.backends.items():
            print(f"{name}: skipped, {be}" if isinstance(be, str) else f"{name}: ready")
        for section in SECTIONS:
            section(rep)
        return 0 if rep.summary() else 1


if __name__ == "__main__":
    sys.exit(main())
