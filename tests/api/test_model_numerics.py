"""MDN under numerical stress (issue 11): a run that diverges keeps its best
validation weights, data whose spread the model cannot represent is refused
before any work, and the predicted moments are returned wherever they are
representable."""

import numpy as np
import pytest

import npmdn


def small_data(n=300, seed=0):
    return npmdn.datasets.inverted_sinusoid(n, seed=seed)


# --------------------------------------------------------------- divergence


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the numpy reference on NaN weights
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_divergence_after_a_good_epoch_keeps_the_best_validation_weights(backend):
    d, v = small_data(), small_data(100, seed=5)
    m = npmdn.MDN(1, 1, 3, hidden=(8,), seed=0, backend=backend)
    snapshots = {}

    def sabotage(epoch, history):
        snapshots[epoch] = m.params
        if epoch == 4:  # the next step's loss is NaN
            m.net.params[...] = np.nan

    with pytest.raises(npmdn.NonFiniteLossError, match="best validation epoch") as info:
        m.fit(d.x, d.y, epochs=10, batch_size=100, validation_data=(v.x, v.y),
              callback=sabotage, verbose=False)
    best = int(str(info.value).split("best validation epoch (")[1].split(")")[0])
    assert 1 <= best <= 4
    np.testing.assert_array_equal(m.params, snapshots[best])
    assert np.isfinite(m.nll(v.x, v.y))
    assert "clip_norm" in str(info.value)  # the advice is still there
