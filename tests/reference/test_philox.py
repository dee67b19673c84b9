"""Philox4x32-10 against the published known-answer vectors (Random123 kat_vectors)."""

import numpy as np
import pytest
from cases import PHILOX_KAT as KAT

from npmdn import philox


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_known_answers(ctr, key, want):
    got = philox.philox4x32(np.array(ctr, np.uint32), np.array(key, np.uint32))
    assert [int(v) for v in got] == list(want)


def test_vectorized_matches_single_calls():
    ctrs = np.array([k[0] for k in KAT], np.uint32)
    keys = np.array([k[1] for k in KAT], np.uint32)
    got = philox.philox4x32(ctrs, keys)
    assert got.tolist() == [list(k[2]) for k in KAT]


def test_counter_layout_and_key():
    assert philox.seed_key(0x0123456789ABCDEF).tolist() == [0x89ABCDEF, 0x01234567]
    c = philox.sample_counters(np.array([2**32 + 7]), np.array([5]), 3)
    assert c[0, 0].tolist() == [7, 1, 5, 3]
    with pytest.raises(ValueError):
        philox.seed_key(2**64)


def test_uniforms_open_interval_and_exact():
    u = philox.to_uniform(np.array([0, 2**32 - 1], np.uint32))
    assert 0 < u[0] < u[1] < 1
    assert u[0] == 0.5 * 2.0**-32 and u[1] == 1 - 0.5 * 2.0**-32


def test_stream_statistics():
    rows = np.arange(4000)
    draws = np.arange(8)
    u = philox.choice_uniforms(7, rows, draws, 5).ravel()
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    z = philox.normals(7, rows, draws, 3).ravel()
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    # different seeds and different draws give different streams
    assert not np.array_equal(philox.normals(8, rows, draws, 3), philox.normals(7, rows, draws, 3))
    n = philox.normals(7, rows, draws, 3)
    assert not np.array_equal(n[:, 0], n[:, 1])


def test_normals_prefix_consistent():
    """Normal d does not depend on how many normals are asked for."""
    rows, draws = np.arange(10), np.arange(3)
    a = philox.normals(3, rows, draws, 7)
    b = philox.normals(3, rows, draws, 2)
    np.testing.assert_array_equal(a[..., :2], b)


def test_word_stream_layout():
    """Word w of sample (row, draw) is lane w % 4 of the block at counter (row, draw, w // 4)."""
    rows, draws = np.array([3, 2**32 + 1], np.uint64), np.array([0, 7], np.uint64)
    key = philox.seed_key(2**40 + 9)
    w = philox.words(2**40 + 9, rows, draws, 0, 12)
    for b in range(3):
        np.testing.assert_array_equal(
            w[..., 4 * b : 4 * b + 4],
            philox.philox4x32(philox.sample_counters(rows, draws, b), key))
    np.testing.assert_array_equal(philox.words(2**40 + 9, rows, draws, 5, 6), w[..., 5:11])


@pytest.mark.parametrize("first", [0, 2, 6, 8])
def test_normals_are_box_muller_of_the_words_after_the_choice(first):
    rows, draws = np.arange(5), np.arange(3)
    u = philox.to_uniform(philox.words(4, rows, draws, first, 4))
    r = np.sqrt(-2 * np.log(u[..., [0, 2]]))
    th = 2 * np.pi * u[..., [1, 3]]
    want = np.stack([r[..., 0] * np.cos(th[..., 0]), r[..., 0] * np.sin(th[..., 0]),
                     r[..., 1] * np.cos(th[..., 1])], axis=-1)
    np.testing.assert_allclose(philox.normals(4, rows, draws, 3, first), want, rtol=1e-15)
    assert [philox.normal_offset(c) for c in (1, 2, 5, 8)] == [2, 2, 6, 8]
    with pytest.raises(ValueError, match="even"):
        philox.normals(4, rows, draws, 2, 3)


# --------------------------------------------------------------------------
# the noise stream of training (noise regularisation)
# --------------------------------------------------------------------------


def test_noise_stream_layout():
    """Normal c of training row i at epoch e: Box-Muller pair c // 2 (cos for even c,
    sin for odd) of the words of the counters (i lo, i hi, e, 2**31 | block), key the
    seed's; rows past 2**32 included."""
    seed, epoch = 2**40 + 9, 7
    rows = np.array([0, 5, 2**32 + 3], np.uint64)
    key = philox.seed_key(seed)
    blocks = [philox.philox4x32(np.stack([rows & 0xFFFFFFFF, rows >> np.uint64(32),
                                          np.full(3, epoch, np.uint64),
                                          np.full(3, 2**31 + b, np.uint64)], -1), key)
              for b in range(2)]
    u = philox.to_uniform(np.concatenate(blocks, -1))  # 8 words: 4 pairs
    r = np.sqrt(-2 * np.log(u[:, 0::2]))
    th = 2 * np.pi * u[:, 1::2]
    want = np.empty((3, 8))
    want[:, 0::2], want[:, 1::2] = r * np.cos(th), r * np.sin(th)
    got = philox.noise_normals(seed, rows, epoch, 7)
    np.testing.assert_allclose(got, want[:, :7], rtol=1e-15, atol=1e-15)
    # prefix-consistent, and a function of (seed, row, epoch) only: any row order
    np.testing.assert_array_equal(philox.noise_normals(seed, rows, epoch, 3), got[:, :3])
    np.testing.assert_array_equal(philox.noise_normals(seed, rows[::-1], epoch, 7), got[::-1])
    assert philox.noise_counters(rows, epoch, 1)[2].tolist() == [3, 1, 7, 2**31 + 1]
    # the key is the seed's modulo 2**64, as for any fit seed
    np.testing.assert_array_equal(philox.noise_normals(seed + 2**64, rows, epoch, 7), got)


def test_noise_stream_is_normal_and_apart_from_sampling():
    rows = np.arange(20_000)
    z = philox.noise_normals(3, rows, 1, 3)
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.03
    # other epochs, other seeds: other noise
    assert abs(np.corrcoef(z[:, 0], philox.noise_normals(3, rows, 2, 1)[:, 0])[0, 1]) < 0.03
    assert not np.array_equal(philox.noise_normals(4, rows, 1, 3), z)
    # never a sampling counter: a sample's fourth word is its block (< 2**31), the
    # noise's has the top bit set; so the same seed's draws are other words
    assert (philox.noise_counters(rows, 1, 0)[:, 3] >= 2**31).all()
    sampled = philox.normals(3, rows, np.array([1]), 3)[:, 0, :]
    assert not np.isclose(sampled, z).all(axis=1).any()  # no row draws its noise
