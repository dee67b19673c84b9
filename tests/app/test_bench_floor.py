"""bench.floor times the head kernels' arithmetic alone; its claim rests on that
arithmetic being the kernels' own, which these tests hold it to."""

import numpy as np
import pytest

from bench import floor


@pytest.mark.parametrize("k", [1, 2, 5])
def test_the_floor_computes_the_reference_math(k):
    floor.check(k)  # raises if the log-density, NLL or gradient is off


def test_a_floor_without_a_term_is_caught(monkeypatch):
    real = floor._source

    def wrong(k, grad):  # the log-sigma term of the first component dropped
        return [s.replace("+ s0))", "))") for s in real(k, grad)]

    monkeypatch.setattr(floor, "_source", wrong)
    with pytest.raises(RuntimeError, match="not the reference's math"):
        floor.check(3)


def test_the_floor_reads_and_writes_only_its_tile():
    X, _, _ = floor.tile(4)
    one, two = floor.build(4, True)
    X2 = np.stack([X, X, X])
    before = X2[2].copy()
    two(X2[:2], 3)  # two threads, one tile each
    np.testing.assert_array_equal(X2[0], X2[1])
    np.testing.assert_array_equal(X2[2], before)


def test_row_bytes_match_bench_kernels_at_k5():
    assert floor.row_bytes("nll_grad", 5) == 128
    assert floor.row_bytes("log_prob", 5) == 68
