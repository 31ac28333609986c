"""The fused engine equals the reference loop, number for number, for every cell.

The reference is ``method="reference"``: JAX's autodiff of a plain ``lax.scan`` of the same
step (independent of the engine's custom VJP, its taps and its replay). Compared: outputs,
final carries and the gradients of every parameter, of the inputs and of the initial carry,
over a padded batch (lengths T, in between, 1 and 0) under ``vmap``, forward and reversed,
for every cell in tests/cases.py (and with remat for a cell of each kind); in float64 (1e-10: the backward
pass is exact, not approximately right), float32 (1e-5) and bfloat16 (1e-2 of a float64
reference); through the layers with every regularizer; under jit, grad of vmap, vmap of
grad (per-example gradients), batched parameters (ensembles), a second-order gradient and
shard_map.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn as jr
from jaxrnn import engine
from tests.cases import CASES, IDS, random_carry, random_params
from tests.cases import weighted_loss as _loss

T = 7
LENGTHS = np.array([T, 3, 1, 0])          # full, in between, one step, empty


def _batch(case, dtype, seed=0, batch=len(LENGTHS)):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(batch,) + case.xs_shape(T)), dtype)


def _batched(cell, method, reverse, remat, lengths=LENGTHS):
    """(params, xs, carry) -> (ys, carry) over a padded batch: the path users write."""
    def run(params, xs, carry):
        return jax.vmap(lambda x, c, n: jr.scan(cell, params, x, c, seq_lengths=n,
                                                 reverse=reverse, method=method,
                                                 remat=remat))(xs, carry, jnp.asarray(lengths))
    return run


def _value_and_grads(run):
    def f(params, xs, carry):
        out = run(params, xs, carry)
        return _loss(*out), out
    return jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)


def _both_ways(cell):
    """One compiled function: forward and reversed, each by both methods."""
    @jax.jit
    def f(params, xs, carry):
        return {(m, rev): _value_and_grads(_batched(cell, m, rev, remat=False))(params, xs, carry)
                for m in ("fused", "reference") for rev in (False, True)}
    return f


def _problem(case, dtype, scale=0.5):
    cell = case.cell(param_dtype=dtype) if dtype != jnp.bfloat16 else case.cell(dtype=dtype)
    pdt = jnp.float32 if dtype == jnp.bfloat16 else dtype
    params = random_params(cell, case.input_size, dtype=pdt, scale=scale)
    xs = _batch(case, dtype)
    carry = jax.vmap(lambda x: random_carry(cell, params, x[0]))(xs)
    return cell, params, xs, carry


def _check_fused_equals_reference(case, dtype, rtol, atol):
    cell, params, xs, carry = _problem(case, dtype)
    out = _both_ways(cell)(params, xs, carry)
    for rev in (False, True):
        (_, o_f), g_f = out["fused", rev]
        (_, o_r), g_r = out["reference", rev]
        chex.assert_trees_all_close(o_f, o_r, rtol=rtol, atol=atol)
        chex.assert_trees_all_close(g_f, g_r, rtol=rtol, atol=atol)
        chex.assert_tree_all_finite(g_f)
        # padding: outputs zero past the length, and no gradient reaches padded inputs
        ys = o_f[0]
        assert not np.asarray(ys[1, 3:]).any() and not np.asarray(ys[3]).any()
        assert not np.asarray(g_f[1][3]).any() and not np.asarray(g_f[1][1, 3:]).any()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fused_equals_reference_float64(case, x64):
    _check_fused_equals_reference(case, jnp.float64, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fused_equals_reference_float32(case):
    _check_fused_equals_reference(case, jnp.float32, rtol=1e-5, atol=2e-5)


REMAT = [c for c in CASES if c.id in ("lstm_proj", "gru_cho", "conv_lstm_1d")]


@pytest.mark.parametrize("case", REMAT, ids=[c.id for c in REMAT])
def test_remat_equals_reference(case, x64):
    """remat (chunks of about sqrt(T) steps, recomputed) changes no number: reversed and
    padded, against the reference without remat."""
    cell, params, xs, carry = _problem(case, jnp.float64)
    got = jax.jit(_value_and_grads(_batched(cell, "fused", True, True)))(params, xs, carry)
    want = _value_and_grads(_batched(cell, "reference", True, False))(params, xs, carry)
    chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if c.id in ("gru", "lstm_proj")],
                         ids=["gru", "lstm_proj"])
def test_bfloat16_matmuls_are_within_1e_2_of_float64(case):
    """bf16 matmuls, float32 gates, carries and gradients: the fused engine's outputs and
    gradients within 1e-2 of the float64 reference of the same (bf16-rounded) inputs."""
    cell, params, xs, carry = _problem(case, jnp.bfloat16, scale=0.3)
    (_, out), grads = jax.jit(_value_and_grads(_batched(cell, "fused", True, False)))(
        params, xs, carry)
    assert out[0].dtype == jnp.float32 and out[1].h.dtype == jnp.float32
    with jax.enable_x64(True):
        cell64 = case.cell(param_dtype=jnp.float64)
        to64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)
        (_, out64), grads64 = _value_and_grads(_batched(cell64, "reference", True, False))(
            to64(params), to64(xs), to64(carry))
        for got, want in zip(jax.tree.leaves((out, grads[0], grads[2])),
                             jax.tree.leaves((out64, grads64[0], grads64[2]))):
            want = np.asarray(want)
            np.testing.assert_allclose(np.asarray(got, np.float64), want,
                                       atol=1e-2 * max(1.0, np.abs(want).max()))
    chex.assert_tree_all_finite(grads)


# --------------------------------------------------------------------------- layers

def _layers(method):
    """A deep bidirectional stack with every regularizer: recurrent dropout and zoneout on a
    reversed layer-norm LSTM, input dropout on a bidirectional GRU (Cho's), dropout between
    layers and a residual connection."""
    return jr.stack([jr.layer(jr.lstm(4, layer_norm=True), reverse=True, recurrent_dropout=0.3,
                              zoneout=0.2, method=method),
                     jr.bidirectional(jr.gru(4, reset_after=False), input_dropout=0.2,
                                      method=method),
                     jr.layer(jr.simple_rnn(8), method=method)],
                    dropout=0.25, residual=True)


def test_layers_with_every_regularizer_equal_the_reference(x64):
    """In training (a key: dropout and zoneout masks; zoneout's expectation at evaluation is
    the same loop with a constant rate, tests/test_layers.py)."""
    B, I = 3, 5
    lengths = jnp.array([T, 2, 0])
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, I), jnp.float64)
    keys = jax.random.split(jax.random.PRNGKey(7), B)
    fused, ref = _layers("fused"), _layers("reference")
    params = jax.tree.map(lambda a: a.astype(jnp.float64), ref.init(jax.random.PRNGKey(0), I))

    def loss(layer, p, x):
        out = jax.vmap(lambda xi, n, k: layer.apply(p, xi, seq_lengths=n, key=k))(x, lengths, keys)
        return _loss(*out), out

    run = lambda layer: jax.jit(jax.value_and_grad(functools.partial(loss, layer), (0, 1),
                                                   has_aux=True))(params, xs)
    (_, o_f), g_f = run(fused)
    (_, o_r), g_r = run(ref)
    chex.assert_trees_all_close(o_f, o_r, rtol=1e-10, atol=1e-12)
    chex.assert_trees_all_close(g_f, g_r, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- compositions

def _lstm_problem(seed=0):
    cell = jr.lstm(4)
    params = random_params(cell, 3, seed=seed, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(seed + 1), (len(LENGTHS), T, 3), jnp.float64)
    return cell, params, xs


def _per_sequence_loss(cell, method):
    def loss(params, x, n):
        return _loss(*jr.scan(cell, params, x, seq_lengths=n, reverse=True, method=method))
    return loss


def test_compositions_equal_the_reference(x64):
    """grad of vmap, vmap of grad (per-example gradients) and batched parameters."""
    cell, params, xs = _lstm_problem()
    n = jnp.asarray(LENGTHS)
    for name, make in {
        "grad(vmap)": lambda f: jax.grad(lambda p: jnp.sum(jax.vmap(f, (None, 0, 0))(p, xs, n))),
        "vmap(grad)": lambda f: lambda p: jax.vmap(jax.grad(f), (None, 0, 0))(p, xs, n),
        "ensemble": lambda f: lambda p: jax.vmap(
            lambda q: jax.grad(lambda r: jnp.sum(jax.vmap(f, (None, 0, 0))(r, xs, n)))(q))(
            jax.tree.map(lambda a: jnp.stack([a, 0.5 * a]), p)),
    }.items():
        got = make(_per_sequence_loss(cell, "fused"))(params)
        want = make(_per_sequence_loss(cell, "reference"))(params)
        chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-12, custom_message=name)
    # per-example gradients really are per example: sequence 3 is empty, so its gradient
    # is exactly zero for every weight (it still reaches nothing)
    per = jax.vmap(jax.grad(_per_sequence_loss(cell, "fused")), (None, 0, 0))(params, xs, n)
    assert not np.asarray(per.w_ih[3]).any() and np.asarray(per.w_ih[0]).any()


def test_check_grads_second_order(x64):
    """Finite differences of first and second order (reverse over reverse) on the engine."""
    cell = jr.gru(3)
    params = jax.tree.map(lambda a: 0.6 * a, random_params(cell, 2, seed=3, dtype=jnp.float64))
    xs = jax.random.normal(jax.random.PRNGKey(4), (4, 2), jnp.float64)
    loss = _per_sequence_loss(cell, "fused")
    check_grads(jax.jit(lambda p, x: loss(p, x, 3)), (params, xs), order=2, modes=("rev",),
                eps=1e-5, atol=1e-5, rtol=1e-5)


def test_shard_map_data_parallel_equals_one_device(x64):
    from jax.sharding import Mesh, PartitionSpec as P
    cell, params, xs = _lstm_problem()
    n = jnp.asarray(LENGTHS)
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    loss = _per_sequence_loss(cell, "fused")

    def local(p, x, k):
        g = jax.grad(lambda q: jnp.sum(jax.vmap(loss, (None, 0, 0))(q, x, k)))(p)
        return jax.lax.psum(g, "data")

    sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                                    out_specs=P()))
    want = jax.grad(lambda q: jnp.sum(jax.vmap(_per_sequence_loss(cell, "reference"),
                                               (None, 0, 0))(q, xs, n)))(params)
    chex.assert_trees_all_close(sharded(params, xs, n), want, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- what runs

def test_the_default_path_is_the_fused_engine():
    """jr.scan, the layers and vmap of them run the engine's custom VJP by default; the
    reference method does not; and under vmap the loops are one loop over the batch (two
    while loops in all, forward and backward, whose matmul operands carry the batch axis),
    not one loop per sequence."""
    cell = jr.gru(3)
    params = cell.init(jax.random.PRNGKey(0), 2)
    xs = jnp.ones((5, 4, 2))

    def run(method):
        return lambda p, x: jax.vmap(lambda s: jr.scan(cell, p, s, method=method)[0])(x)

    assert "custom_vjp_call" in str(jax.make_jaxpr(run("fused"))(params, xs))
    assert "custom_vjp_call" not in str(jax.make_jaxpr(run("reference"))(params, xs))
    bi = jr.bidirectional(cell)
    q = bi.init(jax.random.PRNGKey(0), 2)
    assert "custom_vjp_call" in str(jax.make_jaxpr(lambda p: jax.vmap(lambda s: bi.apply(p, s))(
        xs))(q))
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(run("fused")(p, x)))).lower(params, xs)
    hlo = grad.as_text()
    assert hlo.count("stablehlo.while") == 2 and "tensor<5x3xf32>" in hlo


def test_remat_bounds_the_memory_of_the_backward_pass():
    """remat keeps the carry of every chunk instead of every step's matmul results: XLA's
    own buffer assignment for a long sequence's gradient shrinks severalfold."""
    cell = jr.lstm(32)
    params = cell.init(jax.random.PRNGKey(0), 8)
    xs = jnp.ones((4, 1024, 8))

    def temp_bytes(remat):
        f = lambda p: jnp.sum(jax.vmap(lambda s: jr.scan(cell, p, s, remat=remat)[0])(xs))
        stats = jax.jit(jax.grad(f)).lower(params).compile().memory_analysis()
        return stats.temp_size_in_bytes

    assert temp_bytes(True) < temp_bytes(False) / 3


def test_plans_give_the_same_numbers(x64):
    """Every plan (hoisted or in-loop input map, unroll not dividing T, chunks with and without
    remat) is the same computation: only how the loop runs changes."""
    cell = jr.gru(4, reset_after=False)
    params = random_params(cell, 3, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.PRNGKey(1), (T, 3), jnp.float64)
    carry = cell.initial_carry(params)
    ref = jax.grad(lambda p: _loss(*jr.scan(cell, p, xs, seq_lengths=5, method="reference")))(
        params)
    for plan, remat in ((engine.Plan(hoist=True, chunk=3), False),
                        (engine.Plan(hoist=False, unroll=3, unroll_bwd=2), False),
                        (engine.Plan(hoist=False, chunk=2), True)):
        got = jax.grad(lambda p: _loss(*engine.run(cell, p, xs, carry, seq_lengths=5, plan=plan,
                                                   remat=remat)))(params)
        chex.assert_trees_all_close(got, ref, rtol=1e-10, atol=1e-12, custom_message=str(plan))


def test_bad_options_raise_clear_errors():
    cell = jr.lstm(3)
    params = cell.init(jax.random.PRNGKey(0), 2)
    xs = jnp.ones((4, 2))
    with pytest.raises(ValueError, match="method must be one of"):
        jr.scan(cell, params, xs, method="cudnn")
    with pytest.raises(ValueError, match="method must be one of"):
        jr.layer(cell, method="fast")
    with pytest.raises(TypeError, match="remat must be a bool"):
        jr.scan(cell, params, xs, remat="yes")
    with pytest.raises(ValueError, match="unroll must be a positive integer"):
        jr.scan(cell, params, xs, unroll=0)
    with pytest.raises(TypeError, match="reverse must be a bool"):
        jr.scan(cell, params, xs, reverse="true")
    with pytest.raises(ValueError, match="Plan.unroll"):
        engine.check_plan(engine.Plan(unroll=0))
    with pytest.raises(TypeError, match="Plan.hoist"):
        engine.check_plan(engine.Plan(hoist="no"))
    # the sequence checks still come first, with the fused engine as the default
    with pytest.raises(ValueError, match="input_size=2"):
        jr.scan(cell, params, jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="carry"):
        jr.scan(cell, params, xs, jr.LSTMCarry(jnp.zeros(4), jnp.zeros(3)))


def test_taps_are_zero_and_differentiate_like_the_linear_map(x64):
    """tap(linear, a, w) is 0 with the derivative of linear(a, w) in both arguments;
    tap_weight only in w; under vmap the value stays zero and batched like the map's."""
    from jaxrnn.engine import taps
    lin = lambda a, w: a @ w
    a = jax.random.normal(jax.random.PRNGKey(0), (5, 3), jnp.float64)
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 4), jnp.float64)
    ct = jax.random.normal(jax.random.PRNGKey(2), (5, 4), jnp.float64)
    assert not np.asarray(taps.tap(lin, a, w)).any() and taps.tap(lin, a, w).shape == (5, 4)
    f = lambda tap: lambda a, w: jnp.sum(ct * (tap(lin, a, w) + 1.0))
    da, dw = jax.grad(f(taps.tap), (0, 1))(a, w)
    np.testing.assert_allclose(da, ct @ w.T, rtol=1e-12)
    np.testing.assert_allclose(dw, a.T @ ct, rtol=1e-12)
    da, dw = jax.grad(f(taps.tap_weight), (0, 1))(a, w)
    assert not np.asarray(da).any()
    np.testing.assert_allclose(dw, a.T @ ct, rtol=1e-12)
    batched = jax.vmap(lambda x: taps.tap(lin, x, w))(jnp.stack([a, a]))
    assert batched.shape == (2, 5, 4) and not np.asarray(batched).any()
