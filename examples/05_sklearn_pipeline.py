"""npmdn in scikit-learn: a Pipeline (StandardScaler, MDNRegressor) on the diabetes data
that ships with scikit-learn, the number of components and the hidden layers chosen by
GridSearchCV on held-out log-likelihood, and predictive intervals checked on a test split.

    python examples/05_sklearn_pipeline.py [OUT.png] [--quick]

Needs scikit-learn (pip install "npmdn[sklearn]") and matplotlib. The data: 442
patients, 10 baseline measurements, a disease progression score one year later
(sklearn.datasets.load_diabetes; no download). A quarter is held out. The figures:
(a) the held-out patients by predicted mean, with the 50% and 90% intervals from
predict_interval and the true score; (b) how often the held-out truth falls inside
the central interval of each nominal coverage (on the diagonal when calibrated).
"""

import numpy as np
from _common import headless_pyplot, parse_args
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from npmdn.sklearn import MDNRegressor

args = parse_args("sklearn-pipeline.png", __doc__.splitlines()[0])
plt = headless_pyplot()

X, y = load_diabetes(return_X_y=True, as_frame=True)  # a DataFrame and a Series
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

pipe = Pipeline([
    ("scale", StandardScaler()),
    ("mdn", MDNRegressor(batch_size=32, epochs=3 if args.quick else 100, random_state=0)),
])
grid = {"mdn__n_components": [1, 2, 4], "mdn__hidden": [(16,), (32, 32)]}
if args.quick:
    grid = {"mdn__n_components": [1, 2], "mdn__hidden": [(8,)]}
# MDNRegressor.score is the mean log-likelihood, so the search keeps the best density
folds = 2 if args.quick else 5
search = GridSearchCV(pipe, grid, cv=folds).fit(X_train, y_train)

print(f"mean held-out log-likelihood per candidate ({folds}-fold CV, nats per patient):")
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    print(f"  K={params['mdn__n_components']}  hidden={params['mdn__hidden']!s:9}  {score:8.3f}")
best = search.best_estimator_
print(f"chosen: {search.best_params_}")

# a baseline: least squares with one Gaussian noise level
lin = LinearRegression().fit(X_train, y_train)
s = np.std(y_train - lin.predict(X_train))
z = (y_test - lin.predict(X_test)) / s
lin_ll = np.mean(-0.5 * z**2 - np.log(s) - 0.5 * np.log(2 * np.pi))
print(f"test log-likelihood: MDN {best.score(X_test, y_test):.3f}, "
      f"linear-Gaussian {lin_ll:.3f} nats per patient")

# intervals: through the pipeline's scaler, then the estimator's predict_interval
mdn, X_test_s = best[-1], best[:-1].transform(X_test)
mean = best.predict(X_test)
levels = np.linspace(0.1, 0.9, 9)
covered = []
for c in levels:
    lo, hi = mdn.predict_interval(X_test_s, c)
    covered.append(np.mean((y_test >= lo) & (y_test <= hi)))
    if np.isclose(c, 0.5) or np.isclose(c, 0.9):
        print(f"{c:.0%} intervals hold {covered[-1]:.0%} of the {len(y_test)} held-out scores "
              f"(mean width {np.mean(hi - lo):.0f})")

fig, axes = plt.subplots(1, 2, figsize=(15, 6), constrained_layout=True,
                         gridspec_kw={"width_ratios": [2, 1]})
ax = axes[0]
order = np.argsort(mean)
rank = np.arange(len(order))
for c, alpha in ((0.9, 0.25), (0.5, 0.5)):
    lo, hi = mdn.predict_interval(X_test_s, c)
    ax.vlines(rank, lo[order], hi[order], color="tab:blue", alpha=alpha, lw=4,
              label=f"{c:.0%} interval")
ax.plot(rank, mean[order], "_", color="k", ms=8, label="predicted mean")
ax.plot(rank, np.asarray(y_test)[order], ".", color="tab:red", ms=7, label="true score")
ax.set_xlabel("held-out patients, by predicted mean")
ax.set_ylabel("disease progression after one year")
ax.set_title(f"(a) predict_interval on {len(y_test)} held-out patients")
ax.legend(loc="upper left")
ax.grid(True, alpha=0.3)
ax = axes[1]
ax.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
ax.plot(levels, covered, "o-", label="MDN")
ax.set_xlabel("nominal coverage")
ax.set_ylabel("held-out coverage")
ax.set_title("(b) interval calibration")
ax.legend(loc="upper left")
ax.grid(True, alpha=0.3)
fig.savefig(args.out, dpi=80)
print(f"figure written to {args.out}")
