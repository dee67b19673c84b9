"""npmdn on Dask: score, sample and train on arrays split along rows, on any Dask scheduler.

Needs Dask (``pip install "npmdn[dask]"``, which also brings ``distributed``);
``import npmdn`` never imports this module or Dask. You rarely call it
directly: every :class:`npmdn.MDN` method that takes rows (``log_prob``,
``predict``, ``predict_std``, ``sample``, ``distribution``, ``mixture_raw``,
``cdf``, ``quantile``, ``interval``, ``crps``, ``modes``, ``score``, ``nll``,
``fit``) and every raw-parameter function (``npmdn.mixture_log_prob``, ...)
sends a call with a Dask Array, DataFrame or Series here::

    import dask.array as da
    from distributed import Client

    client = Client("tcp://scheduler:8786")            # or none: Dask's threads
    x = da.from_zarr("x.zarr")                         # [N, in_dim], split along rows
    lp = model.log_prob(x, y)                          # lazy [N]
    draws = model.sample(x, 10, seed=1)                # lazy [N, 10, D]
    scores = model.score(x, y)                         # a dict of floats, computed
    history = model.fit(x, y, epochs=5, batch_size=256)  # streamed, a few blocks in memory

What it guarantees:

* **Same numbers as in memory.** Each block is computed by the model's own
  in-memory method on that block's rows, widened to whole network passes
  (``config.NETWORK_PASS`` rows counted from row 0; the extra rows are zeros
  and dropped), so every row goes through the same matrix products as in the
  whole array: results equal ``model.method(x.compute())`` bit for bit, given
  the same backend and BLAS threading (float32 BLAS may round differently with
  another number of threads; Dask workers run one each).
* **Same draws for any chunking.** A block's rows are drawn at their global
  rows of the seed's Philox stream (``row_offset``); ``seed=None`` is drawn
  once, not per block.
* **The model travels once.** It is one key of the graph holding its pickled
  state (the scheduler sees bytes), built once per worker process and kept.
  ``backend="auto"`` (the functions here) builds it on each worker's own
  backend (cupy where a GPU answers, else numba) instead of the model's.
* **Bounded memory.** A block's memory is the in-memory method's on that
  block (plus at most two network passes of padding); ``fit`` holds the block
  it trains on (with its float32 copies and the rows left over from the one
  before) and the next one, computed meanwhile.

distributed's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``,
which makes every NumPy temporary over 128 KiB a fresh ``mmap``: inference
runs several times slower so. Unset it before starting workers with
``dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_":
None})`` (measurements in ``bench/RESULTS.md``).

Inputs must be split along rows only, with known block sizes; x and y must
have the same row blocks (a NumPy y is split like x). Anything else is a
``ValueError`` saying how to rechunk, before any work.
"""

from __future__ import annotations

import functools
import inspect

import dask
import numpy as np

from . import _blocks, metrics, regularization, training
from . import _checks as C
from ._arrays import array_module
from .backend import check_name
from .predictive import Mixture

__all__ = [
    "as_rows", "call", "log_prob", "sample", "predict", "predict_std", "mixture_raw",
    "distribution", "nll", "score", "fit", "iter_blocks",
]


def as_rows(data, name: str = "x"):
    """A Dask Array, DataFrame or Series as the checked Dask array npmdn works on.

    A DataFrame or Series becomes its values (``to_dask_array().compute_chunk_sizes()``,
    which counts the rows of each partition: one pass). Raises ``ValueError``
    for an array chunked along columns, with blocks of unknown size, or empty.
    """
    return _blocks.as_rows([data], [name])[0]


def _one(a):
    """One row of zeros shaped and typed like a row of ``a``: checks run on it first."""
    return np.zeros((1,) + tuple(a.shape[1:]), dtype=a.dtype)


def _ship(model, backend):
    """The model as one graph key, on ``backend`` (None: the model's; "auto": each
    worker's own choice) when it is built on the workers."""
    state = model.__getstate__()
    if backend is not None:
        name = None if backend == "auto" else check_name(backend)
        state = {**state, "backend": name}
    return _blocks.ship(model, state)


# --------------------------------------------------------------------------
# a block, computed as the whole array would compute its rows
# --------------------------------------------------------------------------


def _pad(block, front: int, back: int):
    xp = array_module(block)
    zeros = [xp.zeros((m,) + block.shape[1:], dtype=block.dtype) for m in (front, back)]
    return xp.concatenate([zeros[0], xp.asarray(block), zeros[1]])


def _on_block(model, start: int, total: int, blocks, run):
    """``run(padded_blocks, first_row)`` on the rows ``start : start + n`` of an array of
    ``total`` rows, returned for those rows only.

    The blocks are widened with rows of zeros to whole network passes of the
    array (the last pass ends at ``total``), so the model's in-memory methods
    put every row through the same matrix products as on the whole array.
    A ``ValueError`` (such as a NaN in x) names the block's rows.
    """
    step = model._network_pass()
    n = blocks[0].shape[0]
    first = start - start % step
    end = min(total, -(-(start + n) // step) * step)
    front, back = start - first, end - start - n
    if front or back:
        blocks = [_pad(b, front, back) for b in blocks]
    try:
        out = run(blocks, first)
    except ValueError as exc:
        raise type(exc)(f"{exc} (in rows {start}:{start + n} of the Dask array)") from exc
    if not (front or back):
        return out
    rows = slice(front, front + n)
    return _blocks._rebuild(out, iter([a[rows].copy() for a in _blocks._flatten(out)]))


def _method_block(method, kwargs, total, shipped, start, *blocks):
    model = _blocks.receive(shipped)

    def run(padded, first):
        kw = kwargs
        if method == "sample":  # each row at its global row of the Philox stream
            kw = {**kwargs, "row_offset": kwargs.get("row_offset", 0) + first}
        return getattr(model, method)(*padded, **kw)

    return _on_block(model, start, total, blocks, run)


def call(model, method: str, /, *rows, backend=None, **kwargs):
    """``model.<method>(*rows, **kwargs)`` on Dask rows: lazy Dask arrays, row blocks as in x.

    ``rows`` are x (and y, for methods that take it). The method first runs
    here on one row of zeros, which checks every argument and gives the
    results' shapes; then each block runs it on the workers. The result has
    the structure the method returns (an array, a tuple, :class:`npmdn.Modes`)
    with a Dask array in place of each array.
    """
    arrays = _blocks.as_rows(list(rows), ["x", "y"][: len(rows)])
    total = arrays[0].shape[0]
    if method == "sample":
        kwargs["seed"] = C.seed_arg(kwargs.get("seed"))  # None: drawn once, here
        C.int_arg(kwargs.get("row_offset", 0), "row_offset", 0, 2**64 - 1 - total)
    like = getattr(model, method)(*[_one(a) for a in arrays], **kwargs)
    task = functools.partial(_method_block, method, kwargs, total)
    return _blocks.map_rows(task, arrays, like, shipped=_ship(model, backend),
                            name=f"npmdn-{method}")


def log_prob(model, x, y, *, backend=None):
    """``log p(y | x)`` per row: a lazy [N] Dask array (see :meth:`npmdn.MDN.log_prob`)."""
    return call(model, "log_prob", x, y, backend=backend)


def sample(model, x, n_samples: int = 1, seed=None, *, backend=None, **options):
    """Draws [N, n_samples, D], lazy; the draws of :meth:`npmdn.MDN.sample` for any chunking."""
    return call(model, "sample", x, n_samples=n_samples, seed=seed, backend=backend, **options)


def predict(model, x, kind: str = "mean", *, backend=None):
    """Point predictions [N, D], lazy (see :meth:`npmdn.MDN.predict`)."""
    return call(model, "predict", x, kind=kind, backend=backend)


def predict_std(model, x, *, backend=None):
    """Predictive standard deviations [N, D], lazy."""
    return call(model, "predict_std", x, backend=backend)


def mixture_raw(model, x, *, backend=None):
    """``(logits [N,K], mu [N,K,D], log_sigma [N,K,S])`` in user units, lazy (one task per
    block gives all three)."""
    return call(model, "mixture_raw", x, backend=backend)


def distribution(model, x, *, backend=None) -> Mixture:
    """The predicted distributions as an :class:`npmdn.Mixture` over lazy parameters; its
    methods return lazy arrays too (they are the raw-parameter functions)."""
    logits, mu, log_sigma = mixture_raw(model, x, backend=backend)
    name = model.backend.name if backend is None else None if backend == "auto" else backend
    return Mixture(logits, mu, log_sigma, covariance_type=model.covariance, backend=name)


# --------------------------------------------------------------------------
# scores: computed floats
# --------------------------------------------------------------------------


def nll(model, x, y, *, backend=None) -> float:
    """Mean negative log-likelihood (nats per row), computed."""
    lp = log_prob(model, x, y, backend=backend)
    return float(-(lp.astype(np.float64).sum() / lp.shape[0]).compute())


def _score_block(levels, bins, total, shipped, start, x, y):
    model = _blocks.receive(shipped)

    def run(blocks, _first):
        return model._score_rows(*blocks)

    return metrics.ScoreSums(levels, bins).add(*_on_block(model, start, total, [x, y], run))


def score(model, x, y, levels=metrics.DEFAULT_LEVELS, *, backend=None,
          bins: int = metrics.PIT_BINS) -> dict:
    """:meth:`npmdn.MDN.score` of Dask rows, computed: a dict of floats.

    Each block reduces its rows to sums, counts and a histogram of PIT values
    (:class:`npmdn.metrics.ScoreSums`), merged in a tree. ``nll``, ``crps``,
    the coverages and ``calibration_error`` equal the in-memory scores up to
    the order of the sums; ``pit_ks`` is within ``1 / (2 bins)`` of the exact
    value (the exact one needs all PIT values sorted).
    """
    x, y = _blocks.as_rows([x, y], ["x", "y"])
    model.score(_one(x), _one(y), levels)  # checks the widths, dtypes and levels
    levels = C.probabilities(levels, "levels").reshape(-1)
    bins = C.int_arg(bins, "bins", 1)
    task = functools.partial(_score_block, tuple(levels), bins, x.shape[0])
    parts = _blocks.block_tasks(task, [x, y], shipped=_ship(model, backend), name="npmdn-score")
    (sums,) = dask.compute(_blocks.tree_reduce(parts, metrics.ScoreSums.merged))
    return sums.result()


# --------------------------------------------------------------------------
# training from data larger than memory
# --------------------------------------------------------------------------


class _StreamRun(training._Run):
    """:class:`npmdn.training._Run` with the training rows streamed block by block.

    An epoch visits the blocks in a seeded random order and shuffles the rows
    of each; the rows left over after a block's whole batches go with the
    next block, so every step but the epoch's last has ``batch_size`` rows as
    in memory. Each block's steps run in the backend's engine (the fused epoch
    on numba). Validation data may be in memory or a Dask array (scored
    blockwise after every epoch). A row's noise (``noise_x``, ``noise_y``) is
    drawn at its global row in the data. The collapse diagnostics are taken
    on the first rows (at most ``regularization.DIAGNOSTIC_ROWS``) of the first
    block trained on.
    """

    def __init__(self, model, opt, opts, rng, stream, validation, noise=None):
        self.model, self.opt, self.opts, self.rng = model, opt, opts, rng
        self.noise = noise
        self.diag = None
        self.stream = stream
        self.n = stream.n
        self.bs = min(opts.batch_size, self.n)
        self.steps = -(-self.n // self.bs)
        self.lazy_val = validation is not None and _blocks.any_lazy(*validation)
        if validation is None or self.lazy_val:
            self.val = validation
        else:
            self.val = (model._std_x(validation[0]), model._std_y(validation[1]))
        self.last_good = model.net.params.copy()
        self.history = training.History()

    def _val_nll(self) -> float:
        if self.lazy_val:
            return nll(self.model, *self.val)
        return super()._val_nll()

    def _next_epoch(self, epoch, lr):
        """One streamed epoch at a time (never run ahead: the blocks arrive one by one)."""
        return self._epoch(epoch, lr), None

    def _epoch(self, epoch, lr) -> float:
        model, bs = self.model, self.bs
        xp = model.backend.xp
        total, done, carry = 0.0, 0, None
        for start, xb, yb in self.stream.epoch(self.rng):
            try:
                xb, yb = model._xy(xb, yb)
            except ValueError as exc:
                raise type(exc)(f"{exc} (in rows {start}:{start + len(xb)} of the Dask "
                                "array)") from exc
            xs, ys = model._std_x(xb), model._std_y(yb)
            if self.diag is None:
                self.diag = xs[: regularization.DIAGNOSTIC_ROWS]
            rows = np.arange(start, start + xs.shape[0], dtype=np.int64)  # the noise's rows
            if carry is not None:
                xs, ys = xp.concatenate([carry[0], xs]), xp.concatenate([carry[1], ys])
                rows = np.concatenate([carry[2], rows])
            perm = self.rng.permutation(xs.shape[0])
            order = xp.asarray(perm)
            steps = xs.shape[0] // bs
            if steps:
                total += self._steps(epoch, lr, xs, ys, order, bs, steps, done, rows)
                done += steps
            rest = order[steps * bs :]
            carry = (xs[rest], ys[rest], rows[perm[steps * bs :]]) if rest.shape[0] else None
        if carry is not None:  # the epoch's last, short step
            total += self._steps(epoch, lr, *carry[:2], None, carry[0].shape[0], 1, done,
                                 carry[2])
        return total

    def _steps(self, epoch, lr, xs, ys, order, bs, steps, done, rows) -> float:
        engine = self._engine(xs, ys, bs, steps, rows)
        loss_sum, failed = engine.epoch(order, lr, self.last_good, epoch)
        if failed is not None:
            step, what, value = failed
            self._diverged(epoch, done + step, what, value)
        return loss_sum


def _stream_validation(model, validation_data):
    if validation_data is None:
        return None
    try:
        xv, yv = validation_data
    except (TypeError, ValueError) as exc:
        raise ValueError("validation_data must be a pair (x_val, y_val)") from exc
    if not _blocks.any_lazy(xv, yv):
        return model._xy(xv, yv, "validation x", "validation y")
    xv, yv = _blocks.as_rows([xv, yv], ["validation x", "validation y"])
    model._xy(_one(xv), _one(yv), "validation x", "validation y")
    return xv, yv


def fit(model, x, y, *, validation_data=None, x_names=None, y_names=None,
        **kwargs) -> training.History:
    """:meth:`npmdn.MDN.fit` on Dask rows, streamed: the arguments and result are its.

    Unless the model is already fitted, one pass over the blocks sets the
    standardization (column means and standard deviations merged by Chan et
    al.'s parallel update) and checks that every value is finite. Then each
    epoch brings the blocks here in a seeded random order, computing the next
    one while training on the current (on the cluster when a ``distributed``
    client is active), so memory holds about three blocks whatever N.
    ``batch_size=None`` and ``validation_split`` need the data in memory and
    are refused; ``validation_data`` may be Dask or NumPy arrays. Without
    ``validation_data`` a streamed fit holds out no rows (the in-memory
    default, 10% held out, would need the rows in memory).
    """
    names = model._fit_names(x, y, x_names, y_names)  # a Dask DataFrame's columns
    x, y = _blocks.as_rows([x, y], ["x", "y"])
    model._xy(_one(x), _one(y))  # the widths and dtypes, before any work
    if kwargs.get("validation_split") is None:
        kwargs["validation_split"] = 0.0
    opts = training.FitOptions.check(validation_data=validation_data, **kwargs)
    if opts.batch_size is None:
        raise ValueError("batch_size=None (every row in one step) needs the data in memory; "
                         "give a batch size to train on Dask arrays")
    if opts.validation_split > 0:
        raise ValueError("validation_split needs the data in memory; with Dask arrays give "
                         "validation_data=(x_val, y_val) (Dask or NumPy arrays)")
    validation = _stream_validation(model, validation_data)
    seed = model.seed if opts.seed is None else opts.seed
    rng = np.random.default_rng(seed)
    opt = training._optimizer(model, opts)
    stream = _blocks.BlockStream(x, y)
    noise = regularization.Noise.of_fit(opts.noise_x, opts.noise_y, x.shape[0], model.in_dim,
                                  model.out_dim, seed)
    if not model.fitted:
        model._standardize_from(*stream.moments())
    try:
        return _StreamRun(model, opt, opts, rng, stream, validation, noise).train()
    finally:
        if model.fitted:
            model.x_names, model.y_names = names


# --------------------------------------------------------------------------
# from MDN's methods; results to files
# --------------------------------------------------------------------------

_COMPUTED = {"fit": fit, "score": score, "nll": nll, "distribution": distribution}


def dispatch(model, method, args, kwargs):
    """An :class:`npmdn.MDN` method called with Dask rows (its ``_dask_aware`` hook)."""
    bound = inspect.signature(method).bind(model, *args, **kwargs)
    bound.apply_defaults()
    given = dict(bound.arguments)
    given.pop("self")
    name = method.__name__
    if name in _COMPUTED:
        return _COMPUTED[name](model, **given)
    rows = [given.pop(k) for k in ("x", "y") if k in given]
    return call(model, name, *rows, **given)


def iter_blocks(*arrays, ahead: int = 1):
    """Yield ``(start, blocks)`` for Dask arrays with the same row blocks, first to last,
    as NumPy arrays, computing the next ``ahead`` meanwhile: a lazy result written out
    in order (to a file, a socket) with a few blocks in memory."""
    arrays = _blocks.as_rows(list(arrays), [f"array {i}" for i in range(len(arrays))])
    for start, blocks in _blocks.iter_blocks(arrays, None, ahead):
        yield start, tuple(blocks)
