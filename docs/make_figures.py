"""The figures of docs/derivation.md (matplotlib, no display needed).

    python docs/make_figures.py [folder]

writes, into ``docs/`` (or ``folder`` when given), ``derivation-graph.png``:
the computation graph with the shape of every array and the gradient that
flows back along each edge; and ``derivation-scale-gradient.png``: the
responsibilities ``r_k`` and the scale gradients ``r_k (1 - z_k^2)`` of the
worked example's row against ``y``, computed by ``npmdn.mixture``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from npmdn import mixture  # noqa: E402

HERE = Path(__file__).resolve().parent
FORWARD, BACKWARD = "#222222", "#c0392b"

# the worked example of derivation.md, section 4: K = 2, D = 1, one row
A = np.array([[1.0, 0.0]])
MU = np.array([[[0.0], [2.0]]])
S = np.array([[[0.0], [math.log(2.0)]]])
Y = 1.5


def _node(ax, xy, text, color="#eef3fb"):
    return ax.text(*xy, text, ha="center", va="center", fontsize=10.5, zorder=3,
                   bbox=dict(boxstyle="round,pad=0.45", fc=color, ec="#4a6fa5", lw=1.2))


def _label(ax, xy, text, color, va, ha="center"):
    ax.text(*xy, text, ha=ha, va=va, fontsize=9, color=color, zorder=2,
            bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none"))


def _edge(ax, a, b, label="", back="", at=0.5, dx=0.0, dy=1.2, ha="center"):
    """A forward arrow from node ``a`` to node ``b``: what it computes (black, above
    the point ``at`` of the way along it, moved by ``dx``) and what flows back (red, below)."""
    ax.annotate("", xy=b.get_position(), xytext=a.get_position(), zorder=1,
                arrowprops=dict(arrowstyle="-|>", color=FORWARD, lw=1.3, shrinkA=3, shrinkB=3,
                                patchA=a.get_bbox_patch(), patchB=b.get_bbox_patch()))
    (xa, ya), (xb, yb) = a.get_position(), b.get_position()
    mx, my = xa + at * (xb - xa) + dx, ya + at * (yb - ya)
    if label:
        _label(ax, (mx, my + dy), label, FORWARD, "bottom", ha)
    if back:
        _label(ax, (mx, my - dy), back, BACKWARD, "top", ha)


def graph(path):
    fig, ax = plt.subplots(figsize=(14, 8.4))
    ax.set_xlim(-3, 117)
    ax.set_ylim(-9, 68)
    ax.axis("off")
    top, mid, low, bottom = 62, 40, 20, 0
    n = {
        "x": _node(ax, (4, top), "x\n[B, n_in]"),
        "xs": _node(ax, (27, top), "x'\n[B, n_in]"),
        "z1": _node(ax, (51, top), "Z_1\n[B, n_1]"),
        "a1": _node(ax, (74, top), "A_1\n[B, n_1]"),
        "h": _node(ax, (100, top), "h = [a | mu | s]\n[B, P]\nP = K (1 + D + S)", "#fdf2e3"),
        "y": _node(ax, (4, mid), "y\n[B, D]"),
        "ys": _node(ax, (27, mid), "y'\n[B, D]"),
        "mu": _node(ax, (60, mid), "mu\n[B, K, D]"),
        "s": _node(ax, (79, mid), "s = log sigma\n[B, K, S]"),
        "a": _node(ax, (100, mid), "a (logits)\n[B, K]"),
        "logn": _node(ax, (69, low), "z [B, K, D]\nlog N [B, K]"),
        "logpi": _node(ax, (100, low), "log pi\n[B, K]"),
        "t": _node(ax, (100, bottom), "t = log pi + log N\n[B, K]"),
        "logp": _node(ax, (62, bottom), "log p'(y' | x')\n[B]"),
        "L": _node(ax, (20, bottom), "L = mean NLL\n(a number)", "#fdf2e3"),
    }
    _edge(ax, n["x"], n["xs"], "(x - x_shift) / x_scale  §10", "dL/dx = (dL/dx') / x_scale  §1")
    _edge(ax, n["xs"], n["z1"], "x' W_1 + b_1  §7", "dW_1 = x'ᵀ G_1\ndb_1 = Σ_rows G_1  §7")
    _edge(ax, n["z1"], n["a1"], "f(Z_1)  §8", "G_1 = dA_1 * f'(Z_1)\n§8")
    _edge(ax, n["a1"], n["h"], "… A W_L + b_L\n§7, §9", "dW_L = Aᵀ G\ndA = G W_Lᵀ  §7, §9")
    _edge(ax, n["y"], n["ys"], "(y - y_shift) / y_scale  §10")
    for key in ("mu", "s", "a"):  # the head's views
        _edge(ax, n["h"], n[key])
    _label(ax, (101.5, 51), "dL/dh = G [B, P],\nthe same layout  §6", BACKWARD, "center", "left")
    _edge(ax, n["a"], n["logpi"], "a - lse(a)  §2", "(pi - r) / B  §4", dx=1.5, dy=0.6,
          ha="left")
    _edge(ax, n["mu"], n["logn"], back="-r z / sigma / B\n§4", dx=-2, dy=-2, ha="right")
    _edge(ax, n["s"], n["logn"], "-z²/2 - s - log(2π)/2  §3", "r (1 - z²) / B  §4", dx=3,
          dy=0.4, ha="left")
    _edge(ax, n["ys"], n["logn"], "z = (y' - mu) / sigma  §3", at=0.35, dy=1.5)
    _edge(ax, n["logpi"], n["t"])
    _edge(ax, n["logn"], n["t"], back="dL/dlog N = -r / B  §4", dx=-3, dy=1, ha="right")
    _edge(ax, n["t"], n["logp"], "lse_k(t)  §2, §4", "dL/dt = -softmax(t) / B = -r / B  §4")
    _edge(ax, n["logp"], n["L"], "-(1/B) Σ_rows + Σ_d log y_scale_d  §6, §10",
          "dL/dlog p' = -1/B  §6")
    ax.text(-2, -6.5, "black: what each edge computes (forward);  red: the gradient of L that "
            "flows back along it;  § = section of derivation.md.\nColumns of h (0-based): a_k "
            "at k, mu_kd at K + kD + d (component-major), s_kd at K + KD + kS + d.",
            fontsize=9, va="center")
    ax.set_title("The computation graph of one training step, with shapes "
                 "(B rows, K components, D target dims, S scales per component)", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scale_gradient(path):
    y = np.linspace(-4.0, 7.0, 2001)
    rows = y.size
    args = [np.repeat(v, rows, axis=0) for v in (A, MU, S)] + [y[:, None]]
    log_n, z, _, _ = mixture.component_log_density(*args[1:])
    log_pi = mixture.log_softmax(args[0])
    r = mixture.responsibilities(*args)  # [rows, K]
    d_s = mixture.nll_grad(*args)[3][..., 0]  # r_k (1 - z_k^2)
    sigma = np.exp(S[0, :, 0])
    colors = ("#1f77b4", "#d62728")
    fig, axes = plt.subplots(3, 1, figsize=(8.5, 8.2), sharex=True,
                             gridspec_kw=dict(height_ratios=(1, 1, 1.3)))
    axes[0].plot(y, np.exp(mixture.logsumexp(log_pi + log_n)), color="0.3", lw=2,
                 label="p(y) = sum_k pi_k N_k(y)")
    for k, c in enumerate(colors):
        axes[0].plot(y, np.exp(log_pi[:, k] + log_n[:, k]), color=c, lw=1.3, ls="--",
                     label=f"pi_{k + 1} N_{k + 1}(y)")
        axes[1].plot(y, r[:, k], color=c, lw=1.8, label=f"r_{k + 1}(y)")
        axes[2].plot(y, d_s[:, k], color=c, lw=1.8,
                     label=f"dL/ds_{k + 1} = r_{k + 1} (1 - z_{k + 1}²)")
        for side in (-1, 1):  # |z| = 1: where the scale gradient changes sign
            for ax in axes:
                ax.axvline(MU[0, k, 0] + side * sigma[k], color=c, lw=0.8, ls=":")
    axes[2].axhline(0, color="0.5", lw=0.8)
    axes[2].set_ylim(-2.3, 1.35)
    here = np.searchsorted(y, Y)
    for k, c in enumerate(colors):
        axes[1].plot(Y, r[here, k], "o", color=c)
        axes[2].plot(Y, d_s[here, k], "o", color=c)
        axes[2].annotate(f"{d_s[here, k]:.6f}", (Y, d_s[here, k]), textcoords="offset points",
                         xytext=(-62, -4) if k == 0 else (-60, 6), color=c, fontsize=9)
    axes[2].text(-0.95, 1.05, "|z_1| < 1: dL/ds_1 > 0,\ndescent narrows component 1",
                 fontsize=8.5, va="center", color=colors[0])
    axes[2].text(4.1, 0.75, "|z_2| < 1 on (0, 4):\ndescent narrows component 2",
                 fontsize=8.5, va="center", color=colors[1])
    axes[2].text(-3.9, -1.75, "|z| > 1: dL/ds < 0, descent widens\n(and -r z² keeps falling "
                 "with distance)", fontsize=8.5, va="center")
    for ax in axes:
        ax.axvline(Y, color="0.6", lw=0.8)
    axes[0].legend(loc="upper right", fontsize=8.5, framealpha=0.9)
    axes[1].legend(loc="center right", fontsize=8.5, framealpha=0.9)
    axes[2].legend(loc="lower right", fontsize=8.5, framealpha=0.9)
    axes[0].set_ylabel("density")
    axes[1].set_ylabel("responsibility")
    axes[2].set_ylabel("scale gradient")
    axes[2].set_xlabel(f"y   (dotted: mu_k ± sigma_k, where |z_k| = 1;  grey: y = {Y}, "
                       "the worked example)")
    fig.suptitle("The worked example's row (a = [1, 0], mu = [0, 2], sigma = [1, 2]) "
                 "against y", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(folder=HERE):
    for name, draw in (("derivation-graph.png", graph),
                       ("derivation-scale-gradient.png", scale_gradient)):
        draw(Path(folder) / name)
        print(f"wrote {Path(folder) / name}")


if __name__ == "__main__":
    main(*sys.argv[1:])
