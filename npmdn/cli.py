"""The ``npmdn`` command (also ``python -m npmdn``).

Subcommands
-----------
``demo``     train on a seed problem, print held-out NLL, draw the figure
``fit``      train on your data (CSV, ``.npz``, ``.npy``) and save the model
``predict``  conditional mean and standard deviation (and the mixture) as CSV
``sample``   draws from p(y | x) as CSV
``score``    held-out NLL and every other metric ``MDN.score`` returns
``plot``     the demo's figure for a saved model with 1-D x and y

Data files
----------
* CSV with a header row (``.tsv``: tab-separated). ``--x``/``--y`` take a
  comma-separated list of columns; each entry is a header name or, when no
  column has that name, a 0-based column index. Only the chosen columns are
  parsed, so other columns may hold text.
* ``.npz``: ``--x``/``--y`` name arrays (1-D: one column; 2-D: all columns).
* ``.npy``: one 1-D or 2-D array; columns by 0-based index.

``fit`` needs ``--x`` and ``--y``. The other subcommands take the model's
widths from the model: without ``--x``/``--y`` an ``.npz`` uses its arrays
``x`` and ``y``, and a CSV or ``.npy`` file must hold exactly the x columns
(or, where y is not needed, x then y columns) in that order.

Outputs
-------
A file you name with ``--out`` is replaced if it exists (written to a
temporary file first and renamed, so a failed run leaves it as it was); it
may not be one of the inputs. A default name (``model.npz``, the figure of
``demo`` and ``plot``) never replaces anything: the first free name
``stem-2.ext``, ``stem-3.ext``, ... is used. ``predict`` and ``sample``
write to standard output unless given ``--out``.

Exit status: 0 success; 2 bad input (one line on stderr, nothing written);
1 training diverged (NaN loss); 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys

import numpy as np

from . import mixture
from ._io import atomic_open

PROBLEMS = ("sinusoid", "inverted", "heteroscedastic", "spiral")
BACKENDS = ("numpy", "numba", "cupy")
FIGURE_FORMATS = (".png", ".svg", ".pdf")


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other bad input."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


# --------------------------------------------------------------------------
# output paths
# --------------------------------------------------------------------------


def _free_path(path: str) -> str:
    """``path`` if nothing is there, else the first free ``stem-2.ext``, ``stem-3.ext``...
    so that a default output never overwrites a file the user did not name."""
    if not os.path.lexists(path):
        return path
    stem, ext = os.path.splitext(path)
    i = 2
    while os.path.lexists(f"{stem}-{i}{ext}"):
        i += 1
    return f"{stem}-{i}{ext}"


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _check_out(path: str, inputs=(), formats=None) -> str:
    """Refuse an output path that cannot be written or that is one of the inputs,
    before any work is done."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"cannot write {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"cannot write {path}: it is a directory")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"cannot write {path}: directory {directory} is not writable")
    for src in inputs:
        if os.path.exists(path) and _same_file(path, src):
            raise UsageError(f"the output {path} is also an input; choose another --out")
    if formats is not None:
        ext = os.path.splitext(path)[1].lower()
        if ext not in formats:
            raise UsageError(
                f"cannot write a figure to {path}: the name must end in one of "
                f"{', '.join(formats)}"
            )
    return path


class _Output:
    """Where an output goes: a named path (may be replaced), a default name (never
    replaces: re-checked just before writing), or standard output."""

    def __init__(self, named: str | None, default: str | None, inputs=(), formats=None):
        self.named = named is not None
        if named is not None:
            self.path = _check_out(named, inputs, formats)
        elif default is not None:
            self.path = _check_out(_free_path(default), inputs, formats)
        else:
            self.path = None  # standard output

    def final_path(self) -> str:
        if not self.named and os.path.lexists(self.path):
            self.path = _free_path(self.path)  # taken while we worked: pick again
        return self.path


def _write_text_atomic(path: str, text: str) -> None:
    with atomic_open(path, "w", newline="") as f:
        f.write(text)


def _emit(out: _Output, text: str, what: str) -> None:
    if out.path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        path = out.final_path()
        _write_text_atomic(path, text)
        print(f"{what} written to {path}", file=sys.stderr)


# --------------------------------------------------------------------------
# reading data
# --------------------------------------------------------------------------


def _short_list(names, limit=12) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _spec(text: str | None):
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
        return f"{self.path} has {what} {_short_list(self.names)}"

    def _check_dtype(self, arr, what):
        if arr.dtype.kind not in "iuf":
            raise UsageError(f"{self.path}: {what} has dtype {arr.dtype}; numbers are needed")

    def _index(self, token) -> int:
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
        idx = [self._index(t) for t in tokens]
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


def _model_columns(data: DataFile, model, x_spec, y_spec, need_y: bool):
    """x (and y) for a saved model: chosen by --x/--y or by the defaults in the module
    docstring; widths checked against the model."""
    d_in, d_out = model.in_dim, model.out_dim
    plural = lambda n, w: f"{n} {w} column" + ("s" if n != 1 else "")  # noqa: E731
    if x_spec is None or (need_y and y_spec is None):
        if data.kind == "npz":
            if x_spec is None:
                x_spec = ["x"]
            if need_y and y_spec is None:
                y_spec = ["y"]
            for key in x_spec + (y_spec or []):
                if key not in data.names:
                    flags = "--x and --y" if need_y else "--x"
                    raise UsageError(
                        f"{data.path} has no array {key!r}: name the arrays with {flags} "
                        f"({data.describe()})"
                    )
        else:
            taken = set()
            for spec in (x_spec, y_spec):
                if spec is not None:
                    taken.update(data._index(t) for t in spec)
            free = [j for j in range(data.n_columns) if j not in taken]  # positions, not names
            want = (d_in if x_spec is None else 0) + (d_out if need_y and y_spec is None else 0)
            ok = len(free) == want or (not need_y and x_spec is None and len(free) == d_in + d_out)
            if not ok:
                need = plural(d_in, "x") + (f" and {plural(d_out, 'y')}" if need_y else "")
                raise UsageError(
                    f"the model needs {need}, and {data.describe()}: say which with "
                    f"--x{' and --y' if need_y else ''}"
                )
            if x_spec is None:
                x_spec, free = free[:d_in], free[d_in:]
            if need_y and y_spec is None:
                y_spec = free[:d_out]
    x, x_names = data.select(x_spec)
    if x.shape[1] != d_in:
        raise UsageError(
            f"wrong width for the model: it takes {plural(d_in, 'x')}, but the x selection "
            f"({', '.join(x_names)}) has {x.shape[1]}"
        )
    y = None
    if need_y:
        y, y_names = data.select(y_spec)
        if y.shape[1] != d_out:
            raise UsageError(
                f"wrong width for the model: it predicts {plural(d_out, 'y')}, but the y "
                f"selection ({', '.join(y_names)}) has {y.shape[1]}"
            )
        if y.shape[0] != x.shape[0]:
            raise UsageError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    return x, x_names, y


def _load_model(path: str, backend):
    from .model import load

    if not os.path.exists(path):
        raise UsageError(f"no model file at {path}")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory, not a model file")
    return load(path, backend=backend)


# --------------------------------------------------------------------------
# writing CSV
# --------------------------------------------------------------------------


def _as_text(col) -> np.ndarray:
    """Shortest text that reads back to the same float (float32 stays short)."""
    return np.asarray(col).astype(str)


def _csv_text(names, columns) -> str:
    header = ",".join(_csv_cell(n) for n in names)
    cols = [_as_text(c) for c in columns]
    body = "\n".join(",".join(r) for r in zip(*cols, strict=True))
    return header + "\n" + body + "\n"


def _csv_cell(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


# --------------------------------------------------------------------------
# subcommands
# --------------------------------------------------------------------------


def _headless_matplotlib() -> None:
    """The command only writes files: draw with Agg, whatever display there is."""
    try:
        import matplotlib
    except ImportError:
        return  # npmdn.plot (or the demo) says how to install it
    matplotlib.use("Agg")


def _demo(args) -> int:
    from .demo import run_demo

    _headless_matplotlib()
    out = _Output(args.out, f"npmdn-demo-{args.problem}.png", formats=FIGURE_FORMATS)
    run_demo(args.problem, n_train=args.n, seed=args.seed, png=out.final_path,
             backend=args.backend, verbose=False if args.quiet else None)
    return 0


def _hidden(text: str) -> tuple:
    if text.strip().lower() in ("", "none", "0"):
        return ()
    try:
        widths = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer widths like 64,64, got {text!r}"
        ) from None
    return widths


def _fit(args) -> int:
    from .model import MDN

    out = _Output(args.out, "model.npz", inputs=[args.data])
    if args.x is None or args.y is None:
        raise UsageError("fit needs --x and --y: the columns (or .npz arrays) of x and of y")
    data = DataFile(args.data)
    x, x_names = data.select(_spec(args.x))
    y, y_names = data.select(_spec(args.y))
    overlap = set(x_names) & set(y_names)
    if overlap:
        raise UsageError(f"column(s) {', '.join(sorted(overlap))} chosen for both x and y")
    model = MDN(x.shape[1], y.shape[1], args.components, hidden=args.hidden,
                activation=args.activation, covariance=args.covariance,
                backend=args.backend, dtype=args.dtype, seed=args.seed)
    history = model.fit(
        x, y, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        lr_schedule=args.lr_schedule, validation_split=args.validation_split,
        patience=args.patience, weight_decay=args.weight_decay, clip_norm=args.clip_norm,
        verbose=False if args.quiet else None,
    )
    path = out.final_path()
    model.save(path)
    n_train = x.shape[0] - int(round(args.validation_split * x.shape[0]))  # as fit splits
    line = (f"trained {history.epochs} epochs on {n_train} rows in {history.seconds:.2f} s "
            f"(backend {model.backend.name}): train NLL {history.train_nll[-1]:.4f}")
    if history.val_nll:
        best = history.best_epoch
        line += (f", validation NLL {history.val_nll[-1]:.4f}"
                 f" (best {history.val_nll[best - 1]:.4f} at epoch {best}")
        line += ", weights of that epoch kept)" if history.restored_best else ")"
    print(line)
    print(f"x = {', '.join(x_names)}; y = {', '.join(y_names)}")
    print(f"model saved to {path}")
    return 0


def _predict(args) -> int:
    out = _Output(args.out, None, inputs=[args.model, args.data])
    model = _load_model(args.model, args.backend)
    data = DataFile(args.data)
    x, x_names, _ = _model_columns(data, model, _spec(args.x), None, need_y=False)
    raw = model.mixture_raw(x)  # one pass through the network for every column below
    mean, std = mixture.mean(raw[0], raw[1]), np.sqrt(mixture.variance(*raw))
    d = model.out_dim
    sfx = [""] if d == 1 else [f"_{j}" for j in range(d)]
    names = list(x_names) + [f"mean{s}" for s in sfx] + [f"std{s}" for s in sfx]
    cols = list(x.T) + list(mean.T) + list(std.T)
    if args.mixture:
        pi, mu, sigma = mixture.params(*raw)
        k_range = range(model.n_components)
        names += [f"pi_{k}" for k in k_range]
        cols += list(pi.T)
        names += [f"mu_{k}{s}" for k in k_range for s in sfx]
        cols += [mu[:, k, j] for k in k_range for j in range(d)]
        s_sfx = [""] if sigma.shape[2] == 1 else sfx
        names += [f"sigma_{k}{s}" for k in k_range for s in s_sfx]
        cols += [sigma[:, k, j] for k in k_range for j in range(sigma.shape[2])]
    _emit(out, _csv_text(names, cols), f"predictions for {x.shape[0]} rows")
    return 0


def _sample(args) -> int:
    out = _Output(args.out, None, inputs=[args.model, args.data])
    model = _load_model(args.model, args.backend)
    data = DataFile(args.data)
    x, x_names, _ = _model_columns(data, model, _spec(args.x), None, need_y=False)
    draws = model.sample(x, args.n_samples, seed=args.seed)  # [N, J, D]
    n, j, d = draws.shape
    row = np.repeat(np.arange(n), j)
    draw = np.tile(np.arange(j), n)
    names = ["row", "draw"] + list(x_names) + (["y"] if d == 1 else [f"y_{i}" for i in range(d)])
    cols = [row, draw] + [np.repeat(c, j) for c in x.T] + list(draws.reshape(n * j, d).T)
    _emit(out, _csv_text(names, cols), f"{n * j} draws")
    return 0


def _score(args) -> int:
    model = _load_model(args.model, args.backend)
    data = DataFile(args.data)
    x, _, y = _model_columns(data, model, _spec(args.x), _spec(args.y), need_y=True)
    scores = model.score(x, y)
    if args.json:
        print(json.dumps({"rows": x.shape[0], **{k: _jsonable(v) for k, v in scores.items()}}))
        return 0
    width = max(len(k) for k in ["rows", *scores])
    print(f"{'rows':<{width}}  {x.shape[0]}")
    for key, value in scores.items():  # every metric the library returns, in its order
        print(f"{key:<{width}}  {_fmt_value(value)}")
    return 0


def _jsonable(v):
    if isinstance(v, (np.generic, np.ndarray)):
        return v.tolist()
    return v


def _fmt_value(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    if isinstance(v, np.ndarray):
        return np.array2string(v, precision=6, separator=", ", max_line_width=10**6)
    return str(v)


def _plot(args) -> int:
    _headless_matplotlib()
    from . import plot

    model = _load_model(args.model, args.backend)
    if model.in_dim != 1 or model.out_dim != 1:
        raise UsageError(
            f"plot draws models with 1-D x and 1-D y; {args.model} maps {model.in_dim}-D x "
            f"to {model.out_dim}-D y"
        )
    stem = os.path.splitext(os.path.basename(args.model))[0]
    out = _Output(args.out, f"{stem}.png", inputs=[args.model, args.data],
                  formats=FIGURE_FORMATS)
    data = DataFile(args.data)
    x, _, y = _model_columns(data, model, _spec(args.x), _spec(args.y), need_y=True)
    fig = plot.plot_fit(model, x, y, title=args.title or f"npmdn: {args.model}", seed=args.seed)
    path = out.final_path()
    plot.save_figure(fig, path)
    print(f"figure written to {path}")
    return 0


# --------------------------------------------------------------------------
# the parser
# --------------------------------------------------------------------------


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def _nonneg_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def _add_common(p, y=True, out_help=None):
    p.add_argument("model", help="a model file written by `npmdn fit` or MDN.save")
    p.add_argument("data", help="CSV (header row), .npz or .npy")
    p.add_argument("--x", metavar="COLS", help="x columns or .npz arrays (default: see npmdn -h)")
    if y:
        p.add_argument("--y", metavar="COLS", help="y columns or .npz arrays")
    if out_help:
        p.add_argument("--out", metavar="FILE", help=out_help)
    p.add_argument("--backend", choices=BACKENDS, help="numpy, numba or cupy (default: automatic)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .nn import ACTIVATIONS

    p = _Parser(
        prog="npmdn",
        description="Mixture density networks: fit p(y | x) as a mixture of Gaussians.",
        epilog="Columns: --x/--y take comma-separated header names or 0-based indices "
        "(.npz: array names). Without them, predict/sample/score/plot use an .npz's arrays "
        "x and y, or a CSV/.npy whose columns are exactly x (then y). Bad input: one line on "
        "stderr, exit status 2.",
    )
    p.add_argument("--version", action="version", version=f"npmdn {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="train on a seed problem, print held-out NLL, draw a figure",
                       description="Generate a seed problem, train, print the held-out NLL "
                       "(and the true conditional NLL where known) and draw the figure.")
    d.add_argument("problem", nargs="?", default="inverted", choices=PROBLEMS)
    d.add_argument("-n", type=_positive_int, default=None,
                   help="training points (default: per problem, see npmdn.demo.SETTINGS)")
    d.add_argument("--seed", type=_nonneg_int, default=0)
    d.add_argument("--out", "--png", dest="out", metavar="FIG",
                   help="figure path, .png/.svg/.pdf (default: npmdn-demo-PROBLEM.png, "
                   "never overwritten)")
    d.add_argument("--backend", choices=BACKENDS, help="numpy, numba or cupy (default: automatic)")
    d.add_argument("--quiet", action="store_true", help="no progress display")
    d.set_defaults(func=_demo)

    f = sub.add_parser("fit", help="train on a data file and save the model",
                       description="Train an MDN on DATA and save it. The progress line (epoch, "
                       "train and validation NLL, time left) shows on a terminal only.")
    f.add_argument("data", help="CSV (header row), .npz or .npy")
    f.add_argument("--x", metavar="COLS", help="x columns (names or 0-based indices) or arrays")
    f.add_argument("--y", metavar="COLS", help="y columns (names or 0-based indices) or arrays")
    f.add_argument("-k", "--components", type=_positive_int, default=5, help="K (default 5)")
    f.add_argument("--hidden", type=_hidden, default=(64, 64),
                   help="hidden widths, e.g. 64,64 (default); 'none' for a linear head")
    f.add_argument("--activation", choices=ACTIVATIONS, default="tanh")
    f.add_argument("--covariance", choices=("diagonal", "isotropic"), default="diagonal")
    f.add_argument("--epochs", type=_positive_int, default=100)
    f.add_argument("--batch-size", type=_positive_int, default=256)
    f.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    f.add_argument("--lr-schedule", choices=("cosine", "constant"), default="cosine")
    f.add_argument("--validation-split", type=float, default=0.1,
                   help="fraction held out to monitor and pick the best epoch (default 0.1; "
                   "0 for none)")
    f.add_argument("--patience", type=_positive_int, default=None,
                   help="stop after this many epochs without improvement")
    f.add_argument("--weight-decay", type=float, default=0.0)
    f.add_argument("--clip-norm", type=float, default=None)
    f.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    f.add_argument("--seed", type=_nonneg_int, default=0)
    f.add_argument("--backend", choices=BACKENDS, help="numpy, numba or cupy (default: automatic)")
    f.add_argument("--out", metavar="MODEL",
                   help="model file (default: model.npz, or model-2.npz... if taken)")
    f.add_argument("--quiet", action="store_true", help="no progress display")
    f.set_defaults(func=_fit)

    pr = sub.add_parser("predict", help="conditional mean and std (and the mixture) as CSV",
                        description="Write CSV: the x columns, mean and std of p(y | x), and "
                        "with --mixture the weights pi_k, means mu_k and sigmas sigma_k.")
    _add_common(pr, y=False, out_help="CSV file (default: standard output)")
    pr.add_argument("--mixture", action="store_true", help="add pi_k, mu_k, sigma_k columns")
    pr.set_defaults(func=_predict)

    sa = sub.add_parser("sample", help="draws from p(y | x) as CSV",
                        description="Write CSV with one line per draw: row (0-based row of "
                        "DATA), draw, the x columns and the drawn y.")
    _add_common(sa, y=False, out_help="CSV file (default: standard output)")
    sa.add_argument("-n", "--n-samples", dest="n_samples", type=_positive_int, default=1,
                    help="draws per row (default 1)")
    sa.add_argument("--seed", type=_nonneg_int, default=0,
                    help="seed of the Philox stream (default 0: the same draws every run)")
    sa.set_defaults(func=_sample)

    sc = sub.add_parser("score", help="held-out NLL and the other metrics",
                        description="Print every score MDN.score returns (nats per row).")
    _add_common(sc)
    sc.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    sc.set_defaults(func=_score)

    pl = sub.add_parser("plot", help="the demo figure for a saved model (1-D x and y)")
    _add_common(pl, out_help="figure, .png/.svg/.pdf (default: MODEL's name with .png, "
                "never overwritten)")
    pl.add_argument("--title")
    pl.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the drawn samples")
    pl.set_defaults(func=_plot)
    return p


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv=None) -> int:
    from .backend import BackendUnavailable
    from .model import NonFiniteLossError

    args = build_parser().parse_args(argv)
    prog = f"npmdn {args.command}"
    try:
        return args.func(args)
    except NonFiniteLossError as exc:
        print(f"{prog}: training diverged: {_one_line(exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader of our standard output went away (e.g. `| head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (UsageError, BackendUnavailable, FileNotFoundError, ValueError, ImportError,
            OSError) as exc:
        # bad input (the library raises ValueError, its dtype errors included), a missing
        # backend or matplotlib, an unwritable output: one line, no traceback
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
