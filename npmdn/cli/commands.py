"""The subcommands: each takes the parsed arguments and returns the exit status.

Argument errors are :class:`~npmdn.cli.files.UsageError`; :func:`npmdn.cli.main.main`
turns them (and the library's ``ValueError``) into one line and exit status 2.
The library's messages name its parameters (``clip_norm``); :func:`options`
says them as the command's options (``--clip-norm``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys

import numpy as np

from .. import config, mixture
from ..functional import mixture_sample
from ..training import stop_note
from .data import DataFile, load_model, model_columns, model_selection, spec
from .files import Output, UsageError, write_csv
from .runner import Runner

FIGURE_FORMATS = (".png", ".svg", ".pdf")

# The library's parameter names and the options that set them, in one place.
OPTION_OF = {
    "n_components": "-k/--components", "hidden layer width": "--hidden", "hidden": "--hidden",
    "activation": "--activation", "covariance": "--covariance", "dtype": "--dtype",
    "epochs": "--epochs", "batch_size": "--batch-size", "lr_schedule": "--lr-schedule",
    "lr": "--lr", "validation_split": "--validation-split", "patience": "--patience",
    "weight_decay": "--weight-decay", "clip_norm": "--clip-norm", "seed": "--seed",
    "n_samples": "-n/--n-samples", "noise_x": "--noise-x", "noise_y": "--noise-y",
    "min_sigma": "--min-sigma",
}
_ANYWHERE = re.compile(r"(?<![\w-])(" + "|".join(
    re.escape(k) for k in sorted(OPTION_OF, key=len, reverse=True) if "_" in k or k == "lr"
) + r")(=?)(?![\w])")
_AT_START = re.compile(r"^(" + "|".join(
    re.escape(k) for k in sorted(OPTION_OF, key=len, reverse=True)) + r")(?= |=|:)")


def option_names(message: str) -> str:
    """A library message with its parameter names said as the command's options:
    ``clip_norm must be > 0`` -> ``--clip-norm must be > 0``, ``validation_split=0``
    -> ``--validation-split 0``."""
    message = _AT_START.sub(lambda m: OPTION_OF[m.group(1)], message)
    return _ANYWHERE.sub(lambda m: OPTION_OF[m.group(1)] + (" " if m.group(2) else ""),
                         message)


@contextlib.contextmanager
def options():
    """Errors of the library's argument checks, re-raised in the command's words."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise UsageError(option_names(str(exc))) from exc


# --------------------------------------------------------------------------
# sizes checked before any work
# --------------------------------------------------------------------------


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.0f} MB"


def check_memory(need: float, what: str) -> None:
    """Refuse work whose arrays cannot fit in this machine's memory at all."""
    have = _memory_bytes()
    if have is not None and need > have:
        raise UsageError(f"{what} needs about {_gb(need)} of memory, and this machine has "
                         f"{_gb(have)}")


def note_compiles(backend, quiet: bool) -> None:
    """On the numba backend, say so on stderr when a kernel compiles (first run only)."""
    if quiet or getattr(backend, "name", None) != "numba":
        return
    from .._numba.kernels import on_compile

    said = set()

    def say(message):
        if message not in said:
            said.add(message)
            print(f"npmdn: {message}", file=sys.stderr, flush=True)

    on_compile(say)


def headless_matplotlib() -> None:
    """The command only writes files: draw with Agg, whatever display there is."""
    try:
        import matplotlib
    except ImportError:
        return  # npmdn.plot (or the demo) says how to install it
    matplotlib.use("Agg")


def _figure_writer(out: Output):
    """``write(fig) -> path``: the figure to ``out``, claimed there as Output does."""
    from ..plot import save_figure

    return lambda fig: out.write(lambda p, overwrite: save_figure(fig, p, overwrite=overwrite))


# --------------------------------------------------------------------------
# the subcommands
# --------------------------------------------------------------------------


def demo(args) -> int:
    from ..backend import get_backend
    from ..demo import run_demo

    headless_matplotlib()
    out = Output(args.out, f"npmdn-demo-{args.problem}.png", formats=FIGURE_FORMATS)
    backend = get_backend(args.backend)
    note_compiles(backend, args.quiet)
    run_demo(args.problem, n_train=args.n, seed=args.seed, png=_figure_writer(out),
             backend=backend, verbose=False if args.quiet else None)
    return 0


def fit(args) -> int:
    from ..model import MDN, count_params

    out = Output(args.out, "model.npz", inputs=[args.data])
    if args.x is None or args.y is None:
        raise UsageError("fit needs --x and --y: the columns (or .npz arrays) of x and of y")
    data = DataFile(args.data)
    x, x_names, _ = data.select(spec(args.x))
    y, y_names, _ = data.select(spec(args.y))
    overlap = set(x_names) & set(y_names)
    if overlap:
        raise UsageError(f"column(s) {', '.join(sorted(overlap))} chosen for both x and y")
    with options():
        n_params = count_params(x.shape[1], y.shape[1], args.components, args.hidden,
                                args.covariance)
        head = count_params(0, y.shape[1], args.components, (), args.covariance)
    itemsize = np.dtype(args.dtype).itemsize
    # parameters, gradients, Adam's two moments, the best and last good weights, the
    # float64 initialisation; the head's gradient of a batch
    check_memory(n_params * (6 * itemsize + 8) + 2 * args.batch_size * head * itemsize,
                 f"a network of {n_params:,} parameters (--hidden, -k)")
    with options():
        model = MDN(x.shape[1], y.shape[1], args.components, hidden=args.hidden,
                    activation=args.activation, covariance=args.covariance,
                    backend=args.backend, dtype=args.dtype, seed=args.seed,
                    min_sigma=args.min_sigma)
    note_compiles(model.backend, args.quiet)
    named = data.kind != "npy"  # an .npy's columns have positions, not names
    with options():
        history = model.fit(
            x, y, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            lr_schedule=args.lr_schedule, validation_split=args.validation_split,
            patience=args.patience, weight_decay=args.weight_decay, clip_norm=args.clip_norm,
            noise_x=args.noise_x, noise_y=args.noise_y, verbose=False if args.quiet else None,
            x_names=x_names if named else None, y_names=y_names if named else None,
        )
    path = out.write(lambda p, overwrite: model.save(p, overwrite=overwrite))
    line = (f"trained {history.epochs} epochs on {history.n_train} rows in "
            f"{history.seconds:.2f} s (backend {model.backend.name}): train NLL "
            f"{history.train_nll[-1]:.4f}")
    if history.val_nll:
        best = history.best_epoch
        line += (f", validation NLL {history.val_nll[-1]:.4f}"
                 f" (best {history.val_nll[best - 1]:.4f} at epoch {best}")
        line += ", weights of that epoch kept)" if history.restored_best else ")"
    print(line)
    if history.noise_x or history.noise_y:
        print(f"noise regularisation: x {history.noise_x:.4g}, y {history.noise_y:.4g} "
              "(standard deviations of the standardized columns)")
    note = stop_note(history, args.patience, "--patience")
    if note:
        print(note)
    print(f"x = {', '.join(x_names)}; y = {', '.join(y_names)}")
    print(f"model saved to {path}")
    return 0


def _suffixes(model) -> list[str]:
    """Column suffixes per output dimension: none for one y, else ``_<name>`` (or ``_j``)."""
    if model.out_dim == 1:
        return [""]
    names = model.y_names or [str(j) for j in range(model.out_dim)]
    return [f"_{n}" for n in names]


def _predict_names(model, x_names, with_mixture: bool) -> list[str]:
    sfx = _suffixes(model)
    names = list(x_names) + [f"mean{s}" for s in sfx] + [f"std{s}" for s in sfx]
    if with_mixture:
        k_range = range(model.n_components)
        names += [f"pi_{k}" for k in k_range]
        names += [f"mu_{k}{s}" for k in k_range for s in sfx]
        if model.covariance == "full" and model.out_dim > 1:  # each component's matrix
            names += [f"cov_{k}{sfx[i]}{sfx[j]}" for k in k_range for i, j in _upper(model.out_dim)]
        else:
            s_sfx = [""] if model.scale_dim == 1 else sfx  # one sigma per component
            names += [f"sigma_{k}{s}" for k in k_range for s in s_sfx]
    return names


def _upper(d):
    """``(i, j)`` of a D x D matrix's upper triangle, diagonal included, row by row."""
    return [(i, j) for i in range(d) for j in range(i, d)]


def _predict_columns(source, raw, with_mixture: bool) -> list:
    """The columns of :func:`_predict_names` for rows of x as stored and their mixture."""
    mean, std = mixture.mean(raw[0], raw[1]), mixture.std(*raw)
    cols = list(source.T) + list(mean.T) + list(std.T)
    if with_mixture:
        pi, mu, sigma = mixture.params(*raw)
        k_range = range(pi.shape[1])
        cols += list(pi.T)
        cols += [mu[:, k, j] for k in k_range for j in range(mu.shape[2])]
        if sigma.ndim == 4:  # full covariance: each component's matrix, its upper triangle
            cols += [sigma[:, k, i, j] for k in k_range for i, j in _upper(mu.shape[2])]
        else:
            cols += [sigma[:, k, j] for k in k_range for j in range(sigma.shape[2])]
    return cols


def predict(args) -> int:
    out = Output(args.out, None, inputs=[args.model, args.data])
    model = load_model(args.model, args.backend)
    data = DataFile(args.data)
    xcols, _ = model_selection(data, model, spec(args.x), None, need_y=False)
    names = _predict_names(model, xcols.names, args.mixture)
    with Runner(model, data, args.scheduler) as runner:
        if args.mixture:
            rows = runner.rows_per_chunk()
            check_memory(rows * len(names) * 40.0, f"--mixture for {rows:,} rows at a time")
        pieces = (_predict_columns(source, raw, args.mixture)
                  for _, source, raw in runner.mixtures(xcols))
        write_csv(out, names, pieces, lambda n: f"predictions for {n} rows")
    return 0


def _draws(model, mixtures, n_samples: int, seed: int, rows: int):
    """The columns of ``sample``'s CSV for each piece of at most ``rows`` rows: the
    draws of a chunk's mixture, each row at its place in the Philox stream."""
    j, d = n_samples, model.out_dim
    for start, source, raw in mixtures:
        for a in range(0, source.shape[0], rows):
            b = min(source.shape[0], a + rows)
            draws = mixture_sample(*(r[a:b] for r in raw), j, seed, row_offset=start + a,
                                   backend=model.backend.name)  # [b - a, J, D]
            yield ([np.repeat(np.arange(start + a, start + b), j), np.tile(np.arange(j), b - a)]
                   + [np.repeat(c, j) for c in source[a:b].T]
                   + list(draws.reshape((b - a) * j, d).T))


def sample(args) -> int:
    out = Output(args.out, None, inputs=[args.model, args.data])
    model = load_model(args.model, args.backend)
    data = DataFile(args.data)
    xcols, _ = model_selection(data, model, spec(args.x), None, need_y=False)
    j, d = args.n_samples, model.out_dim
    rows = max(1, config.INFERENCE_CHUNK // j)  # rows whose draws are held at once
    # the draws, and their CSV text (about 25 bytes a value) before it is written
    check_memory(rows * j * (d * 8.0 + (2 + xcols.width + d) * 40.0),
                 f"-n {j} draws of {rows:,} row{'s' if rows > 1 else ''} at a time "
                 f"({rows * j:,} lines of CSV)")
    note_compiles(model.backend, False)
    if model.y_names:
        y_cols = list(model.y_names)
    else:
        y_cols = ["y"] if d == 1 else [f"y_{i}" for i in range(d)]
    names = ["row", "draw"] + list(xcols.names) + y_cols
    with Runner(model, data, args.scheduler) as runner:
        pieces = _draws(model, runner.mixtures(xcols), j, args.seed, rows)
        write_csv(out, names, pieces, lambda n: f"{n} draws")
    return 0


def score(args) -> int:
    model = load_model(args.model, args.backend)
    data = DataFile(args.data)
    xcols, ycols = model_selection(data, model, spec(args.x), spec(args.y), need_y=True)
    note_compiles(model.backend, False)
    with Runner(model, data, args.scheduler) as runner:
        rows, scores = runner.score(xcols, ycols)
    if args.json:
        print(json.dumps({"rows": rows, **{k: _jsonable(v) for k, v in scores.items()}},
                         allow_nan=False))
        return 0
    width = max(len(k) for k in ["rows", *scores])
    print(f"{'rows':<{width}}  {rows}")
    for key, value in scores.items():  # every metric the library returns, in its order
        print(f"{key:<{width}}  {_fmt_value(value)}")
    return 0


def _jsonable(v):
    """``v`` as strict JSON: arrays as lists, and a non-finite float (an NLL of
    inf where a row has zero density) as the string ``"inf"``, ``"-inf"`` or
    ``"nan"``, which every JSON parser reads (``Infinity`` is not JSON)."""
    if isinstance(v, (np.generic, np.ndarray)):
        v = v.tolist()
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def _fmt_value(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    if isinstance(v, np.ndarray):
        return np.array2string(v, precision=6, separator=", ", max_line_width=10**6)
    return str(v)


def plot(args) -> int:
    headless_matplotlib()
    from .. import plot

    model = load_model(args.model, args.backend)
    if model.in_dim != 1 or model.out_dim > 2:
        raise UsageError(
            f"plot draws models with 1-D x and 1-D y (or 2-D y: component ellipses); "
            f"{args.model} maps {model.in_dim}-D x to {model.out_dim}-D y"
        )
    stem = os.path.splitext(os.path.basename(args.model))[0]
    out = Output(args.out, f"{stem}.png", inputs=[args.model, args.data],
                 formats=FIGURE_FORMATS)
    data = DataFile(args.data)
    x, _, _, y = model_columns(data, model, spec(args.x), spec(args.y), need_y=True)
    note_compiles(model.backend, False)
    fig = plot.plot_fit(model, x, y, title=args.title or f"npmdn: {args.model}", seed=args.seed)
    path = _figure_writer(out)(fig)
    print(f"figure written to {path}")
    return 0
