"""The command's outputs: choosing and writing them, and CSV text.

:class:`Output` is where an output goes: a named path (replaced), a default
name (claimed atomically, never replacing anything), or standard output.
Files are written through :func:`npmdn._io.atomic_open`, which writes a FIFO
or device through and follows links instead of replacing them. Reading data
files is :mod:`npmdn.cli.data`. Every bad input raises :class:`UsageError`,
reported as one line, exit 2.
"""

from __future__ import annotations

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
# writing CSV
# --------------------------------------------------------------------------


def as_text(col) -> np.ndarray:
    """Shortest text that reads back to the same number in the column's own dtype:
    a float32 0.04729 is written ``0.04729``, not as the double it widens to."""
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
