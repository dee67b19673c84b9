"""The subcommands: each takes the parsed arguments and returns the exit status.

Argument errors are :class:`~npmdn.cli.files.UsageError`; :func:`npmdn.cli.main.main`
turns them (and the library's ``ValueError``) into one line and exit status 2.
The library's messages name its parameters (``clip_norm``); :func:`options`
says them as the command's options (``--clip-norm``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys

import numpy as np

from .. import mixture
from ..training import stop_note
from .data import DataFile, load_model, model_columns, spec
from .files import Output, UsageError, csv_text, emit

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

    def say(what):
        if what not in said:
            said.add(what)
            print(f"npmdn: compiling the numba {what} kernel for this machine (first run "
                  "only, about 10 s)...", file=sys.stderr, flush=True)

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


def predict(args) -> int:
    out = Output(args.out, None, inputs=[args.model, args.data])
    model = load_model(args.model, args.backend)
    data = DataFile(args.data)
    x, x_names, x_source, _ = model_columns(data, model, spec(args.x), None, need_y=False)
    if args.mixture:
        width = len(x_names) + model.out_dim * (2 + 2 * model.n_components) + model.n_components
        check_memory(x.shape[0] * width * 40.0, f"--mixture for {x.shape[0]:,} rows")
    raw = model.mixture_raw(x)  # one pass through the network for every column below
    mean, std = mixture.mean(raw[0], raw[1]), mixture.std(*raw)
    d = model.out_dim
    sfx = _suffixes(model)
    names = list(x_names) + [f"mean{s}" for s in sfx] + [f"std{s}" for s in sfx]
    cols = list(x_source) + list(mean.T) + list(std.T)
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
    emit(out, csv_text(names, cols), f"predictions for {x.shape[0]} rows")
    return 0


def sample(args) -> int:
    out = Output(args.out, None, inputs=[args.model, args.data])
    model = load_model(args.model, args.backend)
    data = DataFile(args.data)
    x, x_names, x_source, _ = model_columns(data, model, spec(args.x), None, need_y=False)
    n, j, d = x.shape[0], args.n_samples, model.out_dim
    # the draws, and their CSV text (about 25 bytes a value) before it is written
    check_memory(n * j * (d * 8.0 + (2 + len(x_names) + d) * 40.0),
                 f"-n {j} draws for each of {n:,} rows ({n * j:,} lines of CSV)")
    note_compiles(model.backend, False)
    draws = model.sample(x, j, seed=args.seed)  # [N, J, D]
    row = np.repeat(np.arange(n), j)
    draw = np.tile(np.arange(j), n)
    if model.y_names:
        y_cols = list(model.y_names)
    else:
        y_cols = ["y"] if d == 1 else [f"y_{i}" for i in range(d)]
    names = ["row", "draw"] + list(x_names) + y_cols
    cols = [row, draw] + [np.repeat(c, j) for c in x_source] + list(draws.reshape(n * j, d).T)
    emit(out, csv_text(names, cols), f"{n * j} draws")
    return 0


def score(args) -> int:
    model = load_model(args.model, args.backend)
    data = DataFile(args.data)
    x, _, _, y = model_columns(data, model, spec(args.x), spec(args.y), need_y=True)
    note_compiles(model.backend, False)
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


def plot(args) -> int:
    headless_matplotlib()
    from .. import plot

    model = load_model(args.model, args.backend)
    if model.in_dim != 1 or model.out_dim != 1:
        raise UsageError(
            f"plot draws models with 1-D x and 1-D y; {args.model} maps {model.in_dim}-D x "
            f"to {model.out_dim}-D y"
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
