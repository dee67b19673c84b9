"""Where the numba sampler's time goes, against what the stream layout forces.

    python -m bench.profile_sampling [--n 65536] [--k 5] [--draws 16]

A draw on the npmdn stream reads C choice words (C = K for Gumbel-max, 1 for
the cumulative method), then 2 ceil(D / 2) normal words from the next even
word: ceil((C + (C & 1) + 2 ceil(D / 2)) / 4) Philox4x32-10 blocks in all
(see npmdn.philox), and a Box-Muller transform per normal pair (float32 here:
the float32 sampler computes its normals in float32). This times, on the same
data and threads:

1. those Philox blocks alone (vectorised, lanes set up row by row as the
   sampler does, results folded so nothing is optimised away): the floor that
   the stream layout sets;
2. the sampler with temperature 0 (no choice randomness: the row tables, the
   normals' Philox blocks, the normals and the output);
3. the sampler with the cumulative method and with Gumbel-max;
4. torch.distributions.MixtureSameFamily.sample on the same mixture.
"""

import argparse
import sys

import numpy as np
from numba import get_num_threads, njit, prange

from npmdn._numba import kernels as nk
from npmdn._numba.sample import philox10, prefer_wide_vectors

from . import machine as _machine


@njit(parallel=True, cache=True, error_model="numpy")
def philox_only(n, J, n_blocks, n_chunks):
    """Every Philox block n rows x J draws need, in lanes of 256 draws as the
    sampler computes them (vectorised, 32-bit words out); returns a checksum."""
    total = n * J
    tile = 256
    n_tiles = (total + tile - 1) // tile
    acc = np.zeros(n_chunks, np.uint64)
    for c in prange(n_chunks):
        prefer_wide_vectors()
        r0 = np.empty(tile, np.uint64)
        dj = np.empty(tile, np.uint64)
        W = np.empty((4, tile), np.uint32)
        s = np.uint64(0)
        for b in range(c * n_tiles // n_chunks, (c + 1) * n_tiles // n_chunks):
            f0 = b * tile
            nt = min(tile, total - f0)
            ra = f0 // J
            for i in range(ra, (f0 + nt - 1) // J + 1):  # row by row, as the sampler
                t_lo = max(i * J - f0, 0)
                t_hi = min((i + 1) * J - f0, nt)
                r0_r = r0[t_lo:t_hi]
                dj_r = dj[t_lo:t_hi]
                j0 = np.uint64(f0 + t_lo - i * J)
                for q in range(t_hi - t_lo):
                    r0_r[q] = np.uint64(i)
                    dj_r[q] = j0 + np.uint64(q)
            for blk in range(n_blocks):
                bb = np.uint64(blk)
                for t in range(nt):
                    x0, x1, x2, x3 = philox10(r0[t], np.uint64(0), dj[t], bb, np.uint64(5),
                                              np.uint64(9))
                    W[0, t] = np.uint32(x0)
                    W[1, t] = np.uint32(x1)
                    W[2, t] = np.uint32(x2)
                    W[3, t] = np.uint32(x3)
                s ^= np.uint64(W[0, 0] ^ W[3, nt - 1])
        acc[c] = s
    return acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=65536)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--d", type=int, default=1)
    ap.add_argument("--draws", type=int, default=16)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    n, k, d, j = args.n, args.k, args.d, args.draws
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (n, k)).astype(np.float32)
    mu = rng.normal(0, 2, (n, k, d)).astype(np.float32)
    ls = rng.normal(0, 0.5, (n, k, d)).astype(np.float32)
    draws = n * j
    rows = []
    chunks = 4 * get_num_threads()
    for label, c in (("Philox blocks of Gumbel-max", k), ("Philox blocks of cumulative", 1)):
        nb = -(-(c + (c & 1) + 2 * (-(-d // 2))) // 4)
        t = _machine.median_time(lambda nb=nb: philox_only(n, j, nb, chunks), args.runs)
        rows.append((f"{label} ({nb} per draw)", t["median_s"]))
    for label, method, temp in (("sampler, temperature 0 (tables, normals, output)",
                                 "gumbel", 0.0),
                                ("sampler, cumulative", "cumulative", 1.0),
                                ("sampler, Gumbel-max (default)", "gumbel", 1.0)):
        t = _machine.median_time(lambda m=method, T=temp: nk.sample(logits, mu, ls, j, 7, 0, m,
                                                                    T, 1.0), args.runs)
        rows.append((label, t["median_s"]))
    try:
        import torch

        D = torch.distributions
        a, m, s = (torch.from_numpy(v) for v in (logits, mu, ls))

        def msf():
            with torch.no_grad():
                return D.MixtureSameFamily(D.Categorical(logits=a), D.Independent(
                    D.Normal(m, torch.exp(s)), 1)).sample((j,))

        rows.append(("torch MixtureSameFamily.sample",
                     _machine.median_time(msf, args.runs)["median_s"]))
    except ImportError:
        pass
    print(f"`{' '.join(['python'] + sys.argv)}`: N={n}, K={k}, D={d}, {j} draws per row, "
          f"float32, {get_num_threads()} numba threads, load {_machine.loadavg()}\n")
    print("| what | median ms | ns per draw (wall) |")
    print("|---|---|---|")
    for label, sec in rows:
        print(f"| {label} | {sec * 1e3:.2f} | {sec / draws * 1e9:.1f} |")


if __name__ == "__main__":
    main()
