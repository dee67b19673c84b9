"""The command's data files: reading columns, and choosing them for a saved model.

:class:`DataFile` opens CSV (``.tsv`` tab-separated), ``.npz`` or ``.npy`` and
parses only the columns asked for; a cell is a number only in plain decimal
form (:func:`parse_number`). :func:`model_columns` chooses x (and y) for a
saved model: those named by ``--x``/``--y``, else the columns the model was
fitted on, found by name, else (a model that does not know them) the
positional defaults. Every bad input raises :class:`~npmdn.cli.files.UsageError`.
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np

from .files import UsageError


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


SEPARATORS = {";": "semicolon", "\t": "tab", "|": "vertical bar", ",": "comma"}


def parse_number(cell: str) -> float | None:
    """A CSV cell as a float, or None when it is not a plain decimal number.

    Python's ``float`` also takes ``1_0`` (as 10) and non-ASCII digits; a data
    file with those is more likely wrong than meant, so they are refused like
    any other text. ``nan`` and ``inf`` parse (and are then refused as not finite).
    """
    try:
        v = float(cell)
    except ValueError:
        return None
    if "_" in cell or not cell.isascii():
        return None
    return v


class DataFile:
    """A data file opened for column selection; only the columns asked for are parsed.

    ``names`` are the column names: a CSV's header, an ``.npz``'s array names;
    an ``.npy`` has none, and its columns are called ``c0``, ``c1``... in
    messages and outputs (a model is never fitted on such names).
    """

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
        self._check_separator(header, rows, delimiter)
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

    def _check_separator(self, header, rows, delimiter):
        """A header of one field holding another separator: the file uses that one."""
        if len(header) != 1:
            return
        for sep, name in SEPARATORS.items():
            if sep == delimiter or sep not in header[0]:
                continue
            if rows and rows[0] and sep not in rows[0][0]:
                continue
            want = "tab" if delimiter == "\t" else "comma"
            raise UsageError(
                f"{self.path} looks {name}-separated (its header {header[0]!r} is one "
                f"{want}-separated column); npmdn reads {want}-separated files "
                f"({'.tsv' if delimiter == chr(9) else '.csv'}): convert it, or name it "
                f"{'.tsv' if sep == chr(9) else 'with commas'}"
            )

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
        if self.kind == "npy":
            return f"{self.path} has {len(self.names)} unnamed columns"
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

    def find(self, names, what: str, flag: str) -> list:
        """The columns of the model's ``names`` here, as tokens for :meth:`select`;
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
            if self.kind == "csv":
                ok = self.names.count(name) == 1
                tokens.append(self.names.index(name) if ok else None)
            else:
                tokens.append(self._npz_column(name))
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
        a = self._arrays.get(name)
        if a is not None and (a.ndim == 1 or a.ndim == 2 and a.shape[1] == 1):
            return name
        for key, a in self._arrays.items():
            if a.ndim == 2 and name.startswith(key) and name[len(key):].isdigit():
                j = int(name[len(key):])
                if j < a.shape[1] and f"{key}{j}" == name:
                    return (key, j)
        return None

    def _csv_column(self, j: int) -> np.ndarray:
        name = self.names[j]
        out = np.empty(self.n_rows)
        for i, (row, line) in enumerate(zip(self._rows, self._lines, strict=True)):
            cell = row[j].strip()
            v = parse_number(cell)
            if v is None:
                what = "an empty cell" if not cell else f"{cell!r} is not a number"
                raise UsageError(f"{self.path} line {line}, column {name!r}: {what}")
            if not math.isfinite(v):
                raise UsageError(
                    f"{self.path} line {line}, column {name!r}: {cell!r} is not a finite "
                    f"number (missing values are not supported)"
                )
            out[i] = v
        return out

    def select(self, tokens):
        """``(values, names, source)``: the columns named by ``tokens`` as float64
        [N, C], their names, and each column as stored (float32 stays float32, so
        that it is written back as it was read)."""
        if self.kind == "npz":
            return self._select_npz(tokens)
        idx = [self.index(t) for t in tokens]
        names = [self.names[j] for j in idx]
        if self.kind == "npy":
            raw = self._matrix[:, idx]
            arr = raw.astype(np.float64)
            self._check_finite(arr, lambda i, c: f"row {i}, column {idx[c]} is {raw[i, c]}")
            return arr, names, list(raw.T)
        arr = np.stack([self._csv_column(j) for j in idx], axis=1)
        return arr, names, list(arr.T)

    def _check_finite(self, arr, where):
        bad = ~np.isfinite(arr)
        if bad.any():
            i, c = np.argwhere(bad)[0]
            raise UsageError(f"{self.path}: {where(i, c)}: values must be finite (missing "
                             "values are not supported)")

    def _select_npz(self, tokens):
        cols, names, n = [], [], None
        for token in tokens:
            key, j = token if isinstance(token, tuple) else (token, None)
            if key not in self._arrays:
                raise UsageError(f"{self.path}: no array {key!r}; {self.describe()}")
            a = self._arrays[key]
            self._check_dtype(a, f"array {key!r}")
            if a.ndim == 1:
                a = a[:, None]
                names.append(key)
            elif a.ndim == 2 and j is not None:
                a = a[:, j : j + 1]
                names.append(f"{key}{j}")
            elif a.ndim == 2:
                names.extend(f"{key}{i}" for i in range(a.shape[1]))
            else:
                raise UsageError(
                    f"{self.path}: array {key!r} has shape {a.shape}; need 1-D or 2-D"
                )
            if n is not None and a.shape[0] != n:
                raise UsageError(
                    f"{self.path}: array {key!r} has {a.shape[0]} rows, but the first "
                    f"array chosen has {n}"
                )
            n = a.shape[0]
            self._check_finite(a.astype(np.float64),
                               lambda i, c, key=key, a=a: f"array {key!r} holds {a[i, c]} at "
                               f"row {i}")
            cols.append(a)
        raw = np.concatenate(cols, axis=1) if len({c.dtype for c in cols}) == 1 else \
            np.concatenate([c.astype(np.float64) for c in cols], axis=1)
        if raw.shape[0] == 0:
            raise UsageError(f"{self.path}: the arrays have no rows")
        return raw.astype(np.float64), names, list(raw.T)


def model_columns(data: DataFile, model, xspec, yspec, need_y: bool):
    """``(x, x_names, x_source, y)`` for a saved model: the columns chosen by
    --x/--y, else those the model was fitted on (by name), else the defaults of
    the module docstring; widths checked against the model."""
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
    x, xn, x_source = data.select(xspec)
    if x.shape[1] != d_in:
        raise UsageError(
            f"wrong width for the model: it takes {plural(d_in, 'x')}, but the x selection "
            f"({', '.join(xn)}) has {x.shape[1]}"
        )
    y = None
    if need_y:
        y, yn, _ = data.select(yspec)
        if y.shape[1] != d_out:
            raise UsageError(
                f"wrong width for the model: it predicts {plural(d_out, 'y')}, but the y "
                f"selection ({', '.join(yn)}) has {y.shape[1]}"
            )
        if y.shape[0] != x.shape[0]:
            raise UsageError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    return x, xn, x_source, y


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
