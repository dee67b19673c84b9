r"""Fused training epochs for :meth:`npmdn.MDN.fit` on the numba backend.

A small MDN spends most of a NumPy training step in Python: a dozen array
calls per layer, each a few microseconds, against a few microseconds of
arithmetic. Here a whole epoch (every minibatch step: forward pass, mixture
head, backward pass, gradient norm and clipping, optimizer update) is one
compiled call, and :mod:`npmdn.training` keeps everything else: argument
checks, shuffling, the learning-rate schedule, validation, history, early
stopping, callbacks, progress and the errors it raises. The kernel reports a
failed step as a status; it never calls back into the model.

The math is that of the NumPy step loop (``nn.py``, ``mixture.py``,
``optim.py``, ``training.StepLoop``), which stays the reference;
``tests/backends/test_training_backends.py`` trains both and compares. Only
the order of floating-point sums differs. The activations and the Adam/SGD
update are fused copies of ``nn.activation_forward``/``activation_backward``
and ``optim.Adam.step``/``SGD.step``; ``docs/derivation.md`` maps each.

Layout: activations are feature-major, ``A[unit, row]``, so every inner loop
runs over the rows of a chunk of the batch, contiguous and vectorised, and
the head output is already the structure-of-arrays layout of
``head.head_soa``. A batch is cut into chunks of ``config.TRAIN_CHUNK`` rows (the
chunk's activations stay in cache); the chunks are shared out to the
threads, each accumulating its own gradient, summed before the update. Where the
scratch allows, chunks are larger: a thread's share of the batch, up to
``config.TRAIN_CHUNK_MAX`` rows in ``config.TRAIN_CHUNK_BYTES`` (each chunk's pass
through the layers has a set-up cost).

Full-batch epochs (one step each, no shuffling) that nothing in Python looks
at in between (no validation, callback or patience) run several to a call
(:meth:`FusedFit.epochs`, per-epoch learning rates in an array): a small
model's epoch lasts tens of microseconds, about what the Python round trip
and the collapse diagnostics of :class:`npmdn.training.History` cost, so the
kernel also takes those diagnostics after each epoch (:func:`_diagnose`, the
formulas of :func:`npmdn.regularization.mixture_diagnostics` on the same
rows, equal to rounding); on one thread those of epoch ``e`` are gathered
from epoch ``e + 1``'s forward pass, which starts from the same weights and
sees the same rows (no noise, no shuffling), so only a block's last epoch
runs the network on them apart.

Noise regularisation and the sigma floor happen here too, as in the step
loop: each row of a chunk gets the noise of :func:`npmdn.philox.noise_normals`
(the same Philox words, drawn here; the Box-Muller normals agree with
NumPy's to rounding) added to its standardized x and y before the forward
pass, and the head's raw scales ``s`` become ``s' = logaddexp(s, log f)``
before the head kernel, whose ``dNLL/ds'`` is multiplied by
``exp(s - s')`` after it (:func:`npmdn.mixture.floor_log_sigma`,
``floor_log_sigma_grad``); both are in :mod:`npmdn._numba.regularization`.

Shapes: ``P [n_params]`` flat parameters (``W`` row-major ``[n_in, n_out]``
then ``b``, layer by layer, as ``nn.MLP``); ``xs [N, in]``, ``ys [N, D]``.
"""

from __future__ import annotations

import math
import os
import types as types_

import numpy as np
from numba import get_num_threads, njit, prange, set_num_threads, types

from .. import config, philox
from ..fullcov import is_full
from ..optim import SGD, Adam
from ..regularization import LIVE_WEIGHT
from .head import head_soa
from .kernels import forked
from .memory import aligned_zeros
from .regularization import add_noise, floor_scales
from .vmath import as_type, negligible, prefer_wide_vectors, vexp, vexpm1, vlog1p, vtanh

# reassociation lets LLVM vectorise the row sums of the weight gradients;
# the exp/log/tanh code keeps its own flags (LLVM flags are per instruction)
FASTMATH = {"contract", "reassoc", "nsz", "arcp"}
ACTIVATIONS = {"identity": 0, "tanh": 1, "relu": 2, "sigmoid": 3, "softplus": 4, "elu": 5}

# status codes returned by the epoch kernel
OK, BAD_LOSS, BAD_GRAD_NORM = 0, 1, 2


# --------------------------------------------------------------------------
# activations, forward and backward over a contiguous block
# --------------------------------------------------------------------------


@njit(fastmath=FASTMATH, error_model="numpy")
def _act_forward(code, Z, A, m, n):
    """``A[:m, :n] = f(Z[:m, :n])`` (npmdn.nn.activation_forward), a layer's units at
    once: one call per layer, not per unit (a call costs reference counts per array)."""
    zero = as_type(0.0, Z)
    half = as_type(0.5, Z)
    one = as_type(1.0, Z)
    for j in range(m):
        z = Z[j]
        a = A[j]
        if code == 1:
            for i in range(n):
                a[i] = vtanh(z[i])
        elif code == 2:
            for i in range(n):
                a[i] = max(z[i], zero)
        elif code == 3:
            for i in range(n):
                a[i] = half * (vtanh(half * z[i]) + one)  # 1 / (1 + e^-x) without overflow
        elif code == 4:
            for i in range(n):
                x = z[i]
                a[i] = max(x, zero) + vlog1p(vexp(-abs(x)))  # log(1 + e^x), as np.logaddexp(0, x)
        elif code == 5:
            for i in range(n):
                x = z[i]
                e = vexpm1(min(x, zero))
                a[i] = x if x > zero else e
        else:
            for i in range(n):
                a[i] = z[i]


@njit(fastmath=FASTMATH, error_model="numpy")
def _act_backward(code, Z, A, dA, m, n):
    """``dA[:m, :n] *= f'(x)``, from ``Z = x`` or ``A = f(x)`` (npmdn.nn.activation_backward),
    a layer's units at once."""
    zero = as_type(0.0, Z)
    half = as_type(0.5, Z)
    one = as_type(1.0, Z)
    for j in range(m):
        z = Z[j]
        a = A[j]
        da = dA[j]
        if code == 1:
            for i in range(n):
                ai = a[i]
                da[i] *= one - ai * ai  # tanh' = 1 - tanh^2
        elif code == 2:
            for i in range(n):
                da[i] = da[i] if z[i] > zero else zero
        elif code == 3:
            for i in range(n):
                ai = a[i]
                da[i] *= ai * (one - ai)  # s' = s (1 - s)
        elif code == 4:
            for i in range(n):
                da[i] *= half * (vtanh(half * z[i]) + one)  # softplus' = sigmoid
        elif code == 5:
            for i in range(n):
                da[i] *= one if z[i] > zero else a[i] + one  # elu' = 1 or e^x = out + 1


# --------------------------------------------------------------------------
# one chunk of rows: forward, head, backward, gradient accumulated into g
# --------------------------------------------------------------------------


@njit(fastmath=FASTMATH, error_model="numpy")
def _layer(buf, aoffs, sizes, layer, C):
    """Layer ``layer``'s block of a feature-major buffer, as a [units, C] view.

    Every index below is a loop counter into such a view: an index that Numba
    cannot prove non-negative gets a wraparound check, which turns the
    vectorised loads into gathers (12x slower on these loops).
    """
    o = aoffs[layer]
    return buf[o:o + sizes[layer] * C].reshape(sizes[layer], C)


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _w(W, q, o, n_in, n_out, trans):
    """Weight from input row ``q`` to output row ``o``: ``W[q, o]`` (``W[o, q]`` with
    ``trans``), 0 outside the matrix (the padding of a block of four). Inlined by Numba
    (as a call, a small fit ran 10-15% slower; ``_layer`` did not need it)."""
    if q >= n_in or o >= n_out:
        return as_type(0.0, W)
    return W[o, q] if trans else W[q, o]


@njit(fastmath=FASTMATH, error_model="numpy")
def _matmul(Out, W, X, n_out, n_in, nc, trans, bias, has_bias, zrow, junk):
    """``Out[o, :nc] = bias[o] + sum_q w(q, o) X[q, :nc]`` (no bias without ``has_bias``),
    ``w`` as :func:`_w`. Four outputs by four inputs per pass over the rows: each pass
    loads and stores an output row once for four multiply-adds, where one input at a
    time stored it after every one (the loops were bound by loads and stores, not
    arithmetic). Blocks past the matrix's edge read ``zrow`` (zeros, weight 0) and
    write ``junk``."""
    prefer_wide_vectors()
    zero = as_type(0.0, Out)
    if n_in == 1:  # a one-input layer: a block of four would be three quarters padding
        x0 = X[0]
        for o in range(n_out):
            r = Out[o]
            b = bias[o] if has_bias else zero
            w = _w(W, 0, o, n_in, n_out, trans)
            for i in range(nc):
                r[i] = b + w * x0[i]
        return
    for o0 in range(0, n_out, 4):
        r0 = Out[o0]
        r1 = Out[o0 + 1] if o0 + 1 < n_out else junk
        r2 = Out[o0 + 2] if o0 + 2 < n_out else junk
        r3 = Out[o0 + 3] if o0 + 3 < n_out else junk
        b0 = bias[o0] if has_bias else zero
        b1 = bias[o0 + 1] if has_bias and o0 + 1 < n_out else zero
        b2 = bias[o0 + 2] if has_bias and o0 + 2 < n_out else zero
        b3 = bias[o0 + 3] if has_bias and o0 + 3 < n_out else zero
        for i in range(nc):
            r0[i] = b0
            r1[i] = b1
            r2[i] = b2
            r3[i] = b3
        for q0 in range(0, n_in, 4):
            x0 = X[q0]
            x1 = X[q0 + 1] if q0 + 1 < n_in else zrow
            x2 = X[q0 + 2] if q0 + 2 < n_in else zrow
            x3 = X[q0 + 3] if q0 + 3 < n_in else zrow
            w00 = _w(W, q0, o0, n_in, n_out, trans)
            w10 = _w(W, q0 + 1, o0, n_in, n_out, trans)
            w20 = _w(W, q0 + 2, o0, n_in, n_out, trans)
            w30 = _w(W, q0 + 3, o0, n_in, n_out, trans)
            w01 = _w(W, q0, o0 + 1, n_in, n_out, trans)
            w11 = _w(W, q0 + 1, o0 + 1, n_in, n_out, trans)
            w21 = _w(W, q0 + 2, o0 + 1, n_in, n_out, trans)
            w31 = _w(W, q0 + 3, o0 + 1, n_in, n_out, trans)
            w02 = _w(W, q0, o0 + 2, n_in, n_out, trans)
            w12 = _w(W, q0 + 1, o0 + 2, n_in, n_out, trans)
            w22 = _w(W, q0 + 2, o0 + 2, n_in, n_out, trans)
            w32 = _w(W, q0 + 3, o0 + 2, n_in, n_out, trans)
            w03 = _w(W, q0, o0 + 3, n_in, n_out, trans)
            w13 = _w(W, q0 + 1, o0 + 3, n_in, n_out, trans)
            w23 = _w(W, q0 + 2, o0 + 3, n_in, n_out, trans)
            w33 = _w(W, q0 + 3, o0 + 3, n_in, n_out, trans)
            for i in range(nc):
                a0, a1, a2, a3 = x0[i], x1[i], x2[i], x3[i]
                # input by input, in order, as four passes of one input would add
                r0[i] = (((r0[i] + w00 * a0) + w10 * a1) + w20 * a2) + w30 * a3
                r1[i] = (((r1[i] + w01 * a0) + w11 * a1) + w21 * a2) + w31 * a3
                r2[i] = (((r2[i] + w02 * a0) + w12 * a1) + w22 * a2) + w32 * a3
                r3[i] = (((r3[i] + w03 * a0) + w13 * a1) + w23 * a2) + w33 * a3


@njit(fastmath=FASTMATH, error_model="numpy")
def _outer_acc(G, Xa, Xd, n_a, n_d, nc, zrow):
    """``G[k, j] += sum_i Xa[k, i] Xd[j, i]`` (a weight gradient), four by four rows
    per pass: sixteen sums from eight loads per row."""
    prefer_wide_vectors()
    if n_a == 1:  # a one-input layer: four output rows at a time
        a0 = Xa[0]
        for j0 in range(0, n_d, 4):
            d0 = Xd[j0]
            d1 = Xd[j0 + 1] if j0 + 1 < n_d else zrow
            d2 = Xd[j0 + 2] if j0 + 2 < n_d else zrow
            d3 = Xd[j0 + 3] if j0 + 3 < n_d else zrow
            s0 = s1 = s2 = s3 = as_type(0.0, G)
            for i in range(nc):
                p0 = a0[i]
                s0 += p0 * d0[i]
                s1 += p0 * d1[i]
                s2 += p0 * d2[i]
                s3 += p0 * d3[i]
            for c in range(min(4, n_d - j0)):
                G[0, j0 + c] += s0 if c == 0 else s1 if c == 1 else s2 if c == 2 else s3
        return
    for k0 in range(0, n_a, 4):
        a0 = Xa[k0]
        a1 = Xa[k0 + 1] if k0 + 1 < n_a else zrow
        a2 = Xa[k0 + 2] if k0 + 2 < n_a else zrow
        a3 = Xa[k0 + 3] if k0 + 3 < n_a else zrow
        for j0 in range(0, n_d, 4):
            d0 = Xd[j0]
            d1 = Xd[j0 + 1] if j0 + 1 < n_d else zrow
            d2 = Xd[j0 + 2] if j0 + 2 < n_d else zrow
            d3 = Xd[j0 + 3] if j0 + 3 < n_d else zrow
            s00 = s01 = s02 = s03 = as_type(0.0, G)
            s10 = s11 = s12 = s13 = as_type(0.0, G)
            s20 = s21 = s22 = s23 = as_type(0.0, G)
            s30 = s31 = s32 = s33 = as_type(0.0, G)
            for i in range(nc):
                p0, p1, p2, p3 = a0[i], a1[i], a2[i], a3[i]
                q0, q1, q2, q3 = d0[i], d1[i], d2[i], d3[i]
                s00 += p0 * q0
                s01 += p0 * q1
                s02 += p0 * q2
                s03 += p0 * q3
                s10 += p1 * q0
                s11 += p1 * q1
                s12 += p1 * q2
                s13 += p1 * q3
                s20 += p2 * q0
                s21 += p2 * q1
                s22 += p2 * q2
                s23 += p2 * q3
                s30 += p3 * q0
                s31 += p3 * q1
                s32 += p3 * q2
                s33 += p3 * q3
            rows = min(4, n_a - k0)
            cols = min(4, n_d - j0)
            for r in range(rows):
                for c in range(cols):
                    if r == 0:
                        v = s00 if c == 0 else s01 if c == 1 else s02 if c == 2 else s03
                    elif r == 1:
                        v = s10 if c == 0 else s11 if c == 1 else s12 if c == 2 else s13
                    elif r == 2:
                        v = s20 if c == 0 else s21 if c == 1 else s22 if c == 2 else s23
                    else:
                        v = s30 if c == 0 else s31 if c == 1 else s32 if c == 2 else s33
                    G[k0 + r, j0 + c] += v


@njit(fastmath=FASTMATH, error_model="numpy")
def _forward(P, sizes, offs, aoffs, act, A, Z, nc, C):
    """The network on the first ``nc`` rows of a chunk whose inputs are in layer 0 of
    ``A``: every layer's ``Z`` and (below the head) its activation ``A``."""
    prefer_wide_vectors()
    n_layers = sizes.shape[0] - 1
    # forward: Z_l = W_l^T A_{l-1} + b_l, A_l = f(Z_l) (no activation on the head)
    zrow = np.zeros(C, P.dtype)
    junk = np.empty(C, P.dtype)
    for layer in range(n_layers):
        ni, no = sizes[layer], sizes[layer + 1]
        W = P[offs[layer]:offs[layer] + ni * no].reshape(ni, no)
        bias = P[offs[layer] + ni * no:offs[layer] + ni * no + no]
        Ain = _layer(A, aoffs, sizes, layer, C)
        Zo = _layer(Z, aoffs, sizes, layer + 1, C)
        # np.bool_: typed bool, not Literal[bool], so that the forward and backward
        # products share one compilation of _matmul (the branches sit outside the row loops)
        _matmul(Zo, W, Ain, no, ni, nc, np.bool_(False), bias, np.bool_(True), zrow, junk)
        if layer < n_layers - 1:
            Ao = _layer(A, aoffs, sizes, layer + 1, C)
            _act_forward(act, Zo, Ao, no, nc)


@njit(fastmath=FASTMATH, error_model="numpy")
def _chunk(P, g, sizes, offs, aoffs, act, K, D, S, xs, ys, order, r0, nc, C, inv_b,
           A, Z, dA, dB, XY, EA, TT, va, vb, vc, vd, vq, nsx, nsy, key0, key1, epoch, rows,
           log_floor, drows, DG):
    """Rows ``order[r0 : r0 + nc]`` (or ``r0 : r0 + nc``): returns their NLL sum.

    ``drows`` (sorted; empty: none): rows whose logits and (floored) log sigmas are
    copied to ``DG [K + K*S, len(drows)]`` on the way, for the collapse diagnostics of
    the weights this step starts from (only used unshuffled and without noise)."""
    prefer_wide_vectors()
    n_layers = sizes.shape[0] - 1
    n_in = sizes[0]
    shuffled = order.shape[0] > 0
    # inputs and targets, feature-major
    X0 = _layer(A, aoffs, sizes, 0, C)
    for i in range(nc):
        row = order[r0 + i] if shuffled else r0 + i
        for k in range(n_in):
            X0[k, i] = xs[row, k]
        for d in range(D):
            XY[d, i] = ys[row, d]
    if nsx != 0.0 or nsy != 0.0:
        add_noise(X0, XY, nc, order, rows, r0, nsx, nsy, key0, key1, epoch)
    _forward(P, sizes, offs, aoffs, act, A, Z, nc, C)
    # the mixture head on the last layer's output, in place: Z becomes dNLL/dZ
    H = _layer(Z, aoffs, sizes, n_layers, C)
    XA = H[0:K]
    XM = H[K:K + K * D]
    XS = H[K + K * D:K + K * D + K * S]
    iso = S == 1 and D > 1
    floored = log_floor.shape[0] > 0
    if floored:  # dA is free until the backward pass
        FS = dA[:K * S * C].reshape(K * S, C)
        floor_scales(XS, FS, log_floor, S, nc)
    for q in range(drows.shape[0]):
        i = drows[q] - r0
        if i >= 0 and i < nc:
            for k in range(K):
                DG[k, q] = XA[k, i]
            for j in range(K * S):
                DG[K + j, q] = XS[j, i]
    head_soa(nc, K, D, iso, XA, XM, XS, XY, EA, TT, va, vb, vc, vd, vq, negligible(P))
    if floored:
        for j in range(K * S):
            for i in range(nc):
                XS[j, i] *= FS[j, i]  # dNLL/ds = dNLL/ds' exp(s - s')
    nll = 0.0
    for i in range(nc):
        nll -= vd[i]
    for j in range(H.shape[0]):
        for i in range(nc):
            H[j, i] *= inv_b  # d(mean NLL) = d(sum NLL) / B
    # backward, layer by layer from the head
    zrow = np.zeros(C, P.dtype)
    junk = np.empty(C, P.dtype)
    dz = H
    for layer in range(n_layers - 1, -1, -1):
        ni, no = sizes[layer], sizes[layer + 1]
        wo = offs[layer]
        W = P[wo:wo + ni * no].reshape(ni, no)
        gW = g[wo:wo + ni * no].reshape(ni, no)
        gb = g[wo + ni * no:wo + ni * no + no]
        Ain = _layer(A, aoffs, sizes, layer, C)
        # out = x W + b:  db = sum_rows dout
        for j in range(no):
            s = as_type(0.0, P)
            d = dz[j]
            for i in range(nc):
                s += d[i]
            gb[j] += s
        # dW = x^T dout
        _outer_acc(gW, Ain, dz, ni, no, nc, zrow)
        if layer == 0:
            break
        # dx = dout W^T, then through the activation of the layer below
        buf = dA if (n_layers - 1 - layer) % 2 == 0 else dB
        nxt = buf[:ni * C].reshape(ni, C)
        Zin = _layer(Z, aoffs, sizes, layer, C)
        _matmul(nxt, W, dz, ni, no, nc, np.bool_(True), gb, np.bool_(False), zrow, junk)
        _act_backward(act, Zin, Ain, nxt, ni, nc)
        dz = nxt
    return nll


@njit(fastmath=FASTMATH, error_model="numpy")
def _mixing_stats(XA, XS, nc, K, S, EA, va, vb, vc, pbar, live):
    """Adds rows ``:nc``'s mixing weights (the softmax of the logits ``XA [K, nc]``) to
    ``pbar [K]`` and returns ``min(live, smallest log sigma XS [K*S, nc] of a component
    weighing above LIVE_WEIGHT)``; ``EA [K, >= nc]``, ``va``, ``vb``, ``vc`` are scratch.

    The smallest live log sigma is taken row by row (``vb``: a vectorised pass per
    column of ``XS``), then over the rows by halving: an ordered minimum over all of
    them at once would be a scalar loop (LLVM vectorises a min reduction only when
    told there is no NaN). Numba's ``min(a, b)`` is ``b if b < a else a``: a NaN
    never enters a running minimum that starts at inf, in either order."""
    prefer_wide_vectors()
    inf = as_type(np.inf, XA)
    lw = as_type(LIVE_WEIGHT, XA)
    one = as_type(1.0, XA)
    # pi = softmax(a), from the row's largest logit
    for i in range(nc):
        va[i] = XA[0, i]
    for k in range(1, K):
        for i in range(nc):
            a = XA[k, i]
            va[i] = a if a > va[i] else va[i]
    for i in range(nc):
        vc[i] = as_type(0.0, XA)
    for k in range(K):
        for i in range(nc):
            e = vexp(XA[k, i] - va[i])
            EA[k, i] = e
            vc[i] += e
    for i in range(nc):
        vc[i] = one / vc[i]
        vb[i] = inf
    for k in range(K):
        acc = 0.0
        for i in range(nc):
            p = EA[k, i] * vc[i]
            EA[k, i] = p
            acc += p
        pbar[k] += acc
        pk = EA[k]
        for c in range(S):
            sk = XS[k * S + c]
            for i in range(nc):
                v = sk[i] if pk[i] > lw else inf
                vb[i] = min(vb[i], v)
    m = nc
    while m > 16:
        h = m // 2
        for i in range(h):
            vb[i] = min(vb[i], vb[m - h + i])
        m -= h
    for i in range(m):
        live = min(live, vb[i])
    return live


@njit(fastmath=FASTMATH, error_model="numpy")
def _entropy(pbar, nd):
    """``-sum_k pbar_k log pbar_k`` of the mean weights ``pbar / nd``."""
    h = 0.0
    for k in range(pbar.shape[0]):
        pk = pbar[k] / nd
        if pk > 0.0:
            h -= pk * math.log(pk)
    return h


@njit(fastmath=FASTMATH, error_model="numpy")
def _gathered_diagnostics(DG, K, S, out, e):
    """``out[e, 1:3]``: the diagnostics of the logits and log sigmas gathered in the
    first ``K + K*S`` rows of ``DG``; its next ``K + 3`` rows are scratch."""
    nd = DG.shape[1]
    pbar = np.zeros(K)
    o = K + K * S
    live = _mixing_stats(DG[:K], DG[K:o], nd, K, S, DG[o:o + K], DG[o + K], DG[o + K + 1],
                         DG[o + K + 2], pbar, as_type(np.inf, DG))
    out[e, 1] = _entropy(pbar, nd)
    out[e, 2] = live


@njit(fastmath=FASTMATH, error_model="numpy")
def _diagnose(P, sizes, offs, aoffs, act, K, D, S, xd, C, A, Z, dA, EA, va, vb, vc,
              log_floor):
    """The collapse diagnostics of :func:`npmdn.regularization.mixture_diagnostics` at
    the standardized rows ``xd`` (no noise, the sigma floor applied): ``(-sum_k pbar_k
    log pbar_k, min log sigma of a live component)``, ``pbar`` the mean mixing weights,
    live meaning a weight above ``LIVE_WEIGHT`` at that row (``inf`` if none is)."""
    prefer_wide_vectors()
    nd = xd.shape[0]
    n_layers = sizes.shape[0] - 1
    n_in = sizes[0]
    pbar = np.zeros(K)
    live = as_type(np.inf, P)
    X0 = _layer(A, aoffs, sizes, 0, C)
    for r0 in range(0, nd, C):
        nc = min(C, nd - r0)
        for i in range(nc):
            for k in range(n_in):
                X0[k, i] = xd[r0 + i, k]
        _forward(P, sizes, offs, aoffs, act, A, Z, nc, C)
        H = _layer(Z, aoffs, sizes, n_layers, C)
        XA = H[0:K]
        XS = H[K + K * D:K + K * D + K * S]
        if log_floor.shape[0] > 0:
            floor_scales(XS, dA[:K * S * C].reshape(K * S, C), log_floor, S, nc)
        live = _mixing_stats(XA, XS, nc, K, S, EA, va, vb, vc, pbar, live)
    return _entropy(pbar, nd), np.float64(live)


# --------------------------------------------------------------------------
# optimizer updates (npmdn.optim, the same formulas, one pass over the buffer)
# --------------------------------------------------------------------------


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _update(P, G, m, v, mask, opt_kind, lr, b1, b2, eps, t, momentum, nesterov, wd):
    n = P.shape[0]
    if wd != 0.0:
        c = as_type(lr * wd, P)
        for i in range(n):
            P[i] -= (P[i] * c) * mask[i]  # decoupled weight decay, weights only
    if opt_kind == 0:
        # Adam: m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
        # p <- p - lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
        cb1 = as_type(b1, P)
        cg1 = as_type(1.0 - b1, P)
        cb2 = as_type(b2, P)
        cg2 = as_type(1.0 - b2, P)
        cv = as_type(1.0 / math.sqrt(1.0 - b2**t), P)
        ce = as_type(eps, P)
        cs = as_type(lr / (1.0 - b1**t), P)
        for i in range(n):
            gi = G[i]
            mi = m[i] * cb1 + gi * cg1
            vi = v[i] * cb2 + (gi * gi) * cg2
            m[i] = mi
            v[i] = vi
            P[i] -= (mi / (np.sqrt(vi) * cv + ce)) * cs
    else:
        # SGD: v <- momentum v + g; p <- p - lr (g + momentum v) (Nesterov) or p - lr v
        cm = as_type(momentum, P)
        cl = as_type(lr, P)
        for i in range(n):
            gi = G[i]
            if momentum != 0.0:
                vi = v[i] * cm + gi
                v[i] = vi
                step = vi * cm + gi if nesterov else vi
            else:
                step = gi
            P[i] -= step * cl


# --------------------------------------------------------------------------
# one epoch
# --------------------------------------------------------------------------


def train_epoch(P, G, GT, m, v, mask, last_good, sizes, offs, aoffs, act, K, D, S, xs, ys,
                order, bs, steps, opt_kind, lrs, b1, b2, eps, t, momentum, nesterov, wd, clip,
                scratch, C, status, nsx, nsy, key0, key1, epoch, rows, log_floor, xd, out,
                drows):
    """Every step of ``E = len(lrs)`` epochs, epoch ``e`` at rate ``lrs[e]``, each in the
    order ``order`` (empty: the rows in turn). ``status`` (float64 [6]) comes back as
    ``[code, step, value, loss_total, steps_done, epochs_done]``: code ``OK``, or
    ``BAD_LOSS`` / ``BAD_GRAD_NORM`` with the failing step (of epoch ``epochs_done``,
    counted from 0) and its value; ``loss_total`` is the sum of that epoch's completed
    steps' NLL sums. On a bad loss the parameters are those after the previous step
    (``last_good`` holds the ones before it, as in ``MDN.fit``); on a bad gradient
    norm, those of the step. ``out`` (float64 [E, 3]) gets each completed epoch's NLL
    sum and, when ``xd`` (standardized diagnostic rows, as ``xs``) has rows, the
    collapse diagnostics of the weights after it (:func:`_diagnose`).

    Noise: scales ``nsx``, ``nsy`` (0: none), the stream's key ``key0, key1``
    (uint64), the first ``epoch`` (the ``e``-th epoch draws epoch ``epoch + e``'s
    noise) and ``rows`` (the rows' indices in the stream; empty: ``0..N-1``).
    ``log_floor`` [S]: the sigma floor's ``log f`` per scale column in standardized
    units (empty: none).
    """
    n = xs.shape[0]
    n_threads = GT.shape[0]
    n_par = P.shape[0]
    p_head = sizes[sizes.shape[0] - 1]
    width = aoffs[aoffs.shape[0] - 1] + p_head * C  # activations of one chunk
    max_w = 0
    for w in sizes:
        max_w = max(max_w, w)
    loss_t = np.zeros(n_threads)
    status[0] = OK
    total = 0.0
    # The diagnostics after epoch e at rows drows (xd's rows of xs) are those of the
    # weights epoch e + 1 starts from: copied from its forward pass where it sees those
    # rows as they are (one thread, every row in turn, no noise), else computed apart.
    nd = xd.shape[0]
    reuse = (nd > 0 and drows.shape[0] == nd and n_threads == 1 and order.shape[0] == 0
             and steps == 1 and bs >= n and nsx == 0.0 and nsy == 0.0)
    no_rows = np.zeros(0, np.int64)
    DG = np.empty((2 * K + K * S + 3, nd if reuse else 0), P.dtype)  # + scratch
    for ep in range(lrs.shape[0]):
        lr = lrs[ep]
        status[5] = ep
        total = 0.0
        dr = drows if reuse and ep > 0 else no_rows
        for step in range(steps):
            r0 = step * bs
            b = min(bs, n - r0)
            inv_b = as_type(1.0 / b, P)
            n_chunks = (b + C - 1) // C
            for th in prange(n_threads):
                g = GT[th]
                for i in range(n_par):
                    g[i] = 0.0
                sc = scratch[th]
                A = sc[:width]
                Z = sc[width:2 * width]
                dA = sc[2 * width:2 * width + max_w * C]
                dB = sc[2 * width + max_w * C:2 * width + 2 * max_w * C]
                o = 2 * width + 2 * max_w * C
                XY = sc[o:o + D * C].reshape(D, C)
                o += D * C
                EA = sc[o:o + K * C].reshape(K, C)
                o += K * C
                TT = sc[o:o + K * C].reshape(K, C)
                o += K * C
                va = sc[o:o + C]
                vb = sc[o + C:o + 2 * C]
                vc = sc[o + 2 * C:o + 3 * C]
                vd = sc[o + 3 * C:o + 4 * C]
                vq = sc[o + 4 * C:o + 5 * C]
                s = 0.0
                for ch in range(th * n_chunks // n_threads, (th + 1) * n_chunks // n_threads):
                    c0 = ch * C
                    nc = min(C, b - c0)
                    s += _chunk(P, g, sizes, offs, aoffs, act, K, D, S, xs, ys, order, r0 + c0,
                                nc, C, inv_b, A, Z, dA, dB, XY, EA, TT, va, vb, vc, vd, vq,
                                nsx, nsy, key0, key1, epoch + np.uint64(ep), rows, log_floor,
                                dr, DG)
                loss_t[th] = s
            loss_sum = 0.0
            for th in range(n_threads):
                loss_sum += loss_t[th]
            for i in range(n_par):
                acc = GT[0, i]
                for th in range(1, n_threads):
                    acc += GT[th, i]
                G[i] = acc
            status[4] = step
            g2 = 0.0
            for i in range(n_par):
                g2 += np.float64(G[i]) * np.float64(G[i])
            gnorm = math.sqrt(g2)
            if reuse and ep > 0 and not (math.isfinite(loss_sum) and math.isfinite(gnorm)):
                _gathered_diagnostics(DG, K, S, out, ep - 1)  # no update was made
            if not math.isfinite(loss_sum):
                status[0] = BAD_LOSS
                status[1] = step
                status[2] = loss_sum / b
                status[3] = total
                return
            if clip > 0.0 and gnorm > clip:
                c = as_type(clip / (gnorm + 1e-12), P)
                for i in range(n_par):
                    G[i] *= c
            if not math.isfinite(gnorm):
                status[0] = BAD_GRAD_NORM
                status[1] = step
                status[2] = gnorm
                status[3] = total
                return
            for i in range(n_par):
                last_good[i] = P[i]
            _update(P, G, m, v, mask, opt_kind, lr, b1, b2, eps, t + ep * steps + step + 1,
                    momentum, nesterov, wd)
            total += loss_sum
        out[ep, 0] = total
        if reuse and ep > 0:  # the previous epoch's, from this one's forward pass
            _gathered_diagnostics(DG, K, S, out, ep - 1)
        if nd > 0 and (not reuse or ep == lrs.shape[0] - 1):
            sc = scratch[0]
            o = 2 * width + 2 * max_w * C + D * C
            h, live = _diagnose(P, sizes, offs, aoffs, act, K, D, S, xd, C, sc[:width],
                                sc[width:2 * width], sc[2 * width:2 * width + max_w * C],
                                sc[o:o + K * C].reshape(K, C), sc[o + 2 * K * C:o + 2 * K * C + C],
                                sc[o + 2 * K * C + C:o + 2 * K * C + 2 * C],
                                sc[o + 2 * K * C + 2 * C:o + 2 * K * C + 3 * C], log_floor)
            out[ep, 1] = h
            out[ep, 2] = live
    status[3] = total
    status[4] = steps
    status[5] = lrs.shape[0]


def _renamed(fn, name):
    """A copy of ``fn`` under another name: Numba's disk cache files are named
    after the function, so two compilations of one function would overwrite
    (and load) each other's machine code."""
    out = types_.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__,
                              fn.__closure__)
    out.__qualname__ = name
    out.__doc__ = fn.__doc__
    return out


# Two compilations of the same code: threads for large batches; none for small
# ones, whose steps last tens of microseconds and would otherwise pay for a
# parallel launch and for switching the thread count around every epoch.
train_epoch_parallel = njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")(
    _renamed(train_epoch, "train_epoch_parallel"))
train_epoch_serial = njit(cache=True, fastmath=FASTMATH, error_model="numpy")(
    _renamed(train_epoch, "train_epoch_serial"))


# --------------------------------------------------------------------------
# the Python side: when the fused path applies, and one epoch
# --------------------------------------------------------------------------


def _sig(dtype):
    f = types.float32 if dtype == np.float32 else types.float64
    a1, a2 = types.Array(f, 1, "C"), types.Array(f, 2, "C")
    i1 = types.Array(types.int64, 1, "C")
    return ((a1, a1, a2, a1, a1, a1, a1, i1, i1, i1, types.int64, types.int64, types.int64,
             types.int64, types.Array(f, 2, "A"), types.Array(f, 2, "A"), i1, types.int64,
             types.int64, types.int64)
            + (types.Array(types.float64, 1, "C"),) + (types.float64,) * 3
            + (types.int64, types.float64, types.boolean, types.float64, types.float64, a2,
               types.int64, types.Array(types.float64, 1, "C"))
            + (types.float64, types.float64, types.uint64, types.uint64, types.uint64, i1, a1,
               types.Array(f, 2, "A"), types.Array(types.float64, 2, "C"), i1))


_entries: dict = {}
# called with a kernel's name and dtype before it compiles here; npmdn._numba.warm sets
# it to compile the kernel in a separate process (faster there) and wait for it
before_compile = None


def _entry(dtype, parallel):
    key = (np.dtype(dtype), parallel)
    fn = _entries.get(key)
    if fn is None:
        disp = train_epoch_parallel if parallel else train_epoch_serial
        if before_compile is not None:
            before_compile(disp.py_func.__name__, key[0])
        fn = _entries[key] = disp.compile(_sig(key[0]))  # loads from the disk cache if it can
    return fn


class FusedFit:
    """One compiled call per epoch (:meth:`epoch`, the interface of
    :class:`npmdn.training.StepLoop`), or per block of full-batch epochs (:meth:`epochs`).

    ``net`` is the model's :class:`npmdn.nn.MLP` (its flat ``params`` and
    ``grads`` are updated in place), ``head = (K, D, S)`` the mixture head's
    sizes, ``opt`` an :class:`npmdn.optim.Adam` or :class:`~npmdn.optim.SGD`
    whose documented state (``m``, ``v``, ``t`` and hyper-parameters) the
    kernel updates as ``opt.step`` would.
    """

    def __init__(self, net, head, opt, xs, ys, bs, steps, clip_norm, noise=None, rows=None,
                 log_floor=None):
        self.opt, self.net = opt, net
        self.xs, self.ys = xs, ys
        self.bs, self.steps = bs, steps
        self.clip = -1.0 if clip_norm is None else float(clip_norm)
        self.adam = isinstance(opt, Adam)
        dt = net.dtype
        self.sizes = np.asarray(net.sizes, dtype=np.int64)
        self.offs = np.asarray([off for off, _, _ in net.shapes], dtype=np.int64)
        self.act = ACTIVATIONS[net.activation]
        self.K, self.D, self.S = head
        batch = min(bs, xs.shape[0])
        per_thread = batch // config.TRAIN_MIN_ROWS_PER_THREAD
        self.n_threads = max(1, min(get_num_threads(), per_thread))
        if forked():  # the threaded kernel is an OpenMP region: not in a forked child
            self.n_threads = 1
        # scratch per row of a chunk (train_epoch's layout): A and Z over every layer, dA
        # and dB over the widest, y, EA, TT and five row vectors
        per_row = (2 * int(self.sizes.sum()) + 2 * int(self.sizes.max()) + self.D + 2 * self.K
                   + 5)
        # a thread's share of the batch in one chunk where the scratch allows (up to
        # TRAIN_CHUNK_MAX rows in TRAIN_CHUNK_BYTES), else TRAIN_CHUNK rows a chunk
        cap = min(config.TRAIN_CHUNK_MAX,
                  config.TRAIN_CHUNK_BYTES // (per_row * np.dtype(dt).itemsize)) // 16 * 16
        share = -(-batch // self.n_threads)
        self.chunk = chunk = max(config.TRAIN_CHUNK, min(cap, -(-share // 16) * 16))
        self.aoffs = np.concatenate([[0], np.cumsum(self.sizes[:-1])]).astype(np.int64) * chunk
        # on a cache line: every block of the scratch starts a multiple of chunk (16
        # elements) in, so all the rows of every block are aligned as its start is
        self.scratch = aligned_zeros((self.n_threads, per_row * chunk), dt)
        # (each thread's gradient on lines of its own: rows padded to 16 elements)
        self.GT = aligned_zeros((self.n_threads, -(-net.n_params // 16) * 16), dt)
        mask = opt.decay_mask if opt.decay_mask is not None else np.ones(net.n_params, dt)
        self.mask = np.ascontiguousarray(mask, dtype=dt)
        if self.adam:
            self.m, self.v = opt.m, opt.v
        else:
            self.m, self.v = np.zeros(1, dt), opt.v
        self.status = np.zeros(6)
        self.empty_order = np.zeros(0, dtype=np.int64)
        self.empty_x = np.zeros((0, xs.shape[1]), dt)
        if noise is None:
            self.noise = (0.0, 0.0, np.uint64(0), np.uint64(0))
        else:
            k0, k1 = (np.uint64(k) for k in philox.noise_key(noise.seed))
            self.noise = (float(noise.x), float(noise.y), k0, k1)
        self.rows = self.empty_order if rows is None else np.ascontiguousarray(rows, np.int64)
        self.log_floor = np.zeros(0, dt) if log_floor is None else \
            np.ascontiguousarray(log_floor, dtype=dt)
        self.fn = _entry(dt, self.n_threads > 1)

    def epoch(self, order, lr, last_good, epoch=1):
        """All steps of one epoch (``epoch``, 1-based, indexes the noise): ``(loss_sum,
        failed)`` as :class:`npmdn.training.EpochResult` describes, the weights left as
        the step loop would leave them."""
        out = np.zeros((1, 3))
        _, failed, loss = self._run(order, np.array([float(lr)]), last_good, epoch,
                                    self.empty_x, out, self.empty_order)
        return (float(out[0, 0]), None) if failed is None else (loss, failed)

    def epochs(self, lrs, last_good, epoch, diag_rows, diag_index=None):
        """Several epochs of one step each (a full batch, no shuffling) in one call, the
        first numbered ``epoch``, the ``e``-th at rate ``lrs[e]``, and the collapse
        diagnostics at the standardized rows ``diag_rows`` after each:
        ``(done, failed)``, ``done`` a list of ``(loss_sum, (effective components,
        narrowest sigma))`` per completed epoch and ``failed`` None or ``(epoch,
        EpochResult fields)`` of the epoch that failed. ``diag_index`` (sorted int64,
        optional): the rows of ``xs`` that ``diag_rows`` are, which lets the kernel
        take the diagnostics from the next epoch's forward pass."""
        lrs = np.ascontiguousarray(lrs, dtype=np.float64)
        out = np.zeros((lrs.shape[0], 3))
        index = self.empty_order if diag_index is None else \
            np.ascontiguousarray(diag_index, np.int64)
        n_done, failed, loss = self._run(None, lrs, last_good, epoch, diag_rows, out, index)
        with np.errstate(over="ignore"):  # a diverging fit's log sigma may pass 709
            diag = np.exp(out[:n_done, 1:])
        done = [(float(out[e, 0]), (float(diag[e, 0]), float(diag[e, 1])))
                for e in range(n_done)]
        return done, None if failed is None else (epoch + n_done, loss, failed)

    def _run(self, order, lrs, last_good, epoch, xd, out, drows):
        """The kernel on ``len(lrs)`` epochs: ``(epochs completed, failed, loss sum of
        the failed epoch's completed steps)``."""
        opt = self.opt
        order = self.empty_order if order is None else np.ascontiguousarray(order, np.int64)
        if self.adam:
            hyper = (0, lrs, opt.b1, opt.b2, opt.eps, int(opt.t), 0.0, False)
        else:
            hyper = (1, lrs, 0.0, 0.0, 0.0, int(opt.t), opt.momentum, opt.nesterov)
        st = self.status
        threads = get_num_threads()
        switch = self.n_threads > 1 and threads != self.n_threads
        if switch:
            set_num_threads(self.n_threads)
        try:
            self.fn(self.net.params, self.net.grads, self.GT, self.m, self.v, self.mask,
                    last_good, self.sizes, self.offs, self.aoffs, self.act, self.K, self.D,
                    self.S, self.xs, self.ys, order, self.bs, self.steps, *hyper,
                    opt.weight_decay, self.clip, self.scratch, self.chunk, st, *self.noise,
                    np.uint64(epoch), self.rows, self.log_floor, xd, out, drows)
        finally:
            if switch:
                set_num_threads(threads)
        code, step, n_done = int(st[0]), int(st[1]), int(st[5])
        opt.t += n_done * self.steps + (0 if code == OK else step)
        if code == OK:
            return n_done, None, 0.0
        what = "loss" if code == BAD_LOSS else "gradient norm"
        return n_done, (step, what, float(st[2])), float(st[3])


def applies(head, opt, activation) -> bool:
    """Whether an epoch can run fused here (see :func:`plan`)."""
    if os.environ.get(config.ENV_FUSED_FIT, "1") == "0" or is_full(head[1], head[2]):
        return False
    return type(opt) in (Adam, SGD) and activation in ACTIVATIONS


def plan(net, head, opt, xs, ys, bs, steps, clip_norm, noise=None, rows=None, log_floor=None):
    """A :class:`FusedFit` when an epoch can run fused here, else None (the step loop runs).

    It can when the optimizer is one this module mirrors (Adam, SGD), the
    activation one it has, the head's scales are diagonal or isotropic (full
    factors train in the step loop with ``full.full_kernel``), and
    ``NPMDN_FUSED_FIT`` is not ``0``.
    """
    if not applies(head, opt, net.activation):
        return None
    return FusedFit(net, head, opt, xs, ys, bs, steps, clip_norm, noise, rows, log_floor)
