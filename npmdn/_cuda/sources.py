"""Where the CUDA C sources are, and the text handed to the compiler.

The sources live in ``kernels/`` at the top of the repository and are shipped
inside the wheel as ``npmdn/kernels/`` (see ``pyproject.toml``). This module
finds them in either layout and does not import CuPy, so the tests that
compile the sources without a GPU (nvcc, NVRTC, the host C++ build) and the
GPU loader all read the same files through it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .. import config

KERNEL_FILE = "mdn_kernels.cu"
HEADER_FILE = "mdn_math.cuh"

# (base name, what it computes); each exists as <base>_f32 and <base>_f64.
KERNELS = ("mdn_nll_grad", "mdn_log_prob", "mdn_sample", "mdn_nll_grad_full",
           "mdn_log_prob_full", "mdn_sample_full")
DTYPE_SUFFIX = {"float32": "f32", "float64": "f64"}

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.MULTILINE)


def _candidates():
    env = os.environ.get(config.ENV_KERNEL_DIR)  # edited sources to try
    if env:
        yield Path(env)
        return
    pkg = Path(__file__).resolve().parent.parent  # npmdn/
    yield pkg / "kernels"  # installed wheel: npmdn/kernels
    yield pkg.parent / "kernels"  # source checkout or editable install: <repo>/kernels


def kernel_dir() -> Path:
    """The directory holding the ``.cu`` and ``.cuh`` sources."""
    tried = []
    for cand in _candidates():
        if (cand / KERNEL_FILE).is_file():
            return cand
        tried.append(str(cand))
    raise FileNotFoundError(
        f"npmdn's CUDA sources ({KERNEL_FILE}) were not found; looked in: {', '.join(tried)}. "
        "The wheel ships them as npmdn/kernels; a source checkout has them in kernels/."
    )


def cu_files() -> list[Path]:
    """Every ``.cu`` file in the kernel directory, sorted."""
    return sorted(kernel_dir().glob("*.cu"))


def source(name: str = KERNEL_FILE) -> str:
    """The source of ``name`` with its local ``#include "..."`` files inlined.

    Inlining (rather than ``-I``) makes the text handed to NVRTC complete, so
    CuPy's on-disk kernel cache, keyed by the source text, is invalidated when
    the header changes.
    """
    root = kernel_dir()

    def expand(path: Path, seen: tuple) -> str:
        if path.name in seen:
            raise ValueError(f"include cycle in the CUDA sources: {' -> '.join(seen)}")
        text = path.read_text()

        def sub(m):
            inc = root / m.group(1)
            if not inc.is_file():
                return m.group(0)  # left to the compiler, which will say what is missing
            return f"// ---- begin {m.group(1)}\n{expand(inc, seen + (path.name,))}\n" \
                   f"// ---- end {m.group(1)}"

        return _INCLUDE.sub(sub, text)

    return expand(root / name, ())


def threads_per_block() -> int:
    """``MDN_THREADS`` as defined in the kernel source: the launch block size."""
    m = re.search(r"^#define MDN_THREADS (\d+)\s*$", (kernel_dir() / KERNEL_FILE).read_text(),
                  re.MULTILINE)
    if m is None:
        raise ValueError(f"{KERNEL_FILE} does not define MDN_THREADS")
    return int(m.group(1))


def kernel_names() -> list[str]:
    """All extern "C" kernel names the loader expects in the compiled module."""
    return [f"{base}_{suf}" for base in KERNELS for suf in DTYPE_SUFFIX.values()]
