"""The command's data files: choosing columns, then reading them whole or in chunks.

:class:`DataFile` opens CSV (``.tsv`` tab-separated), ``.npz``, ``.npy`` or
Parquet (``.parquet``/``.pq``, a file or a folder of files; needs Dask) and
reads only headers. :meth:`DataFile.columns` turns a column list into
:class:`Columns` (names, width, rows where the header says) without reading a
row; then :meth:`DataFile.chunks` reads the chosen columns chunk by chunk
(CSV, ``.npy``, ``.npz``: memory bounded by a chunk, see
:mod:`npmdn.cli.readers`), :meth:`DataFile.lazy` gives them as Dask arrays
(Parquet) and :meth:`DataFile.select` reads them whole. A cell is a number
only in plain decimal form (:func:`~npmdn.cli.readers.parse_number`).
:func:`model_selection` chooses x (and y) for a saved model: those named by
``--x``/``--y``, else the columns the model was fitted on, found by name,
else (a model that does not know them) the positional defaults. Every bad
input raises :class:`~npmdn.cli.files.UsageError`; a bad value found in a
later chunk too, when that chunk is read.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from .. import config
from .files import UsageError
from .readers import CsvFile, npy_array, npz_members, parquet_frame

PARQUET = (".parquet", ".pq")


def short_list(names, limit=12) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def spec(text: str | None):
    """``"a,b, 3"`` -> ``["a", "b", "3"]``; None stays None."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise UsageError(f"empty entry in the column list {text!r}")
    return items


class Columns:
    """Columns chosen in a data file, before any row is read.

    ``names`` one per column; ``refs`` how the file finds them (CSV, ``.npy``,
    Parquet: 0-based positions; ``.npz``: ``(array, column or None)``, one per
    array chosen); ``n_rows`` where the header says (``.npy``, ``.npz``), else
    None; ``dtype`` the dtype the columns are written back in (their stored
    one where they share it, else float64).
    """

    def __init__(self, names, refs, n_rows=None, dtype=np.float64):
        self.names, self.refs, self.n_rows = list(names), list(refs), n_rows
        self.dtype = np.dtype(dtype)

    @property
    def width(self) -> int:
        return len(self.names)


def _common(dtypes):
    dtypes = set(dtypes)
    return dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float64)


class DataFile:
    """A data file opened for column selection; only the columns asked for are parsed.

    ``names`` are the column names: a CSV's header, an ``.npz``'s array names,
    a Parquet file's columns; an ``.npy`` has none, and its columns are called
    ``c0``, ``c1``... in messages and outputs (a model is never fitted on
    such names).
    """

    def __init__(self, path: str):
        self.path = path
        ext = os.path.splitext(path.rstrip("/" + os.sep))[1].lower()
        local = "://" not in path
        if local and not os.path.exists(path):
            raise UsageError(f"no data file at {path}")
        if ext in PARQUET:  # a file, or a folder of them (as Dask writes it)
            self.kind = "parquet"
            self._frame = parquet_frame(path)
            self._labels = list(self._frame.columns)
            self.names = [str(c) for c in self._labels]
            return
        if os.path.isdir(path):
            raise UsageError(f"{path} is a directory, not a data file")
        if ext == ".npz":
            self.kind = "npz"
            self._members = npz_members(path)
            if not self._members:
                raise UsageError(f"{path} holds no arrays")
            self.names = list(self._members)
        elif ext == ".npy":
            self.kind = "npy"
            self._array = arr = npy_array(path)
            if arr.ndim not in (1, 2):
                raise UsageError(f"{path} holds an array of shape {arr.shape}; need 1-D or 2-D")
            self._check_dtype(arr.dtype, "its array")
            self.names = [f"c{j}" for j in range(arr.n_cols)]
        else:
            self.kind = "csv"
            self._csv = CsvFile(path, delimiter="\t" if ext == ".tsv" else ",")
            self.names = self._csv.names

    # -- finding columns -------------------------------------------------

    @property
    def n_columns(self) -> int:
        if self.kind == "npz":
            return sum(a.n_cols if a.ndim == 2 else 1 for a in self._members.values())
        return len(self.names)

    def describe(self) -> str:
        if self.kind == "npy":
            return f"{self.path} has {len(self.names)} unnamed columns"
        what = "arrays" if self.kind == "npz" else "columns"
        return f"{self.path} has {what} {short_list(self.names)}"

    def _check_dtype(self, dtype, what):
        if dtype.kind not in "iuf":
            raise UsageError(f"{self.path}: {what} has dtype {dtype}; numbers are needed")

    def index(self, token) -> int:
        """CSV/.npy/Parquet column: a header name first, else a 0-based index (an int
        is an index)."""
        if isinstance(token, int):
            return token  # positions chosen by npmdn itself, always in range
        if token in self.names:
            if self.names.count(token) > 1:
                raise UsageError(
                    f"{self.path}: the column name {token!r} appears more than once in the "
                    f"header; choose the column by its 0-based index"
                )
            return self.names.index(token)
        try:
            j = int(token)
        except ValueError:
            raise UsageError(f"{self.path}: unknown column {token!r}; {self.describe()}") from None
        if not 0 <= j < len(self.names):
            raise UsageError(
                f"{self.path}: column index {j} is out of range: the file has "
                f"{len(self.names)} columns, numbered from 0"
            )
        return j

    def find(self, names, what: str, flag: str) -> list:
        """The columns of the model's ``names`` here, as tokens for :meth:`columns`;
        a file without them is refused with a message naming them."""
        listed = f"{what} column{'s' if len(names) > 1 else ''} " + \
            ", ".join(map(repr, names))
        if self.kind == "npy":
            raise UsageError(
                f"the model was fitted on the {listed}, and {self.path} has no column "
                f"names: choose its columns with {flag}"
            )
        tokens, missing = [], []
        for name in names:
            if self.kind == "npz":
                tokens.append(self._npz_column(name))
            else:
                ok = self.names.count(name) == 1
                tokens.append(self.names.index(name) if ok else None)
            if tokens[-1] is None:
                missing.append(name)
        if missing:
            raise UsageError(
                f"the model was fitted on the {listed}; {self.path} lacks "
                f"{', '.join(map(repr, missing))} ({self.describe()}): choose the columns "
                f"with {flag}"
            )
        return tokens

    def _npz_column(self, name):
        """A model's column name in an .npz: an array, or column j of a 2-D array
        ``key`` (named ``key{j}`` when it was fitted)."""
        a = self._members.get(name)
        if a is not None and (a.ndim == 1 or a.ndim == 2 and a.n_cols == 1):
            return name
        for key, a in self._members.items():
            if a.ndim == 2 and name.startswith(key) and name[len(key):].isdigit():
                j = int(name[len(key):])
                if j < a.n_cols and f"{key}{j}" == name:
                    return (key, j)
        return None

    def columns(self, tokens) -> Columns:
        """The :class:`Columns` named by ``tokens``, checked (names, dtypes, shapes,
        row counts) without reading a row."""
        if self.kind == "npz":
            return self._npz_columns(tokens)
        idx = [self.index(t) for t in tokens]
        names = [self.names[j] for j in idx]
        if self.kind == "npy":
            if self._array.n_rows == 0:
                raise UsageError(f"{self.path}: the array has no rows")
            return Columns(names, idx, self._array.n_rows, self._array.dtype)
        if self.kind == "parquet":
            dtypes = [self._frame.dtypes.iloc[j] for j in idx]
            for name, dtype in zip(names, dtypes):
                if not _numeric(dtype):
                    raise UsageError(f"{self.path}: column {name!r} has dtype {dtype}; "
                                     "numbers are needed")
            plain = [d for d in dtypes if isinstance(d, np.dtype)]
            return Columns(names, idx, None, _common(plain) if len(plain) == len(dtypes)
                           else np.float64)
        return Columns(names, idx)

    def _npz_columns(self, tokens) -> Columns:
        refs, names, dtypes, n = [], [], [], None
        for token in tokens:
            key, j = token if isinstance(token, tuple) else (token, None)
            if key not in self._members:
                raise UsageError(f"{self.path}: no array {key!r}; {self.describe()}")
            a = self._members[key]
            self._check_dtype(a.dtype, f"array {key!r}")
            if a.ndim == 1:
                names.append(key)
            elif a.ndim == 2 and j is not None:
                names.append(f"{key}{j}")
            elif a.ndim == 2:
                names.extend(f"{key}{i}" for i in range(a.n_cols))
            else:
                raise UsageError(
                    f"{self.path}: array {key!r} has shape {a.shape}; need 1-D or 2-D"
                )
            if n is not None and a.n_rows != n:
                raise UsageError(
                    f"{self.path}: array {key!r} has {a.n_rows} rows, but the first "
                    f"array chosen has {n}"
                )
            n = a.n_rows
            refs.append((key, j))
            dtypes.append(a.dtype)
        if n == 0:
            raise UsageError(f"{self.path}: the arrays have no rows")
        return Columns(names, refs, n, _common(dtypes))

    # -- reading ---------------------------------------------------------

    def chunks(self, groups, rows: int):
        """Yield ``(start, [(values, source), ...])`` for ``rows`` rows at a time
        (the last chunk may be shorter): per :class:`Columns` of ``groups``, float64
        values [n, width] and the columns as stored (float32 stays float32, so that
        it is written back as it was read). Values are checked finite; a bad cell
        or value raises :class:`UsageError` when its chunk is read."""
        if self.kind == "csv":
            cols = [j for g in groups for j in g.refs]
            for start, block in self._csv.chunks(cols, rows):
                out, k = [], 0
                for g in groups:
                    part = block[:, k : k + g.width]
                    out.append((part, part))
                    k += g.width
                yield start, out
        elif self.kind == "parquet":  # Dask's partitions, in order
            from ..dask import iter_blocks

            arrays = [a for pair in self.lazy(groups) for a in pair]
            for start, blocks in iter_blocks(*arrays):
                yield start, list(zip(blocks[::2], blocks[1::2]))
        else:
            yield from self._array_chunks(groups, rows)

    def _array_chunks(self, groups, rows):
        """:meth:`chunks` of an .npy or .npz: each array's rows read once per chunk."""
        members = {"": self._array} if self.kind == "npy" else self._members
        keys = [""] if self.kind == "npy" else list(dict.fromkeys(
            key for g in groups for key, _ in g.refs))
        n = groups[0].n_rows
        with contextlib.ExitStack() as stack:
            read = {k: stack.enter_context(members[k].reading()) for k in keys}
            for a in range(0, n, rows):
                b = min(n, a + rows)
                blocks = {k: read[k](a, b) for k in keys}
                if self.kind == "npy":
                    yield a, [self._npy_part(blocks[""], g, a) for g in groups]
                else:
                    yield a, [self._npz_part(blocks, g, a) for g in groups]

    def _npy_part(self, block, g, start):
        raw = block[:, g.refs]
        values = raw.astype(np.float64)
        self._check_finite(values, start,
                           lambda i, c: f"row {start + i}, column {g.refs[c]} is {raw[i, c]}")
        return values, raw

    def _npz_part(self, blocks, g, start):
        cols = []
        for key, j in g.refs:
            a = blocks[key] if j is None else blocks[key][:, j : j + 1]
            self._check_finite(a.astype(np.float64), start,
                               lambda i, c, key=key, a=a: f"array {key!r} holds {a[i, c]} at "
                               f"row {start + i}")
            cols.append(a)
        raw = np.concatenate([c.astype(g.dtype, copy=False) for c in cols], axis=1)
        return raw.astype(np.float64), raw

    def _check_finite(self, arr, start, where):
        bad = ~np.isfinite(arr)
        if bad.any():
            i, c = np.argwhere(bad)[0]
            raise UsageError(f"{self.path}: {where(i, c)}: values must be finite (missing "
                             "values are not supported)")

    def read(self, groups) -> list:
        """``[(values, source), ...]`` per :class:`Columns` of ``groups``, whole."""
        parts = [[] for _ in groups]
        for _, chunk in self.chunks(groups, config.INFERENCE_CHUNK):
            for got, pair in zip(parts, chunk):
                got.append(pair)
        return [tuple(np.concatenate(arrays) for arrays in zip(*got)) for got in parts]

    def select(self, tokens):
        """``(values, names, source)``: the columns named by ``tokens`` as float64
        [N, C], their names, and each column as stored."""
        cols = self.columns(tokens)
        ((values, source),) = self.read([cols])
        return values, cols.names, list(source.T)

    def lazy(self, groups) -> list:
        """``[(values, source), ...]`` per :class:`Columns` of ``groups``, as Dask
        arrays with the same row blocks (a Parquet file's partitions). Counting the
        rows of each partition reads the chosen columns once; values are checked
        finite block by block as they are computed."""
        import dask.array as da

        from ..dask import as_rows

        if self.kind != "parquet":
            raise AssertionError("lazy reads Parquet; the other formats are read in chunks")
        picked = list(dict.fromkeys(j for g in groups for j in g.refs))
        frame = self._frame[[self._labels[j] for j in picked]]
        wide = {self._labels[j]: "float64" for j in picked
                if not isinstance(frame.dtypes.iloc[picked.index(j)], np.dtype)}
        if wide:  # pandas' nullable numbers: missing values become NaN, then refused
            frame = frame.astype(wide)
        arr = as_rows(frame, self.path)
        if arr.shape[0] == 0:
            raise UsageError(f"{self.path} has no rows")
        out = []
        for g in groups:
            part = arr[:, [picked.index(j) for j in g.refs]].rechunk({1: -1})  # whole rows
            values = da.map_blocks(_finite_block, part.astype(np.float64), self.path,
                                   tuple(g.names), dtype=np.float64)
            out.append((values, part.astype(g.dtype)))
        return out


def _numeric(dtype) -> bool:
    """A pandas column dtype holding numbers (NumPy's, or pandas' nullable ones)."""
    if isinstance(dtype, np.dtype):
        return dtype.kind in "iuf"
    return getattr(dtype, "kind", "") in "iuf" and getattr(dtype, "_is_numeric", False)


def _finite_block(block, path, names, block_info=None):
    """A Dask block of values, or a ValueError naming its first value that is not finite."""
    bad = ~np.isfinite(block)
    if bad.any():
        i, c = np.argwhere(bad)[0]
        start = block_info[0]["array-location"][0][0] if block_info else 0
        raise ValueError(f"{path}: row {start + i}, column {names[c]!r} is {block[i, c]}: "
                         "values must be finite (missing values are not supported)")
    return block


def model_selection(data: DataFile, model, xspec, yspec, need_y: bool):
    """``(x_columns, y_columns or None)`` for a saved model: the columns chosen by
    --x/--y, else those the model was fitted on (by name), else the defaults of
    the module docstring; widths (and, where known, row counts) checked against
    the model before any row is read."""
    d_in, d_out = model.in_dim, model.out_dim
    plural = lambda n, w: f"{n} {w} column" + ("s" if n != 1 else "")  # noqa: E731
    x_names = getattr(model, "x_names", None)
    y_names = getattr(model, "y_names", None) if need_y else None
    if xspec is None and x_names is not None:
        xspec = data.find(x_names, "x", "--x")
    if need_y and yspec is None and y_names is not None:
        yspec = data.find(y_names, "y", "--y")
    if xspec is None or (need_y and yspec is None):
        xspec, yspec = _unnamed_defaults(data, model, xspec, yspec, need_y, plural)
    xc = data.columns(xspec)
    if xc.width != d_in:
        raise UsageError(
            f"wrong width for the model: it takes {plural(d_in, 'x')}, but the x selection "
            f"({', '.join(xc.names)}) has {xc.width}"
        )
    yc = None
    if need_y:
        yc = data.columns(yspec)
        if yc.width != d_out:
            raise UsageError(
                f"wrong width for the model: it predicts {plural(d_out, 'y')}, but the y "
                f"selection ({', '.join(yc.names)}) has {yc.width}"
            )
        if yc.n_rows != xc.n_rows:
            raise UsageError(f"x has {xc.n_rows} rows but y has {yc.n_rows}")
    return xc, yc


def model_columns(data: DataFile, model, xspec, yspec, need_y: bool):
    """``(x, x_names, x_source, y)`` of :func:`model_selection`, read whole."""
    xc, yc = model_selection(data, model, xspec, yspec, need_y)
    parts = data.read([xc] + ([yc] if need_y else []))
    (x, x_source), y = parts[0], parts[1][0] if need_y else None
    return x, xc.names, list(x_source.T), y


def _unnamed_defaults(data, model, xspec, yspec, need_y, plural):
    """For a model that does not know its columns: an .npz's arrays x and y, or a
    CSV/.npy whose free columns are exactly x (then y)."""
    d_in, d_out = model.in_dim, model.out_dim
    if data.kind == "npz":
        if xspec is None:
            xspec = ["x"]
        if need_y and yspec is None:
            yspec = ["y"]
        for key in xspec + (yspec or []):
            if not isinstance(key, (int, tuple)) and key not in data.names:
                flags = "--x and --y" if need_y else "--x"
                raise UsageError(
                    f"{data.path} has no array {key!r}: name the arrays with {flags} "
                    f"({data.describe()})"
                )
        return xspec, yspec
    taken = set()
    for spec in (xspec, yspec):
        if spec is not None:
            taken.update(data.index(t) for t in spec)
    free = [j for j in range(data.n_columns) if j not in taken]  # positions, not names
    want = (d_in if xspec is None else 0) + (d_out if need_y and yspec is None else 0)
    ok = len(free) == want or (not need_y and xspec is None and len(free) == d_in + d_out)
    if not ok:
        need = plural(d_in, "x") + (f" and {plural(d_out, 'y')}" if need_y else "")
        raise UsageError(
            f"the model needs {need}, and {data.describe()}: say which with "
            f"--x{' and --y' if need_y else ''}"
        )
    if xspec is None:
        xspec, free = free[:d_in], free[d_in:]
    if need_y and yspec is None:
        yspec = free[:d_out]
    return xspec, yspec


def load_model(path: str, backend):
    from ..model import load

    if not os.path.exists(path):
        raise UsageError(f"no model file at {path}")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory, not a model file")
    return load(path, backend=backend)
