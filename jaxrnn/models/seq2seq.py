"""Encoder-decoder RNN with optional attention, as pure functions over one example.

Encoder: embeddings -> ``jr.stack`` of ``enc_layers`` bidirectional layers (padded sources,
``seq_lengths``). Decoder: a ``jr.stack`` of ``dec_layers`` unidirectional layers advanced by ONE
``Layer.step`` per output token in :meth:`Seq2Seq.step`, so it has the stack's dropout between
layers; the same step serves teacher forcing (:meth:`Seq2Seq.teacher_forced`, a ``lax.scan``
over the target) and autoregressive decoding (:meth:`Seq2Seq.decode_fn` for
:mod:`jaxrnn.models.decode`). Luong et al. (2015) layout, for every scoring function:

    x_t   = [E y_{t-1} ; h~_{t-1}]                  (input feeding; [E y_{t-1}] without it)
    h_t   = decoder.step(h_{t-1}, dropout(x_t))
    c_t   = attend(h_t, memory, mask)               (attention: additive / general / dot)
          = [h_fw_last ; h_bw_last]                 (attention="none": one fixed summary, Cho et al. 2014)
    h~_t  = tanh(W_c [c_t ; h_t] + b_c)
    p(y_t) = softmax(W_o h~_t + b_o)

The decoder's initial hidden state is ``tanh(W_b [h_fw_last ; h_bw_last] + b_b)`` in every layer
(other carry fields, e.g. the LSTM cell state, start at zero), so the cell's carry must have
an ``h`` field of ``hidden_size`` units. Cells are named as in :mod:`jaxrnn.cells.registry`.
Batches are ``vmap``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn as jr
from jaxrnn.cells import checks, registry
from jaxrnn.heads import attention as attention_lib

__all__ = ["Seq2Seq", "Context", "DecoderState", "ATTENTIONS"]

ATTENTIONS = ("additive", "general", "dot", "none")


class Context(NamedTuple):
    """What the decoder reads from the source at every step (constant while decoding)."""
    memory: jax.Array     # [S, M] encoder outputs (zeros at padding)
    keys: Any             # attention.prepare(memory)
    mask: jax.Array       # [S] bool, True at real source positions
    summary: jax.Array    # [M] final forward and backward states of the last encoder layer


class DecoderState(NamedTuple):
    carries: tuple        # one carry per decoder layer
    feed: jax.Array       # [H] h~ of the previous step (input feeding); zeros at the start


def _check_bridgeable(cell, name, hidden_size, embed_size):
    """The bridge writes the decoder's ``carry.h`` and the encoder summary reads it: refuse a
    cell without such a field (or of another width) here rather than mid-trace."""
    if cell.spatial_dims:
        raise ValueError(f"Seq2Seq: cell {name!r} reads spatial inputs; embeddings are vectors")
    carry = jax.eval_shape(lambda k: cell.initial_carry(cell.init(k, embed_size)),
                           jax.random.PRNGKey(0))
    fields = getattr(type(carry), "_fields", ())
    if "h" not in fields:
        raise ValueError(f"Seq2Seq: cell {name!r} has a carry without an 'h' field "
                         f"({type(carry).__name__}{tuple(fields)}); the bridge sets the decoder's "
                         f"carry.h from the encoder's final states")
    if carry.h.shape != (hidden_size,) or cell.output_size != hidden_size:
        raise ValueError(f"Seq2Seq: cell {name!r} has carry.h of shape {carry.h.shape} and "
                         f"output size {cell.output_size}; the bridge and attention need "
                         f"{hidden_size} (hidden_size), so options like proj_size are not supported")


def _dense(key, n_in, n_out):
    lim = np.sqrt(6.0 / (n_in + n_out))
    return {"w": jax.random.uniform(key, (n_in, n_out), jnp.float32, -lim, lim),
            "b": jnp.zeros((n_out,), jnp.float32)}


def _apply(p, x):
    y = x @ p["w"]
    return y + jnp.broadcast_to(p["b"], y.shape)   # explicit: rank promotion is an error


class Seq2Seq:
    """The model's pure functions; ``params`` is a dict built by :meth:`init`.

    ``cell`` is a name of :mod:`jaxrnn.cells.registry` (``"lstm"``, ``"gru_cho"``, ...) and
    ``cell_options`` its factory's options. ``dropout`` (active only with a key) acts on the
    source embeddings and between encoder layers, on the decoder's input and between its
    layers, and on h~ before the output layer.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, *, embed_size: int = 128,
                 hidden_size: int = 256, enc_layers: int = 1, dec_layers: int = 1,
                 cell: str = "lstm", attention: str = "additive", attn_size: Optional[int] = None,
                 input_feeding: bool = True, dropout: float = 0.0, cell_options: dict = None):
        w = "Seq2Seq"
        attention = checks.check_choice("attention", attention, ATTENTIONS, where=w)
        for name, v in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab),
                        ("embed_size", embed_size), ("hidden_size", hidden_size),
                        ("enc_layers", enc_layers), ("dec_layers", dec_layers)):
            checks.check_positive_int(name, v, where=w)
        checks.check_optional_positive_int("attn_size", attn_size, where=w)
        input_feeding = checks.check_bool("input_feeding", input_feeding, where=w)
        dropout = checks.check_rate("dropout", dropout, where=w)
        opts = dict(cell_options or {})
        self.cells = [registry.make(cell, hidden_size, **opts) for _ in range(dec_layers)]
        _check_bridgeable(self.cells[0], cell, hidden_size, embed_size)
        self.encoder = jr.stack([jr.bidirectional(registry.make(cell, hidden_size, **opts))
                                 for _ in range(enc_layers)], dropout=dropout)
        self.decoder = jr.stack([jr.layer(c) for c in self.cells], dropout=dropout)
        if attention == "additive":
            self.att = attention_lib.additive(attn_size or hidden_size)
        elif attention in ("general", "dot"):
            self.att = attention_lib.multiplicative(attention)
        else:
            self.att = None
        self.Vs, self.Vt, self.E, self.H = src_vocab, tgt_vocab, embed_size, hidden_size
        self.M = self.encoder.output_size
        self.input_feeding, self.dropout = input_feeding, dropout

    # ----------------------------------------------------------------------- params

    def init(self, key):
        ks = jax.random.split(key, 8 + len(self.cells))
        E, H, M = self.E, self.H, self.M
        x_size = E + (H if self.input_feeding else 0)
        # per-layer keys as before the decoder became a stack: a seed gives the same model
        dec, size = [], x_size
        for k, c in zip(ks[8:], self.cells):
            dec.append(c.init(k, size))
            size = c.output_size
        return {
            "src_embed": jax.random.normal(ks[0], (self.Vs, E), jnp.float32) * E ** -0.5,
            "tgt_embed": jax.random.normal(ks[1], (self.Vt, E), jnp.float32) * E ** -0.5,
            "encoder": self.encoder.init(ks[2], E),
            "bridge": _dense(ks[3], M, H),
            "decoder": tuple(dec),
            "attention": self.att.init(ks[4], H, M) if self.att else {},
            "combine": _dense(ks[5], M + H, H),
            "out": _dense(ks[6], H, self.Vt),
        }

    # ----------------------------------------------------------------------- encoder

    def encode(self, params, src, src_len, key=None):
        """One source ``src`` ``[S]`` ids of which the first ``src_len`` are real ->
        ``(Context, DecoderState)``."""
        S = src.shape[0]
        x = params["src_embed"][src]
        k_in = k_rnn = None
        if key is not None:
            k_in, k_rnn = jax.random.split(key)
            x = jr.dropout(k_in, x, self.dropout)
        memory, carries = self.encoder.apply(params["encoder"], x, seq_lengths=src_len,
                                             key=k_rnn)
        c_fw, c_bw = carries[-1]
        summary = jnp.concatenate([self._out(c_fw), self._out(c_bw)], axis=-1)
        mask = jnp.arange(S, dtype=jnp.int32) < jnp.asarray(src_len, jnp.int32)
        keys = self.att.prepare(params["attention"], memory) if self.att else ()
        h0 = jnp.tanh(_apply(params["bridge"], summary))
        carries = tuple(self._with_h(c.initial_carry(p), h0)
                        for c, p in zip(self.cells, params["decoder"]))
        state = DecoderState(carries, jnp.zeros((self.H,), jnp.float32))
        return Context(memory, keys, mask, summary), state

    def _out(self, carry):
        return carry.h

    @staticmethod
    def _with_h(carry, h):
        return carry._replace(h=h.astype(carry.h.dtype))

    # ----------------------------------------------------------------------- decoder

    def step(self, params, context: Context, state: DecoderState, token, key=None):
        """ONE decoder step for one example: previous token id -> ``(h~ [H], state, weights
        [S])``. Logits are :meth:`logits` of ``h~``. ``key``: this step's own key (dropout
        draws new masks at every step, as the stack's ``apply`` does per step)."""
        x = params["tgt_embed"][token]
        if self.input_feeding:
            x = jnp.concatenate([x, state.feed], axis=-1)
        k_dec = None
        if key is not None:
            k_in, k_dec = jax.random.split(key)
            x = jr.dropout(k_in, x, self.dropout)
        h, new = self.decoder.step(params["decoder"], state.carries, x, key=k_dec)
        if self.att is not None:
            ctx, w = self.att.attend(params["attention"], h, context.memory, context.keys,
                                     context.mask)
        else:
            ctx, w = context.summary, jnp.zeros(context.mask.shape, jnp.float32)
        ht = jnp.tanh(_apply(params["combine"], jnp.concatenate([ctx, h], axis=-1)))
        return ht, DecoderState(new, ht), w

    def logits(self, params, ht, key=None):
        if key is not None:
            ht = jr.dropout(key, ht, self.dropout)
        return _apply(params["out"], ht)

    def teacher_forced(self, params, src, src_len, tgt_in, key=None):
        """Logits ``[T, V]`` for the target prefix ``tgt_in`` ``[T]`` (``<s> y_1 .. y_{T-1}``),
        one :meth:`step` per position under ``lax.scan``; also the attention weights ``[T, S]``."""
        keys = (None,) * 3 if key is None else jax.random.split(key, 3)
        context, state = self.encode(params, src, src_len, keys[0])
        T = tgt_in.shape[0]
        if key is None:
            def body(s, tok):
                ht, s, w = self.step(params, context, s, tok)
                return s, (ht, w)
            _, (hts, ws) = jax.lax.scan(body, state, tgt_in)
        else:
            def body(s, inp):
                tok, k = inp
                ht, s, w = self.step(params, context, s, tok, k)
                return s, (ht, w)
            _, (hts, ws) = jax.lax.scan(body, state, (tgt_in, jax.random.split(keys[1], T)))
        return self.logits(params, hts, keys[2]), ws

    # ----------------------------------------------------------------------- decoding

    def start(self, params, src, src_len):
        """A batch of sources ``[B, S]``, lengths ``[B]`` -> ``(state, context)`` for
        :func:`~jaxrnn.models.decode.greedy` / :func:`~jaxrnn.models.decode.beam_search`."""
        context, state = jax.vmap(lambda s, n: self.encode(params, s, n))(src, src_len)
        return state, context

    def decode_fn(self, params):
        """``step_fn(tokens [N], state, context) -> (log_probs [N, V], state)`` for the decoders."""
        def one(tok, state, context):
            ht, state, _ = self.step(params, context, state, tok)
            return jax.nn.log_softmax(self.logits(params, ht)), state
        return jax.vmap(one)
