"""Reading a data file's rows a chunk at a time, in memory bounded by the chunk.

* :class:`CsvFile`: the header at once; rows by :meth:`CsvFile.chunks`, which
  keeps only the cells of the columns asked for and parses them, naming the
  line of the first bad cell.
* :class:`StoredArray`: an array in ``.npy`` format, in an ``.npy`` file or an
  ``.npz`` member. An ``.npy``, and an ``.npz`` member stored uncompressed (as
  ``np.savez`` writes them), are read at the rows' byte offsets; a member
  compressed by ``np.savez_compressed`` is decompressed as it is read, in
  order; only a compressed member in Fortran order (whose rows are not
  contiguous) is read whole.
* :func:`parquet_frame`: Parquet, as a lazy Dask DataFrame (needs Dask).

Every bad input raises :class:`~npmdn.cli.files.UsageError`.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
import operator
import os
import struct
import zipfile

import numpy as np

from .files import UsageError

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


# --------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------


class CsvFile:
    """A CSV (or, with ``delimiter="\\t"``, TSV) file with a header row.

    Opening reads the header and the first data row (to check the separator
    and that there is data); :meth:`chunks` reads the rest as it goes.
    Blank lines are skipped; a data row's 0-based index counts the others.
    """

    def __init__(self, path: str, delimiter: str):
        self.path, self.delimiter = path, delimiter
        records = self._records()
        header = next(records)
        first = next(records, None)
        records.close()
        if header is None:
            raise UsageError(f"{path} is empty: a header row and data rows are needed")
        self._check_separator(header, first)
        self.names = [h.strip() for h in header]
        if first is None:
            raise UsageError(f"{path} has a header but no data rows")

    def _records(self):
        """The header row (None for an empty file), then ``(line, row)`` for every
        row that is not blank; read errors as :class:`UsageError`."""
        try:
            with open(self.path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f, delimiter=self.delimiter)
                yield next(reader, None)
                for row in reader:
                    if not row or (not row[0].strip() and all(not c.strip() for c in row)):
                        continue  # blank line
                    yield reader.line_num, row
        except UnicodeDecodeError as exc:
            raise UsageError(f"{self.path} is not a UTF-8 text (CSV) file ({exc.reason})") from exc
        except csv.Error as exc:
            raise UsageError(f"{self.path} is not valid CSV: {exc}") from exc
        except OSError as exc:
            raise UsageError(f"cannot read {self.path}: {exc.strerror}") from exc

    def _check_separator(self, header, first):
        """A header of one field holding another separator: the file uses that one."""
        if header is None or len(header) != 1:
            return
        delimiter = self.delimiter
        for sep, name in SEPARATORS.items():
            if sep == delimiter or sep not in header[0]:
                continue
            if first is not None and first[1] and sep not in first[1][0]:
                continue
            want = "tab" if delimiter == "\t" else "comma"
            raise UsageError(
                f"{self.path} looks {name}-separated (its header {header[0]!r} is one "
                f"{want}-separated column); npmdn reads {want}-separated files "
                f"({'.tsv' if delimiter == chr(9) else '.csv'}): convert it, or name it "
                f"{'.tsv' if sep == chr(9) else 'with commas'}"
            )

    def chunks(self, cols, rows: int):
        """Yield ``(start, values)``: the columns ``cols`` (0-based) of ``rows`` data
        rows at a time as float64 [n, len(cols)], ``start`` the first row's index.

        Every row of a chunk is checked to have the header's number of fields,
        then each column's cells are parsed, before the chunk is yielded.
        """
        width = len(self.names)
        get = operator.itemgetter(*cols)
        pick = get if len(cols) > 1 else lambda row: (get(row),)  # always a tuple
        records = self._records()
        next(records)  # the header
        start = 0
        try:
            while True:
                cells, lines = [], []
                for line, row in itertools.islice(records, rows):
                    if len(row) != width:
                        raise UsageError(
                            f"{self.path} line {line} has {len(row)} fields, but the header "
                            f"has {width}"
                        )
                    cells.append(pick(row))
                    lines.append(line)
                if not cells:
                    return
                out = np.empty((len(cells), len(cols)))
                for k, column in enumerate(zip(*cells)):
                    out[:, k] = self._column(column, lines, self.names[cols[k]])
                yield start, out
                start += len(cells)
                if len(cells) < rows:
                    return
        finally:
            records.close()

    def _column(self, cells, lines, name) -> np.ndarray:
        """One column's cells as float64; the first bad cell named by its line."""
        text = "".join(cells)
        if text.isascii() and "_" not in text:  # the usual case, at C speed
            try:
                values = np.fromiter(map(float, cells), dtype=np.float64, count=len(cells))
            except ValueError:
                values = None
            if values is not None and np.isfinite(values).all():
                return values
        values = np.empty(len(cells))
        for i, (raw, line) in enumerate(zip(cells, lines)):
            cell = raw.strip()
            v = parse_number(cell)
            if v is None:
                what = "an empty cell" if not cell else f"{cell!r} is not a number"
                raise UsageError(f"{self.path} line {line}, column {name!r}: {what}")
            if not math.isfinite(v):
                raise UsageError(
                    f"{self.path} line {line}, column {name!r}: {cell!r} is not a finite "
                    f"number (missing values are not supported)"
                )
            values[i] = v
        return values


# --------------------------------------------------------------------------
# .npy and .npz
# --------------------------------------------------------------------------


def _read_header(f, where: str):
    """``(shape, fortran_order, dtype)`` of the ``.npy`` data at ``f``'s position."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    # 3.0 differs from 2.0 only by UTF-8 field names of structured dtypes: not numbers
    raise ValueError(f"{where}: .npy format version {version[0]}.{version[1]} holds a "
                     "structured array; numbers are needed")


class StoredArray:
    """An array in ``.npy`` format whose rows are read a range at a time.

    ``kind`` says how: ``"file"`` (at byte ``offset`` of the file ``path``: an
    ``.npy``, or an uncompressed ``.npz`` member), ``"stream"`` (a compressed
    ``.npz`` member in C order, decompressed in order) or ``"whole"`` (a
    compressed member in Fortran order, read at once when first needed).
    """

    def __init__(self, path, shape, dtype, fortran, kind, offset=0, member=None):
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        self.fortran, self.kind, self.offset, self.member = fortran, kind, offset, member
        self.ndim = len(self.shape)

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    @property
    def n_cols(self) -> int:
        return 1 if self.ndim == 1 else self.shape[1]

    @contextlib.contextmanager
    def reading(self):
        """A function ``read(a, b)``: rows ``a:b`` as [b - a, n_cols] in the stored dtype.
        For ``"stream"`` the ranges must follow each other from row 0."""
        if self.kind == "file":
            with open(self.path, "rb") as f:
                yield lambda a, b: self._read_file(f, a, b)
        elif self.kind == "stream":
            with zipfile.ZipFile(self.path) as z, z.open(self.member) as f:
                _read_header(f, self.path)
                next_row = [0]

                def read(a, b):
                    if a != next_row[0]:
                        raise AssertionError("a compressed member is read in order")
                    next_row[0] = b
                    return self._from_bytes(self._take(f, (b - a) * self._row_bytes()), b - a)

                yield read
        else:
            with zipfile.ZipFile(self.path) as z, z.open(self.member) as f:
                whole = np.lib.format.read_array(f, allow_pickle=False)
            whole = whole.reshape(whole.shape[0], -1)
            yield lambda a, b: whole[a:b]

    def _row_bytes(self) -> int:
        return self.n_cols * self.dtype.itemsize

    def _take(self, f, size: int) -> bytes:
        data = f.read(size)
        if len(data) != size:
            raise UsageError(f"cannot read {self.path}: the data ends early (truncated file)")
        return data

    def _from_bytes(self, data, n):
        return np.frombuffer(data, dtype=self.dtype).reshape(n, self.n_cols)

    def _read_file(self, f, a, b):
        n, item = b - a, self.dtype.itemsize
        if not self.fortran or self.n_cols == 1:
            f.seek(self.offset + a * self._row_bytes())
            return self._from_bytes(self._take(f, n * self._row_bytes()), n)
        out = np.empty((n, self.n_cols), dtype=self.dtype)
        for j in range(self.n_cols):  # Fortran order: each column is contiguous
            f.seek(self.offset + (j * self.n_rows + a) * item)
            out[:, j] = np.frombuffer(self._take(f, n * item), dtype=self.dtype)
        return out


def npy_array(path: str) -> StoredArray:
    """The array of an ``.npy`` file, its header read and its length checked."""
    try:
        with open(path, "rb") as f:
            shape, fortran, dtype = _read_header(f, path)
            offset = f.tell()
        size = os.path.getsize(path)
    except Exception as exc:  # format errors of every kind mean "not readable"
        raise UsageError(f"cannot read {path} as .npy: {exc}") from exc
    arr = StoredArray(path, shape, dtype, fortran, "file", offset)
    if not dtype.hasobject and size < offset + math.prod(shape) * dtype.itemsize:
        raise UsageError(f"cannot read {path} as .npy: the data ends early (truncated file)")
    return arr


def _member_data_offset(raw, info: zipfile.ZipInfo) -> int:
    """Where an uncompressed member's bytes start in the zip file (after its local header,
    whose name and extra field lengths may differ from the central directory's)."""
    raw.seek(info.header_offset)
    head = raw.read(30)
    if len(head) != 30 or head[:4] != b"PK\x03\x04":
        raise ValueError(f"bad local header of member {info.filename!r}")
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    return info.header_offset + 30 + name_len + extra_len


def npz_members(path: str) -> dict:
    """``{name: StoredArray}`` for every ``.npy`` member of an ``.npz``, headers only."""
    members = {}
    try:
        with zipfile.ZipFile(path) as z, open(path, "rb") as raw:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with z.open(info) as f:
                    shape, fortran, dtype = _read_header(f, f"{path} member {info.filename}")
                    header = f.tell()
                plain = info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1
                size = math.prod(shape) * dtype.itemsize
                if not dtype.hasobject and info.file_size < header + size:
                    raise ValueError(f"member {info.filename!r} ends early (truncated)")
                if plain:
                    arr = StoredArray(path, shape, dtype, fortran, "file",
                                      _member_data_offset(raw, info) + header)
                else:
                    arr = StoredArray(path, shape, dtype, fortran,
                                      "whole" if fortran and len(shape) > 1 else "stream",
                                      member=info.filename)
                members[info.filename[: -len(".npy")]] = arr
    except Exception as exc:  # zip, format and header errors all mean "not readable"
        raise UsageError(f"cannot read {path} as .npz: {exc}") from exc
    return members


# --------------------------------------------------------------------------
# Parquet (through Dask)
# --------------------------------------------------------------------------


def parquet_frame(path: str):
    """The Parquet file or folder ``path`` as a lazy Dask DataFrame (no rows read)."""
    try:
        import dask.dataframe as dd
    except ImportError:
        raise UsageError('reading Parquet needs npmdn[dask] (pip install "npmdn[dask]")') \
            from None
    try:
        return dd.read_parquet(path)
    except Exception as exc:  # pyarrow's and Dask's errors alike: not readable
        raise UsageError(f"cannot read {path} as Parquet: {exc}") from exc


__all__ = ["CsvFile", "StoredArray", "npy_array", "npz_members", "parquet_frame",
           "parse_number", "SEPARATORS"]
