"""Modes of a trained MDN on the inverted sinusoid, against the true conditional density.

Draws docs/modes-inverted.png:

* left: the training data, the modes of the true p(y | x) found on a fine y grid
  (black), the model's modes from ``model.modes`` (coloured by their density
  relative to the row's highest mode) and the conditional mean, which falls in
  the gaps between the branches;
* right: one slice, true and predicted p(y | x0), with the model's modes and
  its central 90% interval.

Run from the repository root (needs matplotlib and SciPy, about 15 s):

    python examples/modes_inverted.py [output.png]
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.signal import find_peaks  # noqa: E402

import npmdn  # noqa: E402


def true_modes(data, xs, ys):
    """Peaks of the true density at each x that rise 5% of its maximum above their surroundings."""
    out = []
    for x in xs:
        p = np.exp(data.true_log_prob(np.full(ys.shape, x), ys))
        peaks, _ = find_peaks(np.concatenate([[0], p, [0]]), prominence=0.05 * p.max())
        out.append(ys[peaks - 1])
    return out


def main(path="docs/modes-inverted.png"):
    data = npmdn.datasets.inverted_sinusoid(8000, seed=0)
    model = npmdn.MDN(1, 1, 8, hidden=(32, 32), seed=0, backend="numpy")
    model.fit(data.x, data.y, epochs=120, batch_size=128, lr=5e-3, lr_schedule="cosine",
              validation_split=0, verbose=False)

    xs = np.linspace(-10.5, 10.5, 141)
    ys = np.linspace(-10.5, 10.5, 2101)
    truth = true_modes(data, xs, ys)
    modes = model.modes(xs)
    mean = model.predict(xs)[:, 0]

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1.6, 1]})
    ax.scatter(data.x[:, 0], data.y[:, 0], s=2, c="0.55", alpha=0.25, lw=0, label="data")
    keep = np.isfinite(modes.log_density)
    rel = np.exp(modes.log_density - modes.log_density[:, :1])  # density / highest mode's
    mx = np.broadcast_to(xs[:, None], keep.shape)[keep]
    # pale = weak: modes far from the data carry almost no probability
    sc = ax.scatter(mx, modes.locations[..., 0][keep], s=22, c=rel[keep], cmap="Reds",
                    vmin=-0.25, vmax=1, lw=0, label="model.modes(x)")
    tx = np.concatenate([np.full(t.shape, x) for x, t in zip(xs, truth, strict=True)])
    ax.scatter(tx, np.concatenate(truth), s=3, c="black", lw=0, label="true modes (grid)")
    ax.plot(xs, mean, "--", c="tab:blue", lw=1.2, label="conditional mean")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_xlim(-10.8, 10.8)
    ax.set_ylim(-11, 11)
    ax.set_title("Inverted sinusoid: modes of p(y | x)")
    ax.legend(loc="upper left", fontsize=8, markerscale=1.5, framealpha=0.9)
    cb = fig.colorbar(sc, ax=ax, pad=0.01, fraction=0.04)
    cb.set_label("mode density / highest mode's", fontsize=8)
    cb.ax.set_ylim(0, 1)

    x0 = 1.5
    lp_true = data.true_log_prob(np.full(ys.shape, x0), ys)
    lp_model = model.log_prob(np.full((ys.size, 1), x0), ys[:, None])
    ax2.plot(ys, np.exp(lp_true), c="black", lw=1.5, label="true p(y | x0)")
    ax2.plot(ys, np.exp(lp_model), c="tab:orange", lw=1.5, label="model p(y | x0)")
    m0 = model.modes([x0])
    c0 = int(m0.count[0])
    ax2.plot(m0.locations[0, :c0, 0], m0.density[0, :c0], "o", mfc="none", c="tab:red",
             label="model modes")
    lo, hi = model.interval([x0], 0.9)
    ax2.axvspan(lo[0], hi[0], color="tab:orange", alpha=0.12, lw=0, label="central 90% interval")
    ax2.axvline(model.predict([x0])[0, 0], ls="--", c="tab:blue", lw=1.2, label="mean")
    ax2.set_xlabel("y")
    ax2.set_ylabel("density")
    ax2.set_title(f"slice at x0 = {x0}")
    ax2.set_ylim(0, 1.45 * np.exp(lp_true).max())
    ax2.legend(fontsize=8, loc="upper center", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)

    # the numbers behind the picture
    errs = []
    for i, t in enumerate(truth):
        found = modes.locations[i, : int(modes.count[i]), 0]
        errs += [np.min(np.abs(found - v)) for v in t]
    errs = np.array(errs)
    print(f"wrote {path}")
    print(f"true modes: {errs.size}; matched by a model mode within 0.5: "
          f"{np.mean(errs < 0.5):.3f}; "
          f"median distance {np.median(errs):.3f}")
    print("held-out scores:", model.score(*npmdn.datasets.inverted_sinusoid(4000, seed=1)))


if __name__ == "__main__":
    main(*sys.argv[1:])
