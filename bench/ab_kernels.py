"""Two checkouts' head kernels, timed in alternating processes or in one process.

    python -m bench.ab_kernels OTHER [--pairs 3] [--runs 41]
    python -m bench.ab_kernels OTHER --same-process [--rounds 7] [--shapes 65536,8,4,1;...]

``OTHER`` is the root of another checkout of npmdn (``git worktree add /tmp/base
<commit>``). Each process imports npmdn from one checkout (this one, or OTHER put
first on ``sys.path``), compiles or loads its kernels, and times the NLL with its
gradient and the log-density at a few shapes, float32, on the inputs
``bench.kernels`` uses (a head output's row-strided views, the gradient into views
of one array): the median of ``--runs`` calls after two warm-ups. The processes
alternate, ``--pairs`` of each, because a kernel's time moves from process to
process with where its scratch lands in memory as much as from commit to commit.
Prints one line per process and a markdown table of medians over the processes.

``--same-process``: both checkouts' ``npmdn`` packages are copied under other names
(``npmdn_other``, ``npmdn_this``, in a temporary directory; the package imports
itself relatively) and imported into one process, which times them on the same
input arrays in alternating rounds of 15 calls (``--rounds``, the order swapped
every round) and prints each shape's median per round, the ratio of the medians
and the range of the per-round ratios. The machine's slow stretches then fall on
both sides alike: a kernel whose code did not change measured 0.98-1.02 this
way in most runs and up to 1.06 in one (two copies of the same code do not land
alike in memory), where process pairs moved 10-20%; read a ratio within about 5%
of 1 as no change. ``--shapes`` takes ``N,K,D`` (diagonal), ``N,K,D,1``
(isotropic) or ``N,K,D,S`` with ``S = D (D + 1) / 2`` (full covariance).
``--kernels`` picks among ``nll_grad``, ``log_prob`` and ``sample`` (Gumbel-max
and cumulative, ``--draws`` a row: by default 16 up to 65536 rows and 1 above, as
in ``bench.kernels``); it applies to ``--same-process``, the alternating
processes time the two head kernels.
"""

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

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


KERNELS = ("nll_grad", "log_prob", "sample")


def _kernel_call(mod, kernel, v, y, nll, gv, draws):
    if kernel == "nll_grad":
        return lambda: mod.nll_grad(*v, y, out=(nll, *gv))
    if kernel == "log_prob":
        return lambda: mod.log_prob(*v, y)
    if kernel == "sample gumbel":
        return lambda: mod.sample(*v, draws, 7, 0, "gumbel")
    return lambda: mod.sample(*v, draws, 7, 0, "cumulative")


def same_process(other, here, shapes, rounds, kernels=KERNELS[:2], draws=None):
    from .kernels import make_inputs, split

    tmp = tempfile.mkdtemp(prefix="npmdn-ab-")
    try:
        mods = {}
        for label, root in (("other", other), ("this", here)):
            shutil.copytree(os.path.join(root, "npmdn"), os.path.join(tmp, f"npmdn_{label}"),
                            ignore=shutil.ignore_patterns("__pycache__"))
        sys.path.insert(0, tmp)
        for label in ("other", "this"):
            mods[label] = importlib.import_module(f"npmdn_{label}._numba.kernels")
        print("| kernel, shape | other ms | this ms | this / other | per-round ratios |\n"
              "|---|---|---|---|---|")
        for shape in shapes:
            n, k, d = shape[:3]
            sc = shape[3] if len(shape) > 3 else d  # scales per component (1: isotropic)
            head, y = make_inputs(n, k, d, np.float32, s=sc)
            v, g = split(head, k, d, sc), np.zeros_like(head)
            gv, nll = split(g, k, d, sc), np.empty(n, np.float32)
            j = draws if draws is not None else (16 if n <= 65536 else 1)
            names = [kn for kernel in kernels for kn in (
                (f"{kernel} gumbel", f"{kernel} cumulative") if kernel == "sample" else (kernel,))]
            for kernel in names:
                calls = {label: _kernel_call(m, kernel, v, y, nll, gv, j)
                         for label, m in mods.items()}
                for f in calls.values():
                    f()
                    f()
                med = {"other": [], "this": []}
                for r in range(rounds):
                    for label in ("other", "this") if r % 2 == 0 else ("this", "other"):
                        ts = []
                        for _ in range(15):
                            t = time.perf_counter()
                            calls[label]()
                            ts.append(time.perf_counter() - t)
                        med[label].append(float(np.median(ts)))
                a, b = np.median(med["other"]), np.median(med["this"])
                ratios = np.array(med["this"]) / np.array(med["other"])
                name = f"{kernel} {','.join(map(str, shape))}" + (
                    f" x {j}" if kernel.startswith("sample") else "")
                print(f"| {name} | {a * 1e3:.3f} | {b * 1e3:.3f} "
                      f"| {b / a:.3f} | {ratios.min():.2f}-{ratios.max():.2f} |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("other", help="root of the other checkout")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--runs", type=int, default=41)
    ap.add_argument("--same-process", action="store_true",
                    help="both checkouts in one process, alternating rounds")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--shapes", default=None,
                    help="N,K,D, N,K,D,1 (isotropic) or N,K,D,D(D+1)/2 (full), separated by ';'")
    ap.add_argument("--kernels", default="nll_grad,log_prob",
                    help="with --same-process: of " + ", ".join(KERNELS) + ", separated by ','")
    ap.add_argument("--draws", type=int, default=None,
                    help="draws a row for sample (default: 16 up to 65536 rows, else 1)")
    args = ap.parse_args()
    kernels = tuple(args.kernels.split(","))
    bad = [k for k in kernels if k not in KERNELS]
    if bad:
        raise SystemExit(f"--kernels: unknown {', '.join(bad)} (expected some of "
                         f"{', '.join(KERNELS)})")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    other = os.path.abspath(args.other)
    if not os.path.isfile(os.path.join(other, "npmdn", "__init__.py")):
        raise SystemExit(f"{other} is not an npmdn checkout (no npmdn/__init__.py)")
    shapes = SHAPES if args.shapes is None else [
        tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]
    if args.same_process:
        sys.path.insert(0, here)
        same_process(other, here, shapes, args.rounds, kernels, args.draws)
        return
    res = {"this": [], "other": []}
    for _ in range(args.pairs):
        for label, root in (("other", other), ("this", here)):
            p = subprocess.run([sys.executable, "-c", _CHILD, root, here, str(args.runs),
                                json.dumps([sh[:3] for sh in shapes])], capture_output=True,
                               text=True, check=True)
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
