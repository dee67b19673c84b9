"""bench.floor times the head kernels' own math on a tile in L1; its claim rests on the
tile being laid out as that math reads it, which these tests hold it to."""

import numpy as np
import pytest

from bench import floor


@pytest.mark.parametrize("k", [1, 2, 5])
def test_the_tile_math_is_the_reference_math(k):
    floor.check(k)  # raises if log p, the NLL or the gradient is off


def test_a_tile_laid_out_wrong_is_caught(monkeypatch):
    real = floor.tile

    def swapped(k, seed=0):  # the means and the log sigmas in each other's rows
        W, head, y = real(k, seed)
        W[k:2 * k], W[2 * k:3 * k] = W[2 * k:3 * k].copy(), W[k:2 * k].copy()
        return W, head, y

    monkeypatch.setattr(floor, "tile", swapped)
    with pytest.raises(RuntimeError, match="not the reference's"):
        floor.check(3)


def test_two_threads_work_on_their_own_tiles():
    W, _, _ = floor.tile(4)
    W3 = np.stack([W, W, W])
    floor.tile_math_2(W3[:2], W, 4, True, False, 3)
    np.testing.assert_array_equal(W3[0], W3[1])
    np.testing.assert_array_equal(W3[2], W)  # the third tile untouched
    assert not np.array_equal(W3[0], W)  # and the two written


def test_row_bytes_match_bench_kernels_at_k5():
    assert floor.row_bytes("nll_grad", 5) == 128
    assert floor.row_bytes("log_prob", 5) == 68
