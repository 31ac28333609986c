"""The one validation layer: every public factory, layer, wrapper and interop entry point
checks what it is given here, before any tracing work.

Rules (one per kind of argument):

- **Options** are checked when a factory, layer or wrapper is built. Booleans must be real
  bools (``bool`` or ``numpy.bool_``; ``'no'``, ``0``, ``1`` are refused, not read as truthy);
  sizes are integers (``int`` or a NumPy integer, never a bool or a float such as ``8.0``)
  and positive; rates lie in ``[0, 1)``; floats are finite; dtypes are floating (``dtype`` is
  the matmul compute dtype and ``param_dtype`` the parameters', so an integer dtype would
  silently compute zeros); string options are one of their known values.
- **Params** are checked against the cell that receives them: their structure (the
  NamedTuple type, which optional fields are present), each array's shape and that its dtype
  is floating, compared with ``jax.eval_shape(cell.init, key, input_size)``, the input size
  read from the params themselves (``cell.input_size``). Nothing per cell: a cell's ``init``
  is its declaration of what its params are. Params may be cast (float64 references, bfloat16
  weights): only a non-floating dtype is refused.
- **Carries** are checked against ``cell.carry_for_input`` (structure, shapes, exact dtypes),
  **inputs** for their rank, a floating dtype and the params' feature size.
- **Lengths** must be integer arrays of the right shape; concrete values must lie in
  ``[0, T]``. Under ``jit``/``vmap`` a length is a tracer: only its shape and dtype can be
  checked, and the loops then clip it (a negative length acts as 0, one above ``T`` as
  ``T``). Check a batch before tracing with :func:`check_seq_lengths`, or trace under
  :func:`debug_checks` / :func:`checked`, which turn the range check into a
  ``jax.experimental.checkify`` check.

All of these run in Python at trace time, on shapes and dtypes (static under ``jit`` and
``vmap``): a jitted function pays nothing for them at run time and is not retraced.

Errors are :class:`InvalidArgumentType` (a ``TypeError``: the kind of thing is wrong: not a
bool, not an array, ``GRUParams`` where ``LSTMParams`` are expected, an integer dtype) or
:class:`InvalidArgumentValue` (a ``ValueError``: a thing of the right kind with a wrong value:
a shape, a range, an optional field present or missing), and their message names the
argument or field, what was expected and what came.

**NaN and Inf.** By default nothing is checked and nothing is replaced: a NaN in ``xs``,
the params or the carry propagates to the outputs that depend on it. A NaN or Inf in the
*padding* of a right-padded sequence does not reach the outputs (they are zero there) but
does reach the weight gradients (``0 * NaN``): pad with finite values. Inside
:func:`debug_checks` (or :func:`checked`) every ``jr.scan`` and layer call also checks that
``xs``, the params and a given carry are finite.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import operator
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

__all__ = [
    "InvalidArgumentType", "InvalidArgumentValue", "check_bool", "check_carry",
    "check_choice", "check_finite", "check_finite_float", "check_float_dtype",
    "check_params", "check_positive_int", "check_rate", "check_seq_lengths",
    "check_sequence", "checked", "debug_checks", "debug_checks_enabled", "describe",
    "within",
]


# --------------------------------------------------------------------------- errors

class _Invalid(Exception):
    """Marks the errors of this module, so :func:`within` can say where they came from."""


class InvalidArgumentType(_Invalid, TypeError):
    """A ``TypeError`` raised by jaxrnn's argument checks (the kind of thing is wrong)."""


class InvalidArgumentValue(_Invalid, ValueError):
    """A ``ValueError`` raised by jaxrnn's argument checks (a value is out of its range)."""


def _prefix(where: Optional[str]) -> str:
    return f"{where}: " if where else ""


@contextlib.contextmanager
def within(where: str):
    """Prefixes the errors of these checks raised inside the block with ``where`` (a stack
    says which of its layers, a bidirectional layer which direction)."""
    try:
        yield
    except _Invalid as e:
        e.args = (f"{where}: {e.args[0] if e.args else ''}",) + tuple(e.args[1:])
        raise


def _got(value) -> str:
    return f"{value!r} ({type(value).__name__})"


# --------------------------------------------------------------------------- options

def check_bool(name: str, value, *, where: Optional[str] = None) -> bool:
    """``value`` as a bool; anything but a ``bool`` / ``numpy.bool_`` is a TypeError (a
    string such as ``'no'`` would otherwise be read as True)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InvalidArgumentType(f"{_prefix(where)}{name} must be a bool (True or False), "
                              f"got {_got(value)}")


def check_int(name: str, value, *, low: int = 1, where: Optional[str] = None) -> int:
    """``value`` as an int ``>= low``: an ``int`` or NumPy integer (not a bool, not a float:
    ``8.0`` is refused rather than silently truncated)."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (float, np.floating)):
        raise InvalidArgumentType(f"{_prefix(where)}{name} must be an integer, got {_got(value)}")
    try:
        v = operator.index(value)
    except TypeError:
        raise InvalidArgumentType(f"{_prefix(where)}{name} must be an integer, "
                                  f"got {_got(value)}") from None
    if v < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise InvalidArgumentValue(f"{_prefix(where)}{name} must be {what}, got {v}")
    return int(v)


def check_positive_int(name: str, value, *, where: Optional[str] = None) -> int:
    """``value`` as a positive int (see :func:`check_int`)."""
    return check_int(name, value, low=1, where=where)


def check_optional_positive_int(name: str, value, *, where: Optional[str] = None):
    return None if value is None else check_positive_int(name, value, where=where)


def check_finite_float(name: str, value, *, where: Optional[str] = None,
                       greater_than: Optional[float] = None) -> float:
    """``value`` as a finite float (an int is fine, a bool or a string is not); NaN and
    infinities are refused (NaN slips past ``> 0``-style checks)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                      np.floating)):
        raise InvalidArgumentType(f"{_prefix(where)}{name} must be a real number, "
                                  f"got {_got(value)}")
    v = float(value)
    if not math.isfinite(v):
        raise InvalidArgumentValue(f"{_prefix(where)}{name} must be finite, got {v}")
    if greater_than is not None and not v > greater_than:
        raise InvalidArgumentValue(f"{_prefix(where)}{name} must be > {greater_than}, got {v}")
    return v


def check_rate(name: str, value, *, where: Optional[str] = None) -> float:
    """A dropout / zoneout probability: a real number in ``[0, 1)``."""
    v = check_finite_float(name, value, where=where)
    if not 0.0 <= v < 1.0:
        raise InvalidArgumentValue(f"{_prefix(where)}{name} must be in [0, 1), got {v}")
    return v


def check_choice(name: str, value, choices: Sequence[str], *,
                 where: Optional[str] = None) -> str:
    """A string option that must be one of ``choices``."""
    if not isinstance(value, str):
        raise InvalidArgumentType(f"{_prefix(where)}{name} must be one of {tuple(choices)} "
                                  f"(a string), got {_got(value)}")
    if value not in choices:
        raise InvalidArgumentValue(f"{_prefix(where)}{name} must be one of {tuple(choices)}, "
                                   f"got {value!r}")
    return value


def check_float_dtype(name: str, dtype, *, optional: bool = False,
                      where: Optional[str] = None):
    """``dtype`` as a floating ``numpy.dtype`` (float32, bfloat16, float16, float64); None is
    returned as None when ``optional``. An integer, boolean or complex dtype is refused: a cell
    computing in ``int8`` rounds every gate to zero."""
    if dtype is None and optional:
        return None
    try:
        d = jnp.dtype(dtype)
    except TypeError:
        raise InvalidArgumentType(f"{_prefix(where)}{name} must be a floating dtype such as "
                                  f"jnp.float32, got {_got(dtype)}") from None
    if not jnp.issubdtype(d, jnp.floating):
        raise InvalidArgumentType(f"{_prefix(where)}{name} must be a floating dtype (float32, "
                                  f"bfloat16, float16, float64), got {d}")
    return d


def check_batch_shape(name: str, batch_shape, *, where: Optional[str] = None) -> tuple:
    """A tuple of non-negative ints (``(B,)``, not ``B``)."""
    if not isinstance(batch_shape, (tuple, list)):
        raise InvalidArgumentType(f"{_prefix(where)}{name} must be a tuple of ints such as "
                                  f"(8,), got {_got(batch_shape)}")
    return tuple(check_int(f"{name}[{i}]", s, low=0, where=where)
                 for i, s in enumerate(batch_shape))


# --------------------------------------------------------------------------- pytrees

def describe(cell) -> str:
    """A cell as its factory call, e.g. ``lstm(hidden_size=8, peephole=True, ...)``: the
    options that are set (not None or False)."""
    parts = []
    for k, v in cell.options.items():
        if v is None or v is False or (isinstance(v, np.dtype) and v == np.float32):
            continue
        parts.append(f"{k}={v.name}" if isinstance(v, np.dtype) else f"{k}={v!r}")
    return f"{cell.name}({', '.join(parts)})"


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _desc(x) -> str:
    if x is None:
        return "None"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"an array of shape {tuple(x.shape)} and dtype {x.dtype}"
    return type(x).__name__


def _is_leaf(x) -> bool:
    return jax.tree_util.treedef_is_leaf(jax.tree.structure(x)) and x is not None


def _compare(exp, got, path, *, what, hint, leading=(), shapes=True, exact_dtype=False,
             mismatch=""):
    """Raises if ``got`` does not fit ``exp`` (a tree of ShapeDtypeStructs), naming the field.

    ``leading``: axes every array of ``got`` has before the expected shape (the stacked
    directions of a bidirectional layer). ``shapes=False`` compares ranks only."""
    name = f"{what}{path}"
    if exp is None:
        if got is not None:
            raise InvalidArgumentValue(
                f"{name} should be None for {hint}, got {_desc(got)}{mismatch}")
        return
    if _is_namedtuple(exp):
        if type(got) is not type(exp):
            raise InvalidArgumentType(f"{name} must be {type(exp).__name__} for {hint}, "
                                      f"got {type(got).__name__}")
        for f in exp._fields:
            _compare(getattr(exp, f), getattr(got, f), f"{path}.{f}", what=what, hint=hint,
                     leading=leading, shapes=shapes, exact_dtype=exact_dtype,
                     mismatch=mismatch)
        return
    if isinstance(exp, (tuple, list)):
        if not isinstance(got, (tuple, list)) or _is_namedtuple(got):
            raise InvalidArgumentType(f"{name} must be a tuple of {len(exp)} entries for "
                                      f"{hint}, got {type(got).__name__}")
        if len(got) != len(exp):
            raise InvalidArgumentValue(f"{name} must have {len(exp)} entries for {hint}, got "
                                       f"{len(got)}")
        for i, (e, g) in enumerate(zip(exp, got)):
            _compare(e, g, f"{path}[{i}]", what=what, hint=hint, leading=leading,
                     shapes=shapes, exact_dtype=exact_dtype, mismatch=mismatch)
        return
    if isinstance(exp, dict):
        if not isinstance(got, dict):
            raise InvalidArgumentType(f"{name} must be a dict for {hint}, got "
                                      f"{type(got).__name__}")
        if set(got) != set(exp):
            raise InvalidArgumentValue(f"{name} has keys {sorted(got)}, expected "
                                       f"{sorted(exp)} for {hint}")
        for k in exp:
            _compare(exp[k], got[k], f"{path}[{k!r}]", what=what, hint=hint, leading=leading,
                     shapes=shapes, exact_dtype=exact_dtype, mismatch=mismatch)
        return
    if not _is_leaf(exp):
        # another pytree node (a user's own params type): same structure, then leaf by leaf
        if jax.tree.structure(got) != jax.tree.structure(exp):
            raise InvalidArgumentType(f"{name} has structure {jax.tree.structure(got)}, "
                                      f"expected {jax.tree.structure(exp)} for {hint}")
        for (p, e), g in zip(jax.tree_util.tree_flatten_with_path(exp)[0], jax.tree.leaves(got)):
            _compare(e, g, path + jax.tree_util.keystr(p), what=what, hint=hint,
                     leading=leading, shapes=shapes, exact_dtype=exact_dtype,
                     mismatch=mismatch)
        return
    # an array
    if got is None:
        raise InvalidArgumentValue(f"{name} is None, but {hint} needs an array of shape "
                                   f"{tuple(leading) + tuple(exp.shape)}{mismatch}")
    if not (hasattr(got, "shape") and hasattr(got, "dtype")):
        raise InvalidArgumentType(f"{name} must be an array for {hint}, got "
                                  f"{type(got).__name__}")
    want = tuple(leading) + tuple(exp.shape)
    shape = tuple(got.shape)
    stacked = (f" (every array stacked on leading axes {tuple(leading)}: one direction's "
               f"params given to a bidirectional layer?)" if leading else "")
    if len(shape) != len(want) or shape[:len(leading)] != tuple(leading):
        expected = want if shapes else f"rank {len(want)}"
        raise InvalidArgumentValue(f"{name} has shape {shape}, expected {expected} for "
                                   f"{hint}{stacked}")
    if shapes and shape != want:
        raise InvalidArgumentValue(f"{name} has shape {shape}, expected {want} for {hint}")
    if exact_dtype:
        if jnp.dtype(got.dtype) != jnp.dtype(exp.dtype):
            raise InvalidArgumentType(f"{name} has dtype {got.dtype}, expected {exp.dtype} "
                                      f"for {hint}")
    elif not jnp.issubdtype(got.dtype, jnp.floating):
        raise InvalidArgumentType(f"{name} has dtype {got.dtype}; {what} must be floating "
                                  f"(this cell makes {exp.dtype})")


def _abstract(tree, leading: int = 0):
    """Shapes and dtypes only (works on arrays, tracers and ShapeDtypeStructs)."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(tuple(a.shape)[leading:], a.dtype), tree)


@functools.lru_cache(maxsize=512)
def _init_shapes(init, input_size: int):
    """What ``init(key, input_size)`` makes, as ShapeDtypeStructs (traced once per cell and
    input size; nothing runs)."""
    return jax.eval_shape(lambda: init(jax.random.PRNGKey(0), input_size))


_MISMATCH = ("; these params were made for a cell with other options (peephole, coupled, "
             "layer_norm, proj_size, reset_after ... change which fields exist)")


def check_params(cell, params, *, what: str = "params", leading: tuple = ()) -> int:
    """Checks ``params`` against ``cell`` (structure, shapes, floating dtypes) and returns the
    input size they expect.

    Compares with ``jax.eval_shape(cell.init, key, input_size)``, ``input_size`` read from the
    params (``cell.input_size``), so it is generic over cells. ``leading``: axes every array
    carries first (``(2,)`` for the stacked directions of a bidirectional layer). Shapes and
    dtypes only: works under ``jit`` and ``vmap`` and costs nothing at run time."""
    hint = describe(cell)
    try:
        ref = _init_shapes(cell.init, 1)
    except _Invalid:
        raise
    except Exception:          # an init eval_shape cannot trace: structure unknown, skip
        return cell.input_size(_abstract(params, len(leading)))
    # structure, ranks and dtypes first (independent of the input size) ...
    _compare(ref, params, "", what=what, hint=hint, leading=leading, shapes=False,
             mismatch=_MISMATCH)
    input_size = int(cell.input_size(_abstract(params, len(leading))))
    if input_size < 1:
        raise InvalidArgumentValue(f"{what}: the input weights have an input size of "
                                   f"{input_size}; {hint} needs at least 1")
    # ... then every shape, for the input size the params themselves say
    _compare(_init_shapes(cell.init, input_size), params, "", what=what, hint=hint,
             leading=leading, shapes=True)
    return input_size


def check_carry(cell, params, carry, x_t, *, what: str = "carry") -> None:
    """Checks ``carry`` against ``cell.carry_for_input(params, x_t)``: structure, shapes and
    exact dtypes (``x_t``: an array or a ShapeDtypeStruct of one step's input)."""
    expected = jax.eval_shape(cell.carry_for_input, _abstract(params), _abstract(x_t))
    _compare(expected, carry, "", what=what, hint=f"{describe(cell)} with these params",
             exact_dtype=True)


def check_input(cell_name: str, x, expected: int, what: str = "x_t") -> None:
    """Raises if ``x``'s last axis is not the params' input size."""
    shape = jnp.shape(x)
    if len(shape) == 0:
        raise InvalidArgumentValue(f"{cell_name}: {what} must have a feature axis, got a scalar")
    if shape[-1] != expected:
        raise InvalidArgumentValue(
            f"{cell_name}: {what} has {shape[-1]} features on its last axis "
            f"(shape {tuple(shape)}) but the params expect input_size={expected}")


def _check_float_input(cell_name: str, x, what: str) -> None:
    dtype = getattr(x, "dtype", None)
    if dtype is not None and not jnp.issubdtype(dtype, jnp.floating):
        raise InvalidArgumentType(
            f"{cell_name}: {what} has dtype {dtype}; cells read floating inputs (embed token "
            f"ids first, or cast with .astype(jnp.float32))")


def check_sequence(cell, params, xs, what: str = "xs", input_size: Optional[int] = None):
    """Checks one sequence ``xs`` (rank, time steps, floating dtype, feature size)."""
    shape = jnp.shape(xs)
    want = 2 + cell.spatial_dims
    if len(shape) != want:
        spatial = ", ".join(["spatial"] * (want - 2))
        layout = "[T, input]" if want == 2 else f"[T, {spatial}, channels]"
        raise InvalidArgumentValue(
            f"{cell.name}: {what} must be one sequence of shape {layout} (rank {want}), got "
            f"shape {tuple(shape)}; batch with jax.vmap(jr.scan, in_axes=(None, None, 0))")
    if shape[0] == 0:
        raise InvalidArgumentValue(f"{cell.name}: {what} has no time steps (shape "
                                   f"{tuple(shape)})")
    _check_float_input(cell.name, xs, what)
    check_input(cell.name, xs, cell.input_size(params) if input_size is None else input_size,
                what=what)


def check_step_input(cell, params, x_t, what: str = "x_t", input_size: Optional[int] = None):
    """Checks one time step's input ``x_t`` of one example (rank, dtype, feature size)."""
    want = 1 + cell.spatial_dims
    if jnp.ndim(x_t) != want:
        raise InvalidArgumentValue(
            f"{cell.name}: step takes one time step of one example, {what} of rank {want}, "
            f"got shape {tuple(jnp.shape(x_t))}; batch with jax.vmap")
    _check_float_input(cell.name, x_t, what)
    check_input(cell.name, x_t, cell.input_size(params) if input_size is None else input_size,
                what=what)


# --------------------------------------------------------------------------- lengths

def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def check_seq_lengths(seq_lengths, num_steps: int, batch_shape=(), *,
                      what: str = "seq_lengths"):
    """Validates ``seq_lengths``: integers of shape ``batch_shape`` in ``[0, num_steps]``.

    Returns them as an int32 array, or None. A float or boolean dtype is a TypeError (a float
    would be truncated), a wrong shape or a concrete value out of range a ValueError.

    Under ``jit``/``vmap`` the values are tracers: only the shape and dtype can be checked,
    and the loops clip the values (a negative length acts as 0, one above ``num_steps`` as
    ``num_steps``). Check a batch once on the host before tracing,
    ``jr.check_seq_lengths(lengths, T, batch_shape=(B,))``, or trace under
    ``jr.debug_checks()`` / ``jr.checked(f)``, where the range check of traced lengths is a
    ``jax.experimental.checkify`` check (the function must then be checkified: ``jr.checked``
    does it).
    """
    if seq_lengths is None:
        return None
    if isinstance(seq_lengths, (bool, np.bool_)):
        raise InvalidArgumentType(f"{what} must be integers, got {_got(seq_lengths)}")
    traced = _is_traced(seq_lengths)
    if traced or isinstance(seq_lengths, jax.Array):
        lengths = seq_lengths
    else:
        try:
            lengths = np.asarray(seq_lengths)
        except (TypeError, ValueError):
            raise InvalidArgumentType(f"{what} must be an integer array, got "
                                      f"{type(seq_lengths).__name__}") from None
    dtype = getattr(lengths, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        raise InvalidArgumentType(f"{what} must be integers, got dtype {dtype} (a float "
                                  f"length would be truncated; cast with .astype(jnp.int32))")
    if tuple(jnp.shape(lengths)) != tuple(batch_shape):
        raise InvalidArgumentValue(
            f"{what} must have shape {tuple(batch_shape)} (one length per sequence), "
            f"got shape {tuple(jnp.shape(lengths))}")
    if not traced:
        values = np.asarray(lengths)
        if values.size and (values.min() < 0 or values.max() > num_steps):
            raise InvalidArgumentValue(
                f"{what} must lie in [0, {num_steps}] (the number of time steps), got "
                f"values from {values.min()} to {values.max()}")
        return jnp.asarray(values.astype(np.int32))
    lengths = jnp.asarray(lengths).astype(jnp.int32)
    if debug_checks_enabled():
        checkify.check(jnp.all((lengths >= 0) & (lengths <= num_steps)),
                       f"{what} must lie in [0, {num_steps}] (the number of time steps), "
                       f"got {{n}}", n=lengths)
    return lengths


# --------------------------------------------------------------------------- debug mode

_DEBUG = contextvars.ContextVar("jaxrnn_debug_checks", default=False)


@contextlib.contextmanager
def debug_checks(enabled: bool = True):
    """Within this block, jaxrnn functions traced add ``jax.experimental.checkify`` checks
    of what cannot be checked on shapes alone: traced ``seq_lengths`` in ``[0, T]``, and
    ``xs``, params and given carries free of NaN and Inf (concrete values are checked
    eagerly and raise ``ValueError``).

    The checks are staged into the traced function, so it must be functionalized with
    ``checkify.checkify`` (:func:`checked` does both)::

        with jr.debug_checks():
            err, out = jax.jit(checkify.checkify(f))(params, xs, lengths)
        err.throw()

    Checks are added when a function is *traced*: a ``jax.jit`` function already traced
    outside this block keeps its cached (unchecked) trace. Off by default: the checks cost
    a reduction over every input per call.
    """
    token = _DEBUG.set(check_bool("enabled", enabled))
    try:
        yield
    finally:
        _DEBUG.reset(token)


def debug_checks_enabled() -> bool:
    """Whether :func:`debug_checks` is active here."""
    return _DEBUG.get()


def checked(fun: Callable, errors=checkify.user_checks) -> Callable:
    """``fun`` with jaxrnn's debug checks on, functionalized by ``checkify``.

    ``checked(fun)(*args)`` returns ``(err, out)`` like ``checkify.checkify(fun)``; call
    ``err.throw()`` to raise the first failed check. Jit it from outside::

        err, (ys, carry) = jax.jit(jr.checked(run))(params, xs, lengths)
        err.throw()       # e.g. "seq_lengths must lie in [0, 50] ..., got -1"
    """
    @functools.wraps(fun)
    def wrapper(*args, **kwargs):
        with debug_checks():
            return checkify.checkify(fun, errors=errors)(*args, **kwargs)
    return wrapper


def check_finite(tree, what: str = "inputs") -> None:
    """Checks that every floating array of ``tree`` is free of NaN and Inf.

    Concrete arrays are checked now (a ``ValueError`` naming the field); traced ones only
    inside :func:`debug_checks`, as ``checkify`` checks. jaxrnn calls it on ``xs``, params
    and carries only in debug mode."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    for path, leaf in leaves:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
            continue
        name = f"{what}{jax.tree_util.keystr(path)}"
        if _is_traced(leaf):
            if debug_checks_enabled():
                checkify.check(jnp.all(jnp.isfinite(leaf)), f"{name} has NaN or Inf values")
        elif not np.all(np.isfinite(np.asarray(leaf, np.float32 if dtype == jnp.bfloat16
                                                  else None))):
            raise InvalidArgumentValue(f"{name} has NaN or Inf values")


def debug_check_finite(tree, what: str) -> None:
    """:func:`check_finite` in debug mode only (what the library's entry points call)."""
    if debug_checks_enabled():
        check_finite(tree, what)
