"""Models and data shared by the Dask tests; importable on the workers of a LocalCluster
(they inherit this process's sys.path), which is why the counting model lives here."""

import numpy as np
from threadpoolctl import threadpool_limits

import npmdn

N = 10_000  # three network passes of config.NETWORK_PASS = 4096 rows, the last short
# row blocks that cut passes anywhere: one row, a pass less one, uneven sizes, one block
CHUNKINGS = [(1000,) * 10, (1, 4095, 1, 5903), (777,) * 12 + (676,), (N,)]


def data(n=N, seed=0, in_dim=3, out_dim=2):
    """x [n, in_dim] and y [n, out_dim] with a heteroscedastic, bimodal p(y | x)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (n, in_dim))
    branch = np.where(rng.random(n) < 0.5, 1.0, -1.0)[:, None]
    y = branch * np.sin(x[:, :out_dim]) + (0.1 + 0.1 * np.abs(x[:, :1])) * rng.standard_normal(
        (n, out_dim))
    return x, y


def trained(dtype="float64", backend="numba", cls=npmdn.MDN, covariance="diagonal"):
    """A model trained briefly, so that its components differ as a real model's do."""
    x, y = data(3000, seed=1)
    model = cls(3, 2, 4, hidden=(32, 32), dtype=dtype, backend=backend, seed=0,
                covariance=covariance)
    model.fit(x, y, epochs=3, batch_size=128, lr=3e-3, verbose=False)
    return model


def on_one_blas_thread(fn, *args, **kwargs):
    """``fn`` with BLAS on one thread, as on a Dask worker (the nanny sets
    OPENBLAS_NUM_THREADS=1): float32 matrix products may round differently when
    OpenBLAS splits them between threads, so "equal to in-memory" means with the
    workers' threading."""
    with threadpool_limits(1, user_api="blas"):
        return fn(*args, **kwargs)


class CountingMDN(npmdn.MDN):
    """An MDN that counts how often this process builds one from a pickled state."""

    built = 0

    def __setstate__(self, state):
        CountingMDN.built += 1
        super().__setstate__(state)


def built_here():
    return CountingMDN.built
