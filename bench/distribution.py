"""Accuracy and speed of the distribution functions, as a table.

Accuracy: quantiles against brentq on the log CDF (SciPy), CRPS against adaptive
quadrature of (F(t) - 1{t >= y})^2, on random mixtures, mixtures with one sigma
1e-8 beside sigmas ~1, and mixtures whose means are 1e6 apart. Speed: wall time
of quantile / modes / CRPS / CDF for N rows of K = 8 components (NumPy, float64).

    OPENBLAS_NUM_THREADS=1 python -m bench.distribution
"""

import math
import time
import warnings

import numpy as np
from scipy import integrate, optimize, special, stats

import npmdn

LEVELS = np.array([1e-10, 1e-3, 0.025, 0.3, 0.5, 0.77, 0.975, 0.999, 1 - 1e-10])


def mixtures(kind, n, k=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, k))
    mu = rng.normal(0, 3, (n, k, 1))
    ls = rng.normal(0, 0.7, (n, k, 1))
    if kind == "sigma 1e-8 beside 1":
        ls[:, 0, 0] = math.log(1e-8)
        mu[:, 0, 0] = mu[:, 1, 0] + rng.uniform(-1, 1, n)
    elif kind == "means 1e6 apart":
        mu[:, :, 0] = np.array([-1e6, 0.0, 1e6, 2e6])[:k] + rng.normal(0, 1, (n, k))
    return logits, mu, ls


def ref_quantile(pi, mu, sigma, q):
    if q <= 0.5:
        def f(t):
            return special.logsumexp(np.log(pi) + stats.norm.logcdf(t, mu, sigma)) - math.log(q)
    else:
        def f(t):
            return math.log1p(-q) - special.logsumexp(np.log(pi) + stats.norm.logsf(t, mu, sigma))
    z = stats.norm.ppf(q)
    lo, hi = (mu + sigma * z).min(), (mu + sigma * z).max()
    return optimize.brentq(f, lo - 1e-9 * (abs(lo) + 1), hi + 1e-9 * (abs(hi) + 1),
                           xtol=1e-300, rtol=1e-15, maxiter=2000)


def ref_crps(pi, mu, sigma, y):
    def cdf(t):
        return float(np.sum(pi * special.ndtr((t - mu) / sigma)))

    def sf(t):
        return float(np.sum(pi * special.ndtr((mu - t) / sigma)))

    cuts = np.concatenate([mu, mu - 12 * sigma, mu + 12 * sigma, [y]])
    cuts = np.unique(np.concatenate([cuts, [cuts.min() - 30 * sigma.max(),
                                            cuts.max() + 30 * sigma.max()]]))
    total = 0.0
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        f = (lambda t: cdf(t) ** 2) if b <= y else (lambda t: sf(t) ** 2)
        total += integrate.quad(f, a, b, epsabs=0, epsrel=1e-12, limit=400)[0]
    return total


def accuracy():
    print("| mixtures | quantile max rel. error (vs brentq) | CRPS max rel. error (vs quad) |")
    print("| --- | --- | --- |")
    for kind in ("random", "sigma 1e-8 beside 1", "means 1e6 apart"):
        logits, mu, ls = mixtures(kind, 100)
        q = npmdn.mixture_quantile(logits, mu, ls, LEVELS)
        pi, sigma = special.softmax(logits, axis=1), np.exp(ls[..., 0])
        worst_q = max(
            abs(q[i, j] - (r := ref_quantile(pi[i], mu[i, :, 0], sigma[i], lv)))
            / max(abs(r), sigma[i].min())
            for i in range(100) for j, lv in enumerate(LEVELS)
        )
        rng = np.random.default_rng(1)
        y = mu[np.arange(100), rng.integers(0, 4, 100)] + rng.normal(0, 2, (100, 1))
        c = npmdn.metrics.crps(logits, mu, ls, y)
        worst_c = max(abs(c[i] - (r := ref_crps(pi[i], mu[i, :, 0], sigma[i], y[i, 0]))) / r
                      for i in range(0, 100, 4))
        print(f"| {kind} | {worst_q:.1e} | {worst_c:.1e} |")


def speed(n=10_000, k=8):
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 1, (n, k))
    mu = rng.normal(0, 3, (n, k, 1))
    ls = rng.normal(-0.5, 0.5, (n, k, 1))
    y = rng.normal(0, 3, (n, 1))
    jobs = {
        "mixture_cdf": lambda: npmdn.mixture_cdf(logits, mu, ls, y),
        "mixture_quantile (3 levels)": lambda: npmdn.mixture_quantile(logits, mu, ls,
                                                                      [0.05, 0.5, 0.95]),
        "metrics.crps": lambda: npmdn.metrics.crps(logits, mu, ls, y),
        "mixture_modes": lambda: npmdn.mixture_modes(logits, mu, ls),
        "metrics.summary": lambda: npmdn.metrics.summary(logits, mu, ls, y),
    }
    print(f"\n| N = {n}, K = {k}, D = 1 | seconds |")
    print("| --- | --- |")
    for name, fn in jobs.items():
        t = time.perf_counter()
        fn()
        print(f"| {name} | {time.perf_counter() - t:.2f} |")


if __name__ == "__main__":
    # quad flags roundoff on the flat stretches between far-apart components
    warnings.filterwarnings("ignore", category=integrate.IntegrationWarning)
    accuracy()
    speed()
