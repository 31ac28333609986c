"""The fast paths (jaxrnn.fast) equal the reference path, jax.vmap(jr.scan), number for number.

Outputs, final carries and the gradients of every parameter, of the inputs and of the
initial carry, for the plain LSTM and the GRU (reset_after=True), with padding
(seq_lengths) and reverse, under every plan (hoisted or in-loop projection, unroll,
remat, chunked weight gradients, per-block matmuls), in float32 (rtol 1e-5) and float64 (rtol 1e-10,
which checks the hand-derived backward pass exactly), under jit and under an outer vmap. The reference gradients come
from JAX's autodiff of jr.scan, independent of the custom VJP under test.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from jaxrnn import fast
from jaxrnn.fast import Plan

B, T, I, H = 3, 7, 5, 4
LENGTHS = np.array([7, 3, 0])

CELLS = {
    "lstm": lambda **kw: jr.lstm(H, **kw),
    "gru": lambda **kw: jr.gru(H, **kw),
}
PLANS = [
    Plan(hoist=True, unroll=1, unroll_bwd=1),
    Plan(hoist=False, unroll=3, unroll_bwd=2),              # unroll not dividing T
    Plan(hoist=False, unroll=2, unroll_bwd=1, remat=True, chunk=3),  # 2 chunks + 1 step
    # per-step matmuls over column blocks (2 blocks: 1.5 gates each for the GRU's 3H = 12)
    Plan(hoist=False, unroll=1, unroll_bwd=2, split=2),
]


def _random_problem(cell, dtype=jnp.float32, seed=0, batch=B):
    """Random params (every leaf, biases included), inputs and a random initial carry."""
    k_p, k_x, k_c, k_r = jax.random.split(jax.random.PRNGKey(seed), 4)
    params = cell.init(k_p, I)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(k_r, len(leaves))
    params = treedef.unflatten([(0.5 * jax.random.normal(k, l.shape)).astype(dtype)
                                for k, l in zip(keys, leaves)])
    xs = jax.random.normal(k_x, (batch, T, I), dtype)
    carry = cell.initial_carry(params, (batch,))
    c_keys = jax.random.split(k_c, len(carry))
    carry = type(carry)(*[jax.random.normal(k, c.shape, c.dtype) for k, c in zip(c_keys, carry)])
    return params, xs, carry


def _reference(cell, params, xs, carry, lengths, reverse):
    def one(x, c, n):
        return jr.scan(cell, params, x, c, seq_lengths=n, reverse=reverse)
    return jax.vmap(one, in_axes=(0, 0, None if lengths is None else 0))(xs, carry, lengths)


def _fast(cell, params, xs, carry, lengths, reverse, plan):
    return fast.layer(cell, params, xs, carry, seq_lengths=lengths, reverse=reverse, plan=plan)


def _loss(fn):
    """A loss that weighs every output and every carry leaf differently."""
    def loss(params, xs, carry):
        ys, final = fn(params, xs, carry)
        w = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        out = jnp.sum(ys * w) + jnp.sum(jnp.tanh(ys) ** 2)
        for k, leaf in enumerate(final):
            out = out + jnp.sum(jnp.sin((k + 2.0) * leaf))
        return out
    return loss


def _outputs_and_grads(fn):
    """One jitted function: (outputs, final carry) and the gradients of the loss."""
    def f(params, xs, carry):
        (_, out), grads = jax.value_and_grad(
            lambda p, x, c: (_loss(fn)(p, x, c), fn(p, x, c)), argnums=(0, 1, 2),
            has_aux=True)(params, xs, carry)
        return out, grads
    return jax.jit(f)


def _compare(cell_name, plans, lengths, reverse, dtype, rtol, atol):
    cell = CELLS[cell_name]()
    params, xs, carry = _random_problem(cell, dtype)
    n = None if lengths is None else jnp.asarray(lengths)
    want = _outputs_and_grads(functools.partial(_reference, cell, lengths=n, reverse=reverse))(
        params, xs, carry)
    for plan in plans:
        got = _outputs_and_grads(functools.partial(_fast, cell, lengths=n, reverse=reverse,
                                                   plan=plan))(params, xs, carry)
        chex.assert_trees_all_equal_shapes_and_dtypes(got, want)
        chex.assert_trees_all_close(got, want, rtol=rtol, atol=atol,
                                    custom_message=f"plan {plan}")
        if lengths is not None:   # the padded outputs are exactly zero
            ys = np.asarray(got[0][0])
            for b, nb in enumerate(lengths):
                assert np.all(ys[b, nb:] == 0)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "padded"])
@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_equals_vmap_scan_float32(cell_name, lengths, reverse):
    _compare(cell_name, PLANS, lengths, reverse, jnp.float32, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_equals_vmap_scan_float64(x64, cell_name, reverse):
    """In float64 the hand-derived backward pass must equal autodiff to rounding."""
    _compare(cell_name, (PLANS[0], PLANS[2], PLANS[3]._replace(remat=True, chunk=4)),
             LENGTHS, reverse, jnp.float64, rtol=1e-10,
             atol=1e-10)


@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_default_plan_and_jit_free_call(cell_name):
    cell = CELLS[cell_name]()
    params, xs, carry = _random_problem(cell)
    got = fast.layer(cell, params, xs)                       # no carry, no jit, default plan
    want = _reference(cell, params, xs, cell.initial_carry(params, (B,)), None, False)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_under_outer_vmap(cell_name):
    """vmap over an ensemble axis (params and inputs) of the custom-VJP kernel, with grads."""
    cell = CELLS[cell_name]()
    problems = [_random_problem(cell, seed=s) for s in range(2)]
    params, xs, carry = jax.tree.map(lambda *a: jnp.stack(a), *problems)
    n = jnp.asarray(LENGTHS)

    def fast_loss(p, x, c):
        return _loss(functools.partial(_fast, cell, lengths=n, reverse=True, plan=None))(p, x, c)

    def ref_loss(p, x, c):
        return _loss(functools.partial(_reference, cell, lengths=n, reverse=True))(p, x, c)

    got = jax.jit(jax.vmap(jax.value_and_grad(fast_loss, argnums=(0, 1, 2))))(params, xs, carry)
    want = [jax.value_and_grad(ref_loss, argnums=(0, 1, 2))(*prob) for prob in problems]
    want = jax.tree.map(lambda *a: jnp.stack(a), *want)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_bfloat16_compute(cell_name):
    """dtype=bfloat16: bf16 matmuls, float32 gates, carries and weight gradients."""
    cell = CELLS[cell_name](dtype=jnp.bfloat16)
    params, xs, carry = _random_problem(cell)
    n = jnp.asarray(LENGTHS)
    ref_fn = functools.partial(_reference, cell, lengths=n, reverse=False)
    fast_fn = functools.partial(_fast, cell, lengths=n, reverse=False, plan=None)
    got, want = jax.jit(fast_fn)(params, xs, carry), ref_fn(params, xs, carry)
    chex.assert_trees_all_equal_shapes_and_dtypes(got, want)
    chex.assert_trees_all_close(got, want, rtol=2e-2, atol=2e-2)
    g_got = jax.grad(_loss(fast_fn), argnums=(0, 1, 2))(params, xs, carry)
    g_want = jax.grad(_loss(ref_fn), argnums=(0, 1, 2))(params, xs, carry)
    for leaf in jax.tree.leaves(g_got[0]):
        assert leaf.dtype == jnp.float32
    # Relative to the gradient's scale: bf16 operands carry 8 bits of mantissa.
    for a, b in zip(jax.tree.leaves(g_got), jax.tree.leaves(g_want)):
        scale = float(jnp.max(jnp.abs(b))) + 1e-6
        assert float(jnp.max(jnp.abs(a - b))) <= 5e-2 * scale


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_fast_scan_is_jr_scan_under_every_transformation(cell_name, reverse):
    """fast.scan has jr.scan's one-sequence contract: alone, under vmap (one batch kernel),
    grad of vmap, vmap of grad (per-example gradients), and vmap over params (ensembles)."""
    cell = CELLS[cell_name]()
    params, xs, carry = _random_problem(cell, batch=5)
    n = jnp.array([7, 2, 0, 3, 5])
    tol = dict(rtol=1e-5, atol=1e-5)

    def batched(scan_fn):
        def f(p):
            return jax.vmap(lambda x, c, l: scan_fn(cell, p, x, c, seq_lengths=l,
                                                    reverse=reverse))(xs, carry, n)
        return f

    ref, got = batched(jr.scan), batched(fast.scan)
    chex.assert_trees_all_close(got(params), ref(params), **tol)
    loss = lambda f: lambda p: sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(f(p)))
    chex.assert_trees_all_close(jax.jit(jax.grad(loss(got)))(params),
                                jax.grad(loss(ref))(params), **tol)
    # Under grad(vmap) the kernel runs once on the whole time-major batch [T, B, I].
    assert f"f32[{T},5,{I}]" in str(jax.make_jaxpr(jax.grad(loss(got)))(params))
    # One sequence, and its gradient.
    one = lambda s: lambda p: s(cell, p, xs[1], seq_lengths=n[1], reverse=reverse)
    chex.assert_trees_all_close(one(fast.scan)(params), one(jr.scan)(params), **tol)
    chex.assert_trees_all_close(jax.grad(loss(one(fast.scan)))(params),
                                jax.grad(loss(one(jr.scan)))(params), **tol)
    # Per-example gradients: vmap(grad).
    def per_example(s):
        g = jax.grad(lambda p, x: jnp.sum(s(cell, p, x, reverse=reverse)[0] ** 2))
        return jax.vmap(g, in_axes=(None, 0))(params, xs)
    chex.assert_trees_all_close(per_example(fast.scan), per_example(jr.scan), **tol)
    # An ensemble: params batched as well.
    ens = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a]), params)
    def ensemble(s):
        return jax.vmap(lambda q: jax.vmap(lambda x: s(cell, q, x, reverse=reverse))(xs))(ens)
    chex.assert_trees_all_close(ensemble(fast.scan), ensemble(jr.scan), **tol)


def test_supports_and_errors():
    assert fast.supports(jr.lstm(8)) and fast.supports(jr.gru(8))
    assert not fast.supports(jr.lstm(8, peephole=True))
    assert not fast.supports(jr.lstm(8, proj_size=4))
    assert not fast.supports(jr.gru(8, reset_after=False))
    assert not fast.supports(jr.simple_rnn(8))
    with pytest.raises(ValueError, match="no fast path"):
        fast.layer(jr.gru(H, reset_after=False), None, jnp.zeros((B, T, I)))
    cell = jr.lstm(H)
    params = cell.init(jax.random.PRNGKey(0), I)
    with pytest.raises(ValueError, match=r"\[B, T, input\]"):
        fast.lstm_layer(params, jnp.zeros((T, I)))
    with pytest.raises(ValueError, match="input_size=5"):
        fast.lstm_layer(params, jnp.zeros((B, T, I + 1)))
    with pytest.raises(ValueError, match=r"seq_lengths must lie in \[0, 7\]"):
        fast.lstm_layer(params, jnp.zeros((B, T, I)), seq_lengths=jnp.array([1, 2, 8]))
    with pytest.raises(TypeError, match="Python bool"):
        fast.scan(cell, params, jnp.zeros((T, I)), reverse=jnp.array(True))
    with pytest.raises(ValueError, match="no fast path"):
        fast.scan(jr.simple_rnn(H), None, jnp.zeros((T, I)))
    with pytest.raises(ValueError, match="peephole"):
        fast.lstm_layer(jr.lstm(H, peephole=True).init(jax.random.PRNGKey(0), I),
                        jnp.zeros((B, T, I)))
    with pytest.raises(ValueError, match=r"Plan.split=3 does not divide the 16 gate columns"):
        fast.lstm_layer(params, jnp.zeros((B, T, I)), plan=Plan(split=3))
    with pytest.raises(ValueError, match="Plan.split must be a positive integer"):
        fast.lstm_layer(params, jnp.zeros((B, T, I)), plan=Plan(split=0))


def test_cpu_default_plans():
    """The measured CPU defaults (docs/benchmarks.md, "Choosing the plan")."""
    from jaxrnn.fast._common import _measured_plan
    assert _measured_plan("cpu", "lstm", 32, 256, 100) == Plan(
        hoist=False, unroll=2, unroll_bwd=2, chunk=24, split=1)
    assert _measured_plan("cpu", "gru", 16, 256, 2000).split == 3     # per-gate matmuls
    assert _measured_plan("cpu", "lstm", 16, 256, 2000).split == 4
    assert _measured_plan("cpu", "lstm", 32, 256, 2000).split == 1    # batch too large
    assert _measured_plan("cpu", "gru", 16, 512, 2000).split == 1     # blocks too large
    assert _measured_plan("cpu", "gru", 1, 64, 1000) == Plan(
        hoist=False, unroll=1, unroll_bwd=1, chunk=0, split=1)
    assert _measured_plan("gpu", "lstm", 32, 256, 100) == Plan(hoist=True)


def test_plan_benchmark_runs(capsys):
    """experiments.bench.plans (where the CPU defaults come from) runs end to end."""
    from experiments.bench import plans
    assert plans.main(["lstm:2,5,3,4", "--vary", "split=1,2", "--rounds", "1",
                       "--matmul", "2,4,8"]) == 0
    out = capsys.readouterr().out
    assert "split=2" in out and "GFLOP/s" in out
