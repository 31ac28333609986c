"""jr.interop: PyTorch nn.RNN/LSTM/GRU and Flax linen cells, number for number.

Every comparison uses random weights (normal * 0.3 on every parameter, biases included,
not the default init) and random inputs and initial states. PyTorch runs variable
lengths through ``pack_padded_sequence``; jaxrnn runs ``jax.vmap(net.apply)`` with
``seq_lengths``. Outputs, final states, input gradients, initial-state gradients and
parameter gradients (of a random linear functional of outputs and final states) are
compared in float64 at 1e-10, and once in float32 at rtol 1e-5.
"""

import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr

torch = pytest.importorskip("torch")
nn_flax = pytest.importorskip("flax.linen")

I, H, P, B, T = 3, 5, 3, 4, 6
LENGTHS = np.array([6, 3, 1, 5])   # unsorted; the longest is T so the padded output has T steps


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def make_torch(kind, *, dtype=torch.float64, seed=0, **kw):
    """A PyTorch RNN module with every parameter drawn from normal * 0.3."""
    torch.manual_seed(seed)
    cls = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "RNN": torch.nn.RNN}[kind]
    m = cls(I, H, **kw).to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype) * 0.3)
    return m


def torch_layout(m, x_btf):
    """[B, T, F] -> the module's input layout."""
    return x_btf if m.batch_first else np.ascontiguousarray(np.swapaxes(x_btf, 0, 1))


def jax_leaf(params, name, bidirectional):
    """The jaxrnn array (in PyTorch's orientation) that a PyTorch parameter maps to.

    Written here independently of interop.py: name -> (layer, direction, field, transpose).
    """
    m = re.fullmatch(r"(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?", name)
    what, part, k, rev = m.group(1), m.group(2), int(m.group(3)), m.group(4)
    p = params[k]
    if bidirectional:
        p = jax.tree.map(lambda a: a[1 if rev else 0], p)
    if what == "weight":
        field = {"ih": "w_ih", "hh": "w_hh", "hr": "w_proj"}[part]
        return np.asarray(getattr(p, field)).T
    if isinstance(p, jr.GRUParams):
        return np.asarray(p.b_ih if part == "ih" else p.b_hh)
    return np.asarray(p.b)   # LSTM and RNN keep the summed bias: d/db == d/dbias_ih == d/dbias_hh


def run_both(m, x_btf, lengths, hx, coef):
    """Runs the module (packed) and the jaxrnn net; returns both sides' numbers."""
    is_lstm = isinstance(m, torch.nn.LSTM)
    a_out, b_h, b_c = coef

    # ---- PyTorch
    xt = torch.tensor(torch_layout(m, x_btf), requires_grad=True)
    hx_t = None
    if hx is not None:
        hx_t = tuple(torch.tensor(h, requires_grad=True) for h in hx) if is_lstm else \
            torch.tensor(hx[0], requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.tensor(lengths), batch_first=m.batch_first, enforce_sorted=False)
    out, state = m(packed, hx_t)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=m.batch_first, total_length=T)
    h_n, c_n = state if is_lstm else (state, None)
    out_btf = out if m.batch_first else out.transpose(0, 1)
    loss = (out_btf * torch.tensor(a_out)).sum() + (h_n * torch.tensor(b_h)).sum()
    if is_lstm:
        loss = loss + (c_n * torch.tensor(b_c)).sum()
    loss.backward()
    t = dict(out=out_btf.detach().numpy(), h_n=h_n.detach().numpy(),
             c_n=None if c_n is None else c_n.detach().numpy(),
             dx=np.swapaxes(xt.grad.numpy(), 0, 1) if not m.batch_first else xt.grad.numpy(),
             dparams={n: p.grad.numpy() for n, p in m.named_parameters()})
    if hx is not None:
        t["dhx"] = [h.grad.numpy() for h in (hx_t if is_lstm else (hx_t,))]

    # ---- jaxrnn: jax.vmap(net.apply) on the module's own layout
    net, params = jr.interop.from_torch(m)
    b_axis = 0 if m.batch_first else 1
    xj = jnp.asarray(torch_layout(m, x_btf))
    carry0 = None if hx is None else jr.interop.carry_from_torch(net, hx if is_lstm else hx[0])

    def loss_fn(params, xj, carry0):
        apply = lambda xs, c, n: net.apply(params, xs, c, seq_lengths=n)
        ys, carry = jax.vmap(apply, in_axes=(b_axis, None if carry0 is None else 0, 0),
                             out_axes=(b_axis, 0))(xj, carry0, jnp.asarray(lengths))
        state = jr.interop.carry_to_torch(carry)
        hn, cn = state if is_lstm else (state, None)
        ys_btf = ys if m.batch_first else jnp.swapaxes(ys, 0, 1)
        total = jnp.sum(ys_btf * a_out) + jnp.sum(hn * b_h)
        if is_lstm:
            total = total + jnp.sum(cn * b_c)
        return total, (ys_btf, hn, cn)

    grads, aux = jax.jit(jax.grad(loss_fn, argnums=(0, 1, 2), has_aux=True))(params, xj, carry0)
    ys, hn, cn = aux
    dx = np.asarray(grads[1])
    j = dict(out=np.asarray(ys), h_n=np.asarray(hn), c_n=None if cn is None else np.asarray(cn),
             dx=np.swapaxes(dx, 0, 1) if not m.batch_first else dx,
             dparams={n: jax_leaf(grads[0], n, m.bidirectional) for n, _ in m.named_parameters()},
             params=params)
    if hx is not None:
        dstate = jr.interop.carry_to_torch(grads[2])
        j["dhx"] = [np.asarray(a) for a in (dstate if is_lstm else (dstate,))]
    return t, j


def random_problem(m, seed, dtype):
    is_lstm = isinstance(m, torch.nn.LSTM)
    D = 2 if m.bidirectional else 1
    L = m.num_layers
    Hout = getattr(m, "proj_size", 0) or H
    rng = np.random.default_rng(seed)
    r = lambda *s: rng.standard_normal(s).astype(dtype)
    x = r(B, T, I)
    hx = [r(L * D, B, Hout)] + ([r(L * D, B, H)] if is_lstm else [])
    coef = (r(B, T, D * Hout), r(L * D, B, Hout), r(L * D, B, H) if is_lstm else None)
    return x, hx, coef


TORCH_CASES = {
    "lstm-2layer-bidir": ("LSTM", dict(num_layers=2, bidirectional=True), True),
    "lstm-proj-2layer-bidir-batchfirst": ("LSTM", dict(num_layers=2, bidirectional=True,
                                                       proj_size=P, batch_first=True), True),
    "lstm-proj-nobias": ("LSTM", dict(proj_size=2, bias=False), False),
    "gru-2layer-bidir-batchfirst": ("GRU", dict(num_layers=2, bidirectional=True,
                                                batch_first=True), True),
    "gru-nobias": ("GRU", dict(bias=False), False),
    "rnn-relu-2layer-bidir": ("RNN", dict(num_layers=2, bidirectional=True,
                                          nonlinearity="relu"), True),
    "rnn-tanh-3layer-nobias-batchfirst": ("RNN", dict(num_layers=3, bias=False,
                                                      batch_first=True), False),
}


def assert_match(t, j, rtol, atol):
    close = lambda a, b, what: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)
    close(j["out"], t["out"], "outputs")
    pad = np.arange(T)[None, :] >= LENGTHS[:, None]
    assert np.all(j["out"][pad] == 0) and np.all(t["out"][pad] == 0), "padded outputs must be zero"
    close(j["h_n"], t["h_n"], "h_n")
    if t["c_n"] is not None:
        close(j["c_n"], t["c_n"], "c_n")
    close(j["dx"], t["dx"], "input gradient")
    assert np.all(j["dx"][pad] == 0), "padded inputs get no gradient"
    for n in t["dparams"]:
        close(j["dparams"][n], t["dparams"][n], f"gradient of {n}")
    for a, b in zip(j.get("dhx", []), t.get("dhx", [])):
        close(a, b, "initial state gradient")


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_from_torch_matches_pytorch_float64(case, x64):
    kind, kw, with_hx = TORCH_CASES[case]
    m = make_torch(kind, **kw)
    x, hx, coef = random_problem(m, 1, np.float64)
    t, j = run_both(m, x, LENGTHS, hx if with_hx else None, coef)
    # The loaded params are PyTorch's, transposed (and LSTM/RNN biases summed).
    named = dict(m.named_parameters())
    for n, p in named.items():
        want = p.detach().numpy()
        if n.startswith("bias_") and kind != "GRU":
            other = n.replace("bias_ih", "bias_XX").replace("bias_hh", "bias_ih").replace("bias_XX", "bias_hh")
            want = want + named[other].detach().numpy()
        np.testing.assert_array_equal(jax_leaf(j["params"], n, m.bidirectional), want, err_msg=n)
        assert jax_leaf(j["params"], n, m.bidirectional).dtype == np.float64
    if not kw.get("bias", True):
        assert all(np.all(np.asarray(p.b_ih if kind == "GRU" else p.b) == 0) for p in j["params"])
    assert_match(t, j, rtol=1e-10, atol=1e-12)


def test_from_torch_matches_pytorch_float32():
    m = make_torch("LSTM", dtype=torch.float32, num_layers=2, bidirectional=True, proj_size=P)
    x, hx, coef = random_problem(m, 2, np.float32)
    t, j = run_both(m, x, LENGTHS, hx, coef)
    assert jax.tree.leaves(j["params"])[0].dtype == jnp.float32
    assert j["out"].dtype == np.float32
    assert_match(t, j, rtol=1e-5, atol=1e-5)


def test_gru_float32():
    m = make_torch("GRU", dtype=torch.float32, num_layers=2, bidirectional=True)
    x, hx, coef = random_problem(m, 3, np.float32)
    t, j = run_both(m, x, LENGTHS, None, coef)
    assert_match(t, j, rtol=1e-5, atol=1e-5)


def test_a_wrong_mapping_would_fail(x64):
    """The comparison is sharp: swapping two LSTM gates' weights breaks it."""
    m = make_torch("LSTM", num_layers=1)
    x, hx, coef = random_problem(m, 4, np.float64)
    net, params = jr.interop.from_torch(m)
    p = params[0]
    w = np.asarray(p.w_ih).copy()
    w[:, :H], w[:, H:2 * H] = w[:, H:2 * H].copy(), w[:, :H].copy()   # swap i and f
    bad = (p._replace(w_ih=jnp.asarray(w)),)
    out, _ = m(torch.tensor(np.swapaxes(x, 0, 1)))
    ys_good, _ = jax.vmap(net.apply, in_axes=(None, 0))(params, jnp.asarray(x))
    ys_bad, _ = jax.vmap(net.apply, in_axes=(None, 0))(bad, jnp.asarray(x))
    want = np.swapaxes(out.detach().numpy(), 0, 1)
    np.testing.assert_allclose(ys_good, want, rtol=1e-10, atol=1e-12)
    assert np.abs(np.asarray(ys_bad) - want).max() > 1e-3


# --------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("kind,kw", [
    ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=P, batch_first=True, dropout=0.25)),
    ("GRU", dict(num_layers=2, bias=False)),
    ("RNN", dict(num_layers=2, bidirectional=True, nonlinearity="relu")),
], ids=["lstm", "gru", "rnn"])
def test_round_trip(kind, kw, x64):
    m = make_torch(kind, **kw)
    net, params = jr.interop.from_torch(m)
    m2 = jr.interop.to_torch(net, params)
    assert type(m2) is type(m)
    assert jr.interop.config_from_torch(m2) == jr.interop.config_from_torch(m)
    assert getattr(m2, "nonlinearity", None) == getattr(m, "nonlinearity", None)
    s1, s2 = m.state_dict(), m2.state_dict()
    assert list(s1) == list(s2)
    for n in s1:
        assert s2[n].dtype == torch.float64
        if n.startswith("bias_") and kind != "GRU":
            continue   # the summed bias is split as (b, 0); the sums are compared below
        torch.testing.assert_close(s2[n], s1[n], rtol=0, atol=0, msg=n)
    if kind != "GRU" and m.bias:
        for n in s1:
            if n.startswith("bias_ih"):
                nh = n.replace("bias_ih", "bias_hh")
                torch.testing.assert_close(s2[n] + s2[nh], s1[n] + s1[nh], rtol=0, atol=0)
    x = torch.randn(B, T, I, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    x = x if m.batch_first else x.transpose(0, 1)
    m.eval(), m2.eval()
    o1, st1 = m(x)
    o2, st2 = m2(x)
    torch.testing.assert_close(o2, o1, rtol=1e-12, atol=1e-13)
    for a, b in zip(jax.tree.leaves(st2), jax.tree.leaves(st1)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    # jax -> torch -> jax is exact.
    net3, params3 = jr.interop.from_torch(m2)
    jax.tree.map(np.testing.assert_array_equal, params3, params)
    # The state dict loads strictly into a fresh module of the same shape.
    fresh = type(m)(I, H, **kw).double()
    fresh.load_state_dict(jr.interop.to_state_dict(net, params), strict=True)
    numpy_sd = jr.interop.to_state_dict(jr.interop.config_of(net), params, as_numpy=True)
    assert all(isinstance(v, np.ndarray) for v in numpy_sd.values())
    # ... and the state dict alone (with the mode) rebuilds the same config and params.
    mode = jr.interop.config_of(net).mode
    params4 = jr.interop.from_state_dict(m.state_dict(), mode)
    jax.tree.map(np.testing.assert_array_equal, params4, params)
    cfg = jr.interop.config_from_state_dict(m.state_dict(), mode,
                                            batch_first=m.batch_first, dropout=m.dropout)
    assert cfg == jr.interop.config_of(net)


def test_apply_like_torch_batched_and_unbatched(x64):
    m = make_torch("LSTM", num_layers=2, bidirectional=True, batch_first=True)
    net, params = jr.interop.from_torch(m)
    x, hx, _ = random_problem(m, 6, np.float64)
    out, (h_n, c_n) = m(torch.tensor(x), tuple(torch.tensor(h) for h in hx))
    ys, (hj, cj) = jr.interop.apply_like_torch(net, params, x, tuple(hx))
    for a, b in ((ys, out), (hj, h_n), (cj, c_n)):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-10, atol=1e-12)
    # PyTorch's unbatched mode: x [T, I], h_0 [L*D, H].
    out1, (h1, c1) = m(torch.tensor(x[1]), (torch.tensor(hx[0][:, 1]), torch.tensor(hx[1][:, 1])))
    ys1, (hj1, cj1) = jr.interop.apply_like_torch(net, params, x[1], (hx[0][:, 1], hx[1][:, 1]))
    for a, b in ((ys1, out1), (hj1, h1), (cj1, c1)):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-10, atol=1e-12)
    # A float32 initial state is cast to the params' dtype.
    ys2, _ = jr.interop.apply_like_torch(net, params, x, tuple(h.astype(np.float32) for h in hx))
    assert ys2.dtype == jnp.float64


def test_net_carries_its_config():
    """The config travels with the net; a net rebuilt from the config alone is the same net,
    so nothing about a net is remembered anywhere else."""
    m = make_torch("GRU", dtype=torch.float32, num_layers=2, bidirectional=True, batch_first=True)
    net, params = jr.interop.from_torch(m)
    assert isinstance(net, jr.interop.TorchNet) and isinstance(net.layer, jr.Layer)
    assert net.config == jr.interop.config_from_torch(m) == jr.interop.config_of(net)
    assert net.apply is net.layer.apply and net.output_size == net.layer.output_size == 2 * H
    x = jnp.asarray(np.random.default_rng(12).standard_normal((T, I)), jnp.float32)
    again = jr.interop.torch_net(net.config)
    assert again.config == net.config
    np.testing.assert_array_equal(again.apply(params, x)[0], net.apply(params, x)[0])
    out, _ = m(torch.tensor(np.asarray(x))[None])
    np.testing.assert_allclose(net.apply(params, x)[0], out[0].detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    # A net is a value: two nets from equal configs convert back to equal modules.
    sd1 = jr.interop.to_state_dict(net, params, as_numpy=True)
    sd2 = jr.interop.to_state_dict(again, params, as_numpy=True)
    assert list(sd1) == list(sd2)


def test_carry_layout_round_trip():
    m = make_torch("GRU", dtype=torch.float32, num_layers=3, bidirectional=True)
    net, _ = jr.interop.from_torch(m)
    h0 = np.arange(6 * B * H, dtype=np.float32).reshape(6, B, H)
    carry = jr.interop.carry_from_torch(net, h0)
    assert len(carry) == 3 and all(len(c) == 2 for c in carry)
    np.testing.assert_array_equal(carry[1][1].h, h0[3])   # layer 1, backward
    np.testing.assert_array_equal(jr.interop.carry_to_torch(carry), h0)


# --------------------------------------------------------------------------- errors

def test_errors(x64):
    with pytest.raises(TypeError, match="RNN, LSTM or GRU"):
        jr.interop.from_torch(torch.nn.Linear(2, 3))
    m = make_torch("LSTM", bias=False)
    net, params = jr.interop.from_torch(m)
    trained = (params[0]._replace(b=params[0].b + 1.0),)
    with pytest.raises(ValueError, match="bias=False"):
        jr.interop.to_state_dict(net, trained)
    cfg = jr.interop.config_of(net)._replace(bias=True)
    assert torch.nn.LSTM(I, H).double().load_state_dict(
        jr.interop.to_state_dict(cfg, trained)) is not None
    sd = m.state_dict()
    del sd["weight_hh_l0"]
    with pytest.raises(ValueError, match="missing keys"):
        jr.interop.from_state_dict(sd, cfg._replace(bias=False))
    with pytest.raises(ValueError, match="shape"):
        jr.interop.from_state_dict(make_torch("LSTM").state_dict(), cfg._replace(hidden_size=4))
    with pytest.raises(ValueError, match="expected"):
        jr.interop.carry_from_torch(net, (np.zeros((2, B, H)), np.zeros((2, B, H))))
    with pytest.raises(ValueError, match="pair"):
        jr.interop.carry_from_torch(net, np.zeros((1, B, H)))
    with pytest.raises(TypeError, match="TorchNet.*TorchConfig"):
        jr.interop.config_of(jr.stack([jr.lstm(H)]))
    with pytest.raises(TypeError, match="TorchNet.*TorchConfig"):
        jr.interop.to_state_dict(net.layer, params)   # the bare layer does not say its module
    with pytest.raises(ValueError, match="proj_size"):
        jr.interop.torch_net(jr.interop.TorchConfig("GRU", I, H, proj_size=2))


def test_import_jaxrnn_does_not_import_torch():
    code = ("import sys, jaxrnn; import jaxrnn.interop; jaxrnn.interop.torch_net("
            "jaxrnn.interop.TorchConfig('LSTM', 3, 4)); "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'flax' not in sys.modules, 'flax imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# =========================================================================== Flax linen

def randomize_flax(variables, seed, dtype):
    leaves, treedef = jax.tree.flatten(variables)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(treedef, [
        jnp.asarray(rng.standard_normal(l.shape) * 0.3, dtype) for l in leaves])


# param_dtype: flax's own cells would promote float32 params against float64 inputs, which
# strict dtype promotion (the suite's setting) refuses.
FLAX_CELLS = {
    "LSTMCell": lambda pdt: nn_flax.LSTMCell(H, param_dtype=pdt),
    "OptimizedLSTMCell": lambda pdt: nn_flax.OptimizedLSTMCell(H, param_dtype=pdt),
    "GRUCell": lambda pdt: nn_flax.GRUCell(H, param_dtype=pdt),
    "SimpleCell": lambda pdt: nn_flax.SimpleCell(H, param_dtype=pdt),
    "SimpleCell-relu-residual": lambda pdt: nn_flax.SimpleCell(
        H, activation_fn=nn_flax.relu, residual=True, param_dtype=pdt),
}


def flax_vs_jaxrnn(flax_cell, variables, x, c0, lengths):
    rnn = nn_flax.RNN(flax_cell, return_carry=True)
    c_flax, ys_flax = jax.jit(lambda v, x, c0, n: rnn.apply(v, x, initial_carry=c0, seq_lengths=n))(
        variables, x, c0, lengths)
    cell, params = jr.interop.from_flax_linen(flax_cell, variables)
    carry0 = jr.interop.carry_from_flax(cell, c0)
    run = lambda p, xs, c, n: jr.scan(cell, p, xs, c, seq_lengths=n)
    ys, c = jax.jit(jax.vmap(run, in_axes=(None, 0, 0, 0)))(params, x, carry0, lengths)
    return (ys_flax, c_flax), (ys, jr.interop.carry_to_flax(c)), (cell, params)


@pytest.mark.parametrize("name", list(FLAX_CELLS))
def test_from_flax_linen_matches_nn_rnn(name, x64):
    flax_cell = FLAX_CELLS[name](jnp.float64)
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.standard_normal((B, T, I)))
    c0 = flax_cell.initialize_carry(jax.random.key(0), (B, I))
    c0 = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape)), c0)
    lengths = jnp.asarray(LENGTHS)
    variables = nn_flax.RNN(flax_cell).init(jax.random.key(1), x, initial_carry=c0)
    variables = randomize_flax(variables, 8, jnp.float64)
    (ys_f, c_f), (ys, c), (cell, params) = flax_vs_jaxrnn(flax_cell, variables, x, c0, lengths)
    assert jax.tree.leaves(params)[0].dtype == jnp.float64
    valid = np.arange(T)[None, :] < LENGTHS[:, None]
    # Flax leaves outputs past a sequence's end unspecified; jaxrnn zeroes them.
    np.testing.assert_allclose(np.asarray(ys)[valid], np.asarray(ys_f)[valid], rtol=1e-10, atol=1e-12)
    assert np.all(np.asarray(ys)[~valid] == 0)
    assert jax.tree.structure(c) == jax.tree.structure(c_f)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), c, c_f)
    # Back to flax: the same variables (identity folded back out for residual cells).
    back = jr.interop.to_flax_linen(flax_cell, params)
    inner = variables["params"]["cell"]
    assert jax.tree.structure(back["params"]) == jax.tree.structure(dict(inner))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-15),
                 back["params"], dict(inner))


def test_to_flax_gru_folds_recurrent_gate_biases(x64):
    """A jaxrnn GRU with nonzero b_hr, b_hz still equals flax's GRUCell after to_flax."""
    cell = jr.gru(H, param_dtype=jnp.float64)
    params = cell.init(jax.random.key(0), I)
    rng = np.random.default_rng(9)
    params = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape) * 0.3), params)
    flax_cell = nn_flax.GRUCell(H)
    variables = {"params": {"cell": jr.interop.to_flax_linen(flax_cell, params)["params"]}}
    x = jnp.asarray(rng.standard_normal((B, T, I)))
    c0 = jnp.zeros((B, H), jnp.float64)
    ys_f = nn_flax.RNN(flax_cell).apply(variables, x, initial_carry=c0)
    ys = jax.vmap(lambda xs: jr.scan(cell, params, xs)[0])(x)
    np.testing.assert_allclose(ys, ys_f, rtol=1e-10, atol=1e-12)


def test_from_flax_linen_float32():
    flax_cell = nn_flax.OptimizedLSTMCell(H)
    rng = np.random.default_rng(10)
    x = jnp.asarray(rng.standard_normal((B, T, I)), jnp.float32)
    c0 = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), jnp.float32),
                      flax_cell.initialize_carry(jax.random.key(0), (B, I)))
    variables = randomize_flax(nn_flax.RNN(flax_cell).init(jax.random.key(1), x), 11, jnp.float32)
    (ys_f, c_f), (ys, c), _ = flax_vs_jaxrnn(flax_cell, variables, x, c0, jnp.asarray(LENGTHS))
    valid = np.arange(T)[None, :] < LENGTHS[:, None]
    np.testing.assert_allclose(np.asarray(ys)[valid], np.asarray(ys_f)[valid], rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), c, c_f)


def test_flax_errors():
    with pytest.raises(ValueError, match="gate_fn"):
        jr.interop.from_flax_linen(nn_flax.LSTMCell(H, gate_fn=jnp.tanh), {})
    with pytest.raises(TypeError, match="supports"):
        jr.interop.from_flax_linen(nn_flax.MGUCell(H), {})
    with pytest.raises(ValueError, match="features"):
        v = nn_flax.GRUCell(4).init(jax.random.key(0), jnp.zeros((4,)), jnp.zeros((I,)))
        jr.interop.from_flax_linen(nn_flax.GRUCell(H), v)
    lstm_cell = jr.lstm(H)
    carry = jr.interop.carry_from_flax(lstm_cell, (jnp.zeros(H), jnp.ones(H)))
    assert isinstance(carry, jr.LSTMCarry) and np.all(carry.h == 1) and np.all(carry.c == 0)
