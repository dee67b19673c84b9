"""Loop versions of the mixture math, one sample at a time with the math module.

Written independently of npmdn.mixture (scalar loops, math.fsum) so that the
vectorized reference and every kernel have something plain to be compared with.
"""

import math

import numpy as np


def _lse(values):
    m = max(values)
    if m == -math.inf:
        return -math.inf
    return m + math.log(math.fsum(math.exp(v - m) for v in values))


def nll_grad(logits, mu, log_sigma, y):
    n, k = logits.shape
    d = mu.shape[2]
    s = log_sigma.shape[2]
    nll = np.empty(n)
    dl = np.empty((n, k))
    dm = np.empty((n, k, d))
    ds = np.empty((n, k, s))
    for i in range(n):
        a = [float(v) for v in logits[i]]
        la = _lse(a)
        log_pi = [v - la for v in a]
        terms, zs = [], []
        for c in range(k):
            z = []
            log_det = 0.0
            for j in range(d):
                sj = float(log_sigma[i, c, j if s > 1 else 0])
                z.append((float(y[i, j]) - float(mu[i, c, j])) / math.exp(sj))
                log_det += sj
            zs.append(z)
            terms.append(
                log_pi[c] - 0.5 * math.fsum(v * v for v in z) - log_det
                - 0.5 * d * math.log(2 * math.pi)
            )
        lse = _lse(terms)
        nll[i] = -lse
        for c in range(k):
            r = math.exp(terms[c] - lse)
            dl[i, c] = math.exp(log_pi[c]) - r
            for j in range(d):
                sj = float(log_sigma[i, c, j if s > 1 else 0])
                dm[i, c, j] = -r * zs[c][j] / math.exp(sj)
            if s == 1:
                ds[i, c, 0] = r * (d - math.fsum(v * v for v in zs[c]))
            else:
                for j in range(d):
                    ds[i, c, j] = r * (1 - zs[c][j] ** 2)
    return nll, dl, dm, ds
