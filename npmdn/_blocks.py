"""Dask arrays as blocks of whole rows: the machinery under :mod:`npmdn.dask`.

Everything npmdn computes is per row, so a Dask array is taken as a sequence
of row blocks, each a NumPy (or CuPy) array that the in-memory code handles
as usual. What this module adds:

* :func:`as_rows`: Dask Arrays, DataFrames and Series checked and turned
  into arrays split along rows only, with known block sizes;
* :func:`map_rows`: one task per block, which knows the block's global first
  row (for the Philox stream and the network's passes), lazy arrays out, one
  per leaf of whatever the function returns;
* :func:`ship` / :func:`receive`: an object (the model) sent as one graph
  key holding its pickled state, built once per worker process (never on the
  scheduler) and kept in a small cache there;
* :func:`rowwise`: the decorator that lets a function of raw row arrays
  (:mod:`npmdn.functional`, :mod:`npmdn.metrics`) take Dask arrays;
* :func:`iter_blocks` and :class:`BlockStream`: blocks brought to this
  process in a chosen order with the next ones computed meanwhile (futures
  on a ``distributed`` client, a thread otherwise), and the column moments
  of a whole array in one streaming pass (Chan et al.'s parallel update).

Importing this module does not import Dask: :func:`any_lazy` looks for it in
``sys.modules`` (an object can only be a Dask collection once Dask is
imported), and every function that needs Dask imports it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import pickle
import sys
import threading
from collections import OrderedDict

import numpy as np

from . import _checks as C
from ._arrays import is_device_array

# --------------------------------------------------------------------------
# which inputs are lazy, and checking them
# --------------------------------------------------------------------------


def any_lazy(*objs) -> bool:
    """True when any of ``objs`` is a Dask collection (Dask is never imported here)."""
    if "dask" not in sys.modules:
        return False
    from dask.base import is_dask_collection

    return any(is_dask_collection(o) for o in objs)


def _short(chunks) -> str:
    return str(chunks) if len(chunks) <= 6 else f"({', '.join(map(str, chunks[:5]))}, ...)"


def _as_array(a, name: str):
    """One Dask collection as a Dask array of rows (DataFrames by their values)."""
    import dask.array as da

    frame = hasattr(a, "to_dask_array")
    if frame:  # a Dask DataFrame or Series
        a = a.to_dask_array()
    if not isinstance(a, da.Array):
        raise C.InputDTypeError(
            f"{name} must be a Dask Array, DataFrame or Series (or a NumPy array), "
            f"got {type(a).__name__}"
        )
    if frame and any(math.isnan(c) for c in a.chunks[0]):
        # one pass counts the rows of the array's own blocks: to_dask_array(lengths=True)
        # counts the DataFrame's partitions, which Dask may fuse differently (a column
        # selection of a Parquet read: 2 lengths for 3 partitions, then a ValueError)
        a = a.compute_chunk_sizes()
    if a.ndim == 0:
        raise ValueError(f"{name} must have a row axis, got a 0-D Dask array")
    if any(math.isnan(c) for c in a.chunks[0]):
        raise ValueError(
            f"{name} has blocks of unknown size (NaN chunks): npmdn places every row by its "
            f"index, so it needs them; call {name}.compute_chunk_sizes() first (a DataFrame "
            "is converted with to_dask_array().compute_chunk_sizes())"
        )
    for axis in range(1, a.ndim):
        if len(a.chunks[axis]) > 1:
            raise ValueError(
                f"{name} is chunked along axis {axis} (chunks {_short(a.chunks[axis])}); "
                f"npmdn needs whole rows in every block: use {name}.rechunk({{{axis}: -1}})"
            )
    C.check_nonempty(a.shape[0], name)
    return a


def as_rows(arrays, names):
    """Dask (or NumPy) arrays of one set of rows -> Dask arrays with the same row blocks.

    At least one of ``arrays`` must be a Dask collection; NumPy arrays among
    them are split like the first Dask one. Raises a ``ValueError`` naming the
    problem for blocks split along columns, blocks of unknown size, different
    numbers of rows or different row blocks, before any work is done.
    """
    import dask.array as da

    out = [None] * len(arrays)
    lazy = [i for i, a in enumerate(arrays) if any_lazy(a)]
    for i in lazy:
        out[i] = _as_array(arrays[i], names[i])
    first = out[lazy[0]]
    for i, a in enumerate(arrays):
        if out[i] is None:
            a = a if is_device_array(a) else np.asarray(a)
            if a.ndim == 0 or a.shape[0] != first.shape[0]:
                raise ValueError(
                    f"{names[i]} must have the {first.shape[0]} rows of {names[lazy[0]]}, got "
                    f"shape {tuple(a.shape)}"
                )
            out[i] = da.from_array(a, chunks=(first.chunks[0],) + tuple(a.shape[1:]))
        elif out[i].shape[0] != first.shape[0]:
            raise ValueError(
                f"{names[lazy[0]]} and {names[i]} must have the same number of rows, got "
                f"{first.shape[0]} and {out[i].shape[0]}"
            )
        elif out[i].chunks[0] != first.chunks[0]:
            raise ValueError(
                f"{names[lazy[0]]} and {names[i]} are split into different row blocks "
                f"({_short(first.chunks[0])} and {_short(out[i].chunks[0])}); give them the "
                f"same ones, e.g. {names[i]} = {names[i]}.rechunk({{0: "
                f"{names[lazy[0]]}.chunks[0]}})"
            )
    return out


def starts(rows) -> list[int]:
    """The global first row of each block of ``rows`` rows."""
    return [int(s) for s in np.concatenate([[0], np.cumsum(rows)[:-1]])]


# --------------------------------------------------------------------------
# an object as one graph key
# --------------------------------------------------------------------------


class Shipped:
    """An object's class and state, pickled: what travels as one key of a graph.

    The scheduler and the transfers between workers see only bytes;
    :func:`receive` builds the object from them once per process.
    """

    __slots__ = ("token", "data")

    def __init__(self, token: str, data: bytes):
        self.token, self.data = token, data

    def __reduce__(self):
        return (Shipped, (self.token, self.data))


_received: OrderedDict = OrderedDict()  # token -> object, the last few built in this process
_received_lock = threading.Lock()
RECEIVED_KEEP = 4


def ship(obj, state: dict | None = None):
    """A ``dask.delayed`` holding ``obj`` as a :class:`Shipped` (one key; its name is
    a hash of the state, so the same state gives the same key). ``state`` replaces
    ``obj.__getstate__()`` (for instance to choose another backend on the workers)."""
    import dask
    from dask.base import tokenize

    state = obj.__getstate__() if state is None else state
    data = pickle.dumps((type(obj), state), protocol=pickle.HIGHEST_PROTOCOL)
    token = tokenize(data)
    return dask.delayed(Shipped(token, data), pure=True, name=f"npmdn-model-{token}")


def receive(shipped: Shipped):
    """The object of a :class:`Shipped`, built (``__setstate__``) once per process."""
    with _received_lock:
        obj = _received.get(shipped.token)
        if obj is not None:
            _received.move_to_end(shipped.token)
            return obj
        cls, state = pickle.loads(shipped.data)
        obj = cls.__new__(cls)
        obj.__setstate__(state)
        _received[shipped.token] = obj
        while len(_received) > RECEIVED_KEEP:
            _received.popitem(last=False)
        return obj


# --------------------------------------------------------------------------
# one task per row block
# --------------------------------------------------------------------------


def _flatten(obj):
    """The arrays of a result (an array, or nested tuples / NamedTuples of arrays)."""
    if isinstance(obj, tuple):
        return [leaf for part in obj for leaf in _flatten(part)]
    return [obj]


def _rebuild(like, leaves):
    """``like``'s structure with ``leaves`` (an iterator) in place of its arrays."""
    if isinstance(like, tuple):
        parts = [_rebuild(part, leaves) for part in like]
        return type(like)(*parts) if hasattr(like, "_fields") else tuple(parts)
    return next(leaves)


def _leaf(result, i):
    return _flatten(result)[i]


def map_rows(call, arrays, like, *, shipped=None, name: str = "npmdn"):
    """Lazy ``call`` over the row blocks of ``arrays``, one task per block.

    ``call(obj, start, *blocks)`` gets the shipped object (or None), the
    block's global first row and the blocks of ``arrays`` (Dask arrays with the
    same row blocks, from :func:`as_rows`), and returns arrays shaped like
    ``like`` (the result of the same computation on one row), with the
    block's rows first. Returns ``like``'s structure with a Dask array per
    leaf, split along rows as ``arrays`` are. Every leaf of a block comes
    from the block's one task.
    """
    from dask.array.core import Array
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    rows = arrays[0].chunks[0]
    leaves = _flatten(like)
    if not all(getattr(a, "ndim", 0) >= 1 and a.shape[0] == 1 for a in leaves):
        raise TypeError("map_rows needs a function that returns arrays with one row per row")
    single = len(leaves) == 1 and not isinstance(like, tuple)
    token = tokenize(call, shipped, *arrays)
    task = f"{name}-{token}"
    obj = None if shipped is None else shipped.key
    trail = (0,) * (leaves[0].ndim - 1) if single else ()
    layer = {
        (task, i, *trail): (call, obj, s, *[(a.name, i) + (0,) * (a.ndim - 1) for a in arrays])
        for i, s in enumerate(starts(rows))
    }
    deps = list(arrays) + ([] if shipped is None else [shipped])
    graph = HighLevelGraph.from_collections(task, layer, dependencies=deps)

    def lazy(key_name, graph, leaf):
        chunks = (rows,) + tuple((n,) for n in leaf.shape[1:])
        return Array(graph, key_name, chunks, dtype=leaf.dtype)

    if single:
        return lazy(task, graph, leaves[0])
    out = []
    for j, leaf in enumerate(leaves):
        pick = f"{name}-{j}-{token}"
        zeros = (0,) * (leaf.ndim - 1)
        picks = {(pick, i, *zeros): (_leaf, (task, i), j) for i in range(len(rows))}
        g = HighLevelGraph({**graph.layers, pick: picks},
                           {**graph.dependencies, pick: {task}})
        out.append(lazy(pick, g, leaf))
    return _rebuild(like, iter(out))


def block_tasks(call, arrays, *, shipped=None, name: str = "npmdn"):
    """``call(obj, start, *blocks)`` per row block as ``dask.delayed`` objects (for
    reductions, whose blocks give something other than arrays)."""
    from dask.base import tokenize
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph

    token = tokenize(call, shipped, *arrays)
    task = f"{name}-{token}"
    obj = None if shipped is None else shipped.key
    layer = {
        (task, i): (call, obj, s, *[(a.name, i) + (0,) * (a.ndim - 1) for a in arrays])
        for i, s in enumerate(starts(arrays[0].chunks[0]))
    }
    deps = list(arrays) + ([] if shipped is None else [shipped])
    graph = HighLevelGraph.from_collections(task, layer, dependencies=deps)
    return [Delayed(key, graph, layer=task) for key in layer]


def tree_reduce(parts, combine, split_every: int = 8):
    """``combine(*group)`` over groups of ``dask.delayed`` parts until one is left."""
    import dask

    merge = dask.delayed(combine, pure=True)
    while len(parts) > 1:
        parts = [merge(*parts[i : i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]


# --------------------------------------------------------------------------
# functions of raw row arrays
# --------------------------------------------------------------------------


@functools.cache
def _resolve(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _raw_block(path, names, static, offset, _obj, start, *blocks):
    """One block of a :func:`rowwise` function, found by name on the worker."""
    kwargs = dict(static)
    kwargs.update(zip(names, blocks))
    if offset is not None:
        kwargs[offset] = kwargs.get(offset, 0) + start
    return _resolve(path)(**kwargs)


def rowwise(n_rows: int, *, offset: str | None = None, seed: str | None = None):
    """Let a function of raw row arrays take Dask arrays.

    Its first ``n_rows`` parameters are arrays of the same rows. When any is
    a Dask collection, the call returns the same structure of lazy Dask
    arrays, each block computed by the function on that block's rows. The
    function runs once on one row of zeros first, which checks the other
    arguments and gives the results' shapes. ``offset`` names a parameter
    that counts rows globally (``row_offset``): each block adds its first
    row. ``seed`` names a seed parameter whose ``None`` (fresh entropy) is
    drawn once here, not once per block.
    """

    def decorate(fn):
        params = list(inspect.signature(fn).parameters)
        names = params[:n_rows]
        path = f"{fn.__module__}:{fn.__qualname__}"

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not any_lazy(*args, *kwargs.values()):
                return fn(*args, **kwargs)
            bound = inspect.signature(fn).bind(*args, **kwargs)
            given = [n for n in names if n in bound.arguments]
            rows = as_rows([bound.arguments[n] for n in given], given)
            static = {k: v for k, v in bound.arguments.items() if k not in given}
            if seed is not None and static.get(seed) is None:
                static[seed] = C.seed_arg(None)
            one = {n: np.zeros((1,) + r.shape[1:], r.dtype) for n, r in zip(given, rows)}
            like = fn(**one, **static)
            call = functools.partial(_raw_block, path, tuple(given), static, offset)
            return map_rows(call, rows, like, name=f"npmdn-{fn.__name__}")

        return wrapper

    return decorate


# --------------------------------------------------------------------------
# blocks brought here, in order, computed ahead
# --------------------------------------------------------------------------


def _client():
    """The ``distributed`` client that ``dask.compute`` would use now, if any (a
    ``dask.config`` scheduler setting wins over an active client, as in Dask)."""
    if "distributed" not in sys.modules:
        return None
    from dask.base import get_scheduler

    client = getattr(get_scheduler(), "__self__", None)
    return client if hasattr(client, "gather") and hasattr(client, "compute") else None


def iter_blocks(arrays, order=None, ahead: int = 1):
    """Yield ``(start, [blocks])``: the row blocks of ``arrays`` as NumPy arrays.

    Blocks come in ``order`` (block indices; default: first to last) while the
    next ``ahead`` are computed, on the cluster when a ``distributed`` client
    is active (futures) and in a background thread otherwise: this process
    holds the block it yielded and at most ``ahead`` more.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    import dask

    delayed = [a.to_delayed().ravel() for a in arrays]
    first = starts(arrays[0].chunks[0])
    order = iter(range(len(first)) if order is None else [int(i) for i in order])
    client = _client()
    pool = None if client is not None else ThreadPoolExecutor(1, "npmdn-blocks")
    queue = deque()

    def top_up(size):
        while len(queue) < size:
            i = next(order, None)
            if i is None:
                return
            parts = [d[i] for d in delayed]
            queue.append((i, client.compute(parts) if client is not None
                          else pool.submit(dask.compute, *parts)))

    try:
        top_up(1)
        while queue:
            i, pending = queue.popleft()
            blocks = client.gather(pending) if client is not None else pending.result()
            top_up(ahead)
            yield first[i], list(blocks)
    finally:
        for _, pending in queue:
            if client is not None:
                client.cancel(pending)
            else:
                pending.cancel()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------
# column moments in one pass
# --------------------------------------------------------------------------


def _moments(a):
    """``(n, mean, M2)`` of each column of one float64 block (M2: the sum of squared
    deviations from the mean)."""
    a = a.reshape(a.shape[0], -1)
    mean = a.mean(axis=0)
    return a.shape[0], mean, ((a - mean) ** 2).sum(axis=0)


def merge_moments(*parts):
    """Chan, Golub and LeVeque's pairwise update: the ``(n, mean, M2)`` of the union.

    For parts ``a`` and ``b`` with ``delta = mean_b - mean_a``:
    ``mean = mean_a + delta n_b / n`` and ``M2 = M2_a + M2_b + delta^2 n_a n_b / n``,
    which keeps the accuracy of a two-pass variance (no difference of large sums).
    """
    n, mean, m2 = parts[0]
    for nb, mb, m2b in parts[1:]:
        total = n + nb
        delta = mb - mean
        mean = mean + delta * (nb / total)
        m2 = m2 + m2b + delta * delta * (n * nb / total)
        n = total
    return n, mean, m2


def _block_moments(names, _obj, start, *blocks):
    out = []
    for name, b in zip(names, blocks):
        b = np.asarray(b.get() if is_device_array(b) else b, dtype=np.float64)
        if not bool(np.isfinite(b).all()):
            raise ValueError(
                f"{name} must be finite: the block of rows {start}:{start + b.shape[0]} "
                "holds NaN or inf"
            )
        out.append(_moments(b))
    return out


def _merge_block_moments(*parts):
    return [merge_moments(*cols) for cols in zip(*parts)]


def column_moments(arrays, names):
    """``[(mean, std), ...]`` per array: column means and population standard
    deviations of whole Dask arrays, from one pass over their blocks (which also
    checks that every value is finite)."""
    import dask

    parts = block_tasks(functools.partial(_block_moments, tuple(names)), arrays,
                        name="npmdn-moments")
    (merged,) = dask.compute(tree_reduce(parts, _merge_block_moments))
    return [(mean, np.sqrt(m2 / n)) for n, mean, m2 in merged]


class BlockStream:
    """The row blocks of x and y for training: a seeded order per epoch, computed ahead.

    ``x`` and ``y`` are Dask arrays with the same row blocks (:func:`as_rows`).
    """

    def __init__(self, x, y, ahead: int = 1):
        self.x, self.y, self.ahead = x, y, ahead
        self.rows = x.chunks[0]
        self.n = int(sum(self.rows))

    def moments(self):
        """``(x_mean, x_std, y_mean, y_std)`` of the whole data (one pass)."""
        (mx, sx), (my, sy) = column_moments([self.x, self.y], ["x", "y"])
        return mx, sx, my, sy

    def epoch(self, rng):
        """``(start, x_block, y_block)`` for every block, in an order drawn from ``rng``."""
        order = rng.permutation(len(self.rows))
        for start, (xb, yb) in iter_blocks([self.x, self.y], order, self.ahead):
            yield start, xb, yb
