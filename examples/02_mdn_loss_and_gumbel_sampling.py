"""Seed tutorial 001 (Kang Byeong-gyu, "MDN", the original PyTorch post): the MDN's
parameters against x, its mu +- sigma bands, and samples drawn by Gumbel-max, with the
tutorial's own loss and sampler written beside npmdn's.

    python examples/02_mdn_loss_and_gumbel_sampling.py [OUT.png] [--quick]

The tutorial computes the loss as -log(sum_k pi_k N(y; mu_k, sigma_k)): densities first,
then the log. It agrees with npmdn's log-space NLL where the data is, and becomes
-log(0) = inf once every N_k underflows (about 38 sigmas from every mean in float64).
npmdn takes logsumexp_k(log pi_k + log N_k) instead, finite for any y (panel e).
Its sampler draws k = argmax(log pi_k + g_k), g_k ~ Gumbel, then mu_k + sigma_k eps;
npmdn's model.sample does the same on a counter-based random stream (panels c, d).
"""

import numpy as np
from _common import headless_pyplot, parse_args

import npmdn

args = parse_args("mdn-loss-and-gumbel-sampling.png", __doc__.splitlines()[0])
plt = headless_pyplot()
steps = 30 if args.quick else 1

data = npmdn.datasets.inverted_sinusoid(1000, seed=0)
x, y = data.x[:, 0], data.y[:, 0]
mdn = npmdn.MDN(1, 1, n_components=5, hidden=(20,), seed=0)
mdn.fit(x, y, epochs=10000 // steps, batch_size=None, lr=3e-3, lr_schedule="constant",
        validation_split=0, verbose=False)

x_test = np.linspace(-15, 15, 1000)
pi_data, mu_data, sigma_data = (a.reshape(len(x_test), -1) for a in mdn.mixture(x_test))


# --- the tutorial's loss, in NumPy: densities first, then the log ---------------------
def gaussian_distribution(y, mu, sigma):
    result = (y[:, None] - mu) / sigma
    return np.exp(-0.5 * result * result) / sigma / np.sqrt(2.0 * np.pi)


def mdn_loss_fn(pi, sigma, mu, y):
    with np.errstate(divide="ignore"):  # log(0) is the point being made
        return -np.log(np.sum(gaussian_distribution(y, mu, sigma) * pi, axis=1))


pi_tr, mu_tr, sigma_tr = (a.reshape(len(x), -1) for a in mdn.mixture(x))
naive = mdn_loss_fn(pi_tr.astype(np.float64), sigma_tr.astype(np.float64),
                    mu_tr.astype(np.float64), y)
print(f"mean NLL on the data: tutorial's formula {naive.mean():.6f}, "
      f"npmdn {mdn.nll(x, y):.6f} nats")

x0 = 0.0
y_far = np.linspace(-60, 60, 2401)
p0, m0, s0 = (a.reshape(1, -1).astype(np.float64) for a in mdn.mixture([x0]))
nll_naive = mdn_loss_fn(np.repeat(p0, len(y_far), 0), np.repeat(s0, len(y_far), 0),
                        np.repeat(m0, len(y_far), 0), y_far)
nll_npmdn = -mdn.log_prob(np.full_like(y_far, x0), y_far)
bad = ~np.isfinite(nll_naive)
print(f"at x = {x0}: the tutorial's loss is inf for {bad.sum()} of {len(y_far)} targets in "
      f"[-60, 60]; npmdn's largest NLL there is {nll_npmdn.max():.0f} (finite)")


# --- the tutorial's sampler: Gumbel-max by hand ---------------------------------------
gumbel_rng = np.random.default_rng(0)  # the tutorial uses NumPy's global generator


def gumbel_sample(x, axis=1):
    z = gumbel_rng.gumbel(loc=0, scale=1, size=x.shape)
    return (np.log(x) + z).argmax(axis=axis)


k = gumbel_sample(pi_data)
indices = (np.arange(len(x_test)), k)
rn = np.random.default_rng(1).standard_normal(len(x_test))
sampled = rn * sigma_data[indices] + mu_data[indices]
sampled_npmdn = mdn.sample(x_test, n_samples=1, seed=0)[:, 0, 0]

fig = plt.figure(figsize=(15, 9), constrained_layout=True)
gs = fig.add_gridspec(2, 3)
sub = gs[0, 0:2].subgridspec(3, 1)
axes = [fig.add_subplot(sub[i]) for i in range(3)]
for a, values, title in zip(axes, (pi_data, sigma_data, mu_data),
                            (r"(a) $p(c = i \mid x)$", r"$\sigma$", r"$\mu$"), strict=True):
    a.plot(x_test, values)
    a.set_title(title)
    a.set_xlim(-15, 15)
axes[1].set_ylim(0, 1.2 * sigma_data[np.abs(x_test) <= 10].max())
ax = fig.add_subplot(gs[0, 2])
for mu_k, sigma_k in zip(mu_data.T, sigma_data.T, strict=True):
    ax.plot(x_test, mu_k)
    ax.fill_between(x_test, mu_k - sigma_k, mu_k + sigma_k, alpha=0.1)
ax.scatter(x, y, marker=".", lw=0, alpha=0.2, c="black")
ax.set_xlim(-10, 10)
ax.set_ylim(-10, 10)
ax.set_title(r"(b) $\mu_k \pm \sigma_k$")
for col, (values, title) in enumerate(((sampled, "(c) Gumbel-max by hand (the tutorial)"),
                                       (sampled_npmdn, "(d) npmdn: model.sample"))):
    ax = fig.add_subplot(gs[1, col])
    ax.scatter(x, y, alpha=0.2)
    ax.scatter(x_test, values, alpha=0.2, color="red")
    ax.set_title(title)
ax = fig.add_subplot(gs[1, 2])
ax.plot(y_far, np.where(bad, np.nan, nll_naive), lw=3, label="tutorial: -log sum pi N")
ax.plot(y_far, nll_npmdn, lw=1.2, color="black", label="npmdn: -logsumexp(log pi + log N)")
right, left = y_far[bad & (y_far > 0)], y_far[bad & (y_far < 0)]
if right.size:
    ax.axvspan(right.min(), y_far[-1], color="red", alpha=0.08, lw=0)
if left.size:
    ax.axvspan(y_far[0], left.max(), color="red", alpha=0.08, lw=0)
if bad.any():
    ax.text(0.5, 0.9, "red: the tutorial's loss is inf", transform=ax.transAxes, ha="center")
ax.set_yscale("symlog", linthresh=10)  # NLL spans a few nats to thousands
ax.set_xlabel(f"y (x = {x0})")
ax.set_title(r"(e) $-\log p(y \mid x)$ far from the data")
ax.legend(loc="lower center")
fig.savefig(args.out, dpi=80)
print(f"figure written to {args.out}")
