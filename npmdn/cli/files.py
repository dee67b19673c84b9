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


# --------------------------------------------------------------------------
# writing CSV
# --------------------------------------------------------------------------


def as_text(col) -> np.ndarray:
    """Shortest text that reads back to the same number in the column's own dtype:
    a float32 0.04729 is written ``0.04729``, not as the double it widens to."""
    return np.asarray(col).astype(str)


def csv_header(names) -> str:
    return ",".join(csv_cell(n) for n in names) + "\n"


TEXT_ROWS = 8192  # rows turned into text at a time: NumPy's text arrays take 128 B a float


def csv_rows(columns) -> str:
    """The lines of CSV rows of ``columns`` (1-D arrays of one length), each ending in
    a newline."""
    cols = [as_text(c) for c in columns]
    return "".join(",".join(r) + "\n" for r in zip(*cols, strict=True))


def write_csv(out: Output, names, pieces, what) -> None:
    """Write CSV as it is computed: the header, then each piece of ``pieces`` (an
    iterable of lists of columns) as it comes, so that only one piece is held.

    To a file, the text goes to a temporary file renamed at the end
    (:func:`npmdn._io.atomic_open`): an error in any piece leaves no output and
    the file as it was. To standard output (or a FIFO or device) the rows are
    written as they come, after the first piece has been computed, so that an
    error in the first piece writes nothing. ``what(rows)`` says what was
    written, on stderr, for a file. The output has no default name (a default
    name may be tried twice; ``pieces`` is read once).
    """
    if out.path is not None and not out.named:
        raise AssertionError("CSV computed in pieces needs a named output or stdout")
    rows = 0

    def write(f):
        nonlocal rows
        header = csv_header(names)
        for cols in pieces:
            n = len(cols[0]) if cols else 0
            for a in range(0, max(n, 1), TEXT_ROWS):
                f.write(header + csv_rows([c[a : a + TEXT_ROWS] for c in cols]))
                header = ""
            rows += n
        if header:  # no rows at all: the header alone
            f.write(header)

    if out.path is None:
        write(sys.stdout)
        sys.stdout.flush()
        return

    def write_file(path, overwrite):
        with atomic_open(path, "w", newline="", overwrite=overwrite) as f:
            write(f)

    path = out.write(write_file)
    print(f"{what(rows)} written to {path}", file=sys.stderr)


def csv_cell(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text
