"""Gradient flow through time: how much of a loss's gradient reaches the state at step t.

The vanishing-gradient argument (Hochreiter 1991; Bengio et al. 1994; Pascanu et al. 2013) is
about ``dL/dh_t``, the total derivative of a loss with respect to the recurrent state after
step ``t``. For a tanh RNN it shrinks geometrically as ``t`` moves back from the steps the loss
reads; the LSTM's additive cell state and the GRU's update gate let it survive. These functions
measure it on one sequence, for any cell, any unidirectional layer or stack::

    import jaxrnn as jr
    from jaxrnn import analysis

    cell = jr.simple_rnn(128)
    params = cell.init(key, input_size=2)
    loss_fn = lambda ys: jnp.sum((ys[-1] @ w - target) ** 2)    # ys: [T, output]
    norms = analysis.gradient_norms(cell, params, xs, loss_fn)  # [T]: ||dL/dh_t||
    # a batch: jax.vmap(lambda x, y: analysis.gradient_norms(cell, params, x, lambda ys: ...))

How it works: a zero perturbation ``eps_t`` is added to the carry after every step and the
loss is differentiated with respect to all of them at once (one backward pass):
``dL/d eps_t = dL/d carry_t``.

- For a :class:`~jaxrnn.Cell` (or a list of cells, a deep stack) ``eps_t`` is added right after
  the recurrence of step ``t``, before the step's output is read, so the gradient is the total
  derivative: through the output ``y_t`` and through every later step.
- For a :class:`~jaxrnn.Layer` (``jr.layer(...)``, ``jr.stack(...)`` of unidirectional layers;
  ``parallel=True`` layers too) the layer is run one step at a time through its ``apply`` with
  the carry passed along, and ``eps_t`` is added to the carry leaving step ``t``; the gradient is
  then the part that flows through the later steps only (the direct path through ``y_t`` is not
  included). For a loss that reads only the last output, this equals the total derivative at
  every ``t < T - 1``. Bidirectional layers have no carry "after step t" (the backward direction
  has read the future), so they are refused.

The gradient is returned per field of the carry (``h``, and ``c`` for an LSTM), with the time
axis first. ``gradient_norms`` reduces it to one Euclidean norm per step.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp

from jaxrnn import layers as layers_lib
from jaxrnn.cells import base

__all__ = ["carry_gradients", "gradient_norms"]

PyTree = Any
Model = Union[base.Cell, Sequence[base.Cell], layers_lib.Layer]


def _is_cells(model) -> bool:
    return isinstance(model, (list, tuple)) and len(model) > 0 and all(
        isinstance(m, base.Cell) for m in model) and not hasattr(model, "_fields")


def _perturbed_loss_cells(cells, params, xs, loss_fn, carry):
    """Loss as a function of the per-step carry perturbations, for a stack of cells."""
    single = isinstance(cells, base.Cell)
    cells = (cells,) if single else tuple(cells)
    params = (params,) if single else tuple(params)
    if len(params) != len(cells):
        raise ValueError(f"{len(cells)} cells need a tuple of {len(cells)} params, "
                         f"got {len(params)}")
    # carries for every layer, zeros unless given
    if carry is None:
        carry, h = [], xs[0]
        for c, p in zip(cells, params):
            base.check_input(c.name, h, c.input_size(p))
            ci = c.carry_for_input(p, h)
            carry.append(ci)
            h = jnp.zeros(jnp.shape(c.output(ci)), xs.dtype)
        carry = tuple(carry)
    elif single:
        carry = (carry,)

    def body(carry, inp):
        x_t, eps_t = inp
        new, h = [], x_t
        for c, p, ci, e in zip(cells, params, carry, eps_t):
            ci = c.step(p, ci, h)
            ci = jax.tree.map(lambda a, b: a + b.astype(a.dtype), ci, e)
            new.append(ci)
            h = c.output(ci)
        return tuple(new), h

    def total(eps):
        _, ys = jax.lax.scan(body, carry, (xs, eps))
        return loss_fn(ys)

    T = xs.shape[0]
    eps0 = jax.tree.map(lambda a: jnp.zeros((T,) + jnp.shape(a), jnp.result_type(a)), carry)
    return total, eps0, single


def _perturbed_loss_layer(layer, params, xs, loss_fn, carry):
    if "bidirectional" in layer.name:
        raise ValueError("gradient flow over time is not defined for a bidirectional layer "
                         "(its backward direction has already read the future); analyse each "
                         "direction's cell instead")
    if carry is None:
        _, carry = jax.eval_shape(lambda: layer.apply(params, xs[:1]))
        carry = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), carry)

    def body(carry, inp):
        x_t, eps_t = inp
        ys, new = layer.apply(params, x_t[None], carry)
        new = jax.tree.map(lambda a, b: a + b.astype(a.dtype), new, eps_t)
        return new, ys[0]

    def total(eps):
        _, ys = jax.lax.scan(body, carry, (xs, eps))
        return loss_fn(ys)

    T = xs.shape[0]
    eps0 = jax.tree.map(lambda a: jnp.zeros((T,) + jnp.shape(a), jnp.result_type(a)), carry)
    return total, eps0, False


def carry_gradients(model: Model, params, xs, loss_fn: Callable[[jax.Array], jax.Array],
                    carry: Optional[PyTree] = None):
    """``(loss, grads)``: ``grads[t]`` is ``dL/d carry_t``, the carry after step ``t``.

    Args:
      model: a cell, a list of cells (a deep stack: params and carries are tuples), or a
        unidirectional :class:`~jaxrnn.Layer` (see the module docstring for what is included).
      params: its parameters.
      xs: one sequence ``[T, input]``.
      loss_fn: ``ys -> scalar`` where ``ys`` ``[T, output]`` are the model's outputs.
      carry: the initial carry (zeros when None).

    Returns:
      the loss and a pytree shaped like the carry with a leading time axis ``T``.
    """
    xs = jnp.asarray(xs)
    if xs.ndim != 2:
        raise ValueError(f"xs must be one sequence [T, input], got shape {xs.shape}; "
                         f"batch with jax.vmap")
    if isinstance(model, base.Cell) or _is_cells(model):
        total, eps0, _ = _perturbed_loss_cells(model, params, xs, loss_fn, carry)
        single = isinstance(model, base.Cell)
    elif isinstance(model, layers_lib.Layer):
        total, eps0, single = _perturbed_loss_layer(model, params, xs, loss_fn, carry)
    else:
        raise TypeError(f"expected a jaxrnn Cell, a list of Cells or a Layer, got "
                        f"{type(model).__name__}")
    loss, grads = jax.value_and_grad(total)(eps0)
    if single:
        grads = grads[0]
    return loss, grads


def _select(tree, field: Optional[str]):
    if field is None:
        return jax.tree.leaves(tree)
    out = []

    def visit(node):
        if hasattr(node, "_fields"):
            if field in node._fields:
                out.append(getattr(node, field))
                return
            for name in node._fields:
                visit(getattr(node, name))
        elif isinstance(node, (tuple, list)):
            for n in node:
                visit(n)
    visit(tree)
    if not out:
        raise ValueError(f"the carry has no field {field!r}: {jax.tree.structure(tree)}")
    return out


def gradient_norms(model: Model, params, xs, loss_fn, carry=None, *,
                   field: Optional[str] = "h") -> jax.Array:
    """``||dL/dh_t||`` for every step ``t``: shape ``[T]``.

    ``field`` picks the carry field measured (``"h"``: the hidden state of every layer;
    ``"c"``: an LSTM's cell state; ``None``: every leaf of the carry); the norm is taken over
    all selected leaves together (every layer of a stack).
    """
    _, grads = carry_gradients(model, params, xs, loss_fn, carry)
    leaves = _select(grads, field)
    T = jnp.asarray(xs).shape[0]
    sq = sum(jnp.sum(jnp.reshape(g, (T, -1)).astype(jnp.float32) ** 2, axis=1) for g in leaves)
    return jnp.sqrt(sq)
