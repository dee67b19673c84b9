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
the batch) and its draw ``j`` (0 <= j < n_samples). It owns one stream of
32-bit words: word ``w`` is lane ``w % 4`` of the Philox output for the
counter::

    counter = (i & 0xFFFFFFFF, i >> 32, j, w // 4)

The stream starts with the ``C`` choice words, ``C = K`` for Gumbel-max (one
per component) and ``C = 1`` for the cumulative method. The normals follow
from the next even word, ``F = C + (C & 1)``: normal pair ``p`` takes words
``F + 2p`` (u1) and ``F + 2p + 1`` (u2), which always lie in one block, and
normal ``d`` comes from pair ``d // 2`` by Box-Muller, the cosine branch for
even ``d`` and the sine branch for odd ``d``::

    r = sqrt(-2 log u1),  eps_{2p} = r cos(2 pi u2),  eps_{2p+1} = r sin(2 pi u2)

So a draw costs ``ceil((F + 2 ceil(D / 2)) / 4)`` Philox blocks: one for the
cumulative method with D <= 2, two for Gumbel-max with K = 5 and D = 1.
The layout does not depend on the temperature (at T = 0 the choice words
are skipped, not reused).

A word ``x`` becomes the float64 uniform ``u = (x + 0.5) * 2**-32``, exact in
float64 and strictly inside (0, 1), so ``log u`` is always finite.

The normals' precision: the float64 Box-Muller above (:func:`normals`) is the
reference, and float64 draws follow it to a few float64 ulps. For float32
draws a backend may compute the normals in float32 instead of rounding the
float64 ones: the numba backend does, from the words themselves
(``npmdn._numba.vmath.neglog_word_f32`` and ``cos_sin_2pi_word32``: ``-log u1``
without rounding ``u1`` first, so that it keeps its relative precision as
``u1 -> 1``, and ``2 pi u2`` reduced exactly on the integer, so that cosine and
sine keep theirs near their zeros). Each such normal is within
``NORMALS_FLOAT32_RTOL`` (3e-7, about 5 float32 ulps) of the exact Box-Muller
value, relative to its own magnitude, for every pair of words: the bound adds
the pieces' worst errors over all 2**32 words and the rounding of the product
(``tests/backends/test_numba_internals.py::test_float32_box_muller_error_bound``).
Rounding the float64 normal to float32, as the NumPy reference does, costs
2**-24 = 6e-8. The words, the uniforms and the component choices do not
depend on the precision; only the normals' last bits do.

The noise stream (training)
---------------------------
:meth:`npmdn.MDN.fit` with ``noise_x``/``noise_y`` adds fresh Gaussian noise to
the standardized x and y of every training row at every epoch. The key is the
fit's seed (modulo 2**64), as above; training row ``i`` (its index among the
rows the network trains on, after the validation split; in a streamed fit its
global row in the data) at epoch ``e`` (1-based, modulo 2**32) owns the words
of the counters::

    counter = (i & 0xFFFFFFFF, i >> 32, e, NOISE_DOMAIN | block)

``NOISE_DOMAIN = 2**31``: a sample's fourth counter word is its block index,
a few at most, so no noise counter is ever a sample's, whatever the seeds.
The row needs ``C = in_dim + out_dim`` normals, column ``c < in_dim`` of x
then column ``c - in_dim`` of y, from the words ``0, 1, 2, ...`` by the
Box-Muller pairs above (pair ``p``: words ``2p``, ``2p + 1``; even ``c`` the
cosine branch, odd ``c`` the sine): ``ceil(C / 4)`` blocks per row and epoch.
A row's noise depends on (seed, row, epoch) only, not on the batch size, the
order of the rows or the backend. :func:`noise_normals` is the reference; the
fused training epoch of the numba backend (``npmdn._numba.train``) draws the
same words.
"""

from __future__ import annotations

import numpy as np

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
_MASK32 = np.uint64(0xFFFFFFFF)
_TWO_M32 = 2.0**-32
# float32 normals computed in float32 (see the module): relative error bound against the
# exact Box-Muller value of the same words
NORMALS_FLOAT32_RTOL = 3e-7
NOISE_DOMAIN = 0x80000000  # the top bit of the fourth counter word: the noise stream


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


def words(seed: int, rows, draws, first: int, count: int) -> np.ndarray:
    """Words ``first .. first + count - 1`` of each sample's stream, uint32 (R, J, count)."""
    key = seed_key(seed)
    b0, b1 = first // 4, (first + count + 3) // 4
    blocks = [philox4x32(sample_counters(rows, draws, b), key) for b in range(b0, b1)]
    return np.concatenate(blocks, axis=-1)[..., first - 4 * b0 : first - 4 * b0 + count]


def choice_uniforms(seed: int, rows, draws, n_words: int) -> np.ndarray:
    """Choice uniforms ``u[i, j, w]`` for ``w < n_words``: shape (R, J, n_words)."""
    return to_uniform(words(seed, rows, draws, 0, n_words))


def normal_offset(n_choice_words: int) -> int:
    """The first normal word: the first even word after the choice words."""
    return n_choice_words + (n_choice_words & 1)


def normals(seed: int, rows, draws, n_normals: int, first_word: int = 0) -> np.ndarray:
    """Standard normals ``eps[i, j, d]`` for ``d < n_normals`` (float64), shape (R, J, n_normals),
    from the stream's words starting at ``first_word`` (even; see :func:`normal_offset`)."""
    if first_word % 2:
        raise ValueError(f"normal pairs start at an even word, got {first_word}")
    n_pairs = -(-n_normals // 2)
    u = to_uniform(words(seed, rows, draws, first_word, 2 * n_pairs))
    return _box_muller(u)[..., :n_normals]


def _box_muller(u) -> np.ndarray:
    """Normals from uniform pairs ``(u[..., 2p], u[..., 2p + 1])``: ``r cos``, ``r sin``."""
    r = np.sqrt(-2.0 * np.log(u[..., 0::2]))
    theta = 2.0 * np.pi * u[..., 1::2]
    out = np.empty(u.shape)
    out[..., 0::2] = r * np.cos(theta)
    out[..., 1::2] = r * np.sin(theta)
    return out


def noise_key(seed: int) -> np.ndarray:
    """The noise stream's key: :func:`seed_key` of the fit's seed modulo 2**64."""
    return seed_key(int(seed) & 0xFFFFFFFFFFFFFFFF)


def noise_counters(rows, epoch: int, block: int) -> np.ndarray:
    """Counters of the noise stream for training ``rows`` at ``epoch`` and ``block``: (R, 4)."""
    rows = np.asarray(rows, dtype=np.uint64).reshape(-1)
    c = np.empty(rows.shape + (4,), dtype=np.uint32)
    c[:, 0] = rows & _MASK32
    c[:, 1] = rows >> np.uint64(32)
    c[:, 2] = int(epoch) & 0xFFFFFFFF
    c[:, 3] = NOISE_DOMAIN | int(block)
    return c


def noise_normals(seed: int, rows, epoch: int, n_normals: int) -> np.ndarray:
    """The training noise of ``rows`` at ``epoch``: standard normals, float64 (R, n_normals).

    Column ``c`` of row ``i`` is normal ``c`` of the row's noise stream (see the
    module): for a model of widths ``in_dim`` and ``out_dim``, the first
    ``in_dim`` columns perturb x and the rest y.
    """
    key = noise_key(seed)
    n_blocks = -(-n_normals // 4)
    w = np.concatenate([philox4x32(noise_counters(rows, epoch, b), key)
                        for b in range(n_blocks)], axis=-1)
    return _box_muller(to_uniform(w))[..., :n_normals]
