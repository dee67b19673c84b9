"""Seed tutorial 002 (a Korean TensorFlow post after taboola's MDN notebook): noise that
grows with x. The MSE network finds f(x) = x^2 - 6x + 9 but says nothing about the noise;
an MDN with one Gaussian learns sigma(x) as well.

    python examples/03_heteroscedastic_noise.py [OUT.png] [--quick]

Data as in the tutorial: 50 draws of N(f(x), (0.1 x)^2) at each x = 1.0, 1.2, ..., 5.0.
Both networks have three hidden layers of 12 tanh units (the tutorial's). The figures:
(a) the data and f(x); (b) the MSE network's predictions at x = 1.1, 1.3, ..., 4.9;
(c) the MDN's mu +- sigma there beside the true f(x) +- 0.1 x.
"""

import numpy as np
from _common import MSENet, headless_pyplot, parse_args

import npmdn

args = parse_args("heteroscedastic-noise.png", __doc__.splitlines()[0])
plt = headless_pyplot()
steps = 20 if args.quick else 1


def f(x):
    return x**2 - 6 * x + 9


sigma_0 = 0.1
rng = np.random.default_rng(0)
x_vals = np.arange(1, 5.1, 0.2)  # 1.0 ... 5.0
x_arr = np.repeat(x_vals, 50)
y_arr = rng.normal(f(x_arr), sigma_0 * x_arr)
x_test = np.arange(1.1, 5.0, 0.2)  # 1.1 ... 4.9

mse = MSENet(hidden=(12, 12, 12), seed=0).fit(x_arr, y_arr, epochs=500 // steps, lr=1e-2,
                                               batch_size=50)
y_pred = mse.predict(x_test)[:, 0]

mdn = npmdn.MDN(1, 1, n_components=1, hidden=(12, 12, 12), seed=0)
mdn.fit(x_arr, y_arr, epochs=1000 // steps, batch_size=50, lr=3e-3, lr_schedule="cosine",
        validation_split=0, verbose=False)
_, mu, sigma = mdn.mixture(x_test)
mu_pred, sigma_pred = mu[:, 0, 0], sigma[:, 0, 0]
for xv, s in zip(x_test[::4], sigma_pred[::4], strict=True):
    print(f"x = {xv:.1f}: predicted sigma {s:.3f}, true {sigma_0 * xv:.3f}")

fig, axes = plt.subplots(1, 3, figsize=(18, 6.5), constrained_layout=True)
ax = axes[0]
ax.grid(True)
ax.scatter(x_arr, y_arr, label="sampled data")
ax.plot(x_vals, f(x_vals), c="m", label="f(x)")
ax.set_title("(a) g(x) = f(x) + e(x), sd(e) = 0.1 x")
ax = axes[1]
ax.grid(True)
ax.scatter(x_arr, y_arr, c="b", label="sampled data")
ax.scatter(x_test, y_pred, c="r", label="predicted values")
ax.plot(x_vals, f(x_vals), c="m", label="f(x)")
ax.set_title("(b) the MSE network: the mean only")
ax = axes[2]
ax.grid(True)
ax.errorbar(x_test, mu_pred, yerr=np.abs(sigma_pred), c="r", ls="None", marker=".", ms=10,
            label="predicted distributions")
ax.scatter(x_arr, y_arr, c="b", alpha=0.05, label="sampled data")
ax.errorbar(x_vals, f(x_vals), yerr=x_vals * sigma_0, c="b", lw=2, ls="None", marker=".",
            ms=10, label="true distributions")
ax.plot(x_vals, f(x_vals), c="m", label="f(x)")
ax.set_title(r"(c) the MDN: $\mu(x) \pm \sigma(x)$")
for ax in axes:
    ax.set_xlabel("x")
    ax.legend(loc="upper center", shadow=True)
fig.savefig(args.out, dpi=80)
print(f"figure written to {args.out}")
