"""The parser and the entry point of the ``npmdn`` command.

The enumerations the options offer (backends, activations, covariances,
schedules, problems) come from the modules that own them, so the command and
the library cannot disagree.
"""

from __future__ import annotations

import argparse
import os
import sys

from .._version import __version__
from ..backend import BACKENDS, BackendUnavailable
from ..demo import SETTINGS as DEMO_SETTINGS
from ..mixture import COVARIANCES
from ..nn import ACTIVATIONS
from ..training import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    DEFAULT_LR_SCHEDULE,
    DEFAULT_VALIDATION_SPLIT,
    LR_SCHEDULES,
    NonFiniteLossError,
)
from . import commands
from .commands import option_names
from .files import UsageError

PROBLEMS = tuple(DEMO_SETTINGS)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other bad input, and every
    option's default in ``-h``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` after every option that has a default to show."""

    def _get_help_string(self, action):
        text = action.help or ""
        no_default = action.default is None or action.default is False or \
            action.default == argparse.SUPPRESS  # identity: 0 and 0.0 are defaults to show
        if no_default or "default" in text or \
                action.option_strings == [] and action.nargs is None:
            return text
        return (text + " " if text else "") + "(default: %(default)s)"



# --------------------------------------------------------------------------
# argument types
# --------------------------------------------------------------------------


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


def _noise(text):
    if text.strip().lower() == "auto":
        return "auto"
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'auto', got {text!r}") \
            from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 or 'auto', got {text}")
    return v


def _positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def _add_common(p, y=True, out_help=None, scheduler=False):
    p.add_argument("model", help="a model file written by `npmdn fit` or MDN.save")
    p.add_argument("data", help="CSV (header row), .npz, .npy or Parquet (needs npmdn[dask])")
    p.add_argument("--x", metavar="COLS", help="x columns or .npz arrays (default: the "
                   "columns the model was fitted on; see npmdn -h)")
    if y:
        p.add_argument("--y", metavar="COLS", help="y columns or .npz arrays (default: as "
                       "--x)")
    if out_help:
        p.add_argument("--out", metavar="FILE", help=out_help)
    p.add_argument("--backend", choices=BACKENDS,
                   help="numpy, numba or cupy (default: automatic, or NPMDN_BACKEND)")
    if scheduler:
        p.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the model on the Dask cluster whose scheduler is at ADDRESS "
                       "(tcp://host:8786); needs npmdn[dask] (default: here)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="npmdn",
        description="Mixture density networks: fit p(y | x) as a mixture of Gaussians.",
        epilog="Columns: --x/--y take comma-separated header names or 0-based indices "
        "(.npz: array names). Without them, predict/sample/score/plot use the columns the "
        "model was fitted on (by name), or for a model that does not know them an .npz's "
        "arrays x and y, or a CSV/.npy whose columns are exactly x (then y). Bad input: one "
        "line on stderr, exit status 2.",
    )
    p.add_argument("--version", action="version", version=f"npmdn {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _demo_parser(sub)
    _fit_parser(sub)
    _query_parsers(sub)
    return p


def _demo_parser(sub):
    d = sub.add_parser("demo", help="train on a seed problem, print held-out NLL, draw a figure",
                       description="Generate a seed problem, train, print the held-out NLL "
                       "(and the true conditional NLL where known) and draw the figure.")
    d.add_argument("problem", nargs="?", default="inverted", choices=PROBLEMS)
    d.add_argument("-n", type=_positive_int, default=None,
                   help="training points (default: per problem, see npmdn.demo.SETTINGS)")
    d.add_argument("--seed", type=_nonneg_int, default=0, help="seeds data and weights")
    d.add_argument("--out", "--png", dest="out", metavar="FIG",
                   help="figure path, .png/.svg/.pdf (default: npmdn-demo-PROBLEM.png, "
                   "never overwritten)")
    d.add_argument("--backend", choices=BACKENDS,
                   help="numpy, numba or cupy (default: automatic, or NPMDN_BACKEND)")
    d.add_argument("--quiet", action="store_true", help="no progress display")
    d.set_defaults(func=commands.demo)


def _fit_parser(sub):
    f = sub.add_parser("fit", help="train on a data file and save the model",
                       description="Train an MDN on DATA and save it. The progress line (epoch, "
                       "train and validation NLL, time left) shows on a terminal only.")
    f.add_argument("data", help="CSV (header row), .npz or .npy")
    f.add_argument("--x", metavar="COLS", help="x columns (names or 0-based indices) or arrays")
    f.add_argument("--y", metavar="COLS", help="y columns (names or 0-based indices) or arrays")
    f.add_argument("-k", "--components", type=_positive_int, default=5,
                   help="K, the number of Gaussians")
    f.add_argument("--hidden", type=_hidden, default=(64, 64), metavar="WIDTHS",
                   help="hidden widths, e.g. 64,64; 'none' for a linear head (default: 64,64)")
    f.add_argument("--activation", choices=ACTIVATIONS, default="tanh", help="of hidden layers")
    f.add_argument("--covariance", choices=COVARIANCES, default="diagonal",
                   help="one sigma per output dimension and component (diagonal), one per "
                   "component (isotropic), or a full covariance matrix per component (full: "
                   "correlated outputs)")
    f.add_argument("--epochs", type=_positive_int, default=DEFAULT_EPOCHS,
                   help="passes over the training rows")
    f.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE,
                   help="rows per step")
    f.add_argument("--lr", type=float, default=DEFAULT_LR, help="peak learning rate")
    f.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=DEFAULT_LR_SCHEDULE,
                   help="cosine: from --lr down to --lr/100")
    f.add_argument("--validation-split", type=float, default=DEFAULT_VALIDATION_SPLIT,
                   help="fraction held out to monitor and pick the best epoch, whose weights "
                   "are kept; 0 for none")
    f.add_argument("--patience", type=_positive_int, default=None,
                   help="stop after this many epochs without improvement (default: never)")
    f.add_argument("--weight-decay", type=float, default=0.0,
                   help="decoupled weight decay on the weights")
    f.add_argument("--clip-norm", type=float, default=None,
                   help="clip each step's gradient to this norm (default: no clipping)")
    f.add_argument("--noise-x", type=_noise, default=0.0, metavar="SCALE",
                   help="noise regularisation: fresh Gaussian noise on the standardized x of "
                   "every row at every epoch, this std (in std of x), or 'auto' (by rows and "
                   "dimensions); for small, noisy data")
    f.add_argument("--noise-y", type=_noise, default=0.0, metavar="SCALE",
                   help="the same on y ('auto' for small data: see the README's Small data)")
    f.add_argument("--min-sigma", type=_positive_float, default=None, metavar="SIGMA",
                   help="floor on every component's sigma, in units of y (default: none)")
    f.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="precision of the network")
    f.add_argument("--seed", type=_nonneg_int, default=0,
                   help="seeds the weights, the split and the batch order")
    f.add_argument("--backend", choices=BACKENDS,
                   help="numpy, numba or cupy (default: automatic, or NPMDN_BACKEND)")
    f.add_argument("--out", metavar="MODEL",
                   help="model file (default: model.npz, or model-2.npz... if taken)")
    f.add_argument("--quiet", action="store_true",
                   help="no progress display and no compile note")
    f.set_defaults(func=commands.fit)


def _query_parsers(sub):
    """predict, sample, score and plot: a saved model and a data file."""
    pr = sub.add_parser("predict", help="conditional mean and std (and the mixture) as CSV",
                        description="Write CSV: the x columns, mean and std of p(y | x), and "
                        "with --mixture the weights pi_k, means mu_k and sigmas sigma_k.")
    _add_common(pr, y=False, out_help="CSV file (default: standard output)", scheduler=True)
    pr.add_argument("--mixture", action="store_true",
                    help="add pi_k, mu_k, sigma_k columns (default: mean and std only)")
    pr.set_defaults(func=commands.predict)

    sa = sub.add_parser("sample", help="draws from p(y | x) as CSV",
                        description="Write CSV with one line per draw: row (0-based row of "
                        "DATA), draw, the x columns and the drawn y.")
    _add_common(sa, y=False, out_help="CSV file (default: standard output)", scheduler=True)
    sa.add_argument("-n", "--n-samples", dest="n_samples", type=_positive_int, default=1,
                    help="draws per row")
    sa.add_argument("--seed", type=_nonneg_int, default=0,
                    help="seed of the Philox stream (the same seed, the same draws)")
    sa.set_defaults(func=commands.sample)

    sc = sub.add_parser("score", help="held-out NLL and the other metrics",
                        description="Print every score MDN.score returns (nats per row).")
    _add_common(sc, scheduler=True)
    sc.add_argument("--json", action="store_true",
                    help="one JSON object instead of lines (default: lines); a non-finite "
                    "score is the string \"inf\", \"-inf\" or \"nan\"")
    sc.set_defaults(func=commands.score)

    pl = sub.add_parser("plot", help="the demo figure for a saved model (1-D x and y)")
    _add_common(pl, out_help="figure, .png/.svg/.pdf (default: MODEL's name with .png, "
                "never overwritten)")
    pl.add_argument("--title", help="(default: npmdn: MODEL)")
    pl.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the drawn samples")
    pl.set_defaults(func=commands.plot)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    prog = f"npmdn {args.command}"
    try:
        return args.func(args)
    except NonFiniteLossError as exc:
        print(f"{prog}: training diverged: {option_names(_one_line(exc))}", file=sys.stderr)
        return 1
    except MemoryError as exc:
        what = f" ({_one_line(exc)})" if str(exc) else ""
        print(f"{prog}: error: out of memory{what}: try fewer rows, draws, components or "
              "smaller --hidden", file=sys.stderr)
        return 2
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
