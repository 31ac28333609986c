"""Every cell against its float64 NumPy reference, and the properties all cells share."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn as jr
from tests.cases import CASES, IDS, random_carry, random_params, to_numpy

T = 6


def _inputs(case, seed=3, T=T, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=case.xs_shape(T)), dtype)


def _reference(case, cell, params, xs, carry):
    ys, final = case.reference(to_numpy(params), np.asarray(xs, np.float64),
                               tuple(np.asarray(c, np.float64) for c in carry))
    return ys, final


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_equals_float64_reference(case, x64):
    cell = case.cell(param_dtype=jnp.float64)
    params = random_params(cell, case.input_size, dtype=jnp.float64)
    xs = _inputs(case, dtype=jnp.float64)
    carry = random_carry(cell, params, xs[0])
    ys, final = jr.scan(cell, params, xs, carry)
    ref_ys, ref_final = _reference(case, cell, params, xs, carry)
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-12, atol=1e-12)
    for got, want in zip(final, ref_final):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float32_within_tolerance_of_float64(case):
    cell = case.cell()
    params = random_params(cell, case.input_size)
    xs = _inputs(case)
    carry = random_carry(cell, params, xs[0])
    ys, final = jr.scan(cell, params, xs, carry)
    assert ys.dtype == jnp.float32
    ref_ys, ref_final = _reference(case, cell, params, xs, carry)
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-5, atol=2e-6)
    for got, want in zip(final, ref_final):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bfloat16_compute_keeps_float32_carry(case):
    """bfloat16 inputs and matmuls, float32 gates and carries: within ~1e-2 of float64."""
    cell = case.cell(dtype=jnp.bfloat16)
    params = random_params(cell, case.input_size, scale=0.3)
    xs = _inputs(case, dtype=jnp.bfloat16)
    ys, final = jr.scan(cell, params, xs)
    for leaf in jax.tree.leaves(final):
        assert leaf.dtype == jnp.float32
    assert not np.isnan(np.asarray(ys)).any()
    zero = cell.carry_for_input(params, xs[0])
    ref_ys, _ = _reference(case, cell, params, np.asarray(xs, np.float32), zero)
    np.testing.assert_allclose(np.asarray(ys, np.float64), ref_ys, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("mix", ["bf16_params_f32_compute", "f32_params_bf16_compute"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_mixed_bfloat16_float32_under_strict_promotion(case, mix):
    """Mixed precision casts explicitly: float32 inputs with bfloat16 params (the carry is
    bfloat16, the gates float32) or with a bfloat16 compute dtype, forward and backward,
    under the suite's strict dtype and rank promotion (tests/conftest.py)."""
    if mix == "bf16_params_f32_compute":
        cell = case.cell(param_dtype=jnp.bfloat16, dtype=jnp.float32)
        params = random_params(cell, case.input_size, scale=0.3, dtype=jnp.bfloat16)
        carry_dtype = jnp.bfloat16
    else:
        cell = case.cell(dtype=jnp.bfloat16)
        params = random_params(cell, case.input_size, scale=0.3)
        carry_dtype = jnp.float32
    xs = _inputs(case)
    ref_ys, _ = _reference(case, cell, params, xs, cell.carry_for_input(params, xs[0]))
    for method in ("fused", "reference"):
        def loss(p):
            ys, final = jr.scan(cell, p, xs, seq_lengths=T - 1, method=method)
            return jnp.sum(ys.astype(jnp.float32)), (ys, final)

        (_, (ys, final)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        assert ys.dtype == carry_dtype
        assert all(leaf.dtype == carry_dtype for leaf in jax.tree.leaves(final))
        np.testing.assert_allclose(np.asarray(ys[:T - 1], np.float64), ref_ys[:T - 1],
                                   rtol=3e-2, atol=3e-2)
        assert jax.tree.map(lambda g: g.dtype, grads) == jax.tree.map(lambda p: p.dtype, params)
        assert all(np.isfinite(np.asarray(g, np.float32)).all() for g in jax.tree.leaves(grads))


def test_mismatched_operands_without_compute_dtype_are_refused_under_strict_promotion():
    """With ``dtype=None`` a cell promotes its matmul's operands the way ``jnp`` does, so under
    strict promotion bfloat16 inputs against float32 params are refused, not silently widened;
    ``dtype=`` casts them explicitly."""
    cell = jr.lstm(4)
    params = cell.init(jax.random.PRNGKey(0), 3)
    xs = jnp.ones((5, 3), jnp.bfloat16)
    with pytest.raises(jax.dtypes.TypePromotionError):
        jr.scan(cell, params, xs)
    ys, _ = jr.scan(jr.lstm(4, dtype=jnp.bfloat16), params, xs)
    assert ys.dtype == jnp.float32
    with jax.numpy_dtype_promotion("standard"):   # the non-strict behaviour: promoted
        ys, _ = jr.scan(cell, params, xs)
    assert ys.dtype == jnp.float32


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_step_is_project_then_recur(case):
    cell = case.cell()
    params = random_params(cell, case.input_size)
    x = _inputs(case)[0]
    carry = random_carry(cell, params, x)
    a = cell.step(params, carry, x)
    b = cell.recur(params, carry, cell.project(params, x))
    chex.assert_trees_all_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_scan_equals_python_loop(case):
    cell = case.cell()
    params = random_params(cell, case.input_size)
    xs = _inputs(case)
    carry = random_carry(cell, params, xs[0])
    ys, final = jr.scan(cell, params, xs, carry)
    c, outs = carry, []
    for t in range(xs.shape[0]):
        c = cell.step(params, c, xs[t])
        outs.append(cell.output(c))
    chex.assert_trees_all_close(ys, jnp.stack(outs), rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close(final, c, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vmap_equals_loop_over_batch(case):
    cell = case.cell()
    params = random_params(cell, case.input_size)
    rng = np.random.default_rng(4)
    xs = jnp.asarray(rng.normal(size=(3,) + case.xs_shape(T)), jnp.float32)
    lengths = jnp.array([T, 2, 0])
    ys, final = jax.vmap(lambda x, n: jr.scan(cell, params, x, seq_lengths=n))(xs, lengths)
    one = jax.jit(lambda x, n: jr.scan(cell, params, x, seq_lengths=n))
    for b in range(3):
        y_b, c_b = one(xs[b], lengths[b])
        chex.assert_trees_all_close(ys[b], y_b, rtol=1e-6, atol=1e-6)
        chex.assert_trees_all_close(jax.tree.map(lambda a: a[b], final), c_b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_match_finite_differences(case, x64):
    cell = case.cell(param_dtype=jnp.float64)
    params = random_params(cell, case.input_size, scale=0.3, dtype=jnp.float64)
    xs = _inputs(case, T=4, dtype=jnp.float64)
    carry = random_carry(cell, params, xs[0], scale=0.3)
    if case.id == "simple_relu":  # keep every pre-activation away from relu's kink
        params = params._replace(b=jnp.abs(params.b) + 2.0)
        carry = jax.tree.map(jnp.abs, carry)

    def f(params, xs, carry):
        ys, final = jr.scan(cell, params, xs, carry, seq_lengths=3, reverse=True)
        return jnp.sum(ys * jnp.cos(jnp.arange(ys.size).reshape(ys.shape))) + sum(
            jnp.sum(jnp.sin(l)) for l in jax.tree.leaves(final))

    check_grads(jax.jit(f), (params, xs, carry), order=1, modes=("rev",), eps=1e-6, atol=1e-6,
                rtol=1e-6)


@pytest.mark.parametrize("case", CASES[:3] + CASES[8:9], ids=IDS[:3] + IDS[8:9])
def test_second_call_does_not_retrace(case):
    cell = case.cell()
    params = random_params(cell, case.input_size)
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(params, xs, n):
        return jr.scan(cell, params, xs, seq_lengths=n, reverse=True)

    run(params, _inputs(case, seed=1), 3)
    run(params, _inputs(case, seed=2), 5)  # new values, same shapes: no new trace


def test_initial_carry_is_zeros_with_batch_shape():
    cell = jr.lstm(5, proj_size=3)
    params = cell.init(jax.random.PRNGKey(0), 2)
    carry = cell.initial_carry(params, batch_shape=(7,))
    assert isinstance(carry, jr.LSTMCarry)
    assert carry.h.shape == (7, 3) and carry.c.shape == (7, 5)
    assert not np.asarray(carry.h).any() and not np.asarray(carry.c).any()


def test_default_init_forget_bias_and_orthogonal_recurrence():
    cell = jr.lstm(8)
    p = cell.init(jax.random.PRNGKey(0), 3)
    np.testing.assert_array_equal(p.b[8:16], np.ones(8))          # forget gate
    np.testing.assert_array_equal(p.b[:8], np.zeros(8))
    for k in range(4):                                              # each gate's U orthogonal
        u = np.asarray(p.w_hh[:, 8 * k:8 * (k + 1)])
        np.testing.assert_allclose(u.T @ u, np.eye(8), atol=1e-5)
    p2 = jr.lstm(8, forget_bias=2.5).init(jax.random.PRNGKey(0), 3)
    np.testing.assert_array_equal(p2.b[8:16], np.full(8, 2.5))


@pytest.mark.parametrize("rows,cols,blocks", [(6, 6, 4), (9, 4, 3), (3, 7, 2), (300, 300, 2),
                                               (130, 260, 1)])
def test_orthogonal_blocks_equal_float64_qr_of_the_same_draws(rows, cols, blocks):
    from jaxrnn.cells import base
    key = jax.random.PRNGKey(3)
    got = np.asarray(base.orthogonal_blocks(key, rows, cols, blocks, jnp.float32), np.float64)
    assert got.shape == (rows, blocks * cols) and np.isfinite(got).all()
    # reference: NumPy float64 QR of the same Gaussian draws, signs of diag(R) folded in
    # (300 and 260 columns span three panels: block projections and reorthogonalization)
    a = np.asarray(jax.random.normal(key, (blocks, max(rows, cols), min(rows, cols))), np.float64)
    for b in range(blocks):
        q, r = np.linalg.qr(a[b])
        q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
        ref = q if rows >= cols else q.T
        blk = got[:, b * cols:(b + 1) * cols]
        np.testing.assert_allclose(blk, ref, atol=2e-5)
        m = blk.T @ blk if rows >= cols else blk @ blk.T
        np.testing.assert_allclose(m, np.eye(min(rows, cols)), atol=2e-6)


@pytest.mark.parametrize("make", [lambda: jr.bidirectional(jr.lstm(8)),
                                  lambda: jr.gru(8), lambda: jr.simple_rnn(8)])
def test_init_makes_no_lapack_call(make):
    # jaxlib 0.10's CPU LAPACK kernels deadlock the intra-op pool when as many of them run at
    # once as it has threads (seen: a 2-layer BiLSTM tagger's init on 2 cores, every worker
    # blocked in ParallelBatchMap). Initialization orthonormalizes in plain JAX instead.
    layer = make()
    text = jax.jit(lambda k: layer.init(k, 4)).lower(jax.random.PRNGKey(0)).as_text()
    assert "custom_call" not in text
    assert "while" in text  # the Gram-Schmidt loop is there


def test_repeated_multi_layer_init_never_hangs():
    # The deadlock in numbers: with one batched QR per cell, running a program that
    # initializes three BiLSTMs 300 times hung within two minutes on this project's 2-core
    # machine; with the Gram-Schmidt init it takes seconds. A subprocess, so a hang fails the
    # test by timeout instead of stopping the suite.
    import subprocess
    import sys
    code = """if True:
        import jax, jaxrnn as jr
        layers = [jr.bidirectional(jr.lstm(64)) for _ in range(3)]
        f = jax.jit(lambda k: [l.init(jax.random.fold_in(k, i), 32) for i, l in enumerate(layers)])
        for i in range(300):
            jax.block_until_ready(f(jax.random.PRNGKey(i)))
        print("done")
    """
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stderr[-2000:]


def test_chrono_initialization():
    t_max = 100.0
    p = jr.lstm(64, chrono_t_max=t_max).init(jax.random.PRNGKey(0), 3)
    b_i, b_f = np.asarray(p.b[:64]), np.asarray(p.b[64:128])
    assert (b_f >= 0).all() and (b_f <= np.log(t_max - 1) + 1e-6).all()
    np.testing.assert_array_equal(b_i, -b_f)
    assert b_f.std() > 0.3  # spread over [0, log(T_max - 1)], not a constant


def test_param_dtype_is_respected():
    p = jr.gru(4, param_dtype=jnp.bfloat16).init(jax.random.PRNGKey(0), 3)
    assert all(l.dtype == jnp.bfloat16 for l in jax.tree.leaves(p))


# ------------------------------------------------------------------ the write-ups' identities

def test_lstm_with_open_gates_is_a_double_tanh_rnn(x64):
    """Forget gate 0, input and output gates 1: h_t = tanh(tanh(W x_t + U h_{t-1} + b))."""
    H, I = 4, 3
    cell = jr.lstm(H, param_dtype=jnp.float64)
    rng = np.random.default_rng(0)
    W, U, b = rng.normal(size=(I, H)), rng.normal(size=(H, H)) * 0.5, rng.normal(size=H)
    w_ih = np.zeros((I, 4 * H)); w_hh = np.zeros((H, 4 * H))
    w_ih[:, 2 * H:3 * H], w_hh[:, 2 * H:3 * H] = W, U
    bias = np.concatenate([np.full(H, 1e4), np.full(H, -1e4), b, np.full(H, 1e4)])
    params = jr.LSTMParams(jnp.asarray(w_ih), jnp.asarray(w_hh), jnp.asarray(bias))
    xs = rng.normal(size=(8, I))
    ys, _ = jr.scan(cell, params, jnp.asarray(xs))
    h, want = np.zeros(H), []
    for x in xs:
        h = np.tanh(np.tanh(x @ W + h @ U + b))
        want.append(h)
    np.testing.assert_allclose(ys, np.stack(want), rtol=1e-12, atol=1e-12)


def test_gru_with_reset_one_and_update_zero_is_a_tanh_rnn(x64):
    H, I = 4, 3
    rng = np.random.default_rng(1)
    W, U = rng.normal(size=(I, H)), rng.normal(size=(H, H)) * 0.5
    b_in, b_hn = rng.normal(size=H), rng.normal(size=H)
    w_ih = np.zeros((I, 3 * H)); w_hh = np.zeros((H, 3 * H))
    w_ih[:, 2 * H:], w_hh[:, 2 * H:] = W, U
    b_ih = np.concatenate([np.full(H, 1e4), np.full(H, -1e4), b_in])
    b_hh = np.concatenate([np.zeros(H), np.zeros(H), b_hn])
    gru_p = jr.GRUParams(*(jnp.asarray(a) for a in (w_ih, w_hh, b_ih, b_hh)))
    rnn_p = jr.SimpleRNNParams(jnp.asarray(W), jnp.asarray(U), jnp.asarray(b_in + b_hn))
    xs = jnp.asarray(rng.normal(size=(8, I)))
    for reset_after in (True, False):
        ys_gru, _ = jr.scan(jr.gru(H, reset_after=reset_after, param_dtype=jnp.float64), gru_p, xs)
        ys_rnn, _ = jr.scan(jr.simple_rnn(H, param_dtype=jnp.float64), rnn_p, xs)
        np.testing.assert_allclose(ys_gru, ys_rnn, rtol=1e-12, atol=1e-12)
