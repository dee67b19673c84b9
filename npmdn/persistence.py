"""The model file format: an ``.npz`` with a JSON header, no pickle, written atomically.

A model file is a zip archive (NumPy's ``.npz``) of plain ``.npy`` members:

``header``
    uint8 bytes of a JSON object: ``format`` (``"npmdn-model"``),
    ``format_version`` (3; versions 1 and 2 are read too), ``npmdn_version``,
    ``config`` (the model's constructor arguments; from version 3 with
    ``min_sigma``, the sigma floor or null, which older files lack and
    read as null), ``fitted``, ``n_params``,
    ``sha256`` (the SHA-256 of each member array's bytes), and from version 2
    ``x_names`` and ``y_names`` (the columns the model was fitted on, or
    null) and ``extra`` (the names of further members, e.g. ``estimator``).
``params``, ``x_shift``, ``x_scale``, ``y_shift``, ``y_scale``
    the flat parameters in the model's dtype and the standardization, float64.

A full-covariance model (``config["covariance"] == "full"``) is the same
format: its head is simply wider (``architecture.head_size``), and the
version stays 2, since a file is still read by the same rules; a reader from
before full covariance refuses such a file with a ``ValueError`` naming the
covariance it does not know.

Reading trusts nothing in the file. The file must be a regular file (a FIFO
would block, a device never end); only the members needed are read, and
each member's declared size and ``.npy`` header (shape, dtype) are checked
against what the header's configuration implies *before* any of its data is
read or any memory is allocated for it, so a crafted file cannot make a
reader allocate what the file does not hold. Every way a file can be wrong,
whatever the zip or ``.npy`` layer raises, comes out as one ``ValueError``
naming the file and the problem.

Nothing here knows the network: :func:`read` asks a ``layout`` callback (in
:mod:`npmdn.model`) which arrays, of which shapes and dtypes, the header's
configuration needs.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import stat
import struct
import zipfile
import zlib

import numpy as np

from ._io import atomic_open, resolve
from ._version import __version__

FORMAT = "npmdn-model"
FORMAT_VERSION = 3
ARRAYS = ("params", "x_shift", "x_scale", "y_shift", "y_scale")
MAX_HEADER_BYTES = 1 << 20  # the JSON header; names of many columns fit easily
MAX_EXTRA_BYTES = 64 << 20  # an extra member (a JSON document)
MAX_NPY_HEADER = 1 << 16  # a .npy member's own header (NumPy writes < 200 bytes)
# Deflate cannot expand a stream by more than about 1032:1, so a member whose
# declared size exceeds this many times its compressed size is a lie.
MAX_DEFLATE_RATIO = 1100

# What a damaged zip or .npy member can raise from zipfile, zlib and numpy's
# .npy reader: each of these is a corrupt file, never a bug of the caller.
_CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError,
            zlib.error, EOFError, OSError, KeyError, IndexError, ValueError, TypeError,
            UnicodeDecodeError, struct.error, OverflowError, SyntaxError, RecursionError)


class InvalidModelFile(ValueError):
    """A file that is not a valid npmdn model file (a ``ValueError``)."""


def bad_file(path, why) -> InvalidModelFile:
    return InvalidModelFile(f"{path!r} is not a valid npmdn model file: {why}")


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------


def _checked_names(names, width, what):
    if names is None:
        return None
    names = list(names)
    if len(names) != width or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{what} must be {width} non-empty strings, got {names!r}")
    return names


def write(path, config: dict, arrays: dict, fitted: bool, *, x_names=None, y_names=None,
          extra: dict | None = None, overwrite: bool = True) -> str:
    """Write a model file at ``path`` (the name is kept as given); returns the path written.

    ``extra`` maps further member names to arrays (written and checksummed
    like the model's own, read back by :func:`read`'s ``extra``). The file is
    written through :func:`npmdn._io.atomic_open`: complete or not at all;
    ``overwrite=False`` raises ``FileExistsError`` if ``path`` is taken.
    """
    extra = dict(extra or {})
    clash = set(extra) & {"header", *ARRAYS}
    if clash:
        raise ValueError(f"extra members may not be named {sorted(clash)}")
    members = {**arrays, **extra}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "npmdn_version": __version__,
        "config": config,
        "fitted": bool(fitted),
        "n_params": int(arrays["params"].shape[0]),
        "x_names": _checked_names(x_names, config["in_dim"], "x_names"),
        "y_names": _checked_names(y_names, config["out_dim"], "y_names"),
        "extra": sorted(extra),
        "sha256": {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
                   for k, v in members.items()},
    }
    try:
        resolve(path)  # a bad place is refused before anything is written
    except OSError as exc:
        raise ValueError(f"cannot save to {os.fspath(path)!r}: "
                         f"{(exc.strerror or str(exc)).split(': ', 1)[-1]}") from exc
    blob = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    writer = atomic_open(path, "wb", overwrite=overwrite)
    with writer as f:
        np.savez(f, header=blob, **members)
    return writer.path


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _header(path, blob: bytes) -> dict:
    try:
        header = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise bad_file(path, f"its header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise bad_file(path, "its header does not name the npmdn-model format")
    version = header.get("format_version")
    if not _is_int(version) or not 1 <= version <= FORMAT_VERSION:
        raise bad_file(
            path, f"format version {version!r} is not supported (this npmdn reads 1 to "
            f"{FORMAT_VERSION})"
        )
    if not isinstance(header.get("fitted"), bool):
        raise bad_file(path, f"its 'fitted' must be true or false, got {header.get('fitted')!r}")
    if not _is_int(header.get("n_params")):
        raise bad_file(path, f"its 'n_params' must be an integer, got {header.get('n_params')!r}")
    if not isinstance(header.get("npmdn_version", ""), str):
        raise bad_file(path, "its 'npmdn_version' must be a string")
    sums = header.get("sha256")
    if not isinstance(sums, dict) or not all(
        isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)
        for v in sums.values()
    ):
        raise bad_file(path, "its 'sha256' must map member names to hex SHA-256 digests")
    if version >= 2:
        extra = header.get("extra")
        if not isinstance(extra, list) or not all(isinstance(e, str) for e in extra):
            raise bad_file(path, "its 'extra' must be a list of member names")
    return header


def _names(path, header, key, width):
    names = header.get(key)
    if names is None:
        return None
    if (not isinstance(names, list) or len(names) != width
            or not all(isinstance(n, str) and n for n in names)):
        raise bad_file(path, f"its {key!r} must be null or {width} non-empty strings, "
                       f"got {names!r}")
    return names


class _Members:
    """The zip's members, read one at a time with every size checked before reading."""

    def __init__(self, path, fh, file_size):
        self.path, self.file_size = path, file_size
        self.zip = zipfile.ZipFile(fh)

    def has(self, name) -> bool:
        try:
            self.zip.getinfo(f"{name}.npy")
        except KeyError:
            return False
        return True

    def read(self, name, dtype, shape=None, max_bytes=None) -> np.ndarray:
        """The array ``name``: of ``shape`` (or 1-D of at most ``max_bytes``) and ``dtype``."""
        path, dtype = self.path, np.dtype(dtype)
        try:
            info = self.zip.getinfo(f"{name}.npy")
        except KeyError:
            raise bad_file(path, f"the array {name!r} is missing") from None
        self._check_sizes(name, info, dtype, shape, max_bytes)
        with self.zip.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                got_shape, fortran, got = np.lib.format.read_array_header_1_0(
                    f, max_header_size=MAX_NPY_HEADER)
            elif version == (2, 0):
                got_shape, fortran, got = np.lib.format.read_array_header_2_0(
                    f, max_header_size=MAX_NPY_HEADER)
            else:
                raise bad_file(path, f"{name!r} is a .npy of version {version}")
            same_kind = (got.kind == dtype.kind and got.itemsize == dtype.itemsize
                         and not got.hasobject and got.fields is None)
            want_shape = shape if shape is not None else got_shape
            if not same_kind or got_shape != want_shape or len(got_shape) != 1:
                raise bad_file(
                    path, f"{name!r} has shape {got_shape} and dtype {got}, but the header's "
                    f"architecture needs shape {want_shape} and dtype {dtype}"
                )
            n_bytes = got_shape[0] * dtype.itemsize
            if max_bytes is not None and n_bytes > max_bytes:
                raise bad_file(path, f"{name!r} is larger than {max_bytes} bytes")
            data = f.read(n_bytes)
            if len(data) != n_bytes or f.read(1):  # reading to the end checks the CRC
                raise bad_file(path, f"{name!r} does not hold the {n_bytes} bytes it declares")
        return np.frombuffer(data, dtype=got).astype(dtype.newbyteorder("="))

    def _check_sizes(self, name, info, dtype, shape, max_bytes):
        path = self.path
        if info.flag_bits & 0x1:
            raise bad_file(path, f"{name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise bad_file(path, f"{name!r} uses zip compression method {info.compress_type}, "
                           "which npmdn does not read (stored and deflated only)")
        if info.compress_size > self.file_size:
            raise bad_file(path, f"{name!r} declares {info.compress_size} bytes in a file of "
                           f"{self.file_size}")
        ratio = 1 if info.compress_type == zipfile.ZIP_STORED else MAX_DEFLATE_RATIO
        if info.file_size > ratio * info.compress_size + 64:
            raise bad_file(path, f"{name!r} declares {info.file_size} bytes, more than its "
                           f"{info.compress_size} stored bytes can hold")
        if shape is not None:
            need = math.prod(shape) * dtype.itemsize
            if not need <= info.file_size <= need + MAX_NPY_HEADER:
                raise bad_file(path, f"{name!r} declares {info.file_size} bytes, but the "
                               f"header's architecture needs {need} bytes of data")
        elif info.file_size > max_bytes + MAX_NPY_HEADER:
            raise bad_file(path, f"{name!r} declares {info.file_size} bytes, more than the "
                           f"{max_bytes} allowed")


def _open_regular(path):
    """A binary file object for a regular file; never blocks on a FIFO."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"no model file at {path!r}") from None
    except OSError as exc:
        raise bad_file(path, f"it cannot be opened ({exc.strerror})") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else \
                "a FIFO" if stat.S_ISFIFO(st.st_mode) else \
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else \
                "not a regular file"
            raise bad_file(path, f"it is {kind}, not a regular file")
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def read(path, layout, extra=()):
    """Read and check a model file: ``(header, arrays, extras)``.

    ``layout(config)`` returns ``{name: (shape, dtype)}`` of the arrays the
    header's configuration needs, raising ``TypeError`` or ``ValueError`` for
    an invalid one; it must not allocate. ``extra`` names further members to
    read (1-D, at most :data:`MAX_EXTRA_BYTES`): ``extras[name]`` is the
    array, or None where the file has no such member. ``header["x_names"]``
    and ``["y_names"]`` are set (None in a version 1 file).

    Raises ``FileNotFoundError`` for a missing file and
    :class:`InvalidModelFile` (a ``ValueError``) naming the problem for
    anything else: not a regular file, corrupt, truncated, foreign, crafted
    or inconsistent.
    """
    path = os.fspath(path)
    fh, size = _open_regular(path)
    with fh:
        try:
            return _read(path, fh, size, layout, extra)
        except InvalidModelFile:
            raise
        except MemoryError as exc:
            raise bad_file(path, "it is too large to load in the memory available") from exc
        except _CORRUPT as exc:
            raise bad_file(path, f"it cannot be read ({type(exc).__name__}: {exc})") from exc


def _read(path, fh, size, layout, extra):
    if not zipfile.is_zipfile(fh):  # numpy's message here would speak of pickles
        raise bad_file(path, "it is not an .npz (zip) archive")
    fh.seek(0)
    members = _Members(path, fh, size)
    if not members.has("header"):
        raise bad_file(path, "it has no npmdn header")
    blob = members.read("header", np.uint8, max_bytes=MAX_HEADER_BYTES).tobytes()
    header = _header(path, blob)
    config = header.get("config")
    if header["format_version"] < 3 and isinstance(config, dict) and "min_sigma" not in config:
        config = header["config"] = {**config, "min_sigma": None}  # no floor before version 3
    try:
        expected = layout(config)
    except (TypeError, ValueError) as exc:
        raise bad_file(path, f"its configuration is invalid ({exc})") from exc
    if header["n_params"] != expected["params"][0][0]:
        raise bad_file(path, f"its header says {header['n_params']} parameters, its "
                       f"architecture has {expected['params'][0][0]}")
    header["x_names"] = _names(path, header, "x_names", config["in_dim"])
    header["y_names"] = _names(path, header, "y_names", config["out_dim"])
    sums = header["sha256"]
    arrays = {}
    for name, (shape, dtype) in expected.items():
        arrays[name] = members.read(name, dtype, shape)
        _check_sum(path, name, arrays[name], sums.get(name))
        if not np.isfinite(arrays[name]).all():
            raise bad_file(path, f"{name!r} holds NaN or inf")
    if not (arrays["x_scale"] > 0).all() or not (arrays["y_scale"] > 0).all():
        raise bad_file(path, "its standardization scales must be positive")
    extras = {}
    for name in extra:
        if not members.has(name):
            extras[name] = None
            continue
        extras[name] = members.read(name, np.uint8, max_bytes=MAX_EXTRA_BYTES)
        if name in sums or header["format_version"] >= 2:  # version 1 appended it unsummed
            _check_sum(path, name, extras[name], sums.get(name))
    return header, arrays, extras


def _check_sum(path, name, arr, digest):
    if digest != hashlib.sha256(arr.tobytes()).hexdigest():
        raise bad_file(path, f"the checksum of {name!r} does not match its header")
