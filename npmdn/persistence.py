"""The model file format: an ``.npz`` with a JSON header, no pickle, written atomically.

A model file is a zip archive (NumPy's ``.npz``) of plain arrays:

``header``
    uint8 bytes of a JSON object: ``format`` (``"npmdn-model"``),
    ``format_version``, ``npmdn_version``, ``config`` (the model's
    constructor arguments), ``fitted``, ``n_params`` and ``sha256`` (the
    SHA-256 of each array's bytes).
``params``, ``x_shift``, ``x_scale``, ``y_shift``, ``y_scale``
    the flat parameters in the model's dtype and the standardization, float64.

Nothing here knows the network: :func:`read` asks a ``build`` callback (in
:mod:`npmdn.model`) for the model and the arrays it needs, and checks the
file against that. Every way a file can be wrong raises ``ValueError``
naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import numpy as np

from ._io import atomic_open, resolve
from ._version import __version__

FORMAT = "npmdn-model"
FORMAT_VERSION = 1


def bad_file(path, why) -> ValueError:
    return ValueError(f"{path!r} is not a valid npmdn model file: {why}")


def write(path, config: dict, arrays: dict, fitted: bool, *, overwrite: bool = True) -> str:
    """Write a model file at ``path`` (the name is kept as given); returns the path written.

    The file is written through :func:`npmdn._io.atomic_open`: complete or
    not at all, a link followed, a FIFO or device written to and never
    replaced; ``overwrite=False`` raises ``FileExistsError`` if ``path`` is
    taken (atomically).
    """
    try:
        resolve(path)  # a bad place is refused before anything is written
    except OSError as exc:
        raise ValueError(f"cannot save to {os.fspath(path)!r}: "
                         f"{(exc.strerror or str(exc)).split(': ', 1)[-1]}") from exc
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "npmdn_version": __version__,
        "config": config,
        "fitted": fitted,
        "n_params": int(arrays["params"].shape[0]),
        "sha256": {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in arrays.items()},
    }
    blob = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    writer = atomic_open(path, "wb", overwrite=overwrite)
    with writer as f:
        np.savez(f, header=blob, **arrays)
    return writer.path


def _header(path, data) -> dict:
    if "header" not in data:
        raise bad_file(path, "it has no npmdn header")
    try:
        header = json.loads(data["header"].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_file(path, f"its header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise bad_file(path, "its header does not name the npmdn-model format")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise bad_file(
            path, f"format version {version!r} is not supported (this npmdn reads up to "
            f"{FORMAT_VERSION})"
        )
    return header


def _check_arrays(path, data, header, expected) -> None:
    sums = header.get("sha256", {})
    for name, (shape, dtype) in expected.items():
        if name not in data:
            raise bad_file(path, f"the array {name!r} is missing")
        arr = data[name]
        if arr.shape != shape or arr.dtype != dtype:
            raise bad_file(
                path, f"{name!r} has shape {arr.shape} and dtype {arr.dtype}, but the header's "
                f"architecture needs shape {shape} and dtype {dtype}"
            )
        if sums.get(name) != hashlib.sha256(arr.tobytes()).hexdigest():
            raise bad_file(path, f"the checksum of {name!r} does not match its header")
        if not np.isfinite(arr).all():
            raise bad_file(path, f"{name!r} holds NaN or inf")


def read(path, build):
    """Read and check a model file: ``(model, arrays, header)``.

    ``build(config)`` returns ``(model, expected)``: the model the header's
    configuration describes and ``{name: (shape, dtype)}`` of the arrays it
    needs; a ``TypeError`` or ``ValueError`` from it means an invalid
    configuration. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` naming the problem for a corrupt, truncated, foreign or
    inconsistent file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    if not zipfile.is_zipfile(path):  # checked first: numpy's message here speaks of pickles
        raise bad_file(path, "it is not an .npz (zip) archive")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise bad_file(path, f"cannot read it as .npz ({exc})") from exc
    header = _header(path, data)
    try:
        model, expected = build(header.get("config"))
    except (TypeError, ValueError) as exc:
        raise bad_file(path, f"its configuration is invalid ({exc})") from exc
    _check_arrays(path, data, header, expected)
    if not (data["x_scale"] > 0).all() or not (data["y_scale"] > 0).all():
        raise bad_file(path, "its standardization scales must be positive")
    return model, data, header
