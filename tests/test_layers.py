"""Bidirectional and deep layers, and the regularizers over time."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from tests.cases import random_params

T, I, H = 7, 3, 4


def _xs(seed=0, T=T, I=I):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(T, I)), jnp.float32)


def _randomize(params, seed=0):
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(treedef, [jnp.asarray(rng.normal(size=l.shape) * 0.5, l.dtype) for l in leaves])


@pytest.mark.parametrize("n", [None, 0, 4])
@pytest.mark.parametrize("merge", ["concat", "sum", "mean"])
def test_bidirectional_equals_two_scans(n, merge):
    cell = jr.lstm(H)
    bi = jr.bidirectional(cell, merge=merge)
    params = _randomize(bi.init(jax.random.PRNGKey(0), I))
    assert jax.tree.leaves(params)[0].shape[0] == 2          # stacked directions
    xs = _xs()
    ys, (c_fw, c_bw) = bi.apply(params, xs, seq_lengths=n)
    p_fw = jax.tree.map(lambda a: a[0], params)
    p_bw = jax.tree.map(lambda a: a[1], params)
    y_fw, cf = jr.scan(cell, p_fw, xs, seq_lengths=n)
    y_bw, cb = jr.scan(cell, p_bw, xs, seq_lengths=n, reverse=True)
    want = {"concat": jnp.concatenate([y_fw, y_bw], -1), "sum": y_fw + y_bw, "mean": (y_fw + y_bw) / 2}[merge]
    chex.assert_trees_all_close(ys, want, rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close((c_fw, c_bw), (cf, cb), rtol=1e-6, atol=1e-6)
    assert bi.output_size == (2 * H if merge == "concat" else H)


def test_bidirectional_backward_reads_real_last_token_first_under_padding():
    """The backward direction's first step reads xs[n-1]: its output there depends on
    x[n-1] alone (zero initial carry), whatever the padding holds."""
    cell = jr.simple_rnn(H)
    bi = jr.bidirectional(cell)
    params = _randomize(bi.init(jax.random.PRNGKey(1), I))
    xs = _xs().at[4:].set(100.0)
    ys, _ = bi.apply(params, xs, seq_lengths=4)
    p_bw = jax.tree.map(lambda a: a[1], params)
    first = cell.step(p_bw, cell.initial_carry(p_bw), xs[3])
    np.testing.assert_allclose(ys[3, H:], first.h, rtol=1e-6, atol=1e-6)
    assert not np.asarray(ys[4:]).any()


def test_bidirectional_with_different_cells_and_custom_merge():
    bi = jr.bidirectional(jr.gru(H), jr.simple_rnn(H), merge=lambda a, b: a * b)
    params = bi.init(jax.random.PRNGKey(0), I)
    assert isinstance(params, tuple) and isinstance(params[0], jr.GRUParams)
    xs = _xs()
    ys, (cf, cb) = bi.apply(params, xs, seq_lengths=5)
    y_fw, _ = jr.scan(jr.gru(H), params[0], xs, seq_lengths=5)
    y_bw, _ = jr.scan(jr.simple_rnn(H), params[1], xs, seq_lengths=5, reverse=True)
    chex.assert_trees_all_close(ys, y_fw * y_bw, rtol=1e-6, atol=1e-6)
    assert bi.output_size == H


def test_bidirectional_vmaps_over_a_batch():
    bi = jr.bidirectional(jr.gru(H))
    params = _randomize(bi.init(jax.random.PRNGKey(0), I))
    xs = jnp.stack([_xs(s) for s in range(3)])
    n = jnp.array([7, 3, 1])
    ys, carry = jax.vmap(lambda x, l: bi.apply(params, x, seq_lengths=l))(xs, n)
    for b in range(3):
        y_b, c_b = bi.apply(params, xs[b], seq_lengths=n[b])
        chex.assert_trees_all_close(ys[b], y_b, rtol=1e-6, atol=1e-6)
        chex.assert_trees_all_close(jax.tree.map(lambda a: a[b], carry), c_b, rtol=1e-6, atol=1e-6)


def test_unknown_merge_mode():
    with pytest.raises(ValueError, match="unknown merge mode 'max'"):
        jr.bidirectional(jr.lstm(H), merge="max")


def test_deep_bidirectional_stack_equals_manual_composition():
    l1, l2, l3 = jr.bidirectional(jr.lstm(H)), jr.bidirectional(jr.lstm(H)), jr.layer(jr.gru(2 * H))
    net = jr.stack([l1, l2, l3], residual=True)
    params = _randomize(net.init(jax.random.PRNGKey(0), I))
    xs = _xs()
    ys, carry = net.apply(params, xs, seq_lengths=5)
    h1, c1 = l1.apply(params[0], xs, seq_lengths=5)
    h2, c2 = l2.apply(params[1], h1, seq_lengths=5)
    h2 = h2 + h1                      # residual: sizes match (2H -> 2H)
    h3, c3 = l3.apply(params[2], h2, seq_lengths=5)
    h3 = h3 + h2
    chex.assert_trees_all_close(ys, h3, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(carry, (c1, c2, c3), rtol=1e-5, atol=1e-6)
    assert not np.asarray(ys[5:]).any()
    assert net.output_size == 2 * H


def test_stack_carry_in_and_out_for_stateful_use():
    net = jr.stack([jr.lstm(H), jr.lstm(H)])
    params = _randomize(net.init(jax.random.PRNGKey(0), I))
    xs = _xs(T=8)
    ys, carry = net.apply(params, xs)
    ys_a, carry_a = net.apply(params, xs[:5])
    ys_b, carry_b = net.apply(params, xs[5:], carry_a)
    chex.assert_trees_all_close(jnp.concatenate([ys_a, ys_b]), ys, rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close(carry_b, carry, rtol=1e-6, atol=1e-6)
    zeros = net.initial_carry(params)
    chex.assert_trees_all_close(net.apply(params, xs, zeros), (ys, carry), rtol=0, atol=0)


def test_dropout_between_layers_only_with_a_key():
    net = jr.stack([jr.gru(H), jr.gru(H)], dropout=0.5)
    plain = jr.stack([jr.gru(H), jr.gru(H)])
    params = _randomize(net.init(jax.random.PRNGKey(0), I))
    xs = _xs()
    chex.assert_trees_all_close(net.apply(params, xs), plain.apply(params, xs), rtol=0, atol=0)
    ys_k, _ = net.apply(params, xs, key=jax.random.PRNGKey(1))
    assert np.abs(np.asarray(ys_k - plain.apply(params, xs)[0])).max() > 1e-3
    # the dropped first-layer outputs, recomputed by hand, give the same second layer
    h1, _ = jr.scan(jr.gru(H), params[0], xs)
    k_layers = jax.random.split(jax.random.PRNGKey(1), 4)
    h1d = jr.dropout(k_layers[1], h1, 0.5)
    y2, _ = jr.scan(jr.gru(H), params[1], h1d)
    chex.assert_trees_all_close(ys_k, y2, rtol=1e-6, atol=1e-6)


def test_variational_input_dropout_uses_one_mask_for_all_steps():
    """A relu RNN with no recurrence and identity input weights emits relu(mask * x_t)."""
    cell = jr.simple_rnn(I, nonlinearity="relu")
    params = jr.SimpleRNNParams(jnp.eye(I), jnp.zeros((I, I)), jnp.zeros(I))
    p = 0.5
    lay = jr.layer(cell, input_dropout=p)
    xs = jnp.ones((50, I)) + jnp.arange(50.0)[:, None]
    ys, _ = lay.apply(params, xs, key=jax.random.PRNGKey(3))
    ratio = np.asarray(ys / xs)
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[0], ratio.shape), rtol=1e-6)
    assert set(np.round(ratio[0], 5)) <= {0.0, 2.0}
    chex.assert_trees_all_close(lay.apply(params, xs)[0], xs, rtol=0, atol=0)  # no key: identity


def test_variational_recurrent_dropout_uses_one_mask_for_all_steps():
    """h_t = relu(m * h_{t-1} + 1): a dropped unit stays at 1, a kept one grows as 1 + 2 h."""
    cell = jr.simple_rnn(8, nonlinearity="relu")
    params = jr.SimpleRNNParams(jnp.zeros((1, 8)), jnp.eye(8), jnp.ones(8))
    lay = jr.layer(cell, recurrent_dropout=0.5)
    ys, _ = lay.apply(params, jnp.zeros((6, 1)), key=jax.random.PRNGKey(0))
    ys = np.asarray(ys)
    kept = ys[1] > 1.5
    assert kept.any() and (~kept).any()
    want = np.ones(8)
    for t in range(6):
        np.testing.assert_allclose(ys[t], want, rtol=1e-6)
        want = np.where(kept, 1 + 2 * want, 1.0)


def test_zoneout_training_keeps_units_and_evaluation_takes_the_expectation():
    cell = jr.lstm(H)
    params = _randomize(cell.init(jax.random.PRNGKey(0), I))
    xs = _xs(T=20)
    p = 0.4
    lay = jr.layer(cell, zoneout=p)
    # evaluation: c_t = p c_{t-1} + (1-p) c~_t, the same for h
    ys, final = lay.apply(params, xs)
    c = cell.initial_carry(params)
    for t in range(20):
        new = cell.step(params, c, xs[t])
        c = jax.tree.map(lambda o, n: p * o + (1 - p) * n, c, new)
        np.testing.assert_allclose(ys[t], c.h, rtol=1e-5, atol=1e-6)


def test_zoneout_training_keeps_each_unit_or_updates_it():
    """With one carry field (GRU), each h_t[j] is h_{t-1}[j] (zoned out) or the new value."""
    cell = jr.gru(8)
    params = _randomize(cell.init(jax.random.PRNGKey(0), I))
    xs = _xs(T=30)
    lay = jr.layer(cell, zoneout=0.3)
    ys, final = lay.apply(params, xs, key=jax.random.PRNGKey(5))
    h = cell.initial_carry(params).h
    kept = 0
    for t in range(30):
        new = cell.step(params, jr.GRUCarry(h), xs[t]).h
        same_old = np.isclose(ys[t], h, rtol=0, atol=1e-7) & ~np.isclose(new, h, atol=1e-7)
        same_new = np.isclose(ys[t], new, rtol=1e-6, atol=1e-6)
        assert (same_old | same_new).all()
        kept += int(same_old.sum())
        h = ys[t]
    assert 0.15 < kept / (30 * 8) < 0.45          # about p of the units are zoned out
    np.testing.assert_allclose(final.h, ys[-1])


def test_layer_regularizer_errors():
    with pytest.raises(ValueError, match="zoneout"):
        jr.layer(jr.lstm(H), zoneout=1.0)
    with pytest.raises(ValueError, match="dropout"):
        jr.stack([jr.lstm(H)], dropout=-0.1)
    with pytest.raises(TypeError, match="Cell or Layer"):
        jr.stack([object()])
    with pytest.raises(ValueError, match="parallel"):
        jr.layer(jr.gru(H), parallel=True)


def test_parallel_layer_matches_sequential_layer():
    seq = jr.bidirectional(jr.min_gru(H))
    par = jr.bidirectional(jr.min_gru(H), parallel=True)
    params = _randomize(seq.init(jax.random.PRNGKey(0), I))
    xs = _xs()
    chex.assert_trees_all_close(par.apply(params, xs, seq_lengths=5),
                                seq.apply(params, xs, seq_lengths=5), rtol=1e-5, atol=1e-6)
