"""The command's files: reading data columns, choosing and writing outputs, CSV text.

Reading: :class:`DataFile` opens CSV (``.tsv`` tab-separated), ``.npz`` or
``.npy`` and parses only the columns asked for; :func:`model_columns`
chooses x (and y) for a saved model. Writing: :class:`Output` is where an
output goes: a named path (replaced), a default name (claimed atomically,
never replacing anything), or standard output. Files are written through
:func:`npmdn._io.atomic_open`, which writes a FIFO or device through and
follows links instead of replacing them.
Every bad input raises :class:`UsageError`, reported as one line, exit 2.
"""

from __future__ import annotations

import csv
import math
import os
import sys

import numpy as np

from .._io import atomic_open, check_writable


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr, exit status 2."""




# --------------------------------------------------------------------------
# output paths
# --------------------------------------------------------------------------


def default_names(path: str):
    """``path``, then ``stem-2.ext``, ``stem-3.ext``, ... without end."""
    yield path
    stem, ext = os.path.splitext(path)
    i = 2
    while True:
        yield f"{stem}-{i}{ext}"
        i += 1


def free_path(path: str) -> str:
    """The first of :func:`default_names` with nothing there now (a default output
    never replaces a file the user did not name; :meth:`Output.write` claims it)."""
    return next(p for p in default_names(path) if not os.path.lexists(p))


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_out(path: str, inputs=(), formats=None) -> str:
    """Refuse an output path that cannot be written or that is one of the inputs,
    before any work is done (see :func:`npmdn._io.resolve` for what is written how)."""
    try:
        target = check_writable(path)
    except OSError as exc:
        raise UsageError(exc.strerror or str(exc)) from None
    for src in inputs:
        if target.kind != "new" and same_file(target.path, src):
            raise UsageError(f"the output {path} is also an input; choose another --out")
    if formats is not None:
        ext = os.path.splitext(path)[1].lower()
        if ext not in formats:
            raise UsageError(
                f"cannot write a figure to {path}: the name must end in one of "
                f"{', '.join(formats)}"
            )
    return path


class Output:
    """Where an output goes: a named path (may be replaced), a default name (never
    replaces anything), or standard output (``path`` None)."""

    def __init__(self, named: str | None, default: str | None, inputs=(), formats=None):
        self.named = named is not None
        self.default = default
        if named is not None:
            self.path = check_out(named, inputs, formats)
        elif default is not None:
            self.path = check_out(free_path(default), inputs, formats)
        else:
            self.path = None  # standard output

    def write(self, write) -> str:
        """Call ``write(path, overwrite)`` to write the output; returns the path written.

        A named output is written with ``overwrite=True``. A default name is
        claimed atomically (``overwrite=False``: ``FileExistsError`` when the
        name was taken meanwhile, e.g. by another run), and the next free name
        is tried until one is ours.
        """
        if self.named:
            write(self.path, True)
            return self.path
        for name in default_names(self.default):
            if os.path.lexists(name):
                continue
            try:
                write(name, False)
            except FileExistsError:
                continue  # taken between our look and our write: the next one
            self.path = name
            return name
        raise AssertionError("unreachable: default_names never ends")


def write_text_atomic(path: str, text: str, overwrite: bool = True) -> None:
    with atomic_open(path, "w", newline="", overwrite=overwrite) as f:
        f.write(text)


def emit(out: Output, text: str, what: str) -> None:
    if out.path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        path = out.write(lambda p, overwrite: write_text_atomic(p, text, overwrite))
        print(f"{what} written to {path}", file=sys.stderr)


# --------------------------------------------------------------------------
# reading data
# --------------------------------------------------------------------------


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


class DataFile:
    """A data file opened for column selection; only the columns asked for are parsed."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.exists(path):
            raise UsageError(f"no data file at {path}")
        if os.path.isdir(path):
            raise UsageError(f"{path} is a directory, not a data file")
        ext = os.path.splitext(path)[1].lower()
        if ext == ".npz":
            self.kind = "npz"
            self._read_npz()
        elif ext == ".npy":
            self.kind = "npy"
            self._read_npy()
        else:
            self.kind = "csv"
            self._read_csv(delimiter="\t" if ext == ".tsv" else ",")

    # -- readers ---------------------------------------------------------

    def _read_csv(self, delimiter):
        try:
            with open(self.path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f, delimiter=delimiter)
                header = next(reader, None)
                rows, lines = [], []
                for row in reader:
                    if not row or all(not c.strip() for c in row):
                        continue  # blank line
                    rows.append(row)
                    lines.append(reader.line_num)
        except UnicodeDecodeError as exc:
            raise UsageError(f"{self.path} is not a UTF-8 text (CSV) file ({exc.reason})") from exc
        except csv.Error as exc:
            raise UsageError(f"{self.path} is not valid CSV: {exc}") from exc
        except OSError as exc:
            raise UsageError(f"cannot read {self.path}: {exc.strerror}") from exc
        if header is None:
            raise UsageError(f"{self.path} is empty: a header row and data rows are needed")
        self.names = [h.strip() for h in header]
        if not rows:
            raise UsageError(f"{self.path} has a header but no data rows")
        for row, line in zip(rows, lines, strict=True):
            if len(row) != len(self.names):
                raise UsageError(
                    f"{self.path} line {line} has {len(row)} fields, but the header has "
                    f"{len(self.names)}"
                )
        self._rows, self._lines = rows, lines
        self.n_rows = len(rows)

    def _read_npz(self):
        try:
            with np.load(self.path, allow_pickle=False) as f:
                self._arrays = {k: f[k] for k in f.files}
        except Exception as exc:  # zip, format and pickle errors all mean "not readable"
            raise UsageError(f"cannot read {self.path} as .npz: {exc}") from exc
        if not self._arrays:
            raise UsageError(f"{self.path} holds no arrays")
        self.names = list(self._arrays)
        self.n_rows = None

    def _read_npy(self):
        try:
            arr = np.load(self.path, allow_pickle=False)
        except Exception as exc:
            raise UsageError(f"cannot read {self.path} as .npy: {exc}") from exc
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise UsageError(f"{self.path} holds an array of shape {arr.shape}; need 1-D or 2-D")
        self._check_dtype(arr, "its array")
        self._matrix = arr
        self.names = [f"c{j}" for j in range(arr.shape[1])]
        self.n_rows = arr.shape[0]

    # -- selection -------------------------------------------------------

    @property
    def n_columns(self) -> int:
        if self.kind == "npz":
            return sum(1 if a.ndim <= 1 else a.shape[1] for a in self._arrays.values())
        return len(self.names)

    def describe(self) -> str:
        what = "arrays" if self.kind == "npz" else "columns"
        return f"{self.path} has {what} {short_list(self.names)}"

    def _check_dtype(self, arr, what):
        if arr.dtype.kind not in "iuf":
            raise UsageError(f"{self.path}: {what} has dtype {arr.dtype}; numbers are needed")

    def index(self, token) -> int:
        """CSV/.npy column: a header name first, else a 0-based index (an int is an index)."""
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

    def _csv_column(self, j: int) -> np.ndarray:
        name = self.names[j]
        out = np.empty(self.n_rows)
        for i, (row, line) in enumerate(zip(self._rows, self._lines, strict=True)):
            cell = row[j].strip()
            try:
                v = float(cell)
            except ValueError:
                what = "an empty cell" if not cell else f"{cell!r} is not a number"
                raise UsageError(f"{self.path} line {line}, column {name!r}: {what}") from None
            if not math.isfinite(v):
                raise UsageError(
                    f"{self.path} line {line}, column {name!r}: {cell!r} is not a finite "
                    f"number (missing values are not supported)"
                )
            out[i] = v
        return out

    def select(self, tokens) -> tuple[np.ndarray, list[str]]:
        """The columns named by ``tokens`` as float64 [N, C], and their names."""
        if self.kind == "npz":
            return self._select_npz(tokens)
        idx = [self.index(t) for t in tokens]
        names = [self.names[j] for j in idx]
        if self.kind == "npy":
            arr = self._matrix[:, idx].astype(np.float64)
            bad = ~np.isfinite(arr)
            if bad.any():
                i, c = np.argwhere(bad)[0]
                raise UsageError(
                    f"{self.path}: row {i}, column {idx[c]} is {arr[i, c]}: values must be finite"
                )
            return arr, names
        return np.stack([self._csv_column(j) for j in idx], axis=1), names

    def _select_npz(self, tokens):
        cols, names, n = [], [], None
        for key in tokens:
            if key not in self._arrays:
                raise UsageError(f"{self.path}: no array {key!r}; {self.describe()}")
            a = self._arrays[key]
            self._check_dtype(a, f"array {key!r}")
            if a.ndim == 1:
                a = a[:, None]
                names.append(key)
            elif a.ndim == 2:
                names.extend(f"{key}{j}" for j in range(a.shape[1]))
            else:
                raise UsageError(
                    f"{self.path}: array {key!r} has shape {a.shape}; need 1-D or 2-D"
                )
            if n is not None and a.shape[0] != n:
                raise UsageError(
                    f"{self.path}: array {key!r} has {a.shape[0]} rows, but {tokens[0]!r} "
                    f"has {n}"
                )
            n = a.shape[0]
            a = a.astype(np.float64)
            bad = ~np.isfinite(a)
            if bad.any():
                i, c = np.argwhere(bad)[0]
                raise UsageError(
                    f"{self.path}: array {key!r} holds {a[i, c]} at row {i}: values must be "
                    f"finite (missing values are not supported)"
                )
            cols.append(a)
        arr = np.concatenate(cols, axis=1)
        if arr.shape[0] == 0:
            raise UsageError(f"{self.path}: the arrays have no rows")
        return arr, names


def model_columns(data: DataFile, model, xspec, yspec, need_y: bool):
    """x (and y) for a saved model: chosen by --x/--y or by the defaults in the module
    docstring; widths checked against the model."""
    d_in, d_out = model.in_dim, model.out_dim
    plural = lambda n, w: f"{n} {w} column" + ("s" if n != 1 else "")  # noqa: E731
    if xspec is None or (need_y and yspec is None):
        if data.kind == "npz":
            if xspec is None:
                xspec = ["x"]
            if need_y and yspec is None:
                yspec = ["y"]
            for key in xspec + (yspec or []):
                if key not in data.names:
                    flags = "--x and --y" if need_y else "--x"
                    raise UsageError(
                        f"{data.path} has no array {key!r}: name the arrays with {flags} "
                        f"({data.describe()})"
                    )
        else:
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
    x, x_names = data.select(xspec)
    if x.shape[1] != d_in:
        raise UsageError(
            f"wrong width for the model: it takes {plural(d_in, 'x')}, but the x selection "
            f"({', '.join(x_names)}) has {x.shape[1]}"
        )
    y = None
    if need_y:
        y, y_names = data.select(yspec)
        if y.shape[1] != d_out:
            raise UsageError(
                f"wrong width for the model: it predicts {plural(d_out, 'y')}, but the y "
                f"selection ({', '.join(y_names)}) has {y.shape[1]}"
            )
        if y.shape[0] != x.shape[0]:
            raise UsageError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    return x, x_names, y


def load_model(path: str, backend):
    from ..model import load

    if not os.path.exists(path):
        raise UsageError(f"no model file at {path}")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory, not a model file")
    return load(path, backend=backend)


# --------------------------------------------------------------------------
# writing CSV
# --------------------------------------------------------------------------


def as_text(col) -> np.ndarray:
    """Shortest text that reads back to the same float (float32 stays short)."""
    return np.asarray(col).astype(str)


def csv_text(names, columns) -> str:
    header = ",".join(csv_cell(n) for n in names)
    cols = [as_text(c) for c in columns]
    body = "\n".join(",".join(r) for r in zip(*cols, strict=True))
    return header + "\n" + body + "\n"


def csv_cell(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text
