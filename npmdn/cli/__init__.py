"""The ``npmdn`` command (also ``python -m npmdn``).

``main.py`` is the parser and the entry point, ``commands.py`` the
subcommands, ``data.py`` the data files (``readers.py`` their formats),
``runner.py`` the model on their rows chunk by chunk (here or on a Dask
cluster), ``files.py`` the outputs.

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
* Parquet (``.parquet``/``.pq``, a file or a folder of them): columns as in a
  CSV; read through Dask (``npmdn[dask]``).

``predict``, ``sample`` and ``score`` read, compute and write a chunk of rows
at a time (:mod:`npmdn.cli.runner`, :mod:`npmdn.cli.readers`), in memory
bounded by a chunk, with the bytes out of the whole file in one piece; with
``--scheduler ADDRESS`` the model runs on that Dask cluster. A bad value is
found when its chunk is read. ``fit`` and ``plot`` read the file whole.

``fit`` needs ``--x`` and ``--y`` and keeps their names in the model file.
The other subcommands take the model's widths from the model and, without
``--x``/``--y``, the columns it was fitted on, by name (a file without them
is refused, naming them). A model that does not know its columns uses an
``.npz``'s arrays ``x`` and ``y``, or a CSV or ``.npy`` file holding exactly
the x columns (or, where y is not needed, x then y columns) in that order.

Outputs
-------
A file you name with ``--out`` is replaced if it exists (written to a
temporary file first and renamed, so a failed run leaves it as it was; its
permissions are kept); a link is followed, a FIFO or device written to,
never replaced; it may not be one of the inputs. A default name
(``model.npz``, the figure of ``demo`` and ``plot``) never replaces
anything, even with runs racing for it: the first free name of ``stem.ext``,
``stem-2.ext``, ``stem-3.ext``, ... is claimed atomically. ``predict`` and
``sample`` write to standard output unless given ``--out``.

Exit status: 0 success; 2 bad input (one line on stderr, no file written;
on standard output, the rows of the chunks before a bad value); 1 training
diverged (NaN loss); 130 interrupted.
"""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["main", "build_parser"]
