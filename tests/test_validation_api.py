"""The validation layer (jaxrnn.cells.checks): a table of bad inputs across factories, params,
carries, inputs, lengths, layers, stacks, wrappers, interop and heads, each raising the right
exception type with a message naming the offending argument or field; valid edge cases that
still work; the checks' cost (none at run time, no retrace) and the checkify debug mode."""

import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.experimental import checkify

import jaxrnn as jr
from jaxrnn import linen as jln
from jaxrnn import nnx as jnnx
from jaxrnn.heads import crf, ctc
from jaxrnn.interop import _stack

scan_lib = importlib.import_module("jaxrnn.scan")   # the module (jr.scan is the function)
KEY = jax.random.PRNGKey(0)
T, I, H = 5, 4, 8
XS = jnp.ones((T, I))


def _p(cell, size=I):
    return cell.init(KEY, size)


LSTM = jr.lstm(H)
P_LSTM = _p(LSTM)
P_PEEP = _p(jr.lstm(H, peephole=True))
P_GRU = _p(jr.gru(H))
STACK_8_8 = jr.stack([jr.lstm(H), jr.lstm(H)])
STACK_8_16 = jr.stack([jr.lstm(H), jr.lstm(16)])
P_STACK = STACK_8_8.init(KEY, I)
BI = jr.bidirectional(jr.lstm(H))
P_BI = BI.init(KEY, I)
NET = jr.interop.torch_net(jr.interop.TorchConfig("LSTM", I, H, num_layers=1))
P_NET = NET.init(KEY, I)
XB = jnp.ones((2, T, I))          # [batch, time, features]


def _nnx(**kw):
    return jnnx.LSTM(I, H, rngs=nnx.Rngs(0), **kw)


def _linen(x=XB, lengths=None, **kw):
    mod = jln.LSTM(in_features=I, hidden_size=H, **kw)
    return mod.init(KEY, x, seq_lengths=lengths)


# (id, thunk, exception type, regex the message must match: it names the argument/field)
BAD = [
    # ---- factories: options are typed
    ("lstm peephole='no'", lambda: jr.lstm(H, peephole="no"), TypeError, r"peephole must be a bool.*'no'"),
    ("gru reset_after='false'", lambda: jr.gru(H, reset_after="false"), TypeError, r"reset_after must be a bool"),
    ("lstm coupled=1 (int)", lambda: jr.lstm(H, coupled=1), TypeError, r"coupled must be a bool.*1"),
    ("lstm layer_norm=None", lambda: jr.lstm(H, layer_norm=None), TypeError, r"layer_norm must be a bool"),
    ("hidden_size=8.0", lambda: jr.lstm(8.0), TypeError, r"hidden_size must be an integer.*8\.0"),
    ("hidden_size=True", lambda: jr.gru(True), TypeError, r"hidden_size must be an integer.*True"),
    ("hidden_size=0", lambda: jr.simple_rnn(0), ValueError, r"hidden_size must be a positive integer.*0"),
    ("hidden_size='8'", lambda: jr.mgu("8"), TypeError, r"mgu: hidden_size must be an integer"),
    ("proj_size=2.5", lambda: jr.lstm(H, proj_size=2.5), TypeError, r"proj_size must be an integer"),
    ("proj_size >= hidden", lambda: jr.lstm(H, proj_size=H), ValueError, r"proj_size \(8\) must be smaller"),
    ("forget_bias=nan", lambda: jr.lstm(H, forget_bias=float("nan")), ValueError, r"forget_bias must be finite"),
    ("forget_bias='1'", lambda: jr.min_lstm(H, forget_bias="1"), TypeError, r"forget_bias must be a real number"),
    ("mgu forget_bias=inf", lambda: jr.mgu(H, forget_bias=float("inf")), ValueError, r"mgu: forget_bias must be finite"),
    ("chrono_t_max=0", lambda: jr.lstm(H, chrono_t_max=0), ValueError, r"chrono_t_max must be > 2"),
    ("chrono_t_max=inf", lambda: jr.lstm(H, chrono_t_max=float("inf")), ValueError, r"chrono_t_max must be finite"),
    ("dtype=int8", lambda: jr.lstm(H, dtype=jnp.int8), TypeError, r"lstm: dtype must be a floating dtype.*int8"),
    ("param_dtype=int32", lambda: jr.gru(H, param_dtype=jnp.int32), TypeError, r"param_dtype must be a floating dtype.*int32"),
    ("dtype=complex64", lambda: jr.min_gru(H, dtype=jnp.complex64), TypeError, r"dtype must be a floating dtype.*complex64"),
    ("dtype='nope'", lambda: jr.simple_rnn(H, dtype="nope"), TypeError, r"dtype must be a floating dtype"),
    ("nonlinearity='sigmoid'", lambda: jr.simple_rnn(H, nonlinearity="sigmoid"), ValueError, r"nonlinearity must be one of \('relu', 'tanh'\)"),
    ("nonlinearity=None", lambda: jr.simple_rnn(H, nonlinearity=None), TypeError, r"nonlinearity must be one of"),
    ("conv kernel_size=0", lambda: jr.conv_lstm(4, 0), ValueError, r"kernel_size must be a positive integer"),
    ("conv kernel_size 1 entry for 2-d", lambda: jr.conv_lstm(4, (3,), spatial_dims=2), ValueError, r"kernel_size \(3,\) has 1 entries"),
    ("conv kernel_size=3.0", lambda: jr.conv_lstm(4, 3.0), TypeError, r"kernel_size must be an integer"),
    ("conv spatial_dims=True", lambda: jr.conv_lstm(4, 3, spatial_dims=True), TypeError, r"spatial_dims must be an integer"),
    ("init input_size=0", lambda: LSTM.init(KEY, 0), ValueError, r"input_size must be a positive integer"),
    ("init input_size=4.0", lambda: LSTM.init(KEY, 4.0), TypeError, r"input_size must be an integer"),
    ("initial_carry batch_shape=3", lambda: LSTM.initial_carry(P_LSTM, 3), TypeError, r"batch_shape must be a tuple"),
    # ---- layer options
    ("layer input_dropout=1.0", lambda: jr.layer(LSTM, input_dropout=1.0), ValueError, r"input_dropout must be in \[0, 1\)"),
    ("layer recurrent_dropout='0.1'", lambda: jr.layer(LSTM, recurrent_dropout="0.1"), TypeError, r"recurrent_dropout must be a real number"),
    ("layer zoneout=nan", lambda: jr.layer(LSTM, zoneout=float("nan")), ValueError, r"zoneout must be finite"),
    ("layer reverse='yes'", lambda: jr.layer(LSTM, reverse="yes"), TypeError, r"reverse must be a bool"),
    ("layer unroll=0", lambda: jr.layer(LSTM, unroll=0), ValueError, r"unroll must be a positive integer"),
    ("layer unroll=2.0", lambda: jr.layer(LSTM, unroll=2.0), TypeError, r"unroll must be an integer"),
    ("layer parallel=1", lambda: jr.layer(jr.min_gru(H), parallel=1), TypeError, r"parallel must be a bool"),
    ("layer method='cudnn'", lambda: jr.layer(LSTM, method="cudnn"), ValueError, r"method must be one of \('fused', 'reference', 'newton'\)"),
    ("scan newton= unknown option", lambda: jr.scan(LSTM, P_LSTM, XS, method="newton", newton={"jac": "full"}), ValueError, r"unknown Newton option.*'jac'"),
    ("scan newton= a string", lambda: jr.scan(LSTM, P_LSTM, XS, method="newton", newton="fast"), TypeError, r"newton= takes jr.NewtonOptions"),
    ("scan newton= without method='newton'", lambda: jr.scan(LSTM, P_LSTM, XS, newton={}), ValueError, r"newton= options apply to method='newton'"),
    ("scan newton jacobian='dense'", lambda: jr.scan(LSTM, P_LSTM, XS, method="newton", newton=jr.NewtonOptions(jacobian="dense")), ValueError, r"jacobian must be one of"),
    ("scan newton max_iters=0", lambda: jr.scan(LSTM, P_LSTM, XS, method="newton", newton=jr.NewtonOptions(max_iters=0)), ValueError, r"max_iters must be a positive integer"),
    ("scan newton max_iters='10'", lambda: jr.scan(LSTM, P_LSTM, XS, method="newton", newton=jr.NewtonOptions(max_iters="10")), TypeError, r"max_iters must be an integer"),
    ("scan newton tol=nan", lambda: jr.scan(LSTM, P_LSTM, XS, method="newton", newton={"tol": float("nan")}), ValueError, r"tol must be finite"),
    ("scan newton tol=0", lambda: jr.scan(LSTM, P_LSTM, XS, method="newton", newton={"tol": 0.0}), ValueError, r"tol must be > 0"),
    ("scan newton damping=-1", lambda: jr.scan(LSTM, P_LSTM, XS, method="newton", newton={"damping": -1.0}), ValueError, r"damping must be >= 0"),
    ("scan newton damping with full", lambda: jr.scan(LSTM, P_LSTM, XS, method="newton", newton={"damping": 1.0, "jacobian": "full"}), ValueError, r"damping=1.0 is the ELK step for jacobian='diagonal'"),
    ("scan newton on_failure='raise'", lambda: jr.scan(LSTM, P_LSTM, XS, method="newton", newton={"on_failure": "raise"}), ValueError, r"on_failure must be one of"),
    ("scan newton with unroll", lambda: jr.scan(LSTM, P_LSTM, XS, method="newton", unroll=4), ValueError, r"unroll=4 applies to the sequential methods"),
    ("scan newton with remat", lambda: jr.scan(LSTM, P_LSTM, XS, method="newton", remat=True), ValueError, r"remat=True applies to the sequential methods"),
    ("scan newton conv_lstm", lambda: jr.scan(jr.conv_lstm(2, 3, spatial_dims=1), _p(jr.conv_lstm(2, 3, spatial_dims=1), 2), jnp.ones((T, 5, 2)), method="newton"), ValueError, r"conv_lstm.*spatial"),
    ("newton_scan init of wrong shape", lambda: jr.newton_scan(LSTM, P_LSTM, XS, init=LSTM.initial_carry(P_LSTM)), ValueError, r"init"),
    ("layer newton= without method", lambda: jr.layer(LSTM, newton={}), ValueError, r"layer: newton= options apply to method='newton'"),
    ("layer method=None", lambda: jr.layer(LSTM, method=None), TypeError, r"method must be one of"),
    ("layer remat='yes'", lambda: jr.layer(LSTM, remat="yes"), TypeError, r"remat must be a bool"),
    ("layer of a non-cell", lambda: jr.layer("lstm"), TypeError, r"layer\(\) takes a jaxrnn Cell"),
    ("scan of a non-cell", lambda: jr.scan(P_LSTM, P_LSTM, XS), TypeError, r"scan\(\) takes a jaxrnn Cell"),
    ("bidirectional merge=3", lambda: jr.bidirectional(LSTM, merge=3), TypeError, r"merge must be a string"),
    ("bidirectional merge='max'", lambda: jr.bidirectional(LSTM, merge="max"), ValueError, r"unknown merge mode 'max'"),
    ("bidirectional zoneout=2", lambda: jr.bidirectional(LSTM, zoneout=2), ValueError, r"zoneout must be in \[0, 1\)"),
    ("stack dropout=1.5", lambda: jr.stack([LSTM], dropout=1.5), ValueError, r"stack: dropout must be in \[0, 1\)"),
    ("stack residual='no'", lambda: jr.stack([LSTM], residual="no"), TypeError, r"stack: residual must be a bool"),
    ("stack of one cell, not a list", lambda: jr.stack(LSTM), TypeError, r"stack\(\) takes a list"),
    ("dropout rate=-0.5", lambda: jr.dropout(KEY, XS, -0.5), ValueError, r"dropout: rate must be in \[0, 1\)"),
    # ---- params checked against the cell that receives them
    ("plain LSTM params -> peephole LSTM", lambda: jr.scan(jr.lstm(H, peephole=True), P_LSTM, XS), ValueError, r"params\.w_peep is None, but lstm\(.*peephole=True.*needs an array of shape \(3, 8\)"),
    ("peephole params -> plain LSTM", lambda: jr.scan(LSTM, P_PEEP, XS), ValueError, r"params\.w_peep should be None for lstm\(hidden_size=8"),
    ("GRU params -> LSTM", lambda: jr.scan(LSTM, P_GRU, XS), TypeError, r"params must be LSTMParams for lstm\(.*got GRUParams"),
    ("integer params", lambda: jr.scan(LSTM, jax.tree.map(lambda a: a.astype(jnp.int32), P_LSTM), XS), TypeError, r"params\.w_ih has dtype int32; params must be floating"),
    ("w_hh of another hidden size", lambda: jr.scan(LSTM, P_LSTM._replace(w_hh=jnp.zeros((H, 4 * H + 4))), XS), ValueError, r"params\.w_hh has shape \(8, 36\), expected \(8, 32\)"),
    ("a list where an array goes", lambda: jr.scan(LSTM, P_LSTM._replace(b=[0.0] * 32), XS), TypeError, r"params\.b must be an array"),
    ("layer.apply with GRU params", lambda: jr.layer(LSTM).apply(P_GRU, XS), TypeError, r"params must be LSTMParams"),
    ("layer.step with peephole params", lambda: jr.layer(LSTM).step(P_PEEP, LSTM.initial_carry(P_PEEP), XS[0]), ValueError, r"params\.w_peep should be None"),
    ("cell.step with GRU params", lambda: LSTM.step(P_GRU, LSTM.initial_carry(P_LSTM), XS[0]), TypeError, r"params must be LSTMParams"),
    ("stack params -> stack of other sizes", lambda: STACK_8_16.apply(P_STACK, XS), ValueError, r"stack layer 1: params\.w_ih has shape \(8, 32\), expected \(8, 64\)"),
    ("stack params of the wrong count", lambda: jr.stack([LSTM] * 3).apply(P_STACK, XS), ValueError, r"stack of 3 layers needs a tuple of 3 params, got 2"),
    ("stack params not a tuple", lambda: STACK_8_8.apply(P_LSTM, XS), TypeError, r"stack of 2 layers needs a tuple of 2 params.*got LSTMParams"),
    ("stack layer 1 params for another input", lambda: STACK_8_8.apply((P_STACK[0], _p(LSTM, 5)), XS), ValueError, r"stack layer 1: params expect input_size=5, but layer 0 .* outputs 8"),
    ("stack.step with other sizes", lambda: STACK_8_16.step(P_STACK, STACK_8_8.initial_carry(P_STACK), XS[0]), ValueError, r"stack layer 1: params\.w_ih"),
    ("bidirectional given one direction's params", lambda: BI.apply(P_LSTM, XS), ValueError, r"bidirectional params\.w_ih has shape \(4, 32\), expected rank 3 .*leading axes \(2,\)"),
    ("bidirectional of two kinds given one tuple entry", lambda: jr.bidirectional(LSTM, jr.gru(H)).apply(P_LSTM, XS), TypeError, r"bidirectional params must be a tuple \(params_fw, params_bw\)"),
    ("bidirectional backward params of another kind", lambda: jr.bidirectional(LSTM, jr.gru(H)).apply((P_LSTM, P_LSTM), XS), TypeError, r"bidirectional backward: params must be GRUParams"),
    ("torch net params of another net", lambda: jr.interop.apply_like_torch(NET, (_p(jr.lstm(16)),), jnp.ones((T, 2, I))), ValueError, r"stack layer 0: params\.w_ih has shape \(4, 64\), expected \(4, 32\)"),
    # ---- carries
    ("GRU carry for an LSTM", lambda: jr.scan(LSTM, P_LSTM, XS, jr.GRUCarry(jnp.zeros(H))), TypeError, r"carry must be LSTMCarry.*got GRUCarry"),
    ("carry.c of the wrong size", lambda: jr.scan(LSTM, P_LSTM, XS, jr.LSTMCarry(jnp.zeros(H), jnp.zeros(3))), ValueError, r"carry\.c has shape \(3,\), expected \(8,\)"),
    ("carry.h bfloat16 for float32 params", lambda: jr.scan(LSTM, P_LSTM, XS, jr.LSTMCarry(jnp.zeros(H, jnp.bfloat16), jnp.zeros(H))), TypeError, r"carry\.h has dtype bfloat16, expected float32"),
    ("bidirectional carry not a pair", lambda: BI.apply(P_BI, XS, LSTM.initial_carry(P_LSTM)), TypeError, r"bidirectional carry must be a tuple \(carry_fw, carry_bw\)"),
    ("bidirectional backward carry wrong", lambda: BI.apply(P_BI, XS, (LSTM.initial_carry(P_LSTM), jr.LSTMCarry(jnp.zeros(2), jnp.zeros(H)))), ValueError, r"bidirectional backward: carry\.h has shape \(2,\)"),
    ("stack layer 1 carry wrong", lambda: STACK_8_8.apply(P_STACK, XS, (LSTM.initial_carry(P_LSTM), jr.GRUCarry(jnp.zeros(H)))), TypeError, r"stack layer 1: carry must be LSTMCarry"),
    ("stack.step without a carry", lambda: STACK_8_8.step(P_STACK, None, XS[0]), TypeError, r"stack step needs a carry"),
    # ---- inputs
    ("xs batched without vmap", lambda: jr.scan(LSTM, P_LSTM, XB), ValueError, r"xs must be one sequence .*rank 2.*jax\.vmap"),
    ("xs of the wrong feature size", lambda: jr.scan(LSTM, P_LSTM, jnp.ones((T, 5))), ValueError, r"xs has 5 features .*input_size=4"),
    ("xs of integers", lambda: jr.scan(LSTM, P_LSTM, jnp.ones((T, I), jnp.int32)), TypeError, r"xs has dtype int32; cells read floating inputs"),
    ("xs with no time steps", lambda: jr.scan(LSTM, P_LSTM, jnp.ones((0, I))), ValueError, r"xs has no time steps"),
    ("layer.step given a sequence", lambda: jr.layer(LSTM).step(P_LSTM, LSTM.initial_carry(P_LSTM), XS), ValueError, r"one time step of one example, x_t of rank 1"),
    ("stack xs of the wrong feature size", lambda: STACK_8_8.apply(P_STACK, jnp.ones((T, 3))), ValueError, r"stack: xs has shape \(5, 3\), but layer 0's params expect input_size=4"),
    ("apply_batched x rank 2", lambda: _stack.apply_batched(STACK_8_8, P_STACK, XS), ValueError, r"x must have shape \[batch, time, features\]"),
    # ---- lengths, everywhere they enter
    ("scan float lengths", lambda: jr.scan(LSTM, P_LSTM, XS, seq_lengths=3.0), TypeError, r"seq_lengths must be integers, got dtype float"),
    ("scan bool length", lambda: jr.scan(LSTM, P_LSTM, XS, seq_lengths=True), TypeError, r"seq_lengths must be integers"),
    ("scan negative length", lambda: jr.scan(LSTM, P_LSTM, XS, seq_lengths=-1), ValueError, r"seq_lengths must lie in \[0, 5\].*-1"),
    ("scan length > T", lambda: jr.scan(LSTM, P_LSTM, XS, seq_lengths=6), ValueError, r"seq_lengths must lie in \[0, 5\]"),
    ("layer lengths of a batch shape", lambda: jr.layer(LSTM).apply(P_LSTM, XS, seq_lengths=jnp.array([1, 2])), ValueError, r"seq_lengths must have shape \(\)"),
    ("stack float lengths", lambda: STACK_8_8.apply(P_STACK, XS, seq_lengths=jnp.float32(2)), TypeError, r"seq_lengths must be integers"),
    ("bidirectional negative length", lambda: BI.apply(P_BI, XS, seq_lengths=-2), ValueError, r"seq_lengths must lie in \[0, 5\]"),
    ("apply_like_torch negative lengths", lambda: jr.interop.apply_like_torch(NET, P_NET, jnp.ones((T, 2, I)), seq_lengths=jnp.array([-1, 3])), ValueError, r"seq_lengths must lie in \[0, 5\].*-1"),
    ("apply_like_torch float lengths", lambda: jr.interop.apply_like_torch(NET, P_NET, jnp.ones((T, 2, I)), seq_lengths=jnp.array([1.5, 3.0])), TypeError, r"seq_lengths must be integers"),
    ("apply_batched negative lengths", lambda: _stack.apply_batched(STACK_8_8, P_STACK, XB, seq_lengths=np.array([2, -3])), ValueError, r"seq_lengths must lie in \[0, 5\]"),
    ("nnx negative lengths", lambda: _nnx()(XB, seq_lengths=jnp.array([-1, 3])), ValueError, r"seq_lengths must lie in \[0, 5\]"),
    ("nnx float lengths", lambda: _nnx()(XB, seq_lengths=jnp.array([1.0, 3.0])), TypeError, r"seq_lengths must be integers"),
    ("linen lengths > T", lambda: _linen(lengths=jnp.array([9, 3])), ValueError, r"seq_lengths must lie in \[0, 5\]"),
    ("check_seq_lengths float", lambda: jr.check_seq_lengths(np.array([1.0, 2.0]), T, batch_shape=(2,)), TypeError, r"seq_lengths must be integers"),
    ("crf float length", lambda: crf.log_partition(crf.init(3), jnp.zeros((T, 3)), 2.5), TypeError, r"crf: length must be integers"),
    ("crf negative length", lambda: crf.decode(crf.init(3), jnp.zeros((T, 3)), -1), ValueError, r"crf: length must lie in \[0, 5\]"),
    ("ctc logit_lengths > T", lambda: ctc.ctc_loss(jnp.zeros((2, T, 3)), jnp.array([5, 6]), jnp.ones((2, 2), jnp.int32), jnp.array([1, 1])), ValueError, r"ctc_loss: logit_lengths must lie in \[0, 5\]"),
    ("ctc float label_lengths", lambda: ctc.ctc_loss(jnp.zeros((2, T, 3)), jnp.array([5, 5]), jnp.ones((2, 2), jnp.int32), jnp.array([1.0, 1.0])), TypeError, r"ctc_loss: label_lengths must be integers"),
    # ---- wrappers and interop
    ("nnx bidirectional='no'", lambda: _nnx(bidirectional="no"), TypeError, r"bidirectional must be a bool.*'no'"),
    ("nnx num_layers=0", lambda: _nnx(num_layers=0), ValueError, r"num_layers must be a positive integer"),
    ("nnx dropout=1.0", lambda: _nnx(dropout=1.0), ValueError, r"dropout must be in \[0, 1\)"),
    ("nnx in_features=4.0", lambda: jnnx.GRU(4.0, H, rngs=nnx.Rngs(0)), TypeError, r"in_features must be an integer"),
    ("nnx cell option peephole='no'", lambda: _nnx(peephole="no"), TypeError, r"lstm: peephole must be a bool"),
    ("linen bidirectional='no'", lambda: _linen(bidirectional="no"), TypeError, r"bidirectional must be a bool"),
    ("linen batch_first='yes'", lambda: _linen(batch_first="yes"), TypeError, r"batch_first must be a bool"),
    ("linen cell_options not a dict", lambda: _linen(cell_options=[("peephole", True)]), TypeError, r"cell_options must be a dict"),
    ("torch_like_stack num_layers=2.0", lambda: _stack.torch_like_stack("lstm", H, 2.0), TypeError, r"num_layers must be an integer"),
    ("TorchConfig bidirectional='no'", lambda: jr.interop.torch_net(jr.interop.TorchConfig("LSTM", I, H, bidirectional="no")), TypeError, r"TorchConfig: bidirectional must be a bool"),
    ("TorchConfig dropout=2", lambda: jr.interop.torch_net(jr.interop.TorchConfig("GRU", I, H, dropout=2)), ValueError, r"TorchConfig: dropout must be in \[0, 1\)"),
    ("TorchConfig hidden_size=0", lambda: jr.interop.torch_net(jr.interop.TorchConfig("GRU", I, 0)), ValueError, r"TorchConfig: hidden_size must be a positive integer"),
    # ---- heads and models
    ("crf.init(3.0)", lambda: crf.init(3.0), TypeError, r"crf\.init: num_tags must be an integer"),
    ("crf.init(0)", lambda: crf.init(0), ValueError, r"crf\.init: num_tags must be a positive integer"),
    ("ctc beam_width=0", lambda: ctc.prefix_beam_search(np.zeros((T, 3)), beam_width=0), ValueError, r"beam_width must be a positive integer"),
    ("Seq2Seq dropout=1", lambda: jr.models.Seq2Seq(5, 5, dropout=1), ValueError, r"Seq2Seq: dropout must be in \[0, 1\)"),
    ("Seq2Seq input_feeding='no'", lambda: jr.models.Seq2Seq(5, 5, input_feeding="no"), TypeError, r"Seq2Seq: input_feeding must be a bool"),
    # ---- the opt-in NaN check, on concrete values
    ("debug mode: NaN in xs", lambda: _in_debug(lambda: jr.scan(LSTM, P_LSTM, XS.at[1, 2].set(jnp.nan))), ValueError, r"xs has NaN or Inf values"),
    ("debug mode: Inf in params", lambda: _in_debug(lambda: jr.layer(LSTM).apply(P_LSTM._replace(b=P_LSTM.b.at[0].set(jnp.inf)), XS)), ValueError, r"params\.b has NaN or Inf values"),
]


def _in_debug(f):
    with jr.debug_checks():
        return f()


def test_the_table_is_large_and_distinct():
    ids = [row[0] for row in BAD]
    assert len(ids) == len(set(ids)) and len(ids) >= 35


@pytest.mark.parametrize("thunk,exc,pattern", [row[1:] for row in BAD], ids=[row[0] for row in BAD])
def test_bad_input(thunk, exc, pattern):
    with pytest.raises(exc, match=pattern) as info:
        thunk()
    # the library's own checks, not an error from deep inside JAX
    assert isinstance(info.value, (jr.InvalidArgumentType, jr.InvalidArgumentValue)), info.value
    assert isinstance(info.value, TypeError) != isinstance(info.value, ValueError)


# ------------------------------------------------------------------ valid edge cases

def test_numpy_bools_and_ints_are_accepted():
    cell = jr.lstm(np.int64(H), peephole=np.bool_(True), proj_size=np.int32(4))
    assert cell.options["peephole"] is True and cell.hidden_size == H
    params = cell.init(KEY, np.int32(I))
    lay = jr.layer(cell, reverse=np.False_, unroll=np.int64(2), remat=np.bool_(False))
    ys, _ = lay.apply(params, XS)
    assert ys.shape == (T, 4)
    assert jr.gru(H, reset_after=np.bool_(False)).options["reset_after"] is False
    mod = jnnx.GRU(I, H, num_layers=np.int64(1), bidirectional=np.bool_(False), rngs=nnx.Rngs(0))
    assert mod(XB)[0].shape == (2, T, H)


def test_rates_may_be_ints_and_python_floats():
    jr.layer(LSTM, input_dropout=0, recurrent_dropout=0.0, zoneout=np.float32(0.1))
    jr.stack([LSTM], dropout=0, residual=np.True_)
    jr.lstm(H, forget_bias=2, chrono_t_max=np.float64(10.0))


def test_int64_lengths_under_x64(x64):
    ys, _ = jr.scan(LSTM, P_LSTM, XS, seq_lengths=np.int64(3))
    n = jnp.asarray([2, 5], jnp.int64)
    assert n.dtype == jnp.int64
    assert jr.check_seq_lengths(n, T, batch_shape=(2,)).dtype == jnp.int32
    out, _ = jr.interop.apply_like_torch(NET, P_NET, jnp.ones((T, 2, I), jnp.float32),
                                         seq_lengths=n)
    assert out.shape == (T, 2, H)
    np.testing.assert_array_equal(np.asarray(ys[3:]), 0.0)


def test_zero_length_sequences():
    ys, carry = jr.scan(LSTM, P_LSTM, XS, seq_lengths=0)
    np.testing.assert_array_equal(np.asarray(ys), 0.0)
    chex.assert_trees_all_equal(carry, LSTM.initial_carry(P_LSTM))
    ys, _ = _nnx()(XB, seq_lengths=jnp.array([0, T]))
    np.testing.assert_array_equal(np.asarray(ys[0]), 0.0)
    assert float(jnp.abs(ys[1]).max()) > 0


def test_cast_params_are_accepted(x64):
    """Params may be cast (float64 references, bfloat16 weights): only non-floating dtypes are
    refused, and the carry follows the params' dtype."""
    p64 = jax.tree.map(lambda a: a.astype(jnp.float64), P_LSTM)
    ys, carry = jr.scan(LSTM, p64, XS.astype(jnp.float64))
    assert ys.dtype == jnp.float64 and carry.c.dtype == jnp.float64
    bf = jax.tree.map(lambda a: a.astype(jnp.bfloat16), P_LSTM)
    ys, _ = jr.scan(jr.lstm(H, dtype=jnp.float32), bf, XS.astype(jnp.bfloat16))
    assert ys.dtype == jnp.bfloat16


def test_even_conv_kernels_work():
    cell = jr.conv_lstm(3, 2, spatial_dims=1)
    ys, _ = jr.scan(cell, cell.init(KEY, 2), jnp.ones((T, 6, 2)))
    assert ys.shape == (T, 6, 3)


# ------------------------------------------------------------------ under jit and vmap, at no cost

def test_checks_raise_at_trace_time_under_jit_and_vmap():
    with pytest.raises(ValueError, match=r"params\.w_peep is None"):
        jax.jit(lambda p, x: jr.scan(jr.lstm(H, peephole=True), p, x))(P_LSTM, XS)
    with pytest.raises(ValueError, match=r"stack layer 1: params\.w_ih"):
        jax.jit(STACK_8_16.apply)(P_STACK, XS)
    with pytest.raises(TypeError, match=r"seq_lengths must be integers"):
        jax.jit(lambda n: jr.scan(LSTM, P_LSTM, XS, seq_lengths=n))(jnp.float32(2))
    batched = jax.vmap(jr.scan, in_axes=(None, None, 0))
    with pytest.raises(TypeError, match=r"params must be LSTMParams"):
        batched(LSTM, P_GRU, XB)
    # an ensemble: params batched by vmap are checked per member
    ens = jax.vmap(lambda k: LSTM.init(k, I))(jax.random.split(KEY, 3))
    ys, _ = jax.vmap(lambda p: jr.scan(LSTM, p, XS))(ens)
    assert ys.shape == (3, T, H)
    with pytest.raises(ValueError, match=r"params\.w_ih has shape"):
        jax.vmap(lambda p: jr.scan(jr.lstm(16), p, XS))(ens)


def test_no_retrace_and_nothing_added_to_the_program():
    calls = []

    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(p, xs, n):
        calls.append(1)
        return jr.layer(LSTM).apply(p, xs, seq_lengths=n)[0]

    f(P_LSTM, XS, jnp.int32(2))
    f(jax.tree.map(lambda a: a + 1.0, P_LSTM), XS * 2.0, jnp.int32(4))
    assert len(calls) == 1
    # the checked entry point traces to exactly the program of the unchecked loop
    checked = jax.make_jaxpr(lambda p, x, n: jr.scan(LSTM, p, x, seq_lengths=n))(P_LSTM, XS, jnp.int32(2))
    raw = jax.make_jaxpr(lambda p, x, n: scan_lib.run(LSTM, p, x, LSTM.carry_for_input(p, x[0]),
                                                      seq_lengths=n))(P_LSTM, XS, jnp.int32(2))
    assert str(checked) == str(raw)


# ------------------------------------------------------------------ traced lengths: checkify

def _run(p, xs, n):
    return jr.scan(LSTM, p, xs, seq_lengths=n)


def test_a_negative_traced_length_passes_silently_without_debug_checks():
    """Documented: under jit a length is a tracer; without the debug mode it is clipped
    (a negative length acts as 0)."""
    ys, carry = jax.jit(_run)(P_LSTM, XS, jnp.int32(-1))
    np.testing.assert_array_equal(np.asarray(ys), 0.0)
    chex.assert_trees_all_equal(carry, LSTM.initial_carry(P_LSTM))


def test_checked_catches_a_negative_traced_length_under_jit():
    err, _ = jax.jit(jr.checked(_run))(P_LSTM, XS, jnp.int32(-1))
    with pytest.raises(checkify.JaxRuntimeError, match=r"seq_lengths must lie in \[0, 5\].*-1"):
        err.throw()
    err, (ys, _) = jax.jit(jr.checked(_run))(P_LSTM, XS, jnp.int32(3))
    assert err.get() is None
    np.testing.assert_allclose(ys, jax.jit(_run)(P_LSTM, XS, jnp.int32(3))[0])


def test_debug_checks_with_checkify_directly_and_through_the_wrappers():
    with jr.debug_checks():
        err, _ = jax.jit(checkify.checkify(_run))(P_LSTM, XS, jnp.int32(7))
    assert "seq_lengths must lie in [0, 5]" in err.get()
    mod = _nnx()
    err, _ = jax.jit(jr.checked(lambda x, n: mod(x, seq_lengths=n)))(XB, jnp.array([2, -3]))
    assert "seq_lengths must lie in [0, 5]" in err.get()
    # per example under vmap, and through grad
    g = jax.grad(lambda p, n: jnp.sum(_run(p, XS, n)[0]))
    err, _ = jax.jit(jr.checked(g))(P_LSTM, jnp.int32(9))
    assert "seq_lengths must lie" in err.get()


def test_debug_checks_find_nan_in_traced_inputs_and_params():
    err, _ = jax.jit(jr.checked(_run))(P_LSTM, XS.at[0, 0].set(jnp.nan), jnp.int32(3))
    assert "xs has NaN or Inf values" in err.get()
    bad = P_LSTM._replace(w_hh=P_LSTM.w_hh.at[0, 0].set(jnp.inf))
    err, _ = jax.jit(jr.checked(_run))(bad, XS, jnp.int32(3))
    assert "params.w_hh has NaN or Inf values" in err.get()
    err, _ = jax.jit(jr.checked(_run))(P_LSTM, XS, jnp.int32(3))
    assert err.get() is None


def test_default_nan_behaviour_is_to_propagate():
    """Nothing is checked or replaced by default: NaN in xs reaches the outputs after it."""
    ys, _ = jr.scan(LSTM, P_LSTM, XS.at[2, 0].set(jnp.nan))
    assert np.all(np.isfinite(np.asarray(ys[:2]))) and np.all(np.isnan(np.asarray(ys[2:])))


def test_check_finite_and_check_params_are_public():
    jr.check_finite(P_LSTM, "params")
    with pytest.raises(ValueError, match=r"params\.c has NaN"):
        jr.check_finite(jr.LSTMCarry(jnp.zeros(2), jnp.full(2, jnp.nan)), "params")
    assert jr.check_params(LSTM, P_LSTM) == I
    assert BI.check_params(P_BI) == I and STACK_8_8.check_params(P_STACK) == I
    with pytest.raises(TypeError, match="LSTMParams"):
        jr.check_params(LSTM, P_GRU)
    with pytest.raises(TypeError, match="enabled must be a bool"):
        with jr.debug_checks("yes"):
            pass
