"""Seed tutorial 003 ("Mixture Density Networks", a Habr article, English translation):
a feed-forward network fits y = 0.5 x + 8 sin(0.3 x) + e, fails once x and y are swapped
and fails on a spiral; a 30-component MDN handles both.

    python examples/04_inverted_and_spiral.py [OUT.png] [--quick]

The tutorial's setup: 3000 points with x ~ U(-15, 15), a 75/25 train/test split, a
40-unit tanh network on the MSE, and an MDN with two ReLU layers of 50 units, 30
components and one variance per component (npmdn's ``covariance="isotropic"``), trained
with Adam on batches of 1500. Figures: (a) the data; (b) train/test MSE per epoch;
(c, d) the network's test predictions before and after inverting; (e) the MDN's NLL per
epoch; (f, g) the means of the 2 and 4 most likely components at each x; (h) all 30
means; (i) 10 samples per x; (j) the spiral and the network's failed fit; (k) MDN
samples on the spiral; (l) the spiral MDN's 3 most likely means.
"""

import numpy as np
from _common import MSENet, headless_pyplot, parse_args

import npmdn

args = parse_args("inverted-and-spiral.png", __doc__.splitlines()[0])
plt = headless_pyplot()
steps = 20 if args.quick else 1

rng = np.random.default_rng(0)
n = 3000
x = rng.uniform(-15.0, 15.0, (n, 1))
y = 0.5 * x + 8.0 * np.sin(0.3 * x) + rng.normal(size=(n, 1))
perm = rng.permutation(n)
train, test = perm[: 3 * n // 4], perm[3 * n // 4 :]
x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]


def fit_ffnn(xtr, ytr, xte, yte):
    curves = {"train": [], "test": []}

    def record(epoch, net):
        curves["train"].append(net.mse(xtr, ytr))
        curves["test"].append(net.mse(xte, yte))

    net = MSENet(hidden=(40,), seed=0).fit(xtr, ytr, epochs=2000 // steps, lr=1e-2,
                                           batch_size=1500, callback=record)
    return net, curves


def fit_mdn(xtr, ytr, xte, yte):
    mdn = npmdn.MDN(1, 1, n_components=30, hidden=(50, 50), activation="relu",
                    covariance="isotropic", seed=0)
    history = mdn.fit(xtr, ytr, epochs=1000 // steps, batch_size=1500, lr=1e-2,
                      lr_schedule="constant", validation_data=(xte, yte), restore_best=False,
                      verbose=False)
    return mdn, history


def top_means(mdn, xs, m):
    """The means of the m most likely components at each x: ([N*m] x, [N*m] mu)."""
    pi, mu, _ = mdn.mixture(xs)
    top = np.argsort(-pi, axis=1)[:, :m]
    return np.repeat(xs[:, 0], m), np.take_along_axis(mu[..., 0], top, axis=1).reshape(-1)


ffnn, ffnn_curves = fit_ffnn(x_train, y_train, x_test, y_test)
# invert: x and y change roles
xi_train, yi_train, xi_test, yi_test = y_train, x_train, y_test, x_test
ffnn_inv, ffnn_inv_curves = fit_ffnn(xi_train, yi_train, xi_test, yi_test)
mdn, mdn_hist = fit_mdn(xi_train, yi_train, xi_test, yi_test)
print(f"inverted data, test set: network MSE {ffnn_inv.mse(xi_test, yi_test):.2f}, "
      f"MDN NLL {mdn.nll(xi_test, yi_test):.3f} nats")

spiral_train = npmdn.datasets.spiral(2000, seed=1)
spiral_test = npmdn.datasets.spiral(2000, seed=2)
ffnn_sp, _ = fit_ffnn(spiral_train.x, spiral_train.y, spiral_test.x, spiral_test.y)
mdn_sp, _ = fit_mdn(spiral_train.x, spiral_train.y, spiral_test.x, spiral_test.y)
print(f"spiral, test set: MDN NLL {mdn_sp.nll(spiral_test.x, spiral_test.y):.3f} nats")

fig, ax = plt.subplots(3, 4, figsize=(20, 14), constrained_layout=True)
ax = ax.ravel()
kw = dict(s=6, alpha=0.3)
ax[0].scatter(x, y, **kw)
ax[0].set_title("(a) y = 0.5 x + 8 sin(0.3 x) + e")
for curves, style, what in ((ffnn_curves, "-", "direct"), (ffnn_inv_curves, "--", "inverted")):
    for part in ("train", "test"):
        ax[1].plot(curves[part], ls=style, label=f"{what}, {part}")
ax[1].set_yscale("log")
ax[1].set_xlabel("epoch")
ax[1].legend()
ax[1].set_title("(b) MSE of the network per epoch")
for a, net, xs, ys, title in ((ax[2], ffnn, x_test, y_test, "(c) network, test set"),
                              (ax[3], ffnn_inv, xi_test, yi_test,
                               "(d) network on the inverted data: fails")):
    a.scatter(xs, ys, label="real", **kw)
    a.scatter(xs, net.predict(xs), label="predicted", **kw)
    a.legend()
    a.set_title(title)
ax[4].plot(mdn_hist.train_nll, label="train")
ax[4].plot(mdn_hist.val_nll, label="test")
ax[4].set_xlabel("epoch")
ax[4].legend()
ax[4].set_title("(e) MDN negative log-likelihood per epoch")
for a, m, title in ((ax[5], 2, "(f) 2 most likely means"), (ax[6], 4, "(g) 4 most likely means"),
                    (ax[7], 30, "(h) all 30 means")):
    a.scatter(xi_test, yi_test, c="lightgray", **kw)
    a.scatter(*top_means(mdn, xi_test, m), s=3, c="tab:red", alpha=0.4)
    a.set_title(title)
    a.set_ylim(-20, 20)
draws = mdn.sample(xi_test, n_samples=10, seed=0)
ax[8].scatter(xi_test, yi_test, label="real", **kw)
ax[8].scatter(np.repeat(xi_test, 10), draws.reshape(-1), s=2, alpha=0.15, c="tab:red",
              label="MDN, 10 samples per x")
ax[8].legend()
ax[8].set_title("(i) samples from the MDN")
ax[9].scatter(spiral_test.x, spiral_test.y, label="spiral", **kw)
ax[9].scatter(spiral_test.x, ffnn_sp.predict(spiral_test.x), label="network", **kw)
ax[9].legend()
ax[9].set_title("(j) the network on the spiral: fails")
ax[10].scatter(spiral_test.x, spiral_test.y, label="spiral", **kw)
ax[10].scatter(spiral_test.x, mdn_sp.sample(spiral_test.x, 1, seed=0)[:, 0, 0], label="MDN",
               **kw)
ax[10].legend()
ax[10].set_title("(k) samples from the MDN on the spiral")
ax[11].scatter(spiral_test.x, spiral_test.y, c="lightgray", **kw)
ax[11].scatter(*top_means(mdn_sp, spiral_test.x, 3), s=3, c="tab:red", alpha=0.4)
ax[11].set_title("(l) the spiral MDN's 3 most likely means")
fig.savefig(args.out, dpi=70)
print(f"figure written to {args.out}")
