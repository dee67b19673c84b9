"""On the inverted sinusoid, a trained model's modes are the branches of the true
inverse: compared with the modes of the true conditional density on a fine y grid
at a grid of x (docs/modes-inverted.png shows the same; examples/modes_inverted.py
draws it)."""

import numpy as np
import pytest

import npmdn

signal = pytest.importorskip("scipy.signal")

Y_GRID = np.linspace(-10.5, 10.5, 2101)  # step 0.01


def true_modes(data, x):
    """Peaks of the true p(y | x) on Y_GRID that rise at least 5% of the row's
    maximum above their surroundings (the branches, not ripples)."""
    lp = data.true_log_prob(np.full(Y_GRID.shape, x), Y_GRID)
    p = np.exp(lp)
    peaks, _ = signal.find_peaks(np.concatenate([[0], p, [0]]), prominence=0.05 * p.max())
    return Y_GRID[peaks - 1]


@pytest.fixture(scope="module")
def trained():
    data = npmdn.datasets.inverted_sinusoid(4000, seed=1)
    model = npmdn.MDN(1, 1, 6, hidden=(32, 32), seed=0, backend="numpy")
    model.fit(data.x, data.y, epochs=40, batch_size=128, lr=5e-3, verbose=False)
    return model, data


def test_modes_recover_the_branches_of_the_true_inverse(trained):
    model, data = trained
    xs = np.linspace(-10, 10, 21)
    modes = model.modes(xs)
    errors, spurious, n_strong = [], 0, 0
    for i, x in enumerate(xs):
        truth = true_modes(data, x)
        c = int(modes.count[i])
        found = modes.locations[i, :c, 0]
        dens = np.exp(modes.log_density[i, :c])
        errors += [np.min(np.abs(found - t)) for t in truth]
        strong = found[dens >= 0.1 * dens.max()]
        n_strong += strong.size
        spurious += sum(np.min(np.abs(truth - s)) > 0.5 for s in strong)
    errors = np.array(errors)
    # 3 to 5 branches at most x: 80-odd true modes in all
    assert errors.size > 60
    assert np.mean(errors < 0.5) >= 0.95, np.sort(errors)[-8:]
    assert np.median(errors) < 0.15, np.median(errors)
    assert spurious <= 0.05 * n_strong, (spurious, n_strong)


def test_the_mode_lies_on_a_branch_and_the_mean_does_not(trained):
    model, data = trained
    xs = np.linspace(-8, 8, 33)
    lp = {k: data.true_log_prob(xs, model.predict(xs, kind=k)[:, 0]) for k in ("mean", "mode")}
    # the conditional mean averages the branches into the low-density gaps between them
    mode, mean = np.mean(lp["mode"]), np.mean(lp["mean"])
    assert mode > mean + 1.0, (mode, mean)
