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
    if d > 1 and s == d * (d + 1) // 2:
        return nll_grad_full(logits, mu, log_sigma, y)
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


def _factor(packed, d):
    """U as a list of rows: -log U_ii first, then U_ij (i < j) row by row."""
    u = [[0.0] * d for _ in range(d)]
    p = d
    for i in range(d):
        u[i][i] = math.exp(-float(packed[i]))
        for j in range(i + 1, d):
            u[i][j] = float(packed[p])
            p += 1
    return u


def nll_grad_full(logits, mu, log_sigma, y):
    """Full covariance: z = U (y - mu), log N = -|z|^2/2 + sum_i log U_ii - D/2 log 2 pi;
    dL/dmu = -r U^T z, dL/ds_i = r (1 - z_i U_ii delta_i), dL/dU_ij = r z_i delta_j."""
    n, k = logits.shape
    d = mu.shape[2]
    nll = np.empty(n)
    dl = np.empty((n, k))
    dm = np.empty((n, k, d))
    ds = np.empty(log_sigma.shape)
    for i in range(n):
        a = [float(v) for v in logits[i]]
        la = _lse(a)
        log_pi = [v - la for v in a]
        terms, cache = [], []
        for c in range(k):
            u = _factor(log_sigma[i, c], d)
            delta = [float(y[i, j]) - float(mu[i, c, j]) for j in range(d)]
            z = [math.fsum(u[r][j] * delta[j] for j in range(r, d)) for r in range(d)]
            cache.append((u, delta, z))
            terms.append(log_pi[c] - 0.5 * math.fsum(v * v for v in z)
                         + math.fsum(math.log(u[r][r]) for r in range(d))
                         - 0.5 * d * math.log(2 * math.pi))
        lse = _lse(terms)
        nll[i] = -lse
        for c in range(k):
            r = math.exp(terms[c] - lse)
            u, delta, z = cache[c]
            dl[i, c] = math.exp(log_pi[c]) - r
            for j in range(d):
                dm[i, c, j] = -r * math.fsum(u[q][j] * z[q] for q in range(j + 1))
            p = d
            for q in range(d):
                ds[i, c, q] = r * (1 - z[q] * u[q][q] * delta[q])
                for j in range(q + 1, d):
                    ds[i, c, p] = r * z[q] * delta[j]
                    p += 1
    return nll, dl, dm, ds
