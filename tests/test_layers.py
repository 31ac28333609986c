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


# --------------------------------------------------------------------------- Layer.step

STEP_CELLS = {
    "lstm": lambda: jr.lstm(H),
    "gru": lambda: jr.gru(H),
    "simple_rnn": lambda: jr.simple_rnn(H),
    "mgu": lambda: jr.mgu(H),
    "lstm_proj": lambda: jr.lstm(H, proj_size=3),
}


def _step_loop(lay, params, xs, carry, keys=None):
    """``lax.scan`` of ``lay.step`` over ``xs`` (and one key per step)."""
    if keys is None:
        def body(c, x):
            y, c = lay.step(params, c, x)
            return c, y
        carry, ys = jax.lax.scan(body, carry, xs)
    else:
        def body(c, inp):
            y, c = lay.step(params, c, inp[0], key=inp[1])
            return c, y
        carry, ys = jax.lax.scan(body, carry, (xs, keys))
    return ys, carry


def _random_carry(carry, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape) * 0.5, a.dtype), carry)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(STEP_CELLS))
def test_layer_step_loop_equals_apply(name, dtype, request):
    """No key: a scan of step is apply, from zeros and from a given carry; also a Python loop
    of the jitted step. Zoneout at evaluation (its expectation) goes through step too."""
    tol = 1e-5 if dtype == "float32" else 1e-10
    if dtype == "float64":
        request.getfixturevalue("x64")
    dt = jnp.dtype(dtype)
    cell = STEP_CELLS[name]()
    for lay in (jr.layer(cell), jr.layer(cell, zoneout=0.3, recurrent_dropout=0.4,
                                          input_dropout=0.2)):
        params = random_params(cell, I, seed=1, dtype=dt)
        xs = _xs(seed=2).astype(dt)
        zeros = lay.initial_carry(params)
        assert jax.tree.leaves(zeros)[0].dtype == dt
        for c0 in (zeros, _random_carry(zeros, 3)):
            ys, final = lay.apply(params, xs, c0)
            ys_s, final_s = _step_loop(lay, params, xs, c0)
            assert ys_s.dtype == ys.dtype == dt and ys.shape == (T, cell.output_size)
            chex.assert_trees_all_close((ys_s, final_s), (ys, final), rtol=tol, atol=tol)
        step = jax.jit(lay.step)
        c, out = zeros, []
        for t in range(T):
            y, c = step(params, c, xs[t])
            out.append(y)
        chex.assert_trees_all_close((jnp.stack(out), c), lay.apply(params, xs), rtol=tol, atol=tol)


def _deep_stack():
    """Three sizes: I -> H (no residual: sizes differ), H -> H twice (residual), one layer
    with zoneout, one a nested stack."""
    return jr.stack([jr.lstm(H),
                     jr.layer(jr.gru(H), zoneout=0.25),
                     jr.stack([jr.simple_rnn(H), jr.mgu(H)], dropout=0.3, residual=True)],
                    dropout=0.5, residual=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stack_step_loop_equals_apply_with_residuals(dtype, request):
    tol = 1e-5 if dtype == "float32" else 1e-10
    if dtype == "float64":
        request.getfixturevalue("x64")
    dt = jnp.dtype(dtype)
    net = _deep_stack()
    params = jax.tree.map(lambda a: a.astype(dt), _randomize(net.init(jax.random.PRNGKey(0), I)))
    xs = _xs().astype(dt)
    carry = net.initial_carry(params)
    assert isinstance(carry, tuple) and len(carry) == 3 and isinstance(carry[2], tuple)
    for c0 in (carry, _random_carry(carry, 4)):
        ys, final = net.apply(params, xs, c0)
        chex.assert_trees_all_close(_step_loop(net, params, xs, c0), (ys, final),
                                    rtol=tol, atol=tol)
    # the residual rule is really exercised: without it the numbers differ
    plain = jr.stack([jr.lstm(H), jr.layer(jr.gru(H), zoneout=0.25),
                      jr.stack([jr.simple_rnn(H), jr.mgu(H)])])
    ys_plain, _ = _step_loop(plain, params, xs, carry)
    assert np.abs(np.asarray(ys_plain - net.apply(params, xs, carry)[0])).max() > 1e-2


def test_step_under_vmap_equals_per_example():
    net = jr.stack([jr.lstm(H), jr.gru(H)], residual=True)
    params = _randomize(net.init(jax.random.PRNGKey(0), I))
    x = jnp.stack([_xs(s)[0] for s in range(3)])
    carry = _random_carry(net.initial_carry(params, (3,)), 5)
    ys, cs = jax.vmap(lambda c, x_t: net.step(params, c, x_t))(carry, x)
    for b in range(3):
        y_b, c_b = net.step(params, jax.tree.map(lambda a: a[b], carry), x[b])
        chex.assert_trees_all_close((ys[b], jax.tree.map(lambda a: a[b], cs)), (y_b, c_b),
                                    rtol=1e-6, atol=1e-6)


def test_step_with_a_key_is_apply_on_a_one_step_sequence():
    """With a key, step draws what apply draws for one step (zoneout masks, the stack's dropout
    between layers) from the same split of the key: a loop of steps with one key per step
    equals a loop of one-step applies with those keys, mask for mask."""
    net = _deep_stack()
    params = _randomize(net.init(jax.random.PRNGKey(0), I))
    xs = _xs(T=12)
    keys = jax.random.split(jax.random.PRNGKey(7), 12)
    ys_s, final_s = _step_loop(net, params, xs, net.initial_carry(params), keys)
    c, out = net.initial_carry(params), []
    for t in range(12):
        y, c = net.apply(params, xs[t:t + 1], c, key=keys[t])
        out.append(y[0])
    chex.assert_trees_all_close((ys_s, final_s), (jnp.stack(out), c), rtol=1e-5, atol=1e-6)
    # and the key matters: without one (or with other keys) the numbers differ
    ys_det, _ = _step_loop(net, params, xs, net.initial_carry(params))
    assert np.abs(np.asarray(ys_s - ys_det)).max() > 1e-2


def test_stack_step_drops_between_layers_with_a_new_mask_per_step():
    """Layer 1 emits relu(x) > 0, layer 2 (identity input weights, no recurrence) emits
    relu(mask_t * layer 1): each unit is 0 or 1/(1-p) times layer 1, zero for about p of
    (step, unit), with masks that change from step to step, as apply's dropout does; the
    last layer's output is not dropped."""
    n, p, steps = 16, 0.4, 300
    ident = jr.SimpleRNNParams(jnp.eye(n), jnp.zeros((n, n)), jnp.zeros(n))
    cell = jr.simple_rnn(n, nonlinearity="relu")
    net = jr.stack([cell, cell], dropout=p)
    params = (ident, ident)
    xs = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2.0, size=(steps, n)), jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(0), steps)
    ys, _ = _step_loop(net, params, xs, net.initial_carry(params), keys)
    ratio = np.asarray(ys / xs)
    assert np.all(np.isclose(ratio, 0.0) | np.isclose(ratio, 1 / (1 - p), rtol=1e-5))
    dropped = np.isclose(ratio, 0.0)
    assert abs(dropped.mean() - p) < 0.05
    assert len({tuple(r) for r in dropped}) > steps // 2        # not one mask for all steps
    ys_apply, _ = net.apply(params, xs, key=jax.random.PRNGKey(0))
    assert abs(np.isclose(np.asarray(ys_apply), 0.0).mean() - p) < 0.05
    one = jr.stack([cell], dropout=p)                            # a single layer: no dropout
    ys_one, _ = _step_loop(one, (ident,), xs, one.initial_carry((ident,)), keys)
    chex.assert_trees_all_close(ys_one, xs, rtol=0, atol=0)


def test_step_zoneout_with_a_key_keeps_or_updates_each_unit():
    cell = jr.gru(8)
    params = _randomize(cell.init(jax.random.PRNGKey(0), I))
    lay = jr.layer(cell, zoneout=0.3)
    xs = _xs(T=40)
    keys = jax.random.split(jax.random.PRNGKey(2), 40)
    ys, _ = _step_loop(lay, params, xs, lay.initial_carry(params), keys)
    h, kept = cell.initial_carry(params).h, 0
    for t in range(40):
        new = cell.step(params, jr.GRUCarry(h), xs[t]).h
        same_old = np.isclose(ys[t], h, atol=1e-7) & ~np.isclose(new, h, atol=1e-7)
        assert (same_old | np.isclose(ys[t], new, rtol=1e-6, atol=1e-6)).all()
        kept += int(same_old.sum())
        h = ys[t]
    assert 0.2 < kept / (40 * 8) < 0.4


def test_step_refuses_what_cannot_step():
    x = _xs()[0]
    bi = jr.bidirectional(jr.lstm(H))
    p_bi = bi.init(jax.random.PRNGKey(0), I)
    with pytest.raises(ValueError, match="bidirectional.*cannot step"):
        bi.step(p_bi, bi.initial_carry(p_bi), x)
    deep = jr.stack([jr.lstm(H), jr.bidirectional(jr.gru(H))])
    p_deep = deep.init(jax.random.PRNGKey(0), I)
    with pytest.raises(ValueError, match="bidirectional.*cannot step"):
        deep.step(p_deep, deep.initial_carry(p_deep), x)
    rev = jr.layer(jr.gru(H), reverse=True)
    p = rev.init(jax.random.PRNGKey(0), I)
    with pytest.raises(ValueError, match="reverse=True layer cannot step"):
        rev.step(p, rev.initial_carry(p), x)
    # variational masks are per sequence: a per-step key cannot hold them
    for opt in ("input_dropout", "recurrent_dropout"):
        lay = jr.layer(jr.gru(H), **{opt: 0.3})
        with pytest.raises(ValueError, match="variational"):
            lay.step(p, lay.initial_carry(p), x, key=jax.random.PRNGKey(0))
        lay.step(p, lay.initial_carry(p), x)                     # evaluation is fine
    lay = jr.layer(jr.gru(H))
    with pytest.raises(ValueError, match="one time step of one example"):
        lay.step(p, lay.initial_carry(p), _xs())
    with pytest.raises(ValueError, match="carry"):
        lay.step(p, jr.GRUCarry(jnp.zeros(H + 1)), x)
    net = jr.stack([jr.gru(H), jr.gru(H)])
    with pytest.raises(TypeError, match="tuple of 2 carries.*got GRUCarry"):
        net.step(net.init(jax.random.PRNGKey(0), I), jr.GRUCarry(jnp.zeros(H)), x)


def test_public_apply_takes_no_private_keywords():
    import inspect
    for lay in (jr.layer(jr.gru(H)), jr.layer(jr.gru(H), reverse=True),
                jr.bidirectional(jr.gru(H)), jr.stack([jr.gru(H)])):
        assert list(inspect.signature(lay.apply).parameters) == [
            "params", "xs", "carry", "seq_lengths", "key"], lay.name
        assert list(inspect.signature(lay.step).parameters) == [
            "params", "carry", "x_t", "key"], lay.name
    with pytest.raises(TypeError, match="zonout"):
        jr.bidirectional(jr.gru(H), zonout=0.1)
