"""How close npmdn gets to the true conditional NLL on the seed problems.

    python bench/bench_learning.py [--seeds 0 1 2] [--backend numba]

Prints a markdown table (and writes bench/learning.json): for each problem and
seed, the held-out NLL of a model trained on 20,000 points, scored on 20,000
fresh ones, against the true conditional NLL of those rows.
"""

import argparse
import json
import os
import platform

import numpy as np

import npmdn
from npmdn import _learning


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--backend", default=None)
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "learning.json"))
    args = ap.parse_args()
    rows = []
    for problem in _learning.SETUPS:
        for seed in args.seeds:
            rows.append(_learning.run(problem, seed, backend=args.backend))
    cpu = platform.processor() or platform.machine()
    print(f"npmdn {npmdn.__version__}, numpy {np.__version__}, {cpu}, "
          f"fit {_learning.FIT}, tanh trunk\n")
    print("| problem | K | hidden | epochs | seed | backend | train s | held-out NLL | true NLL "
          "| gap | sigma err (central max / full max / full mean) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sig = ""
        if "sigma_err_central_max" in r:
            sig = (f"{r['sigma_err_central_max']:.1%} / {r['sigma_err_full_max']:.1%} / "
                   f"{r['sigma_err_full_mean']:.1%}")
        cfg = _learning.SETUPS[r["problem"]]
        print(f"| {r['problem']} | {cfg['n_components']} | {cfg['hidden']} | {cfg['epochs']} | "
              f"{r['seed']} | {r['backend']} | "
              f"{r['train_seconds']:.1f} | {r['heldout_nll']:.4f} | {r['true_nll']:.4f} | "
              f"{r['gap']:+.4f} | {sig} |")
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
