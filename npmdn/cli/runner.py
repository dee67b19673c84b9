"""A saved model on a data file's rows, a chunk at a time: here, or on a Dask cluster.

:class:`Runner` gives ``predict`` and ``sample`` the model's mixture for each
chunk of rows, in order (:meth:`Runner.mixtures`), and ``score`` the scores of
all rows (:meth:`Runner.score`), in memory bounded by a few chunks whatever
the file's size:

* CSV, ``.npy`` and ``.npz`` are read here (:meth:`DataFile.chunks`), in chunks
  of ``config.INFERENCE_CHUNK`` rows rounded to whole network passes, so that
  every row goes through the same matrix products as in the whole file and
  the results equal the in-memory ones bit for bit. Without a scheduler the
  model runs here. With one, each chunk is sent to the cluster and computed
  there by the same in-memory method, several chunks in flight, results
  taken in order; the workers need not see the file.
* Parquet is read through Dask (:meth:`DataFile.lazy`): by the cluster's
  workers with a scheduler (the path must be readable there), by Dask's
  threads without one. The model runs on each partition through
  :mod:`npmdn.dask` (padded to network passes: the same numbers), and the
  results come here a partition at a time, in order
  (:func:`npmdn.dask.iter_blocks`).

``score`` adds up chunks with :class:`npmdn.metrics.ScoreSums`: ``nll``,
``crps`` and the coverages equal :meth:`npmdn.MDN.score`'s up to the order of
the sums, ``pit_ks`` within ``1 / (2 PIT_BINS)``; a file of one chunk read
here without a scheduler is scored by :meth:`npmdn.MDN.score` itself.
"""

from __future__ import annotations

import itertools
from collections import deque

from .. import config, metrics
from .files import UsageError


def connect(address: str):
    """A ``distributed.Client`` of the scheduler at ``address``, the default for Dask."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError('--scheduler needs npmdn[dask] (pip install "npmdn[dask]")') from None
    try:
        return Client(address, set_as_default=True)
    except Exception as exc:  # a bad address, a refused or timed-out connection
        raise UsageError(f"cannot connect to the Dask scheduler at {address}: "
                         f"{' '.join(str(exc).split()) or type(exc).__name__}") from exc


def _mixture_raw(model, x):
    """A chunk's mixture on a worker (a function of this module: workers import it)."""
    return model.mixture_raw(x)


def _score_sums(model, x, y, levels):
    """A chunk's :class:`npmdn.metrics.ScoreSums` on a worker."""
    return metrics.ScoreSums(levels).add(*model._score_rows(x, y))


class Runner:
    """The model ``model`` on the rows of ``data`` (a :class:`~npmdn.cli.data.DataFile`),
    on the Dask scheduler at ``scheduler`` if given; a context manager that closes
    its connection (never the cluster)."""

    def __init__(self, model, data, scheduler: str | None = None):
        self.model, self.data = model, data
        self.client = connect(scheduler) if scheduler else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        return False

    def rows_per_chunk(self) -> int:
        """``config.INFERENCE_CHUNK`` rounded down to whole network passes (at least one),
        so that every chunk starts on a pass of the whole file."""
        step = self.model._network_pass()
        return max(step, config.INFERENCE_CHUNK // step * step)

    # -- the mixture of every row, in order ------------------------------

    def mixtures(self, xcols):
        """Yield ``(start, source, raw)`` for consecutive rows from the first: x as stored
        [n, C] and ``raw = model.mixture_raw(x)``, at most :meth:`rows_per_chunk` rows
        at a time."""
        if self.data.kind == "parquet":
            yield from self._lazy_mixtures(xcols)
        elif self.client is None:
            for start, [(x, source)] in self.data.chunks([xcols], self.rows_per_chunk()):
                yield start, source, self.model.mixture_raw(x)
        else:
            for start, [(_, source)], raw in self._on_cluster([xcols], _mixture_raw):
                yield start, source, raw

    def _lazy_mixtures(self, xcols):
        from ..dask import iter_blocks

        [(x, source)] = self.data.lazy([xcols])
        raw = self.model.mixture_raw(x)  # lazy, one task per partition
        rows = self.rows_per_chunk()
        for start, (src, *parts) in iter_blocks(source, *raw):
            for a in range(0, src.shape[0], rows):  # a partition in pieces of a chunk
                yield start + a, src[a : a + rows], tuple(p[a : a + rows] for p in parts)

    def _on_cluster(self, groups, task, *args):
        """Yield ``(start, chunk, task(model, *values, *args))`` per chunk of
        :meth:`DataFile.chunks`, the task run on the cluster; chunks are read here
        while the workers compute, one per worker thread (at least two) in flight."""
        client = self.client
        model = client.scatter(self.model, broadcast=True)  # sent once, built once per worker
        ahead = max(2, sum(client.nthreads().values()))
        pending = deque()
        try:
            for start, chunk in self.data.chunks(groups, self.rows_per_chunk()):
                values = client.scatter([v for v, _ in chunk])
                pending.append((start, chunk, client.submit(task, model, *values, *args,
                                                            pure=False)))
                if len(pending) >= ahead:
                    start, chunk, result = pending.popleft()
                    yield start, chunk, result.result()
            while pending:
                start, chunk, result = pending.popleft()
                yield start, chunk, result.result()
        finally:
            for _, _, result in pending:
                result.cancel()

    # -- scores of all rows ----------------------------------------------

    def score(self, xcols, ycols, levels=metrics.DEFAULT_LEVELS):
        """``(rows, scores)``: the number of rows and :meth:`npmdn.MDN.score`'s dict."""
        model, data = self.model, self.data
        if data.kind == "parquet":
            [(x, _), (y, _)] = data.lazy([xcols, ycols])
            return x.shape[0], model.score(x, y, levels)
        sums = metrics.ScoreSums(levels)
        if self.client is not None:
            for _, _, part in self._on_cluster([xcols, ycols], _score_sums, levels):
                sums.merge(part)
            return sums.rows, sums.result()
        chunks = data.chunks([xcols, ycols], self.rows_per_chunk())
        first = next(chunks)
        second = next(chunks, None)
        if second is None:  # the whole file in one chunk: exactly MDN.score
            [(x, _), (y, _)] = first[1]
            return x.shape[0], model.score(x, y, levels)
        for _, [(x, _), (y, _)] in itertools.chain([first, second], chunks):
            sums.add(*model._score_rows(x, y))
        return sums.rows, sums.result()
