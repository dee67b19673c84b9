"""Input checks at the public surface.

Every public entry point validates its arguments here, before any work is
done, so that a user gets one clear message naming what was expected.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._arrays import array_module, is_device_array, is_lazy_array


class InputDTypeError(TypeError, ValueError):
    """A wrong dtype or kind of argument. Both a ``TypeError`` and a ``ValueError``,
    so either catches it; public as ``npmdn.InputDTypeError``."""

    __module__ = "npmdn"


FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_dtype(dtype, name: str = "dtype") -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise InputDTypeError(f"{name} must be 'float32' or 'float64', got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise InputDTypeError(f"{name} must be 'float32' or 'float64', got {dt.name}")
    return dt


def float_array(a, name: str, ndim: int | tuple[int, ...] | None = None):
    """An existing float32/float64 array (NumPy or CuPy), unchanged; anything else is an error."""
    if not hasattr(a, "dtype") or not hasattr(a, "shape"):
        a = np.asarray(a)
    if a.dtype not in FLOAT_DTYPES:
        raise InputDTypeError(f"{name} must be a float32 or float64 array, got dtype {a.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if a.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {want}, got shape {tuple(a.shape)}")
    return a


def real_array(a, name: str, dtype: np.dtype):
    """Convert user data (list, int or float array) to a host array of ``dtype``.

    Booleans, complex numbers, strings and objects are refused rather than
    coerced: none of them is a real-valued measurement.
    """
    if is_device_array(a):
        a = a.get()
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise InputDTypeError(f"{name} must be an array of real numbers ({exc})") from exc
    if arr.dtype.kind not in "iuf":
        raise InputDTypeError(
            f"{name} must hold real numbers (int or float), got dtype {arr.dtype}"
        )
    return np.ascontiguousarray(arr, dtype=dtype)


def check_finite(a, name: str, xp=np) -> None:
    if not bool(xp.isfinite(a).all()):
        bad = int((~xp.isfinite(a)).sum())
        raise ValueError(f"{name} must be finite: it holds {bad} NaN or inf value(s)")


def check_nonempty(n: int, name: str) -> None:
    if n == 0:
        raise ValueError(f"{name} is empty: at least one row is needed")


def int_arg(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputDTypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def float_arg(value, name: str, minimum: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputDTypeError(f"{name} must be a real number, got {type(value).__name__}")
    # a float32 is shown as it was given (0.1, not 0.10000000149011612)
    shown = str(value) if isinstance(value, np.floating) else repr(float(value))
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {shown}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{name} must be {op} {minimum}, got {shown}")
    return value


def choice_arg(value, name: str, choices) -> str:
    if value not in choices:
        opts = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {opts}, got {value!r}")
    return value


def seed_arg(seed) -> int:
    """A sampling seed: an int in [0, 2**64), or None for fresh OS entropy."""
    if seed is None:
        return int(np.random.SeedSequence().entropy) & 0xFFFFFFFFFFFFFFFF
    return int_arg(seed, "seed", 0, 2**64 - 1)


def mixture_args(logits, mu, log_sigma, y=None):
    """Validate the raw mixture parameters (and targets) of the functional API.

    Shapes: ``logits [N, K]``, ``mu [N, K, D]``, ``log_sigma [N, K, S]``
    with ``S`` in ``{1, D, D (D + 1) / 2}`` (isotropic, diagonal, full),
    ``y [N, D]``; one float dtype for all. Returns ``(N, K, D, S)``.
    """
    logits = float_array(logits, "logits", 2)
    mu = float_array(mu, "mu", 3)
    log_sigma = float_array(log_sigma, "log_sigma", 3)
    n, k = logits.shape
    if mu.shape[:2] != (n, k):
        raise ValueError(f"mu must have shape [N, K, D] = [{n}, {k}, D], got {tuple(mu.shape)}")
    d = mu.shape[2]
    full = d * (d + 1) // 2
    if log_sigma.shape[:2] != (n, k) or log_sigma.shape[2] not in (1, d, full):
        raise ValueError(
            f"log_sigma must have shape [N, K, S] = [{n}, {k}, {d}] (diagonal), "
            f"[{n}, {k}, 1] (isotropic) or [{n}, {k}, {full}] (full, D (D + 1) / 2), "
            f"got {tuple(log_sigma.shape)}"
        )
    s = log_sigma.shape[2]
    arrays = [("logits", logits), ("mu", mu), ("log_sigma", log_sigma)]
    if y is not None:
        y = float_array(y, "y", 2)
        if y.shape != (n, d):
            raise ValueError(f"y must have shape [N, D] = [{n}, {d}], got {tuple(y.shape)}")
        arrays.append(("y", y))
    dtypes = {a.dtype for _, a in arrays}
    if len(dtypes) > 1:
        desc = ", ".join(f"{nm}={a.dtype}" for nm, a in arrays)
        raise InputDTypeError(f"all mixture arrays must share one float dtype, got {desc}")
    kinds = {is_device_array(a) for _, a in arrays}
    if len(kinds) > 1:
        raise InputDTypeError("mixture arrays mix NumPy and CuPy arrays; put them on one device")
    check_nonempty(n, "the batch (N)")
    if k == 0 or d == 0:
        raise ValueError(f"need K >= 1 components and D >= 1 dimensions, got K={k}, D={d}")
    if any(is_lazy_array(a) for _, a in arrays):
        return n, k, d, s  # Dask arrays: their blocks are checked when computed
    xp = array_module(logits)
    for nm, a in arrays:
        check_finite(a, nm, xp)
    return n, k, d, s


def _real_targets(y, name: str, on_device: bool):
    """``y`` as an array of a real dtype on the mixture's device (NumPy or CuPy), or
    an InputDTypeError: booleans, complex numbers, strings and objects are refused."""
    if is_device_array(y) != on_device:
        raise InputDTypeError(
            f"{name} and the mixture arrays mix NumPy and CuPy arrays; put them on one device"
        )
    if not on_device and not is_lazy_array(y):  # lists, pandas objects: NumPy arrays
        try:
            y = np.asarray(y)
        except (TypeError, ValueError) as exc:
            raise InputDTypeError(f"{name} must be an array of real numbers ({exc})") from exc
    if y.dtype.kind not in "iuf":
        raise InputDTypeError(f"{name} must hold real numbers (int or float), got dtype {y.dtype}")
    return y


def like_mixture(y, like, name: str = "y"):
    """Targets of the log-likelihood functions in the dtype of the mixture array ``like``.

    Any real dtype is accepted and converted (float64 targets of a float32
    mixture are rounded to float32, the precision the kernels compute in);
    booleans, complex numbers, strings and objects are refused. Shapes and
    values are checked by :func:`mixture_args`.
    """
    y = _real_targets(y, name, is_device_array(like))
    dtype = getattr(like, "dtype", None)
    if dtype in FLOAT_DTYPES and y.dtype != dtype:
        y = array_module(y).asarray(y, dtype=dtype)
    return y


def mixture_targets(y, n: int, d: int, on_device: bool, name: str = "y"):
    """Targets for the distribution functions: [N, D] (or [N] when D = 1), any real
    dtype, finite; returned as float64 [N, D] on the parameters' device."""
    y = _real_targets(y, name, on_device)
    xp = array_module(y)
    if y.ndim == 1 and d == 1:
        y = y.reshape(-1, 1)
    if y.shape != (n, d):
        want = f"[N, D] = [{n}, {d}]" + (f" or [N] = [{n}]" if d == 1 else "")
        raise ValueError(f"{name} must have shape {want}, got {tuple(y.shape)}")
    y = xp.asarray(y, dtype=xp.float64)
    check_finite(y, name, xp)
    return y


def dims_arg(dims, d: int, name: str = "dims", keep_one: bool = False) -> list:
    """Output indices: an int or a sequence of distinct ints in ``[0, D)``, at least one
    (and, with ``keep_one``, fewer than D, so that one output is left over)."""
    if isinstance(dims, numbers.Integral) and not isinstance(dims, bool):
        dims = [dims]
    try:
        dims = list(dims)
    except TypeError:
        raise InputDTypeError(f"{name} must be an int or a sequence of ints, got {dims!r}") \
            from None
    for i in dims:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise InputDTypeError(f"{name} must hold ints, got {i!r}")
    dims = [int(i) for i in dims]
    if not dims:
        raise ValueError(f"{name} is empty: name at least one output")
    bad = [i for i in dims if not 0 <= i < d]
    if bad:
        raise ValueError(f"{name} must lie in [0, {d}) (D = {d} outputs), got {bad[0]}")
    if len(set(dims)) != len(dims):
        raise ValueError(f"{name} must be distinct, got {dims}")
    if keep_one and len(dims) >= d:
        raise ValueError(f"{name} must leave at least one of the D = {d} outputs, got {dims}")
    return dims


def probabilities(p, name: str) -> np.ndarray:
    """A scalar or 1-D sequence of levels strictly inside (0, 1), as float64 (0-D kept)."""
    if is_device_array(p):
        p = p.get()
    try:
        arr = np.asarray(p)
    except (TypeError, ValueError) as exc:
        raise InputDTypeError(f"{name} must be a number or a 1-D sequence of numbers") from exc
    if arr.dtype.kind not in "iuf":
        raise InputDTypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a number or a 1-D sequence, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: give at least one level")
    arr = arr.astype(np.float64)
    bad = ~((arr > 0) & (arr < 1))  # also catches NaN
    if bad.any():
        raise ValueError(
            f"{name} must lie strictly between 0 and 1, got {float(arr[bad].ravel()[0])!r}"
        )
    return arr


def column_names(a):
    """The column names of a pandas (or Dask) DataFrame, or the name of a Series, when
    they are all strings, else None; neither pandas nor Dask is imported here."""
    if not type(a).__module__.startswith(("pandas", "dask")) or \
            type(a).__name__ not in ("DataFrame", "Series"):
        return None
    cols = getattr(a, "columns", None)
    if cols is not None:
        names = list(cols)
        return tuple(names) if names and all(isinstance(c, str) for c in names) else None
    name = getattr(a, "name", None)
    if getattr(a, "ndim", 0) == 1:
        return (name,) if isinstance(name, str) else None
    return None


def names_arg(names, width, what):
    """Column names given by the user: None, a string (one column) or a sequence of
    ``width`` distinct non-empty strings, as a tuple."""
    if names is None:
        return None
    if isinstance(names, str):
        names = (names,)
    try:
        names = tuple(names)
    except TypeError:
        raise InputDTypeError(f"{what} must be a sequence of strings, got {names!r}") from None
    if not all(isinstance(n, str) and n for n in names):
        raise InputDTypeError(f"{what} must be non-empty strings, got {list(names)!r}")
    if len(names) != width:
        raise ValueError(f"{what} must name {width} column(s), got {len(names)}: {list(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} must be distinct, got {list(names)}")
    return names
