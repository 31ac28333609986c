"""The time loop's contract: padding, reversal, the parallel path, and clear errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from tests.cases import CASES, IDS, random_carry, random_params

T = 7
PICK = [c for c in CASES if c.id in ("simple_tanh", "lstm_peephole", "gru", "min_lstm", "conv_lstm_1d")]
PICK_IDS = [c.id for c in PICK]


def _setup(case, seed=0):
    cell = case.cell()
    params = random_params(cell, case.input_size, seed=seed)
    rng = np.random.default_rng(seed + 10)
    xs = jnp.asarray(rng.normal(size=case.xs_shape(T)), jnp.float32)
    carry = random_carry(cell, params, xs[0], seed=seed)
    return cell, params, xs, carry


@pytest.mark.parametrize("case", PICK, ids=PICK_IDS)
@pytest.mark.parametrize("n", [0, 1, 4, T])
def test_seq_lengths_stop_the_carry_and_zero_the_outputs(case, n):
    cell, params, xs, carry = _setup(case)
    ys, final = jr.scan(cell, params, xs, carry, seq_lengths=n)
    if n:
        ys_n, final_n = jr.scan(cell, params, xs[:n], carry)
        chex.assert_trees_all_close(ys[:n], ys_n, rtol=1e-6, atol=1e-6)
    else:
        final_n = carry
    chex.assert_trees_all_close(final, final_n, rtol=1e-6, atol=1e-6)
    assert not np.asarray(ys[n:]).any()


@pytest.mark.parametrize("case", PICK, ids=PICK_IDS)
@pytest.mark.parametrize("n", [None, 0, 1, 4, T])
def test_reverse_reads_the_valid_part_backwards(case, n):
    cell, params, xs, carry = _setup(case)
    ys, final = jr.scan(cell, params, xs, carry, seq_lengths=n, reverse=True)
    m = T if n is None else n
    if m:
        ys_r, final_r = jr.scan(cell, params, xs[:m][::-1], carry)
        chex.assert_trees_all_close(ys[:m], ys_r[::-1], rtol=1e-6, atol=1e-6)
    else:
        final_r = carry
    chex.assert_trees_all_close(final, final_r, rtol=1e-6, atol=1e-6)
    assert not np.asarray(ys[m:]).any()


def test_padding_values_never_leak():
    cell, params, xs, carry = _setup(CASES[2])
    a = jr.scan(cell, params, xs, carry, seq_lengths=3, reverse=True)
    b = jr.scan(cell, params, xs.at[3:].set(1e6), carry, seq_lengths=3, reverse=True)
    chex.assert_trees_all_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("unroll", [2, 3, T])
def test_unroll_gives_the_same_numbers(unroll):
    cell, params, xs, carry = _setup(CASES[2])
    a = jr.scan(cell, params, xs, carry, seq_lengths=5)
    b = jr.scan(cell, params, xs, carry, seq_lengths=5, unroll=unroll)
    chex.assert_trees_all_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", [c for c in CASES if c.id in ("min_gru", "min_lstm")],
                         ids=["min_gru", "min_lstm"])
@pytest.mark.parametrize("n,reverse", [(None, False), (5, False), (5, True), (0, True)])
def test_parallel_scan_equals_sequential_scan(case, n, reverse, x64):
    cell = case.cell(param_dtype=jnp.float64)
    params = random_params(cell, case.input_size, dtype=jnp.float64)
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=case.xs_shape(T)) * 2.0)
    carry = random_carry(cell, params, xs[0])

    def loss(params, xs, carry, parallel):
        ys, final = jr.scan(cell, params, xs, carry, seq_lengths=n, reverse=reverse, parallel=parallel)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.cos(final.h)), (ys, final)

    (l_seq, out_seq), g_seq = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry, False)
    (l_par, out_par), g_par = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry, True)
    chex.assert_trees_all_close(out_par, out_seq, rtol=1e-10, atol=1e-10)
    chex.assert_trees_all_close(g_par, g_seq, rtol=1e-9, atol=1e-10)
    chex.assert_tree_all_finite(g_par)


def test_parallel_scan_float32_long_sequence_is_stable():
    cell = jr.min_gru(16)
    params = random_params(cell, 8)
    xs = jax.random.normal(jax.random.PRNGKey(0), (2048, 8)) * 3
    ys_seq, c_seq = jr.scan(cell, params, xs)
    ys_par, c_par = jr.scan(cell, params, xs, parallel=True)
    chex.assert_tree_all_finite((ys_par, c_par))
    np.testing.assert_allclose(ys_par, ys_seq, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------- errors

def test_error_input_size_mismatch():
    cell = jr.lstm(4)
    params = cell.init(jax.random.PRNGKey(0), 3)
    with pytest.raises(ValueError, match="5 features.*input_size=3"):
        jr.scan(cell, params, jnp.zeros((6, 5)))
    with pytest.raises(ValueError, match="input_size=3"):
        cell.step(params, cell.initial_carry(params), jnp.zeros(5))


def test_error_wrong_rank_mentions_vmap():
    cell = jr.gru(4)
    params = cell.init(jax.random.PRNGKey(0), 3)
    with pytest.raises(ValueError, match=r"rank 2.*jax.vmap"):
        jr.scan(cell, params, jnp.zeros((2, 6, 3)))
    with pytest.raises(ValueError, match="rank 2"):
        jr.scan(cell, params, jnp.zeros((3,)))


@pytest.mark.parametrize("lengths,match", [
    (jnp.array([3, 4]), "shape"),
    (9, r"\[0, 6\]"),
    (-1, r"\[0, 6\]"),
    (2.5, "integers"),
])
def test_error_bad_seq_lengths(lengths, match):
    cell = jr.simple_rnn(4)
    params = cell.init(jax.random.PRNGKey(0), 3)
    with pytest.raises((ValueError, TypeError), match=match):
        jr.scan(cell, params, jnp.zeros((6, 3)), seq_lengths=lengths)


def test_check_seq_lengths_for_a_batch():
    assert jr.check_seq_lengths(np.array([1, 6]), 6, batch_shape=(2,)).dtype == jnp.int32
    with pytest.raises(ValueError, match=r"\[0, 6\]"):
        jr.check_seq_lengths(np.array([1, 7]), 6, batch_shape=(2,))


def test_error_mismatched_carry():
    cell = jr.lstm(4)
    params = cell.init(jax.random.PRNGKey(0), 3)
    xs = jnp.zeros((6, 3))
    with pytest.raises(TypeError, match="carry must be LSTMCarry.*got GRUCarry"):
        jr.scan(cell, params, xs, jr.GRUCarry(jnp.zeros(4)))
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        jr.scan(cell, params, xs, jr.LSTMCarry(jnp.zeros(5), jnp.zeros(4)))
    with pytest.raises(TypeError, match="dtype"):
        jr.scan(cell, params, xs, jr.LSTMCarry(jnp.zeros(4, jnp.bfloat16), jnp.zeros(4)))


def test_error_bad_options():
    with pytest.raises(ValueError, match="nonlinearity"):
        jr.simple_rnn(4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="proj_size"):
        jr.lstm(4, proj_size=4)
    with pytest.raises(ValueError, match="hidden_size"):
        jr.gru(0)
    with pytest.raises(ValueError, match="parallel"):
        jr.scan(jr.lstm(4), jr.lstm(4).init(jax.random.PRNGKey(0), 3), jnp.zeros((5, 3)), parallel=True)
    with pytest.raises(ValueError, match="spatial_dims"):
        jr.conv_lstm(4, 3, spatial_dims=4)
