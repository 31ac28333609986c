"""jaxrnn.analysis: dL/dh_t against an independent Python-loop derivation, and its physics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn as jr
from jaxrnn import analysis

T, I, H = 12, 3, 5


def _xs(seed=0, t=T):
    return jax.random.normal(jax.random.PRNGKey(seed), (t, I))


def _loop_carry_grads(cells, params, xs, loss_fn):
    """dL/d carry_t for every t by a plain Python loop (no scan): a perturbation added to the
    carry of every step, differentiated at zero. Returns a list over t."""
    single = isinstance(cells, jr.Cell)
    cells = [cells] if single else list(cells)
    params = [params] if single else list(params)

    def zeros():
        out, h = [], xs[0]
        for c, p in zip(cells, params):
            out.append(jax.tree.map(jnp.zeros_like, c.carry_for_input(p, h)))
            h = jnp.zeros(c.output_size)
        return out

    def total(deltas):
        carries, ys = zeros(), []
        for s in range(xs.shape[0]):
            h = xs[s]
            for k, (c, p) in enumerate(zip(cells, params)):
                carries[k] = jax.tree.map(jnp.add, c.step(p, carries[k], h), deltas[s][k])
                h = c.output(carries[k])
            ys.append(h)
        return loss_fn(jnp.stack(ys))

    g = jax.jit(jax.grad(total))([zeros() for _ in range(xs.shape[0])])
    return [gt[0] if single else tuple(gt) for gt in g]


CELLS = {
    "simple_rnn": lambda: jr.simple_rnn(H),
    "lstm": lambda: jr.lstm(H),
    "gru": lambda: jr.gru(H),
    "min_gru": lambda: jr.min_gru(H),
}


def _loss_all_steps(w):
    return lambda ys: jnp.sum(jnp.tanh(ys @ w) ** 2) / ys.shape[0]


@pytest.mark.parametrize("name", sorted(CELLS))
def test_cell_gradients_equal_python_loop(name):
    cell = CELLS[name]()
    params = cell.init(jax.random.PRNGKey(1), I)
    xs = _xs()
    w = jax.random.normal(jax.random.PRNGKey(2), (cell.output_size,))
    loss_fn = _loss_all_steps(w)
    loss, grads = analysis.carry_gradients(cell, params, xs, loss_fn)
    ys, _ = jr.scan(cell, params, xs)
    np.testing.assert_allclose(loss, loss_fn(ys), rtol=1e-6)
    ref = _loop_carry_grads(cell, params, xs, loss_fn)
    for t in range(T):
        got = jax.tree.map(lambda g: g[t], grads)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), got, ref[t])


def test_stack_of_cells_equals_python_loop():
    cells = [jr.lstm(H), jr.gru(4)]
    params = (cells[0].init(jax.random.PRNGKey(1), I), cells[1].init(jax.random.PRNGKey(2), H))
    xs = _xs()
    loss_fn = _loss_all_steps(jnp.arange(4.0) - 1.5)
    _, grads = analysis.carry_gradients(cells, params, xs, loss_fn)
    ref = _loop_carry_grads(cells, params, xs, loss_fn)
    for t in range(T):
        got = jax.tree.map(lambda g: g[t], grads)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), got, ref[t])
    norms = analysis.gradient_norms(cells, params, xs, loss_fn)          # h of both layers
    want = np.sqrt(np.sum(np.asarray(grads[0].h) ** 2, 1) + np.sum(np.asarray(grads[1].h) ** 2, 1))
    np.testing.assert_allclose(norms, want, rtol=1e-5)


def test_finite_differences_simple_rnn(x64):
    cell = jr.simple_rnn(H)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), cell.init(jax.random.PRNGKey(3), I))
    xs = _xs().astype(jnp.float64)
    loss_fn = lambda ys: jnp.sum(ys[-1] ** 2) + jnp.sum(ys[3])
    _, grads = analysis.carry_gradients(cell, params, xs, loss_fn)
    t, eps = 4, 1e-6

    def run(delta):
        carry = cell.carry_for_input(params, xs[0])
        ys = []
        for s in range(T):
            carry = cell.step(params, carry, xs[s])
            if s == t:
                carry = type(carry)(carry.h + delta)
            ys.append(cell.output(carry))
        return float(loss_fn(jnp.stack(ys)))

    fd = np.array([(run(eps * e) - run(-eps * e)) / (2 * eps) for e in np.eye(H)])
    np.testing.assert_allclose(grads.h[t], fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name,parallel", [("lstm", False), ("min_gru", True)])
def test_layer_equals_cell_for_a_last_step_loss(name, parallel):
    """A Layer is stepped through its apply; with a loss on the last output only, its
    (future-path) gradient equals the cell's total derivative at every t < T - 1."""
    cell = CELLS[name]()
    params = cell.init(jax.random.PRNGKey(4), I)
    xs = _xs(1)
    loss_fn = lambda ys: jnp.sum(jnp.sin(ys[-1]))
    g_cell = analysis.gradient_norms(cell, params, xs, loss_fn)
    g_layer = analysis.gradient_norms(jr.layer(cell, parallel=parallel), params, xs, loss_fn)
    np.testing.assert_allclose(g_layer[:-1], g_cell[:-1], rtol=1e-4, atol=1e-7)
    assert float(g_layer[-1]) == 0.0 and float(g_cell[-1]) > 0.0


def test_vanishing_for_tanh_rnn_not_for_lstm_cell_state():
    """The vanishing-gradient argument in numbers: with contracting recurrent weights a tanh
    RNN's dL/dh_t decays geometrically back from the loss; an LSTM whose forget gate is ~1
    carries dL/dc_t back unchanged."""
    Tl = 60
    xs = 0.1 * _xs(2, Tl)
    loss_fn = lambda ys: jnp.sum(ys[-1])
    rnn = jr.simple_rnn(H)
    p = rnn.init(jax.random.PRNGKey(5), I)
    p = p._replace(w_hh=0.5 * p.w_hh)
    n = analysis.gradient_norms(rnn, p, xs, loss_fn)
    assert float(n[0]) < 1e-10 * float(n[-1])
    assert np.all(np.diff(np.log(np.asarray(n))) > 0)          # monotone decay backwards
    # The conveyor belt itself: no recurrent weights (h_t reaches the loss only through the
    # last output), forget gates ~1, so dL/dc_t = dL/dc_T * prod f = dL/dc_T. (With random
    # recurrent weights the paths through h add terms whose sign depends on the draw.)
    lstm = jr.lstm(H, forget_bias=20.0)
    q = lstm.init(jax.random.PRNGKey(6), I)
    q = q._replace(w_hh=jnp.zeros_like(q.w_hh))
    c = analysis.gradient_norms(lstm, q, xs, loss_fn, field="c")
    np.testing.assert_allclose(np.asarray(c[:-1]), float(c[-2]), rtol=1e-5)
    assert float(c[-2]) > 1e-3


def test_fields_and_errors():
    cell = jr.lstm(H)
    params = cell.init(jax.random.PRNGKey(7), I)
    xs = _xs()
    loss_fn = lambda ys: jnp.sum(ys ** 2)
    _, g = analysis.carry_gradients(cell, params, xs, loss_fn)
    both = analysis.gradient_norms(cell, params, xs, loss_fn, field=None)
    want = np.sqrt(np.sum(np.asarray(g.h) ** 2, 1) + np.sum(np.asarray(g.c) ** 2, 1))
    np.testing.assert_allclose(both, want, rtol=1e-5)
    with pytest.raises(ValueError, match="no field 'z'"):
        analysis.gradient_norms(cell, params, xs, loss_fn, field="z")
    with pytest.raises(ValueError, match="bidirectional"):
        bi = jr.bidirectional(cell)
        analysis.gradient_norms(bi, bi.init(jax.random.PRNGKey(0), I), xs, loss_fn)
    with pytest.raises(ValueError, match="one sequence"):
        analysis.gradient_norms(cell, params, xs[None], loss_fn)
    with pytest.raises(TypeError, match="Cell"):
        analysis.gradient_norms("lstm", params, xs, loss_fn)
