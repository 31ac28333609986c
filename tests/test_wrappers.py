"""jaxrnn.nnx and jaxrnn.linen equal the functional core (same params, same numbers), and the
LSTM/GRU modules equal PyTorch's nn.LSTM/nn.GRU with copied weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxrnn as jr
from jaxrnn import linen as jln
from jaxrnn import nnx as jnnx

B, T, I, H = 3, 7, 5, 6
FACTORIES = {"SimpleRNN": jr.simple_rnn, "LSTM": jr.lstm, "GRU": jr.gru, "MGU": jr.mgu,
             "MinGRU": jr.min_gru, "MinLSTM": jr.min_lstm}


def _data(seed=0):
    r = np.random.default_rng(seed)
    x = jnp.asarray(r.normal(size=(B, T, I)), jnp.float32)
    lengths = jnp.asarray([T, 4, 1], jnp.int32)
    return x, lengths


def _functional(name, params, x, carry=None, lengths=None, key=None, bidirectional=True,
                layers=2, dropout=0.0):
    """The same network written directly against the functional core."""
    make = FACTORIES[name]
    net = jr.stack([jr.bidirectional(make(H)) if bidirectional else make(H)
                    for _ in range(layers)], dropout=dropout)
    if carry is None:
        carry = net.initial_carry(params, (B,))
    keys = jax.random.split(key, B) if key is not None else [None] * B
    one = jax.jit(lambda p, xs, c, n, k: net.apply(p, xs, c, seq_lengths=n, key=k))
    ys, cs = [], []
    for b in range(B):  # a Python loop over the batch, not the wrappers' vmap
        c_b = jax.tree.map(lambda a: a[b], carry)
        y, c = one(params, x[b], c_b, None if lengths is None else lengths[b], keys[b])
        ys.append(y)
        cs.append(c)
    return jnp.stack(ys), jax.tree.map(lambda *a: jnp.stack(a), *cs)


def _close(a, b):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v),
                                                         rtol=1e-5, atol=1e-6), a, b)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_nnx_equals_functional(name):
    x, lengths = _data()
    mod = getattr(jnnx, name)(I, H, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
    params = mod.functional_params()
    ys, carry = mod(x, seq_lengths=lengths)
    ys_ref, carry_ref = _functional(name, params, x, lengths=lengths)
    _close(ys, ys_ref)
    _close(carry, carry_ref)
    assert float(jnp.abs(ys).max()) > 1e-3  # not trivially zero
    if name != "LSTM":
        return
    # passing the final carry back in continues the sequences
    ys2, carry2 = mod(x, carry)
    ys2_ref, carry2_ref = _functional(name, params, x, carry=carry_ref)
    _close(ys2, ys2_ref)
    _close(carry2, carry2_ref)


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_linen_equals_functional(name):
    x, lengths = _data(1)
    mod = getattr(jln, name)(in_features=I, hidden_size=H, num_layers=2, bidirectional=True)
    variables = mod.init(jax.random.PRNGKey(0), x)
    params = mod.functional_params(variables["params"])
    ys, carry = mod.apply(variables, x, seq_lengths=lengths)
    ys_ref, carry_ref = _functional(name, params, x, lengths=lengths)
    _close(ys, ys_ref)
    _close(carry, carry_ref)


@pytest.mark.parametrize("name", ["SimpleRNN", "MGU", "MinGRU", "MinLSTM"])
def test_linen_other_cells_unidirectional(name):
    x, _ = _data(2)
    mod = getattr(jln, name)(in_features=I, hidden_size=H, num_layers=2)
    variables = mod.init(jax.random.PRNGKey(3), x)
    ys, carry = mod.apply(variables, x)
    ys_ref, carry_ref = _functional(name, mod.functional_params(variables["params"]), x,
                                     bidirectional=False)
    _close(ys, ys_ref)
    _close(carry, carry_ref)


def test_dropout_uses_the_given_key_and_eval_turns_it_off():
    x, _ = _data(3)
    mod = jnnx.LSTM(I, H, num_layers=2, dropout=0.5, rngs=nnx.Rngs(0, dropout=1))
    params = mod.functional_params()
    key = jax.random.PRNGKey(7)
    ys, _ = mod(x, key=key)
    ys_ref, _ = _functional("LSTM", params, x, key=key, bidirectional=False, layers=2,
                            dropout=0.5)
    _close(ys, ys_ref)
    ys_det, _ = _functional("LSTM", params, x, bidirectional=False, layers=2)
    assert not np.allclose(ys, ys_det)
    a, _ = mod(x)  # the module's own dropout stream advances between calls
    b, _ = mod(x)
    assert not np.allclose(a, b)
    mod.eval()
    c, _ = mod(x)
    _close(c, ys_det)


def _to_torch(torch_mod, params, kind):
    """Copies functional params (bidirectional layers: leading axis fw/bw) into PyTorch."""
    import torch
    with torch.no_grad():
        for layer, p in enumerate(params):
            for d, sfx in enumerate(["", "_reverse"]):
                q = jax.tree.map(lambda a: np.asarray(a[d]), p)
                getattr(torch_mod, f"weight_ih_l{layer}{sfx}").copy_(torch.tensor(q.w_ih.T))
                getattr(torch_mod, f"weight_hh_l{layer}{sfx}").copy_(torch.tensor(q.w_hh.T))
                if kind == "LSTM":
                    getattr(torch_mod, f"bias_ih_l{layer}{sfx}").copy_(torch.tensor(q.b))
                    getattr(torch_mod, f"bias_hh_l{layer}{sfx}").zero_()
                else:
                    getattr(torch_mod, f"bias_ih_l{layer}{sfx}").copy_(torch.tensor(q.b_ih))
                    getattr(torch_mod, f"bias_hh_l{layer}{sfx}").copy_(torch.tensor(q.b_hh))


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_nnx_equals_pytorch(name):
    torch = pytest.importorskip("torch")
    x, _ = _data(4)
    mod = getattr(jnnx, name)(I, H, num_layers=2, bidirectional=True, rngs=nnx.Rngs(5))
    ys, carry = mod(x)
    ref = getattr(torch.nn, name)(I, H, num_layers=2, bidirectional=True, batch_first=True)
    _to_torch(ref, mod.functional_params(), name)
    with torch.no_grad():
        out, state = ref(torch.tensor(np.asarray(x)))
    np.testing.assert_allclose(np.asarray(ys), out.numpy(), rtol=1e-5, atol=1e-5)
    h_n = state[0] if name == "LSTM" else state  # [layers*2, B, H]
    for layer in range(2):
        for d in range(2):
            np.testing.assert_allclose(np.asarray(carry[layer][d].h), h_n[2 * layer + d].numpy(),
                                       rtol=1e-5, atol=1e-5)
    if name == "LSTM":
        np.testing.assert_allclose(np.asarray(carry[1][1].c), state[1][3].numpy(),
                                   rtol=1e-5, atol=1e-5)


def test_params_are_stored_per_layer_and_cell_names_come_from_the_registry():
    m = jnnx.GRU(I, H, num_layers=2, rngs=nnx.Rngs(0))
    assert len(m.layers) == 2 and m.layers[1].w_ih.get_value().shape == (H, 3 * H)
    mod = jln.LSTM(in_features=I, hidden_size=H, num_layers=2, bidirectional=True)
    variables = mod.init(jax.random.PRNGKey(0), _data()[0])
    assert set(variables["params"]) == {"layers_0", "layers_1"}
    assert set(variables["params"]["layers_1"]) == {"w_ih", "w_hh", "b"}
    assert variables["params"]["layers_1"]["w_ih"].shape == (2, 2 * H, 4 * H)
    # an option the registry's cell does not take is its error, naming the option
    with pytest.raises(ValueError, match="proj_size"):
        jnnx.GRU(I, H, proj_size=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="did you mean 'peephole'"):
        jln.LSTM(in_features=I, hidden_size=H, cell_options={"peephol": True}).init(
            jax.random.PRNGKey(0), _data()[0])
    # any registered name works, aliases included
    class PeepholeLSTM(jnnx.RNNBase):
        cell = "lstm_peephole"
    p = PeepholeLSTM(I, H, rngs=nnx.Rngs(0))
    assert p.layers[0].w_peep.get_value().shape == (3, H)
    assert p(_data()[0])[0].shape == (B, T, H)
