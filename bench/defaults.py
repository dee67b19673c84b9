"""Which defaults for ``MDN.fit``: the held-out gap to the true conditional NLL.

    python -m bench.defaults [--seeds 0 1] [--backend numba]

On each seed problem with a known density (the demo's sizes, K and hidden
widths; 100 epochs, batch 256), fit with each candidate set of defaults and
print the gap between the held-out NLL (20,000 fresh points) and the true
conditional NLL: smaller is better. The chosen defaults
(``npmdn.training.DEFAULT_*``: lr 3e-3, cosine, 10% held out and the best
epoch kept) are the last rows; the first is what ``MDN.fit`` did before.
Only NLL is printed, no times, so a busy machine does not change the table.
"""

from __future__ import annotations

import argparse

import numpy as np

import npmdn
from npmdn.demo import SETTINGS

CANDIDATES = {
    "lr 1e-3, constant, no validation (old MDN.fit)": dict(lr=1e-3, lr_schedule="constant",
                                                           validation_split=0),
    "lr 3e-3, constant, no validation": dict(lr=3e-3, lr_schedule="constant",
                                             validation_split=0),
    "lr 3e-3, cosine, no validation": dict(lr=3e-3, lr_schedule="cosine", validation_split=0),
    "lr 1e-3, cosine, 10% held out": dict(lr=1e-3, lr_schedule="cosine", validation_split=0.1),
    "lr 3e-3, cosine, 10% held out (the defaults)": dict(),
}
PROBLEMS = ("sinusoid", "inverted", "heteroscedastic")


def gap(problem, seed, backend, **fit):
    s = SETTINGS[problem]
    train = npmdn.datasets.load(problem, s["n_train"], seed=seed)
    test = npmdn.datasets.load(problem, 20_000, seed=seed + 100)
    model = npmdn.MDN(1, 1, s["n_components"], hidden=s["hidden"], seed=seed, backend=backend)
    model.fit(train.x, train.y, epochs=100, batch_size=256, verbose=False, **fit)
    return model.nll(test.x, test.y) - test.true_nll()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--backend", default="numba")
    args = ap.parse_args(argv)
    print("| defaults | " + " | ".join(PROBLEMS) + " |")
    print("| --- |" + " --- |" * len(PROBLEMS))
    for name, fit in CANDIDATES.items():
        cells = []
        for problem in PROBLEMS:
            gaps = [gap(problem, seed, args.backend, **fit) for seed in args.seeds]
            cells.append(f"{np.mean(gaps):+.4f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
