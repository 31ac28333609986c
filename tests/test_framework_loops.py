"""The Flax wrappers in each framework's own training loop, step for step against the core.

NNX: ``nnx.Optimizer(m, optax.adam(1e-3), wrt=nnx.Param)`` and an ``@nnx.jit`` step doing
``nnx.value_and_grad`` then ``opt.update(m, grads)``. linen: ``TrainState.create`` and a
``jax.jit`` step doing ``state.apply_gradients``. Each runs several steps, and after every step
the loss, the gradients and the parameters equal the same steps written against the functional
core alone (``jr.stack`` params, ``jax.value_and_grad``, ``optax.adam``,
``optax.apply_updates``) from the same initial params. Adam normalizes the gradient's scale, so
the gradients are compared too: a wrapper off by a constant factor would otherwise pass.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state


import jaxrnn as jr
from jaxrnn import linen as jln
from jaxrnn import nnx as jnnx
from jaxrnn.train.optim import standard_promotion

B, T, I, H, P = 3, 6, 4, 5, 3
STEPS = 3
LR = 1e-3


def _adam():
    """``optax.adam(LR)`` traced under standard promotion (``jaxrnn.train.optim``): optax's own
    bias correction raises a float to its int32 step count, which the suite's strict promotion
    refuses. The model and the loss stay strict."""
    return standard_promotion(optax.adam(LR))


def _problem(out_size, seed=0):
    r = np.random.default_rng(seed)
    x = jnp.asarray(r.normal(size=(B, T, I)), jnp.float32)
    y = jnp.asarray(r.normal(size=(B, T, out_size)), jnp.float32)
    lengths = jnp.asarray([T, 4, 2], jnp.int32)
    return x, y, lengths


def _mse(ys, y):
    return jnp.mean((ys - y) ** 2)


def _core_net(cell, num_layers, bidirectional, dropout):
    """The network written against the core alone (not the wrappers' builder)."""
    make = {"LSTM": jr.lstm, "GRU": jr.gru}[cell]
    return jr.stack([jr.bidirectional(make(H)) if bidirectional else jr.layer(make(H))
                     for _ in range(num_layers)], dropout=dropout)


def _core_steps(net, params, batches):
    """``STEPS`` Adam steps through the functional core; per step (loss, grads, new params)."""
    tx = _adam()
    opt_state = tx.init(params)

    def loss_fn(p, x, y, n, key):
        keys = None if key is None else jax.random.split(key, B)   # one key per example
        run = lambda xs, length, k: net.apply(p, xs, seq_lengths=length, key=k)
        ys, _ = jax.vmap(run, in_axes=(0, 0, None if keys is None else 0))(x, n, keys)
        return _mse(ys, y)

    @jax.jit
    def step(p, s, x, y, n, key):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y, n, key)
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss, g

    out = []
    for x, y, n, key in batches:
        params, opt_state, loss, g = step(params, opt_state, x, y, n, key)
        out.append((loss, g, params))
    return out


def _named(layer_params):
    """A layer's NamedTuple params as {field: array}, absent (None) fields dropped."""
    return {k: v for k, v in layer_params._asdict().items() if v is not None}


def _close(a, b, what):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(
        np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6, err_msg=what), a, b)


def _batches(y_size, dropout, seed):
    x, y, n = _problem(y_size, seed)
    keys = [jax.random.PRNGKey(100 + i) if dropout else None for i in range(STEPS)]
    # a different batch each step (the same inputs, shifted targets), so steps differ
    return [(x, y + 0.1 * i, n, keys[i]) for i in range(STEPS)]


# =========================================================================== NNX

NNX_CASES = {
    "lstm-2layer-bidir": ("LSTM", dict(num_layers=2, bidirectional=True)),
    "gru-2layer-dropout": ("GRU", dict(num_layers=2, dropout=0.25)),
    "gru-bidir": ("GRU", dict(bidirectional=True)),
}


@pytest.mark.parametrize("case", list(NNX_CASES))
def test_nnx_optimizer_loop_equals_functional_core(case):
    cell, kw = NNX_CASES[case]
    m = getattr(jnnx, cell)(I, H, rngs=nnx.Rngs(0), **kw)
    params0 = m.functional_params()
    batches = _batches(m.output_size, kw.get("dropout", 0.0), seed=1)

    opt = nnx.Optimizer(m, _adam(), wrt=nnx.Param)

    @nnx.jit
    def train_step(m, opt, x, y, n, key):
        def loss_fn(m):
            ys, _ = m(x, seq_lengths=n, key=key)
            return _mse(ys, y)

        loss, grads = nnx.value_and_grad(loss_fn)(m)
        opt.update(m, grads)
        return loss, grads

    ref = _core_steps(_core_net(cell, kw.get("num_layers", 1), kw.get("bidirectional", False),
                                kw.get("dropout", 0.0)), params0, batches)
    for i, ((x, y, n, key), (loss_ref, g_ref, p_ref)) in enumerate(zip(batches, ref)):
        loss, grads = train_step(m, opt, x, y, n, key)
        _close(loss, loss_ref, f"loss, step {i}")
        g = nnx.to_pure_dict(grads)["layers"]
        assert set(g) == set(range(len(g_ref)))
        for k, gk in enumerate(g_ref):
            assert set(g[k]) == set(_named(gk)), f"step {i}, layer {k}: gradient names"
            _close(g[k], _named(gk), f"gradients, step {i}, layer {k}")
        _close(m.functional_params(), p_ref, f"params after step {i}")
        assert int(opt.step.get_value()) == i + 1
    moved = max(float(jnp.abs(a - b).max()) for a, b in zip(
        jax.tree.leaves(m.functional_params()), jax.tree.leaves(params0)))
    assert moved > LR, "the optimizer did not move the parameters"


def test_nnx_optimizer_trains_only_the_layers_a_path_filter_names():
    """Per-layer params make a per-layer optimizer a filter: train the last layer only."""
    m = jnnx.LSTM(I, H, num_layers=2, rngs=nnx.Rngs(3))
    before = m.functional_params()
    last = nnx.All(nnx.Param, nnx.PathContains(1))
    opt = nnx.Optimizer(m, _adam(), wrt=last)
    x, y, n = _problem(m.output_size, 4)

    @nnx.jit
    def train_step(m, opt):
        grads = nnx.grad(lambda m: _mse(m(x, seq_lengths=n)[0], y),
                         argnums=nnx.DiffState(0, last))(m)
        opt.update(m, grads)

    for _ in range(STEPS):
        train_step(m, opt)
    after = m.functional_params()
    jax.tree.map(np.testing.assert_array_equal, after[0], before[0])
    assert all(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(after[1]),
                                                     jax.tree.leaves(before[1])))


def test_nnx_params_are_per_layer_one_array_per_param():
    m = jnnx.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=P, rngs=nnx.Rngs(1))
    flat = dict(nnx.to_flat_state(nnx.state(m, nnx.Param)))
    names = ("w_ih", "w_hh", "b", "w_proj")
    assert set(flat) == {("layers", k, n) for k in range(2) for n in names}
    for var in flat.values():   # each Param holds one array, never a pytree of them
        assert isinstance(var, nnx.Param) and isinstance(var.get_value(), jax.Array)
    # bidirectional: a leading axis of 2 (forward, backward); layer 1 reads both directions
    assert flat[("layers", 0, "w_ih")].get_value().shape == (2, I, 4 * H)
    assert flat[("layers", 1, "w_ih")].get_value().shape == (2, 2 * P, 4 * H)
    assert flat[("layers", 1, "w_proj")].get_value().shape == (2, H, P)
    # the submodules and the functional params are the same arrays
    fp = m.functional_params()
    assert isinstance(fp, tuple) and len(fp) == 2 and isinstance(fp[1], jr.LSTMParams)
    assert fp[1].w_hh is m.layers[1].w_hh.get_value()
    assert fp[0].w_peep is None
    assert jax.tree.structure(fp) == jax.tree.structure(
        m.layer.init(jax.random.PRNGKey(0), I))
    gru = jnnx.GRU(I, H, rngs=nnx.Rngs(2))
    assert set(dict(nnx.to_flat_state(nnx.state(gru, nnx.Param)))) == {
        ("layers", 0, n) for n in ("w_ih", "w_hh", "b_ih", "b_hh")}


# =========================================================================== linen

LINEN_CASES = {
    "lstm-2layer-bidir": ("LSTM", dict(num_layers=2, bidirectional=True)),
    "gru-2layer": ("GRU", dict(num_layers=2)),
}


@pytest.mark.parametrize("case", list(LINEN_CASES))
def test_linen_train_state_loop_equals_functional_core(case):
    cell, kw = LINEN_CASES[case]
    model = getattr(jln, cell)(in_features=I, hidden_size=H, **kw)
    out_size = H * (2 if kw.get("bidirectional") else 1)
    batches = _batches(out_size, 0.0, seed=2)
    variables = model.init(jax.random.PRNGKey(0), batches[0][0])
    assert set(variables["params"]) == {f"layers_{k}" for k in range(kw.get("num_layers", 1))}
    params0 = model.functional_params(variables["params"])
    state = train_state.TrainState.create(apply_fn=model.apply, params=variables["params"],
                                          tx=_adam())

    @jax.jit
    def train_step(state, x, y, n):
        def loss_fn(params):
            ys, _ = state.apply_fn({"params": params}, x, seq_lengths=n)
            return _mse(ys, y)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss, grads

    ref = _core_steps(_core_net(cell, kw.get("num_layers", 1), kw.get("bidirectional", False),
                                0.0), params0, batches)
    for i, ((x, y, n, _), (loss_ref, g_ref, p_ref)) in enumerate(zip(batches, ref)):
        state, loss, grads = train_step(state, x, y, n)
        _close(loss, loss_ref, f"loss, step {i}")
        for k, gk in enumerate(g_ref):
            assert set(grads[f"layers_{k}"]) == set(_named(gk))
            _close(dict(grads[f"layers_{k}"]), _named(gk), f"gradients, step {i}, layer {k}")
        _close(model.functional_params(state.params), p_ref, f"params after step {i}")
    assert int(state.step) == STEPS
    carry = model.initial_carry(state.params, B)
    assert len(carry) == kw.get("num_layers", 1)
