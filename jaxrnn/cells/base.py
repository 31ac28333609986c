"""The cell type shared by every family, and the small helpers they use.

A cell is a NamedTuple of pure functions made by a factory that closes over the
cell's options (like an optax ``GradientTransformation``). Nothing is stored in
the cell but functions and a few static integers; parameters and carries are
explicit pytrees.

Every cell splits its step in two so that a time loop can hoist the input
matmul out of the recurrence::

    step(params, carry, x_t) == recur(params, carry, project(params, x_t))

``project`` works on any number of leading axes (``[T, input]`` at once), and
``recur`` is what runs once per time step.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.cells import checks

Array = jax.Array
PyTree = Any


class Recurrence(NamedTuple):
    """The one definition of a cell's step, read by every time loop (reference and fused).

    A step is an input map, the recurrent linear map(s) on the previous state, and a
    pointwise update between and after them::

        w_in, ws, pw = split(params)
        px    = finish_input(pw, linear(x_t, w_in))                  # input half
        carry = update(pw, carry, px, mm, rec_mask)                  # recurrent half
        # where update calls mm(k, a) == linear(a, ws[k]) for its k-th recurrent map

    ``update`` reaches the recurrent weights only through ``mm``, and ``pw`` holds every
    parameter but the weights of ``linear`` (those fields are None). That is what lets the
    fused engine run ``mm`` itself: it stores the results of ``mm`` in the forward loop,
    replays ``update`` with them in the backward loop (its VJP gives the gradients of the
    pre-activations and of the carry, and ``mm``'s transpose is one matmul per step), and
    computes the weights' gradients after the loop as large matmuls over all steps.

    Attributes:
      split: ``params -> (w_in, (w_1, ..., w_K), pw)``.
      finish_input: ``(pw, xw) -> px``, the pointwise rest of the input half (bias, layer norm).
      update: ``(pw, carry, px, mm, rec_mask) -> carry``. ``rec_mask`` (None, or shaped like
        the state that enters the recurrent weights) is variational recurrent dropout.
      linear: ``(a, w) -> a ⊗ w``, bilinear: the cell's matmul in its compute dtype (a
        convolution for ``conv_lstm``).
    """

    split: Callable[..., tuple]
    finish_input: Callable[..., Array]
    update: Callable[..., PyTree]
    linear: Callable[[Array, Array], Array]


class Cell(NamedTuple):
    """A recurrent cell: pure functions over explicit parameters and carries.

    Attributes:
      init: ``(key, input_size) -> params``.
      initial_carry: ``(params, batch_shape=()) -> carry`` of zeros (no RNG).
      step: ``(params, carry, x_t) -> carry``, one time step.
      output: ``(carry) -> y_t``, what the step emits.
      project: ``(params, x) -> px``, the input half of the step, for any
        leading axes of ``x``.
      recur: ``(params, carry, px_t, rec_mask=None) -> carry``, the recurrent half.
        ``rec_mask`` (same shape as ``output(carry)``) multiplies the state where
        it enters the recurrent weights (variational recurrent dropout).
      carry_for_input: ``(params, x_t) -> carry`` of zeros shaped for ``x_t``
        (leading axes of ``x_t`` become batch axes of the carry).
      input_size: ``(params) -> int``, the input size the params expect.
      hidden_size: the width of the recurrent state.
      output_size: the width of ``output(carry)``.
      name: the family name, for messages and reprs.
      options: the factory's keyword arguments (a dict), for interop, wrappers and reprs;
        nothing dispatches on it.
      recurrence: the :class:`Recurrence` that ``project``, ``recur`` and ``step`` are made
        of, and that the fused engine runs.
      spatial_dims: spatial axes of one step's input before the features (0; 1-3 for
        ``conv_lstm``).
      log_coefficients: for cells whose state follows a linear recurrence
        ``h_t = a_t h_{t-1} + b_t`` with coefficients from the input only (``min_gru``,
        ``min_lstm``): ``(params, px) -> (log a, log b)``, which the parallel scan uses;
        None for every other cell.
    """

    init: Callable[..., PyTree]
    initial_carry: Callable[..., PyTree]
    step: Callable[..., PyTree]
    output: Callable[[PyTree], Array]
    project: Callable[..., Array]
    recur: Callable[..., PyTree]
    carry_for_input: Callable[..., PyTree]
    input_size: Callable[[PyTree], int]
    hidden_size: int
    output_size: int
    name: str
    options: dict
    recurrence: Recurrence
    spatial_dims: int = 0
    log_coefficients: Optional[Callable[..., tuple]] = None


def make_cell(*, init, initial_carry, recurrence: Recurrence, output, input_size,
              hidden_size, output_size, name, options, carry_for_input=None,
              spatial_dims: int = 0, log_coefficients=None) -> Cell:
    """Builds a :class:`Cell` whose ``project``, ``recur`` and ``step`` are the composition
    of ``recurrence`` (so no equation is written twice)."""
    rec = recurrence

    def project(params, x):
        check_input(name, x, input_size(params))
        if jnp.ndim(x) < spatial_dims + 1:
            raise ValueError(f"{name}: input of shape {jnp.shape(x)} has fewer than "
                             f"{spatial_dims} spatial axes plus features")
        w_in, _, pw = rec.split(params)
        return rec.finish_input(pw, rec.linear(x, w_in))

    def recur(params, carry, px, rec_mask=None):
        _, ws, pw = rec.split(params)
        return rec.update(pw, carry, px, lambda k, a: rec.linear(a, ws[k]), rec_mask)

    def step(params, carry, x_t):
        # trace-time checks of what the user hands in (shapes and dtypes only)
        checks.check_params(cell, params)
        checks.check_input(name, x_t, input_size(params))
        checks.check_carry(cell, params, carry, x_t)
        return recur(params, carry, project(params, x_t))

    if carry_for_input is None:
        def carry_for_input(params, x_t):
            return initial_carry(params, batch_shape=tuple(jnp.shape(x_t)[:-1]))

    cell = Cell(init=init, initial_carry=initial_carry, step=step, output=output,
                project=project, recur=recur, carry_for_input=carry_for_input,
                input_size=input_size, hidden_size=int(hidden_size),
                output_size=int(output_size), name=name, options=dict(options),
                recurrence=rec, spatial_dims=int(spatial_dims),
                log_coefficients=log_coefficients)
    return cell


def matmul_in(dtype):
    """The bilinear map of a dense cell: ``a @ w`` in the compute ``dtype`` (see :func:`matmul`)."""
    def linear(a, w):
        return matmul(a, w, dtype)
    return linear


# --------------------------------------------------------------------------- checks
# One validation layer for the whole library: jaxrnn.cells.checks. These names stay here for
# the cell families and older callers.

check_positive_int = checks.check_positive_int
check_input = checks.check_input


def resolve_dtype(dtype, name: str = "dtype", where=None):
    """The compute dtype option: None (promote the operands) or a floating dtype."""
    return checks.check_float_dtype(name, dtype, optional=True, where=where)


def param_dtype_of(param_dtype, where=None):
    """The ``param_dtype`` option: a floating dtype."""
    return checks.check_float_dtype("param_dtype", param_dtype, where=where)


def accumulator(dtype):
    """The dtype that sums of ``dtype`` values are formed in: ``dtype`` itself when it is a
    float (or complex) of 32 bits or more, float32 otherwise (bfloat16, float16, integers).

    Written out rather than ``jnp.promote_types(dtype, jnp.float32)``, which under strict
    dtype promotion refuses bfloat16 and float64 against float32."""
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.inexact) and dtype.itemsize >= 4:
        return dtype
    return jnp.dtype(jnp.float32)


def compute_dtypes(x, w, dtype):
    """The common dtype of the operands of a cell's matmul: the compute ``dtype``, or with
    None the promotion of the two (under strict dtype promotion operands of different
    dtypes are refused here, as ``jnp`` refuses them: pass ``dtype`` to cast explicitly)."""
    if dtype is not None:
        return jnp.dtype(dtype)
    if x.dtype == w.dtype:
        return jnp.dtype(x.dtype)
    return jnp.result_type(x.dtype, w.dtype)


def matmul(x, w, dtype):
    """``x @ w`` in the compute ``dtype`` (None: promote), accumulating in float32
    or better, returning the accumulator dtype."""
    common = compute_dtypes(x, w, dtype)
    return jnp.matmul(x.astype(common), w.astype(common),
                      preferred_element_type=accumulator(common))


def broadcast_like(v, x):
    """``v`` (a parameter over the trailing axes of ``x``: a bias, a layer norm's scale, a
    peephole) cast to ``x``'s dtype and broadcast to ``x``'s shape, explicitly: every cell
    runs under ``jax_numpy_rank_promotion="raise"`` and strict dtype promotion."""
    return jnp.broadcast_to(jnp.asarray(v).astype(x.dtype), jnp.shape(x))


def zeros_carry(carry_type, sizes: Sequence[int], batch_shape, dtype):
    batch_shape = checks.check_batch_shape("batch_shape", batch_shape)
    return carry_type(*[jnp.zeros(batch_shape + (s,), dtype) for s in sizes])


def apply_rec_mask(h, rec_mask):
    """``h * rec_mask``; ``h`` may have leading axes the mask has not (the fused engine applies
    one sequence's mask to every step at once), broadcast explicitly."""
    return h if rec_mask is None else h * broadcast_like(rec_mask, h)


# --------------------------------------------------------------------------- initializers

def uniform_init(key, shape, bound, dtype):
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def glorot_init(key, shape, dtype):
    """Glorot/Xavier uniform over ``[fan_in, fan_out]``."""
    fan_in, fan_out = shape[0], shape[-1]
    return uniform_init(key, shape, float(np.sqrt(6.0 / (fan_in + fan_out))), dtype)


_HIGHEST = jax.lax.Precision.HIGHEST
# columns orthonormalized per panel: a panel is projected off the earlier panels with two
# matmuls, then Gram-Schmidt runs inside it column by column
_PANEL = 128


def _project_out(q, p):
    """``p`` minus its projection on the orthonormal columns of ``q`` (batched)."""
    c = jnp.einsum("bmn,bmk->bnk", q, p, precision=_HIGHEST)
    return p - jnp.einsum("bmn,bnk->bmk", q, c, precision=_HIGHEST)


def _gram_schmidt_panel(p):
    """Orthonormal columns of ``p`` ``[batch, m, k]`` by classical Gram-Schmidt with one
    reorthogonalization per column (CGS2: orthogonal to rounding, ~1e-7 in float32)."""
    def column(j, q):
        v = jax.lax.dynamic_index_in_dim(p, j, axis=2, keepdims=False)          # [b, m]
        for _ in range(2):
            c = jnp.einsum("bmk,bm->bk", q, v, precision=_HIGHEST)
            v = v - jnp.einsum("bmk,bk->bm", q, c, precision=_HIGHEST)
        v = v * jax.lax.rsqrt(jnp.sum(v * v, axis=-1, keepdims=True))
        return jax.lax.dynamic_update_index_in_dim(q, v, j, axis=2)
    return jax.lax.fori_loop(0, p.shape[-1], column, jnp.zeros_like(p))


def orthonormal_columns(a):
    """The Q factor of ``a`` ``[batch, m, n]`` (m >= n) whose R has a positive diagonal, in pure
    JAX (no LAPACK call): block Gram-Schmidt with reorthogonalization (BCGS2), panels of 128
    columns. Equal to a float64 LAPACK QR with R's signs folded in to ~1e-6 for Gaussian ``a``.

    Why not ``jnp.linalg.qr``: jaxlib 0.10's CPU LAPACK kernels split a batch over XLA's
    intra-op thread pool and block a pool thread until the pieces finish. When as many such
    calls run at once as the pool has threads (two on a 2-core machine: the two directions of
    a BiLSTM, say), every thread waits for work queued behind it and the program never
    completes. Initialization must not hang, so it uses no LAPACK call at all."""
    n = a.shape[-1]
    done = []
    for s in range(0, n, _PANEL):
        p = a[..., s:s + _PANEL]
        if done:
            q = jnp.concatenate(done, axis=-1)
            # project and orthonormalize twice: once is not enough when the panel is nearly
            # in the span of the earlier columns (the last columns of a square Gaussian)
            p = _gram_schmidt_panel(_project_out(q, p))
            p = _gram_schmidt_panel(_project_out(q, p))
        else:
            p = _gram_schmidt_panel(p)
        done.append(p)
    return jnp.concatenate(done, axis=-1)


def orthogonal_blocks(key, rows: int, cols: int, blocks: int, dtype):
    """``blocks`` orthogonal ``[rows, cols]`` matrices side by side: ``[rows, blocks*cols]``.

    Each gate's recurrent matrix is orthogonal on its own (as Keras and Flax do): the Q
    factor of a Gaussian matrix with the signs of R's diagonal folded in (Haar distributed,
    Mezzadri 2007), computed by :func:`orthonormal_columns` (no LAPACK: see there)."""
    big, small = max(rows, cols), min(rows, cols)
    a = jax.random.normal(key, (blocks, big, small), jnp.float32)
    # orthonormalized in float32, then cast
    q = orthonormal_columns(a)                                 # [blocks, big, small]
    if rows < cols:
        q = jnp.swapaxes(q, -1, -2)                            # [blocks, rows, cols]
    return jnp.transpose(q, (1, 0, 2)).reshape(rows, blocks * cols).astype(dtype)


def chrono_forget_bias(key, hidden_size: int, t_max: float, dtype):
    """Chrono initialization (Tallec & Ollivier 2018): b_f ~ log(U(1, t_max - 1))."""
    t_max = checks.check_finite_float("chrono_t_max", t_max, greater_than=2)
    u = jax.random.uniform(key, (hidden_size,), jnp.float32, 1.0, t_max - 1.0)
    return jnp.log(u).astype(dtype)


def layer_norm(x, scale, bias, eps=1e-5):
    """Layer normalization over the last axis, in float32 or better."""
    x = x.astype(accumulator(x.dtype))
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + eps)
    return y * broadcast_like(scale, y) + broadcast_like(bias, y)


def optional(flag: bool, value):
    return value if flag else None


def split_one_map(params):
    """``Recurrence.split`` of a cell with one recurrent map: ``(w_ih, (w_hh,), the rest)``."""
    return params.w_ih, (params.w_hh,), params._replace(w_ih=None, w_hh=None)


def add_bias(pw, xw):
    """``Recurrence.finish_input`` of a cell whose input half is ``x W + b``."""
    return xw + broadcast_like(pw.b, xw)
