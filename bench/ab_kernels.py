"""Two checkouts' head kernels, timed in alternating processes.

    python -m bench.ab_kernels OTHER [--pairs 3] [--runs 41]

``OTHER`` is the root of another checkout of npmdn (``git worktree add /tmp/base
<commit>``). Each process imports npmdn from one checkout (this one, or OTHER put
first on ``sys.path``), compiles or loads its kernels, and times the NLL with its
gradient and the log-density at a few shapes, float32, on the inputs
``bench.kernels`` uses (a head output's row-strided views, the gradient into views
of one array): the median of ``--runs`` calls after two warm-ups. The processes
alternate, ``--pairs`` of each, because a kernel's time moves from process to
process with where its scratch lands in memory as much as from commit to commit.
Prints one line per process and a markdown table of medians over the processes.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

SHAPES = [(65536, 5, 1), (65536, 30, 1), (65536, 8, 4), (1048576, 5, 1)]

_CHILD = r"""
import json, os, sys, time
import numpy as np
root, here, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, root)
import npmdn
from npmdn._numba import kernels as nk
sys.path.insert(0, here)  # bench.kernels' inputs from this checkout (npmdn stays root's)
from bench.kernels import make_inputs, split
assert os.path.dirname(os.path.dirname(os.path.abspath(npmdn.__file__))) == os.path.abspath(root)
out = {}
for n, k, d in json.loads(sys.argv[4]):
    head, y = make_inputs(n, k, d, np.float32)
    v = split(head, k, d)
    g = np.zeros_like(head)
    gv = split(g, k, d)
    nll = np.empty(n, np.float32)
    for name, f in (("nll_grad", lambda: nk.nll_grad(*v, y, out=(nll, *gv))),
                    ("log_prob", lambda: nk.log_prob(*v, y))):
        f(); f()
        ts = []
        for _ in range(runs):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        out[f"{name} {n},{k},{d}"] = float(np.median(ts))
print(json.dumps(out))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("other", help="root of the other checkout")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--runs", type=int, default=41)
    args = ap.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    other = os.path.abspath(args.other)
    if not os.path.isfile(os.path.join(other, "npmdn", "__init__.py")):
        raise SystemExit(f"{other} is not an npmdn checkout (no npmdn/__init__.py)")
    res = {"this": [], "other": []}
    for _ in range(args.pairs):
        for label, root in (("other", other), ("this", here)):
            p = subprocess.run([sys.executable, "-c", _CHILD, root, here, str(args.runs),
                                json.dumps(SHAPES)], capture_output=True, text=True, check=True)
            r = json.loads(p.stdout.strip().splitlines()[-1])
            res[label].append(r)
            print(label, " | ".join(f"{k} {v * 1e3:.2f}" for k, v in r.items()), flush=True)
    print(f"\n`python -m bench.ab_kernels {args.other} --pairs {args.pairs} --runs {args.runs}`: "
          f"ms, the median over {args.pairs} processes of each\n")
    print("| kernel, N, K, D | other | this | this / other |\n|---|---|---|---|")
    for key in res["this"][0]:
        a = float(np.median([r[key] for r in res["other"]]))
        b = float(np.median([r[key] for r in res["this"]]))
        print(f"| {key} | {a * 1e3:.2f} | {b * 1e3:.2f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
