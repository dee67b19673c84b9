"""Seed tutorial 000 (Kang Byeong-gyu's PyTorch MDN post, annotated Korean repost):
a plain network fits the sinusoid, fails on the inverted one; an MDN does not.

    python examples/01_mse_fails_on_inverted_sinusoid.py [OUT.png] [--quick]

Figures, as in the tutorial: (a) the sinusoid y = 7 sin(0.75 x) + 0.5 x + e with the
MSE network's prediction; (b) the same data with x and y swapped and the MSE network
averaging the branches; (c) pi, sigma and mu of a 5-component MDN against x;
(d) mu_k +- sigma_k over the data; (e) samples drawn from the MDN.

The tutorial's sizes are kept: 1000 points, one hidden layer of 20 tanh units, full-batch
Adam (3000 steps for the MSE network, 10000 for the MDN, here at lr 1e-2 and 3e-3).
The MSE network is npmdn's own MLP with the MSE gradient written by hand (_common.py).
"""

import numpy as np
from _common import MSENet, headless_pyplot, parse_args

import npmdn

args = parse_args("mse-fails-on-inverted-sinusoid.png", __doc__.splitlines()[0])
plt = headless_pyplot()
steps = 30 if args.quick else 1  # --quick divides the training steps

data = npmdn.datasets.sinusoid(1000, seed=0)
x, y = data.x[:, 0], data.y[:, 0]

# (a) the MSE network on the sinusoid: one y per x, so the mean is the answer
mse = MSENet(hidden=(20,), seed=0).fit(x, y, epochs=3000 // steps, lr=1e-2)
x_test = np.linspace(-10, 10, 1000)
y_mse = mse.predict(x_test)[:, 0]

# (b) swap x and y: now several y per x, and the MSE network averages them
inv_x, inv_y = y, x
mse_inv = MSENet(hidden=(20,), seed=0).fit(inv_x, inv_y, epochs=3000 // steps, lr=1e-2)
x_test_inv = np.linspace(-15, 15, 1000)
y_mse_inv = mse_inv.predict(x_test_inv)[:, 0]

# (c-e) the MDN: 20 tanh units, 5 Gaussians, full-batch Adam as in the tutorial
mdn = npmdn.MDN(1, 1, n_components=5, hidden=(20,), seed=0)
mdn.fit(inv_x, inv_y, epochs=10000 // steps, batch_size=None, lr=3e-3, lr_schedule="constant",
        validation_split=0, verbose=False)
pi, mu, sigma = mdn.mixture(x_test_inv)  # [N, K], [N, K, 1], [N, K, 1]
mu, sigma = mu[..., 0], sigma[..., 0]
sampled = mdn.sample(x_test_inv, n_samples=1, seed=0)[:, 0, 0]
print(f"MSE on the sinusoid: {mse.mse(x, y):.3f} (noise variance 1); on the inverted data: "
      f"{mse_inv.mse(inv_x, inv_y):.3f}; MDN NLL on the inverted data: "
      f"{mdn.nll(inv_x, inv_y):.3f} nats")

fig = plt.figure(figsize=(15, 9), constrained_layout=True)
gs = fig.add_gridspec(2, 3)
ax = fig.add_subplot(gs[0, 0])
ax.scatter(x, y, alpha=0.2, label="data")
ax.scatter(x_test, y_mse, alpha=0.2, s=4, label="MSE network")
ax.set_title("(a) sinusoid: the MSE network fits")
ax.legend()
ax = fig.add_subplot(gs[0, 1])
ax.scatter(inv_x, inv_y, alpha=0.2, label="data")
ax.scatter(x_test_inv, y_mse_inv, alpha=0.2, s=4, label="MSE network")
ax.set_title("(b) inverted: the MSE network averages the branches")
ax.legend()
ax = fig.add_subplot(gs[0, 2])
for mu_k, sigma_k in zip(mu.T, sigma.T, strict=True):
    ax.plot(x_test_inv, mu_k)
    ax.fill_between(x_test_inv, mu_k - sigma_k, mu_k + sigma_k, alpha=0.1)
ax.scatter(inv_x, inv_y, marker=".", lw=0, alpha=0.2, c="black")
ax.set_xlim(-10, 10)
ax.set_ylim(-10, 10)
ax.set_title(r"(d) MDN: $\mu_k \pm \sigma_k$")
sub = gs[1, :2].subgridspec(3, 1)
axes = [fig.add_subplot(sub[i]) for i in range(3)]
for a, values, title in zip(axes, (pi, sigma, mu), (r"$p(c = i \mid x)$", r"$\sigma$", r"$\mu$"),
                            strict=True):
    a.plot(x_test_inv, values)
    a.set_title(title)
    a.set_xlim(-15, 15)
axes[0].set_ylabel("(c)")
# sigma grows without bound where there is no data (|x| > 10.5 + noise): keep the axis on the data
axes[1].set_ylim(0, 1.2 * sigma[np.abs(x_test_inv) <= 10].max())
ax = fig.add_subplot(gs[1, 2])
ax.scatter(inv_x, inv_y, alpha=0.2, label="data")
ax.scatter(x_test_inv, sampled, alpha=0.2, color="red", label="MDN samples")
ax.set_title("(e) samples from the MDN")
ax.legend()
fig.savefig(args.out, dpi=80)
print(f"figure written to {args.out}")
