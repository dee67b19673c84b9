"""The ``npmdn`` command (also ``python -m npmdn``)."""

from __future__ import annotations

import argparse
import os
import sys


def _free_path(path: str) -> str:
    """``path`` if nothing is there, else the first free ``stem-2.ext``, ``stem-3.ext``...
    so that a default output never overwrites a file the user did not name."""
    if not os.path.exists(path):
        return path
    stem, ext = os.path.splitext(path)
    i = 2
    while os.path.exists(f"{stem}-{i}{ext}"):
        i += 1
    return f"{stem}-{i}{ext}"


def _demo(args) -> int:
    from .demo import run_demo

    png = args.png if args.png else _free_path(f"npmdn-demo-{args.problem}.png")
    run_demo(args.problem, n_train=args.n, n_test=args.n, seed=args.seed, png=png,
             backend=args.backend, verbose=not args.quiet and None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="npmdn", description="Mixture density networks.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="train on a seed problem, print held-out NLL, draw a figure")
    d.add_argument("problem", nargs="?", default="inverted",
                   choices=["sinusoid", "inverted", "heteroscedastic", "spiral"])
    d.add_argument("-n", type=int, default=4000, help="training (and test) points")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--png", help="figure path (default: npmdn-demo-PROBLEM.png, never overwritten)")
    d.add_argument("--backend", choices=["numpy", "numba", "cupy"])
    d.add_argument("--quiet", action="store_true", help="no progress display")
    d.set_defaults(func=_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
