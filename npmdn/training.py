"""Training an :class:`npmdn.MDN`: fit's loop, its history, the schedule and the progress line.

:meth:`npmdn.MDN.fit` checks nothing itself and calls :func:`fit` here, which
does the work in three steps:

1. :class:`FitOptions` checks every argument, before anything changes;
2. the validation rows are set aside and the optimizer is built;
3. :class:`_Run` trains epoch by epoch: the learning-rate schedule, the
   epoch's steps, validation, early stopping, the callback and the progress
   display.

An epoch's steps run either in the step loop here (forward, head kernel,
backward, clipping, optimizer update: any backend) or, where the backend
offers one (``Backend.fused_fit``), in one compiled call per epoch. Both
report a failed step in the same way (:class:`EpochResult`), and the errors
are raised here, never by a kernel.

A step's loss and gradient is :func:`batch_loss_grad`: the network's
forward pass, the sigma floor (``min_sigma``), the backend's head kernel and
the backward pass. This module knows the model through its network ``net``,
its backend, the head layout (``_split``, ``_floor``) and its standardization.

Noise regularisation (``noise_x``, ``noise_y``) and the collapse diagnostics
of :class:`History` are :mod:`npmdn.regularization`'s; the step loop adds a
batch's noise (:meth:`npmdn.regularization.Noise.add`), the numba backend's
fused epoch draws the same noise inside its kernel. Scoring (validation, the
diagnostics, every inference method) never sees noise.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import _checks as C
from . import mixture, standardization
from .backend import one_blas_thread
from .optim import OPTIMIZERS, clip_by_global_norm
from .progress import Progress
from .regularization import Noise, diagnostic_rows, mixture_diagnostics, noise_arg

LR_SCHEDULES = ("constant", "cosine")

# The defaults of MDN.fit, and so of `npmdn fit` and MDNRegressor: one set, the one
# that lands closest to the true conditional NLL on the seed problems (the cosine
# schedule at 3e-3 more than halves the held-out gap of a constant 1e-3; see
# `python -m bench.defaults`); 10% held out to pick the best epoch.
DEFAULT_EPOCHS = 100
DEFAULT_BATCH_SIZE = 256
DEFAULT_LR = 3e-3
DEFAULT_LR_SCHEDULE = "cosine"
DEFAULT_VALIDATION_SPLIT = 0.1



class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or infinite loss or gradient; the model keeps finite weights
    (its best validation epoch's with restore_best, else the last finite step's)."""


@dataclass
class History:
    """Per-epoch mean NLL (nats per sample, user units) and how training ended.

    ``train_nll`` is the mean of the epoch's step losses (with noise
    regularisation, the loss on the noisy rows that was descended);
    ``val_nll`` the NLL of the validation rows after the epoch, never noisy.

    Collapse diagnostics, after each epoch, of the mixture at up to 256
    training rows (evenly spaced, without noise; see
    :func:`npmdn.regularization.mixture_diagnostics`): ``effective_components``,
    ``exp`` of the entropy of the mean mixing weights (how many components the
    fit uses); ``narrowest_sigma``, the smallest sigma of a live component
    (weight > 0.05) at any of those rows, as a fraction of y's standard
    deviation (its standardization scale). (Where the numba backend runs full-batch
    epochs several to a call, its kernel takes them with the same formulas after each
    epoch; they agree to rounding.) A component collapsing onto single training rows
    shows in the second (it falls towards 0; measured 0.002 collapsed, 0.09
    with noise on Boston housing) and hardly in the first.

    ``noise_x`` and ``noise_y`` are the noise scales used (standardized units;
    ``"auto"`` resolved), 0 without noise. ``stopped_early`` is True when
    training ended before its last epoch, and ``stop_reason`` says why:
    ``"patience"`` (no improvement for ``patience`` epochs) or ``"callback"``;
    None when every epoch ran. ``n_train`` and ``n_val`` are the rows trained
    on and held out.
    """

    train_nll: list = field(default_factory=list)
    val_nll: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    effective_components: list = field(default_factory=list)
    narrowest_sigma: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    restored_best: bool = False
    seconds: float = 0.0
    stop_reason: str | None = None
    n_train: int = 0
    n_val: int = 0
    noise_x: float = 0.0
    noise_y: float = 0.0

    @property
    def epochs(self) -> int:
        return len(self.train_nll)

    def __getitem__(self, key):
        return getattr(self, key)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def learning_rate(schedule: str, lr: float, epoch: int, epochs: int) -> float:
    """The rate of ``epoch`` (1-based) of ``epochs``.

    ``"constant"``: ``lr``. ``"cosine"``: from ``lr`` at the first epoch down to
    ``lr / 100`` at the last, ``lr (0.01 + 0.99 (1 + cos(pi f)) / 2)`` with
    ``f = (epoch - 1) / (epochs - 1)``.
    """
    if schedule == "cosine":
        frac = (epoch - 1) / max(1, epochs - 1)
        return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
    return lr


# --------------------------------------------------------------------------
# arguments
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class FitOptions:
    """The checked arguments of :func:`fit` (see :meth:`npmdn.MDN.fit` for their meaning)."""

    epochs: int
    batch_size: int | None
    lr: float
    optimizer: str
    optimizer_options: dict
    weight_decay: float
    clip_norm: float | None
    patience: int | None
    min_delta: float
    restore_best: bool
    lr_schedule: str
    validation_split: float
    seed: int | None
    verbose: bool | None
    callback: object
    noise_x: float | str = 0.0
    noise_y: float | str = 0.0

    @classmethod
    def check(cls, *, epochs, batch_size, lr, optimizer, optimizer_options, weight_decay,
              clip_norm, patience, min_delta, restore_best, lr_schedule, validation_split,
              validation_data, seed, verbose, callback, noise_x=0.0,
              noise_y=0.0) -> FitOptions:
        """Every argument checked, with a ValueError or TypeError naming the first bad one."""
        epochs = C.int_arg(epochs, "epochs", 1)
        if batch_size is not None:
            batch_size = C.int_arg(batch_size, "batch_size", 1)
        lr = C.float_arg(lr, "lr", 0.0, strict=True)
        optimizer = C.choice_arg(optimizer, "optimizer", tuple(OPTIMIZERS))
        weight_decay = C.float_arg(weight_decay, "weight_decay", 0.0)
        if clip_norm is not None:
            clip_norm = C.float_arg(clip_norm, "clip_norm", 0.0, strict=True)
        if patience is not None:
            patience = C.int_arg(patience, "patience", 1)
        min_delta = C.float_arg(min_delta, "min_delta", 0.0)
        lr_schedule = C.choice_arg(lr_schedule, "lr_schedule", LR_SCHEDULES)
        if validation_split is None:  # the default: hold out rows unless given some
            validation_split = DEFAULT_VALIDATION_SPLIT if validation_data is None else 0.0
        validation_split = C.float_arg(validation_split, "validation_split", 0.0)
        if validation_split >= 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
        if validation_data is not None and validation_split > 0:
            raise ValueError("give validation_data or validation_split, not both")
        if callback is not None and not callable(callback):
            raise C.InputDTypeError("callback must be callable")
        if seed is not None:
            seed = C.int_arg(seed, "seed", 0)
        noise_x = noise_arg(noise_x, "noise_x")
        noise_y = noise_arg(noise_y, "noise_y")
        return cls(epochs, batch_size, lr, optimizer, dict(optimizer_options or {}),
                   weight_decay, clip_norm, patience, min_delta, bool(restore_best),
                   lr_schedule, validation_split, seed, verbose, callback, noise_x, noise_y)


def _validation(model, x, y, validation_data, split, rng):
    """``(x, y, x_val, y_val)``: the training rows and the held-out ones (or None)."""
    if validation_data is not None:
        try:
            xv, yv = validation_data
        except (TypeError, ValueError) as exc:
            raise ValueError("validation_data must be a pair (x_val, y_val)") from exc
        xv, yv = model._xy(xv, yv, "validation x", "validation y")
        return x, y, xv, yv
    if split > 0:
        n = x.shape[0]
        if n < 2:
            raise ValueError(
                f"validation_split={split} holds rows out for validation, which needs at "
                f"least 2 rows; got {n} (validation_split=0 trains on every row)"
            )
        n_val = min(n - 1, max(1, int(round(split * n))))
        perm = rng.permutation(x.shape[0])
        return x[perm[n_val:]], y[perm[n_val:]], x[perm[:n_val]], y[perm[:n_val]]
    return x, y, None, None


def _optimizer(model, opts: FitOptions):
    net = model.net
    try:
        return OPTIMIZERS[opts.optimizer](
            net.n_params, lr=opts.lr, weight_decay=opts.weight_decay,
            decay_mask=net.weight_mask(), xp=model.backend.xp, dtype=model.dtype,
            **opts.optimizer_options,
        )
    except TypeError as exc:
        raise ValueError(f"optimizer_options do not fit {opts.optimizer!r}: {exc}") from exc


def fit(model, x, y, *, validation_data=None, **kwargs) -> History:
    """Train ``model`` in place; the arguments and the result are :meth:`npmdn.MDN.fit`'s."""
    x, y = model._xy(x, y)
    opts = FitOptions.check(validation_data=validation_data, **kwargs)
    seed = model.seed if opts.seed is None else opts.seed
    rng = np.random.default_rng(seed)
    x, y, xv, yv = _validation(model, x, y, validation_data, opts.validation_split, rng)
    opt = _optimizer(model, opts)
    # the data must fit the model: its spread (a first fit), and every standardized value
    stats = None if model.fitted else model._standardization(x, y)
    _check_standardized(model, stats, ((x, y, "x", "y"), (xv, yv, "validation x",
                                                            "validation y")))
    # all arguments are checked: from here on the model changes
    if stats is not None:
        model.x_shift, model.x_scale, model.y_shift, model.y_scale = stats
    noise = Noise.of_fit(opts.noise_x, opts.noise_y, x.shape[0], model.in_dim, model.out_dim,
                         seed)
    # small products: BLAS on one thread (npmdn.backend says why)
    with one_blas_thread(model.backend):
        return _Run(model, opt, opts, rng, x, y, xv, yv, noise).train()


def _check_standardized(model, stats, pairs):
    """ValueError naming the column of the first value that standardizes beyond the
    model's dtype under ``stats`` (or the model's own statistics): it would reach
    the network as inf and stop training as if it had diverged."""
    xs, xsc, ys, ysc = stats if stats is not None else (model.x_shift, model.x_scale,
                                                        model.y_shift, model.y_scale)
    for x, y, xname, yname in pairs:
        if x is not None:
            standardization.apply(x, xs, xsc, model.dtype, xname)
            standardization.apply(y, ys, ysc, model.dtype, yname)


# --------------------------------------------------------------------------
# the steps of one epoch
# --------------------------------------------------------------------------


def batch_loss_grad(model, xb, yb, nll, grad):
    """Mean NLL of a standardized batch and the squared norm of its gradient,
    which it leaves in ``model.net.grads``.

    ``nll`` [B] and ``grad`` [B, P] are scratch buffers: the head kernel
    writes each row's NLL and its gradient with respect to the head output
    straight into them, and the trunk's backward pass starts from ``grad``.
    With a sigma floor the head kernel sees the floored scales ``s'`` and
    its ``dNLL/ds'`` is taken back to the network's raw ``s`` by the chain
    rule (:func:`npmdn.mixture.floor_log_sigma_grad`).
    The gradient is computed even when the loss is not finite; callers check.
    Both scalars come back to the host in one transfer: on a GPU that is the
    step's only synchronisation.
    """
    b = xb.shape[0]
    net, backend = model.net, model.backend
    xp = backend.xp
    head, cache = net.forward(xb)
    raw = model._floor(head, keep_raw=True)  # s' = logaddexp(s, log f), or None
    backend.nll_grad(*model._split(head), yb, out=(nll, *model._split(grad)))
    if raw is not None:
        # s' = logaddexp(s, log f):  dNLL/ds = dNLL/ds' exp(s - s')
        model._split(grad)[2][...] *= mixture.floor_log_sigma_grad(raw, model._split(head)[2])
    grad *= model.dtype.type(1.0 / b)  # d(mean NLL) = d(sum NLL) / B
    net.backward(grad, cache)
    g = net.grads
    loss_sum, g2 = backend.to_host(xp.stack((nll.sum(), xp.dot(g, g))))
    return float(loss_sum) / b, float(g2)


def mean_nll(model, xs, ys) -> float:
    """Mean NLL in standardized units of standardized (device) arrays, chunked."""
    total = 0.0
    for a, b in model._chunks(xs.shape[0]):
        head = model._head(xs[a:b])
        total -= float(model.backend.log_prob(*model._split(head), ys[a:b]).sum())
    return total / xs.shape[0]


class EpochResult(NamedTuple):
    """What an epoch's steps report: the sum of the completed steps' NLL sums
    (standardized units) and, when a step failed, which one and why.

    ``failed`` is ``None`` or ``(step, what, value)`` with ``what`` one of
    ``"loss"`` (the step's loss was NaN or infinite: no update was made, and
    the weights of the last step with a finite loss are in ``last_good``) or
    ``"gradient norm"`` (the loss was finite, its gradient not: the weights
    are those that gave the finite loss).
    """

    loss_sum: float
    failed: tuple | None = None


class StepLoop:
    """An epoch's steps one by one on any backend: noise, forward, floor, head kernel,
    backward, clipping, optimizer update. The reference for every fused epoch.

    ``noise`` (a :class:`Noise`, or None) perturbs each batch; ``rows`` (host
    int64 [N], or None for ``0..N-1``) are the rows' indices in the noise stream.
    On a GPU the noise is drawn on the host and sent with each batch (B x
    (in_dim + out_dim) float values per step).
    """

    def __init__(self, model, opt, xs, ys, batch_size, steps, clip_norm, noise=None,
                 rows=None):
        xp = model.backend.xp
        self.model, self.opt, self.xs, self.ys = model, opt, xs, ys
        self.bs, self.steps, self.clip = batch_size, steps, clip_norm
        self.noise, self.rows = noise, rows
        self.nll = xp.empty(batch_size, dtype=model.dtype)  # scratch, reused every step
        self.grad = xp.empty((batch_size, model.head_size), dtype=model.dtype)

    def _noise_rows(self, order):
        """Host indices into the noise stream of the epoch's rows, in step order."""
        backend = self.model.backend
        local = np.arange(self.xs.shape[0]) if order is None else backend.to_host(order)
        return local if self.rows is None else self.rows[local]

    def epoch(self, order, lr, last_good, epoch: int = 1) -> EpochResult:
        net, xp = self.model.net, self.model.backend.xp
        noise = self.noise
        rows = None if noise is None else self._noise_rows(order)
        total = 0.0
        for step in range(self.steps):
            if order is None:
                xb, yb = self.xs, self.ys
            else:
                idx = order[step * self.bs : (step + 1) * self.bs]
                xb, yb = self.xs[idx], self.ys[idx]
            if noise is not None:
                xb, yb = noise.add(xb, yb, rows[step * self.bs : (step + 1) * self.bs],
                                   epoch, xp)
            b = xb.shape[0]
            loss, g2 = batch_loss_grad(self.model, xb, yb, self.nll[:b], self.grad[:b])
            if not math.isfinite(loss):
                return EpochResult(total, (step, "loss", loss))
            gnorm = math.sqrt(g2)
            if self.clip is not None:
                clip_by_global_norm(net.grads, self.clip, xp, norm=gnorm)
            if not math.isfinite(gnorm):
                return EpochResult(total, (step, "gradient norm", gnorm))
            last_good[...] = net.params
            self.opt.step(net.params, net.grads, lr)
            total += loss * b
        return EpochResult(total)


# --------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------


class _Run:
    """One call of :func:`fit`: the epoch loop and everything around it."""

    def __init__(self, model, opt, opts: FitOptions, rng, x, y, xv, yv, noise=None):
        self.model, self.opt, self.opts, self.rng = model, opt, opts, rng
        self.noise = noise
        self.xs, self.ys = model._std_x(x), model._std_y(y)  # moved to the device once per fit
        self.val = None if xv is None else (model._std_x(xv), model._std_y(yv))
        self.n = x.shape[0]
        self.bs = self.n if opts.batch_size is None else min(opts.batch_size, self.n)
        self.steps = -(-self.n // self.bs)
        self.last_good = model.net.params.copy()  # the weights of the last step with a finite loss
        self.engine = self._engine(self.xs, self.ys, self.bs, self.steps)
        self.diag_index = diagnostic_rows(self.n)  # (host, sorted: the engine's epochs take it)
        self.diag = self.xs[model.backend.xp.asarray(self.diag_index)]
        self.history = History()
        # epochs run ahead by the engine (_next_epoch): epoch -> (loss sum, diagnostics, failure)
        self._ahead = {}

    def _engine(self, xs, ys, bs, steps, rows=None):
        """What runs ``steps`` steps of ``bs`` rows on (xs, ys): the backend's compiled
        epoch where it applies, else the step loop. ``rows``: the rows' indices in
        the noise stream (host int64), None for ``0..len(xs)-1``."""
        model, opt, clip = self.model, self.opt, self.opts.clip_norm
        fused = model.backend.fused_fit
        engine = None
        if fused is not None:
            engine = fused(model.net, (model.n_components, model.out_dim, model.scale_dim), opt,
                           xs, ys, bs, steps, clip, noise=self.noise, rows=rows,
                           log_floor=model._log_floor())
        if engine is None:
            engine = StepLoop(model, opt, xs, ys, bs, steps, clip, self.noise, rows)
        return engine

    def _val_nll(self) -> float:
        """Mean validation NLL in user units."""
        return mean_nll(self.model, *self.val) + self.model.log_jacobian

    def train(self) -> History:
        opts, model, history = self.opts, self.model, self.history
        history.n_train = self.n
        history.n_val = 0 if self.val is None else int(self.val[0].shape[0])
        if self.noise is not None:
            history.noise_x, history.noise_y = self.noise.x, self.noise.y
        net = model.net
        # the weights of the best validation epoch, kept for restore_best (also when a
        # later step diverges)
        self.best = net.params.copy() if self.val is not None and opts.restore_best else None
        best_val, wait = math.inf, 0
        jac = model.log_jacobian
        progress = Progress(opts.epochs, opts.verbose)
        t0 = time.perf_counter()
        try:
            for epoch in range(1, opts.epochs + 1):
                lr_now = learning_rate(opts.lr_schedule, opts.lr, epoch, opts.epochs)
                loss_sum, diag = self._next_epoch(epoch, lr_now)
                train_nll = loss_sum / self.n + jac
                history.train_nll.append(train_nll)
                history.lr.append(lr_now)
                val_nll = None
                if self.val is not None:
                    val_nll = self._val_nll()
                    if not math.isfinite(val_nll):
                        self._diverged(epoch, None, "validation NLL", val_nll)
                    history.val_nll.append(val_nll)
                if self.diag is not None:
                    eff, narrow = diag or mixture_diagnostics(model, self.diag)
                    history.effective_components.append(eff)
                    history.narrowest_sigma.append(narrow)
                model.fitted = True
                progress.update(epoch, train_nll, val_nll)
                current = train_nll if val_nll is None else val_nll
                if current < best_val - opts.min_delta:
                    best_val, wait = current, 0
                    history.best_epoch = epoch
                    if self.best is not None:
                        self.best[...] = net.params
                else:
                    wait += 1
                if opts.callback is not None and opts.callback(epoch, history):
                    history.stop_reason = "callback" if epoch < opts.epochs else None
                    break
                if opts.patience is not None and wait >= opts.patience and epoch < opts.epochs:
                    history.stop_reason = "patience"
                    break
        finally:
            history.stopped_early = history.stop_reason is not None
            history.seconds = time.perf_counter() - t0
            progress.close(stop_note(history, opts.patience))
        if self.best is not None and history.best_epoch is not None:
            net.params[...] = self.best
            history.restored_best = history.best_epoch != history.epochs
        return history

    # full-batch epochs that nothing looks at in between run this many to a call
    EPOCHS_AHEAD = 64

    def _next_epoch(self, epoch, lr):
        """``(loss_sum, (effective components, narrowest sigma) or None)`` of epoch
        ``epoch``: from a block of epochs run ahead in one call of the engine (its
        ``epochs``, which also takes the diagnostics) where one step makes an epoch and
        nothing reads the weights between epochs (no validation, callback or
        patience), else :meth:`_epoch`'s loss and no diagnostics."""
        ahead = self._ahead
        opts = self.opts
        if (epoch not in ahead and hasattr(self.engine, "epochs")
                and self.steps == 1 and self.val is None and self.diag is not None
                and opts.callback is None and opts.patience is None):
            last = min(opts.epochs, epoch + self.EPOCHS_AHEAD - 1)
            lrs = [learning_rate(opts.lr_schedule, opts.lr, e, opts.epochs)
                   for e in range(epoch, last + 1)]
            done, failed = self.engine.epochs(lrs, self.last_good, epoch, self.diag,
                                              self.diag_index)
            for i, (loss_sum, diag) in enumerate(done):
                ahead[epoch + i] = (loss_sum, diag, None)
            if failed is not None:
                ahead[failed[0]] = (failed[1], None, failed[2])
        if epoch in ahead:
            loss_sum, diag, failed = ahead.pop(epoch)
            if failed is not None:
                self._diverged(epoch, *failed)
            return loss_sum, diag
        return self._epoch(epoch, lr), None

    def _epoch(self, epoch, lr) -> float:
        """One epoch's steps in a fresh seeded order; the sum of their NLL sums."""
        backend = self.model.backend
        order = backend.xp.asarray(backend.permutation(self.rng, self.n)) \
            if self.steps > 1 else None
        loss_sum, failed = self.engine.epoch(order, lr, self.last_good, epoch)  # EpochResult
        if failed is not None:
            step, what, value = failed
            self._diverged(epoch, step, what, value)
        return loss_sum

    def _diverged(self, epoch, step, what, value):
        """Raise NonFiniteLossError, leaving the best validation epoch's weights (with
        restore_best and validation data), else the last weights with a finite loss."""
        params, history = self.model.net.params, self.history
        if what == "loss":
            params[...] = self.last_good
        where = f"epoch {epoch}" + ("" if step is None else f", step {step + 1} of {self.steps}")
        if self.best is not None and history.best_epoch is not None:
            params[...] = self.best
            history.restored_best = True
            kept = (f"the model keeps the weights of its best validation epoch "
                    f"({history.best_epoch})")
        elif step is None:
            kept = "the model keeps the weights of that epoch's last step"
        elif step == 0 and epoch == 1 and what == "loss":
            kept = "the model keeps its initial weights"
        else:
            kept = "the model keeps the weights of the last step with a finite loss"
        raise NonFiniteLossError(
            f"training stopped at {where}: the {what} is {value}; {kept}. "
            f"Completed epochs: {self.history.epochs}. Try a smaller lr, clip_norm, or check "
            f"the scale of the data."
        )


def stop_note(history: History, patience: int | None = None, patience_name="patience"):
    """One line saying that and why a run stopped before its last epoch, else None."""
    if not history.stopped_early:
        return None
    monitored = "validation NLL" if history.val_nll else "training NLL"
    if history.stop_reason == "patience":
        why = (f"the {monitored} did not improve for {patience} epochs ({patience_name} "
               f"{patience}); best at epoch {history.best_epoch}")
    else:
        why = "the callback asked to stop"
    return f"stopped early after epoch {history.epochs}: {why}"
