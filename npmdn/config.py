"""Every tunable of npmdn, once: tile and chunk sizes, thread thresholds, env var names.

These are performance settings, not semantics: none of them changes a result
beyond the order of floating-point sums (the tests vary several of them to
check exactly that). They are read where they are used, at call time, so a
test or a benchmark may set them on this module. The two inference sizes also
take their first value from an environment variable (``NPMDN_INFERENCE_CHUNK``,
``NPMDN_NETWORK_PASS``): a testing and tuning knob for processes that cannot
be reached from Python, such as the ``npmdn`` command or Dask workers (the
tests run the command on small files in many chunks so).
"""

from __future__ import annotations

import os

# --------------------------------------------------------------------------
# environment variables
# --------------------------------------------------------------------------

ENV_BACKEND = "NPMDN_BACKEND"  # the default backend, see npmdn.backend
ENV_FUSED_FIT = "NPMDN_FUSED_FIT"  # "0" turns the numba backend's fused training epoch off
ENV_KERNEL_DIR = "NPMDN_KERNEL_DIR"  # a directory of edited CUDA sources to use instead
ENV_INFERENCE_CHUNK = "NPMDN_INFERENCE_CHUNK"  # INFERENCE_CHUNK below (testing, tuning)
ENV_NETWORK_PASS = "NPMDN_NETWORK_PASS"  # NETWORK_PASS below (testing, tuning)
# "0": no background process compiles kernels on a first run (npmdn._numba.warm)
ENV_BACKGROUND_COMPILE = "NPMDN_BACKGROUND_COMPILE"


def _env_rows(name: str, default: int) -> int:
    """A row count from the environment variable ``name``, else ``default``."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a whole number of rows >= 1, got {text!r}")
    return value


# --------------------------------------------------------------------------
# memory bounds of the NumPy-level code (any backend)
# --------------------------------------------------------------------------

# rows per chunk of MDN inference (and of the npmdn command): bounds memory for any N
INFERENCE_CHUNK = _env_rows(ENV_INFERENCE_CHUNK, 1 << 16)
# Rows per matrix product of the network in inference (the last pass of an array may be
# shorter). BLAS may round a row's dot products differently with the number of rows in
# the product (other kernels, other splits between threads), so passes of a fixed size,
# counted from row 0, make a row's result depend only on the row and its index: a slice
# that starts on a multiple of the pass, or a Dask block padded to one (npmdn.dask), gives
# bit for bit the rows of the whole. INFERENCE_CHUNK is rounded to a multiple of it.
# numpy, numba: small enough for the caches, large for BLAS
NETWORK_PASS = _env_rows(ENV_NETWORK_PASS, 1 << 12)
NETWORK_PASS_DEVICE = 1 << 16  # cupy: a GPU needs large products to fill it
DISTRIBUTION_BLOCK = 1 << 20  # float64 elements per temporary of the CDF/quantile/CRPS/modes

# --------------------------------------------------------------------------
# the numba backend (npmdn._numba)
# --------------------------------------------------------------------------

# samples per tile of the fused head kernels (a multiple of 8; 64 measured up to 1.3x slower)
HEAD_TILE = 256
SAMPLE_TILE = 256  # draws per tile of the sampling kernel
# Work below these per thread runs on one thread: a parallel region's barrier
# waits for the slowest thread, and on a busy machine that one may be waiting
# for a time slice, so short calls gain nothing and can lose milliseconds.
HEAD_MIN_ROWS_PER_THREAD = 8192  # head kernel, ~20-100 ns per row
SAMPLE_MIN_DRAWS_PER_THREAD = 4096  # sampling, ~20-150 ns per draw
CHUNKS_PER_THREAD = 4  # work items per thread, so that one slow thread does not hold the rest
TRAIN_CHUNK = 256  # rows per chunk of a minibatch in the fused training epoch
# ... or more: a thread's share of the batch, up to this many rows and while the
# chunk's scratch takes at most TRAIN_CHUNK_BYTES (half this machine's 1 MiB L2). Each
# chunk's pass through every layer has a set-up cost: the seed set-up's 1000-row batch
# trained in 0.47 s as four chunks, 0.38 s as one; the large set-up (8192-row batches,
# 2 threads) 0.222 s in 256-row chunks, 0.215 s in 1024-row ones (one thread: 0.42,
# 0.36 s). A wide network (two layers of 128 units) whose chunk would exceed the budget
# trained 17% slower in 1024-row chunks than in 256-row ones, so it keeps those.
TRAIN_CHUNK_MAX = 1024
TRAIN_CHUNK_BYTES = 512 * 1024
# A training step of a small model lasts tens of microseconds; below this many
# rows per thread it runs on one thread (measured: 60 us steps became 5 ms with
# two threads and one other busy process on a 2-core machine).
TRAIN_MIN_ROWS_PER_THREAD = 4096

# --------------------------------------------------------------------------
# the cupy backend (npmdn._cuda)
# --------------------------------------------------------------------------

CUDA_MAX_BLOCKS = 1 << 16  # grid-stride loops cover the rest; this already fills any GPU
