"""Zero-valued stand-ins for a cell's linear maps that carry the maps' derivatives.

``tap(linear, a, w)`` has the value ``0`` (the shape and dtype of ``linear(a, w)``, nothing
computed) and the derivative of ``linear(a, w)``; ``tap_weight`` differentiates it in ``w``
only. The fused engine adds taps where a matmul's result has already been computed elsewhere,
so that autodiff routes that matmul's gradients without computing it again:

- after the forward loop, ``tap_weight(linear, A, W)`` over all steps' operands ``A`` is what
  autodiff sees of each recurrent matmul (the operands' own derivative reaches the gradient
  through the backward loop, so the tap leaves it out). Autodiff then forms ``W``'s
  gradient as ONE matmul over every time step (and, under ``vmap``, every sequence of the
  batch: ``vmap`` of a matmul by shared weights transposes to one contraction over batch and
  time; a gradient computed inside a custom VJP would instead be a per-example gradient
  that ``vmap`` has to materialize and sum);
- inside the backward loop, ``u_stored + tap(linear, a, W)`` replays a step from its stored
  matmul results: the VJP of that expression in ``a`` is the step's one transposed matmul.

``linear`` must be bilinear (a matmul or a convolution), so its derivative is
``linear(da, w) + linear(a, dw)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_SymbolicZero = jax.custom_derivatives.SymbolicZero


def zeros_varying_with(shape, dtype, *inputs):
    """Zeros of ``shape`` and ``dtype`` typed like a function of ``inputs``: batched under
    ``vmap`` and varying over ``shard_map`` axes wherever they are. A constant would be
    neither, which breaks a scan whose carry or tangent is (the value is selected against one
    element of each input and never read, so a NaN or inf there changes nothing)."""
    probes = [jnp.ravel(leaf)[0].astype(dtype) for leaf in jax.tree.leaves(inputs)
              if jnp.size(leaf)]
    zero = jnp.where(False, sum(probes), jnp.zeros((), dtype)) if probes else jnp.zeros((), dtype)
    return jnp.broadcast_to(zero, shape)


def _zeros(linear, a, w):
    out = jax.eval_shape(linear, a, w)
    return zeros_varying_with(out.shape, out.dtype, a, w)


def _make_tap(name, operand: bool, weight: bool, doc):
    def fun(linear, a, w):
        return _zeros(linear, a, w)

    fun.__name__ = fun.__qualname__ = name
    fun.__doc__ = doc
    fun = functools.partial(jax.custom_jvp, nondiff_argnums=(0,))(fun)

    def jvp(linear, primals, tangents):
        a, w = primals
        da, dw = tangents
        out = fun(linear, a, w)
        terms = []
        if operand and not isinstance(da, _SymbolicZero):
            terms.append(linear(da, w))
        if weight and not isinstance(dw, _SymbolicZero):
            terms.append(linear(a, dw))
        if not terms:
            return out, _SymbolicZero(jax.typeof(out))
        tangent = terms[0] if len(terms) == 1 else terms[0] + terms[1]
        return out, tangent.astype(out.dtype)

    fun.defjvp(jvp, symbolic_zeros=True)
    return fun


tap = _make_tap("tap", True, True, """Zeros shaped like ``linear(a, w)``, differentiating like
``linear(a, w)`` in both ``a`` and ``w``.""")
tap_weight = _make_tap("tap_weight", False, True, """Zeros shaped like ``linear(a, w)``,
differentiating like ``linear(a, w)`` in ``w`` only: ``a`` is data (its own derivative
reaches the gradient another way).""")
