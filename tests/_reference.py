"""Independent float64 NumPy implementations of every cell's equations.

Written from the papers' equations, not from jaxrnn's code: loops over time, explicit
gates, no shared helpers with the library. Each takes NumPy params (the same pytree
fields as the library's params), an input sequence ``xs [T, I]`` and initial state,
and returns the outputs ``[T, out]`` and the final state.
"""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def layer_norm(x, scale, bias, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def simple_rnn(p, xs, h, nonlinearity="tanh"):
    f = np.tanh if nonlinearity == "tanh" else (lambda v: np.maximum(v, 0.0))
    ys = []
    for x in xs:
        h = f(x @ p["w_ih"] + h @ p["w_hh"] + p["b"])
        ys.append(h)
    return np.stack(ys), (h,)


def lstm(p, xs, h, c, peephole=False, coupled=False, layer_norm_=False, proj=False):
    H = c.shape[-1]
    ys = []
    for x in xs:
        ax, ah = x @ p["w_ih"], h @ p["w_hh"]
        if layer_norm_:
            ax = layer_norm(ax, p["ln_x"][0], p["ln_x"][1])
            ah = layer_norm(ah, p["ln_h"][0], p["ln_h"][1])
        a = ax + ah + p["b"]
        if coupled:
            af, ag, ao = a[:H], a[H:2 * H], a[2 * H:]
            if peephole:
                af = af + p["w_peep"][1] * c
            f = sigmoid(af)
            i = 1.0 - f
        else:
            ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
            if peephole:
                ai = ai + p["w_peep"][0] * c
                af = af + p["w_peep"][1] * c
            i, f = sigmoid(ai), sigmoid(af)
        c = f * c + i * np.tanh(ag)
        if peephole:
            ao = ao + p["w_peep"][2] * c
        o = sigmoid(ao)
        cc = layer_norm(c, p["ln_c"][0], p["ln_c"][1]) if layer_norm_ else c
        h = o * np.tanh(cc)
        if proj:
            h = h @ p["w_proj"]
        ys.append(h)
    return np.stack(ys), (h, c)


def gru(p, xs, h, reset_after=True):
    H = h.shape[-1]
    W, U, bi, bh = p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"]
    ys = []
    for x in xs:
        r = sigmoid(x @ W[:, :H] + bi[:H] + h @ U[:, :H] + bh[:H])
        z = sigmoid(x @ W[:, H:2 * H] + bi[H:2 * H] + h @ U[:, H:2 * H] + bh[H:2 * H])
        if reset_after:
            n = np.tanh(x @ W[:, 2 * H:] + bi[2 * H:] + r * (h @ U[:, 2 * H:] + bh[2 * H:]))
        else:
            n = np.tanh(x @ W[:, 2 * H:] + bi[2 * H:] + (r * h) @ U[:, 2 * H:] + bh[2 * H:])
        h = z * h + (1.0 - z) * n
        ys.append(h)
    return np.stack(ys), (h,)


def mgu(p, xs, h):
    H = h.shape[-1]
    ys = []
    for x in xs:
        f = sigmoid(x @ p["w_ih"][:, :H] + h @ p["w_hh"][:, :H] + p["b"][:H])
        cand = np.tanh(x @ p["w_ih"][:, H:] + (f * h) @ p["w_hh"][:, H:] + p["b"][H:])
        h = (1.0 - f) * h + f * cand
        ys.append(h)
    return np.stack(ys), (h,)


def _g(v):
    return np.where(v >= 0, v + 0.5, sigmoid(v))


def min_gru(p, xs, h):
    H = h.shape[-1]
    ys = []
    for x in xs:
        a = x @ p["w_ih"] + p["b"]
        z = sigmoid(a[:H])
        h = (1.0 - z) * h + z * _g(a[H:])
        ys.append(h)
    return np.stack(ys), (h,)


def min_lstm(p, xs, h):
    H = h.shape[-1]
    ys = []
    for x in xs:
        a = x @ p["w_ih"] + p["b"]
        f, i = sigmoid(a[:H]), sigmoid(a[H:2 * H])
        h = f / (f + i) * h + i / (f + i) * _g(a[2 * H:])
        ys.append(h)
    return np.stack(ys), (h,)


def conv_same(x, w):
    """'SAME' cross-correlation, stride 1: x [*S, Cin], w [*K, Cin, Cout] -> [*S, Cout]."""
    S, K = x.shape[:-1], w.shape[:-2]
    pads = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in K]
    xp = np.pad(x, pads + [(0, 0)])
    out = np.zeros(S + (w.shape[-1],))
    for pos in np.ndindex(*S):
        window = xp[tuple(slice(p, p + k) for p, k in zip(pos, K))]
        out[pos] = np.tensordot(window, w, axes=(list(range(len(K) + 1)), list(range(len(K) + 1))))
    return out


def conv_lstm(p, xs, h, c):
    C = c.shape[-1]
    ys = []
    for x in xs:
        a = conv_same(x, p["w_ih"]) + conv_same(h, p["w_hh"]) + p["b"]
        i, f, g, o = (a[..., k * C:(k + 1) * C] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        ys.append(h)
    return np.stack(ys), (h, c)
