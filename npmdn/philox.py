"""Philox4x32-10, the counter-based generator behind every npmdn sample.

Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3"
(SC'11). A Philox draw is a pure function of a 128-bit counter and a 64-bit
key, so any (row, draw) can be generated on its own, in any order, on any
backend. This module is the NumPy reference; the Numba and CUDA kernels
implement the same stream and are tested against it.

The npmdn stream
----------------
Seed ``s`` (an integer in [0, 2**64)) is the key::

    key = (s & 0xFFFFFFFF, s >> 32)

A sample is addressed by its global row ``i`` (``row_offset`` + position in
the batch) and its draw ``j`` (0 <= j < n_samples). Block ``b`` of that
sample is the Philox output for the counter::

    counter = (i & 0xFFFFFFFF, i >> 32, j, b)

and yields four 32-bit words. Two families of blocks are used:

* choice words, blocks ``b = 0, 1, ...``: word ``w`` is lane ``w % 4`` of
  block ``w // 4``. Gumbel-max uses words ``0 .. K-1`` (one per component);
  the cumulative method uses word 0 alone.
* normal words, blocks ``b = 2**31 + p // 2`` for normal pair ``p``: the
  pair uses lanes ``(0, 1)`` if ``p`` is even, ``(2, 3)`` if odd. Normal
  ``d`` of the sample comes from pair ``d // 2`` by Box-Muller, the cosine
  branch for even ``d`` and the sine branch for odd ``d``::

      r = sqrt(-2 log u1),  eps_{2p} = r cos(2 pi u2),  eps_{2p+1} = r sin(2 pi u2)

A word ``x`` becomes the float64 uniform ``u = (x + 0.5) * 2**-32``, exact in
float64 and strictly inside (0, 1), so ``log u`` is always finite.
"""

from __future__ import annotations

import numpy as np

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
NORMAL_BLOCK = 2**31  # first block of the normal-word family
_MASK32 = np.uint64(0xFFFFFFFF)
_TWO_M32 = 2.0**-32


def philox4x32(counter, key, rounds: int = 10) -> np.ndarray:
    """Philox4x32 with ``rounds`` rounds, vectorized over leading axes.

    Parameters
    ----------
    counter : array of uint32, shape (..., 4)
    key : array of uint32, shape (..., 2), broadcastable against ``counter``

    Returns
    -------
    uint32 array of shape (..., 4).

    Each round multiplies lanes 0 and 2 by the Philox constants, keeps the
    high and low 32-bit halves of the products, and mixes them with the key
    (Random123's ``philox4x32round``); the key is bumped by the Weyl
    constants between rounds.
    """
    counter = np.asarray(counter, dtype=np.uint32)
    key = np.asarray(key, dtype=np.uint32)
    if counter.shape[-1:] != (4,) or key.shape[-1:] != (2,):
        raise ValueError("counter must have shape (..., 4) and key shape (..., 2)")
    c0, c1, c2, c3 = (counter[..., i].astype(np.uint64) for i in range(4))
    k0 = key[..., 0].astype(np.uint64)
    k1 = key[..., 1].astype(np.uint64)
    m0, m1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
    w0, w1 = np.uint64(PHILOX_W0), np.uint64(PHILOX_W1)
    for r in range(rounds):
        if r:
            k0 = (k0 + w0) & _MASK32
            k1 = (k1 + w1) & _MASK32
        p0 = m0 * c0  # < 2**64: a 32 x 32 -> 64-bit product, exact in uint64
        p1 = m1 * c2
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _MASK32, \
            (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _MASK32
    out = np.stack(np.broadcast_arrays(c0, c1, c2, c3), axis=-1)
    return out.astype(np.uint32)


def seed_key(seed: int) -> np.ndarray:
    """The Philox key for a 64-bit seed: ``(seed & 0xFFFFFFFF, seed >> 32)``."""
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32)


def sample_counters(rows, draws, block) -> np.ndarray:
    """Counters for global ``rows`` x ``draws`` at one ``block``: shape (R, J, 4)."""
    rows = np.asarray(rows, dtype=np.uint64)[:, None]
    draws = np.asarray(draws, dtype=np.uint64)[None, :]
    c = np.empty(np.broadcast_shapes(rows.shape, draws.shape) + (4,), dtype=np.uint32)
    c[..., 0] = rows & _MASK32
    c[..., 1] = rows >> np.uint64(32)
    c[..., 2] = draws
    c[..., 3] = block
    return c


def to_uniform(words) -> np.ndarray:
    """uint32 words -> float64 uniforms ``(x + 0.5) * 2**-32`` in the open interval (0, 1)."""
    return (np.asarray(words, dtype=np.float64) + 0.5) * _TWO_M32


def choice_uniforms(seed: int, rows, draws, n_words: int) -> np.ndarray:
    """Choice uniforms ``u[i, j, w]`` for ``w < n_words``: shape (R, J, n_words)."""
    key = seed_key(seed)
    n_blocks = -(-n_words // 4)
    blocks = [philox4x32(sample_counters(rows, draws, b), key) for b in range(n_blocks)]
    words = np.concatenate(blocks, axis=-1)[..., :n_words]
    return to_uniform(words)


def normals(seed: int, rows, draws, n_normals: int) -> np.ndarray:
    """Standard normals ``eps[i, j, d]`` for ``d < n_normals`` (float64), shape (R, J, n_normals)."""
    key = seed_key(seed)
    n_pairs = -(-n_normals // 2)
    out = []
    for b in range(-(-n_pairs // 2)):
        u = to_uniform(philox4x32(sample_counters(rows, draws, NORMAL_BLOCK + b), key))
        for lane in (0, 2):
            r = np.sqrt(-2.0 * np.log(u[..., lane]))
            theta = 2.0 * np.pi * u[..., lane + 1]
            out += [r * np.cos(theta), r * np.sin(theta)]
    return np.stack(out[:n_normals], axis=-1)
