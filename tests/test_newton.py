"""method="newton" (jaxrnn.engine.newton): every step at once by Newton iterations.

At convergence the trajectory is the sequential one: outputs and final carries are compared
with the float64 NumPy reference of tests/_reference.py (independent of every JAX loop), and
gradients with JAX's autodiff of the plain ``lax.scan`` (``method="reference"``), over a padded
batch (lengths T, in between, 1 and 0) under ``vmap``, forward and reversed, from a random
initial carry, for every cell with a dense state, with both Jacobians, in float64 (1e-10) and
float32 (1e-5). Also: the layers' regularizers, the ELK step, warm starts, and the reports of
a solve that does not converge (info, warning, NaN), forward and backward.
"""

import warnings
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from jaxrnn.engine import newton as newton_lib
from tests.cases import CASES, random_carry, random_params, to_numpy
from tests.cases import weighted_loss as _loss

ROOT = Path(__file__).resolve().parents[1]
T = 9
LENGTHS = np.array([T, 4, 1, 0])
DENSE = [c for c in CASES if not c.spatial]
DENSE_IDS = [c.id for c in DENSE]
# DEER's full Jacobian: one cell of each kind of carry and recurrent map (the diagonal runs
# every cell)
FULL = [c for c in DENSE if c.id in ("lstm", "simple_tanh", "lstm_proj", "gru_cho")]


def _problem(case, dtype, seed=0):
    cell = case.cell(param_dtype=dtype)
    params = random_params(cell, case.input_size, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.normal(size=(len(LENGTHS),) + case.xs_shape(T)), dtype)
    carry = jax.vmap(lambda x: random_carry(cell, params, x[0]))(xs)
    return cell, params, xs, carry


def _run(cell, method, reverse, newton=None):
    def run(params, xs, carry):
        kw = {} if newton is None else dict(newton=newton)
        return jax.vmap(lambda x, c, n: jr.scan(cell, params, x, c, seq_lengths=n, reverse=reverse,
                                                 method=method, **kw))(xs, carry,
                                                                       jnp.asarray(LENGTHS))
    return run


def _numpy_reference(case, params, xs, carry, reverse):
    """The float64 NumPy loop, one sequence at a time, padding and reversal by hand."""
    p = to_numpy(params)
    ys_all, carries = [], []
    for b, n in enumerate(LENGTHS):
        x = np.asarray(xs[b], np.float64)[:n]
        c0 = tuple(np.asarray(leaf[b], np.float64) for leaf in jax.tree.leaves(carry))
        if reverse:
            x = x[::-1]
        if n:
            ys, c = case.reference(p, x, c0)
        else:
            ys, c = np.zeros((0, jax.tree.leaves(carry)[0].shape[-1])), c0
        ys = np.asarray(ys)
        if reverse:
            ys = ys[::-1]
        out = np.zeros((T, ys.shape[-1]))
        out[:n] = ys
        ys_all.append(out)
        carries.append(c)
    return np.stack(ys_all), [np.stack([c[k] for c in carries]) for k in range(len(carries[0]))]


def _both_directions(cell, method, newton=None):
    """One compiled function: outputs and gradients of the loss, forward and reversed."""
    def f(params, xs, carry):
        out = {}
        for reverse in (False, True):
            run = _run(cell, method, reverse, newton)
            out[reverse] = jax.value_and_grad(lambda *a: _loss(*run(*a)), argnums=(0, 1, 2),
                                              has_aux=False)(params, xs, carry), run(params, xs, carry)
        return out
    return jax.jit(f)


def _check(case, dtype, jacobian, tol, damping=0.0):
    cell, params, xs, carry = _problem(case, dtype)
    opts = jr.NewtonOptions(jacobian=jacobian, damping=damping, max_iters=200)
    got = _both_directions(cell, "newton", opts)(params, xs, carry)
    want = _both_directions(cell, "reference")(params, xs, carry)
    for reverse in (False, True):
        (_, grads), (ys, c) = got[reverse]
        ys_ref, c_ref = _numpy_reference(case, params, xs, carry, reverse)
        np.testing.assert_allclose(np.asarray(ys, np.float64), ys_ref, rtol=tol, atol=tol)
        for leaf, ref in zip(jax.tree.leaves(c), c_ref):
            np.testing.assert_allclose(np.asarray(leaf, np.float64), ref, rtol=tol, atol=tol)
        chex.assert_tree_all_finite(grads)
        chex.assert_trees_all_close(grads, want[reverse][0][1], rtol=tol, atol=tol)
        # padding: no gradient reaches a padded input
        assert not np.asarray(grads[1][3]).any() and not np.asarray(grads[1][1, 4:]).any()


@pytest.mark.parametrize("case", DENSE, ids=DENSE_IDS)
def test_diagonal_equals_sequential_float64(case, x64):
    _check(case, jnp.float64, "diagonal", 1e-10)


F32 = [c for c in DENSE if c.id in ("lstm", "gru")]


@pytest.mark.parametrize("case", F32, ids=[c.id for c in F32])
def test_diagonal_equals_sequential_float32(case):
    _check(case, jnp.float32, "diagonal", 1e-5)


@pytest.mark.parametrize("case", FULL, ids=[c.id for c in FULL])
def test_full_jacobian_equals_sequential_float64(case, x64):
    _check(case, jnp.float64, "full", 1e-10)


@pytest.mark.parametrize("case", FULL[:1], ids=[c.id for c in FULL[:1]])
def test_full_jacobian_equals_sequential_float32(case):
    _check(case, jnp.float32, "full", 1e-5)


@pytest.mark.parametrize("case", [c for c in DENSE if c.id == "lstm_peephole"],
                         ids=["lstm_peephole"])
def test_damped_step_converges_to_the_sequential_answer(case, x64):
    _check(case, jnp.float64, "diagonal", 1e-10, damping=0.5)


def test_full_newton_converges_quadratically_and_the_diagonal_linearly(x64):
    """DEER's exact Jacobian needs a handful of iterations; the diagonal more, and no more than
    T (each iteration leaves one more step exact)."""
    cell = jr.gru(8, param_dtype=jnp.float64)
    params = cell.init(jax.random.PRNGKey(0), 3)
    xs = jax.random.normal(jax.random.PRNGKey(1), (200, 3), jnp.float64)
    iters = {}
    for jac in ("full", "diagonal"):
        _, _, info = jr.newton_scan(cell, params, xs, options=dict(jacobian=jac))
        assert bool(info.converged) and float(info.residual) <= 1e-12
        iters[jac] = int(info.iterations)
    assert iters["full"] <= 8 < iters["diagonal"] <= 200


def test_layers_with_every_regularizer_equal_the_reference():
    """Bidirectional layer (directions vmapped, the reverse one traced), zoneout masks,
    recurrent dropout and input dropout drawn from one key: the same numbers and gradients."""
    cell = jr.gru(6)
    kw = dict(zoneout=0.2, recurrent_dropout=0.1, input_dropout=0.1)
    newton, ref = (jr.bidirectional(cell, method=m, **kw) for m in ("newton", "reference"))
    params = newton.init(jax.random.PRNGKey(0), 3)
    xs = jax.random.normal(jax.random.PRNGKey(1), (2, 12, 3))
    lengths = jnp.array([12, 5])
    key = jax.random.PRNGKey(2)

    def loss(layer, p):
        ys, carry = jax.vmap(lambda x, n: layer.apply(p, x, seq_lengths=n, key=key))(xs, lengths)
        return _loss(ys, carry)

    got = jax.jit(jax.value_and_grad(lambda p: loss(newton, p)))(params)
    want = jax.value_and_grad(lambda p: loss(ref, p))(params)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)
    # evaluation (zoneout's expectation, no key)
    a = newton.apply(params, xs[0])
    b = ref.apply(params, xs[0])
    chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-5)


def test_warm_start_from_the_solution_takes_no_iteration():
    cell = jr.gru(8)
    params = cell.init(jax.random.PRNGKey(0), 3)
    xs = jax.random.normal(jax.random.PRNGKey(1), (50, 3))
    for reverse, n in ((False, None), (True, 31)):
        ys, carry, info = jr.newton_scan(cell, params, xs, seq_lengths=n, reverse=reverse)
        assert int(info.iterations) > 2
        ys2, carry2, info2 = jr.newton_scan(cell, params, xs, seq_lengths=n, reverse=reverse,
                                            init=info.states)
        assert int(info2.iterations) == 0 and bool(info2.converged)
        chex.assert_trees_all_close((ys2, carry2), (ys, carry), rtol=0, atol=0)
        ys_seq, _ = jr.scan(cell, params, xs, seq_lengths=n, reverse=reverse)
        np.testing.assert_allclose(ys, ys_seq, rtol=1e-5, atol=1e-5)


def _long_problem():
    cell = jr.gru(8)
    params = cell.init(jax.random.PRNGKey(0), 3)
    xs = jax.random.normal(jax.random.PRNGKey(1), (100, 3))
    return cell, params, xs


def test_a_solve_that_does_not_converge_says_so():
    cell, params, xs = _long_problem()
    ys, _, info = jr.newton_scan(cell, params, xs, options=dict(max_iters=2, on_failure="ignore"))
    assert not bool(info.converged) and int(info.iterations) == 2
    assert float(info.residual) > 1e-6
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = jax.jit(lambda x: jr.scan(cell, params, x, method="newton",
                                        newton=dict(max_iters=2)))(xs)
        jax.block_until_ready(out)
    messages = [str(w.message) for w in caught if w.category is newton_lib.NewtonConvergenceWarning]
    assert messages and "forward solve did not converge in max_iters=2" in messages[0]
    ys_nan = jr.scan(cell, params, xs, method="newton",
                     newton=dict(max_iters=2, on_failure="nan"))[0]
    assert np.isnan(np.asarray(ys_nan)).all()


def test_an_adjoint_that_does_not_converge_says_so():
    """The forward solve converges (warm start), the adjoint's iterations are capped."""
    cell, params, xs = _long_problem()
    _, _, info = jr.newton_scan(cell, params, xs)
    opts = dict(max_iters=3)

    def loss(p):
        return jnp.sum(jr.newton_scan(cell, p, xs, options=opts, init=info.states)[0] ** 2)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = jax.jit(jax.grad(loss))(params)
        jax.block_until_ready(g)
    messages = [str(w.message) for w in caught if w.category is newton_lib.NewtonConvergenceWarning]
    assert any("backward (adjoint) solve did not converge" in m for m in messages)
    g_nan = jax.grad(lambda p: jnp.sum(jr.newton_scan(
        cell, p, xs, options=dict(opts, on_failure="nan"), init=info.states)[0] ** 2))(params)
    assert np.isnan(np.asarray(g_nan.w_hh)).all()


def test_overflowing_iterates_are_never_reported_converged():
    """Large recurrent weights: the linearized recurrence of undamped Newton overflows (inf,
    then NaN). The residual of such an iterate is inf, never 'converged' (a NaN compares false
    both ways); the ELK step keeps every iterate finite."""
    cell = jr.lstm(16, layer_norm=True)
    params = cell.init(jax.random.PRNGKey(0), 8)
    xs = jax.random.normal(jax.random.PRNGKey(1), (300, 8))
    _, _, plain = jr.newton_scan(cell, params, xs, options=dict(max_iters=50, on_failure="ignore"))
    assert not bool(plain.converged) and np.isinf(float(plain.residual))
    _, _, damped = jr.newton_scan(cell, params, xs,
                                  options=dict(max_iters=50, damping=0.1, on_failure="ignore"))
    assert np.isfinite(float(damped.residual))
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(damped.states))


def test_damped_tridiagonal_step_minimizes_its_objective(x64):
    """The ELK step against a dense least-squares solve of the same objective."""
    rng = np.random.default_rng(0)
    Tn, D, lam = 6, 3, 0.7
    a = rng.normal(size=(Tn, D))
    r = rng.normal(size=(Tn, D))
    d = np.asarray(newton_lib._damped_delta(jnp.asarray(a), jnp.asarray(r), lam))
    for k in range(D):
        # rows: r_t + d_t - a_t d_{t-1} (t >= 1), then sqrt(lam) d_t
        M = np.eye(Tn)
        for t in range(1, Tn):
            M[t, t - 1] = -a[t, k]
        A = np.vstack([M, np.sqrt(lam) * np.eye(Tn)])
        b = np.concatenate([-r[:, k], np.zeros(Tn)])
        want = np.linalg.lstsq(A, b, rcond=None)[0]
        np.testing.assert_allclose(d[:, k], want, rtol=1e-10, atol=1e-12)


def test_the_trainer_trains_with_newton_as_with_the_sequential_method(tmp_path, monkeypatch):
    """The adding experiment through the runner, ``model.method=newton``: the same losses as
    the default fused method, step for step (to the solver's tolerance); a bad option is a
    config error before training."""
    from jaxrnn.train import ConfigError, load_config, read_metrics, train_and_evaluate
    monkeypatch.chdir(ROOT)
    sets = ["train.steps=20", "train.eval_every=20", "train.checkpoint_every=20",
            "train.log_every=5", "model.cell=gru", "data.seq_len=30"]
    losses = {}
    for method in ("fused", "newton"):
        wd = tmp_path / method
        train_and_evaluate(load_config(str(ROOT / "configs/adding_tiny.yaml"),
                                       sets + [f"model.method={method}"]), wd)
        losses[method] = [r["loss"] for r in read_metrics(wd)]
    assert len(losses["newton"]) == len(losses["fused"]) == 5
    np.testing.assert_allclose(losses["newton"], losses["fused"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match=r"model.newton: options apply to model.method=newton"):
        train_and_evaluate(load_config(str(ROOT / "configs/adding_tiny.yaml"), sets + [
            "model.newton={max_iters: 5}"]), tmp_path / "bad")
    assert not (tmp_path / "bad" / "checkpoints").exists()
