"""npmdn's benchmarks, each a module run from the repository root that prints tables:

    python -m bench.kernels        mixture-head kernels against PyTorch, with the bandwidth bound
    python -m bench.train          training end to end against the same model in PyTorch
    python -m bench.profile_sampling   where the sampler's time goes
    python -m bench.learning       held-out NLL against the true NLL on the seed problems
    python -m bench.distribution   accuracy and speed of CDF, quantiles, CRPS, modes
    python -m bench.defaults       held-out NLL gap of candidate MDN.fit defaults
    python -m bench.realdata       cross-validated held-out log-likelihood on small real data

Results and the commands that made them: ``bench/RESULTS.md``. This package
is not part of the wheel.
"""
