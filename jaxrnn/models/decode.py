"""Greedy and beam-search decoding under ``jit``: one ``lax.while_loop``, no Python loop per token.

Both decoders are generic over the model. They take

``step_fn(tokens [N], state, context) -> (log_probs [N, V], state)``
    one decoder step for ``N`` rows at once (a ``vmap`` of a one-example step). ``state`` is a
    pytree whose leaves have leading axis ``N``; beam search reorders it between steps.
    ``context`` (encoder memory, masks) is constant: beam search repeats it ``beam_size`` times
    once, and never gathers it.

and a batch of ``B`` sources (``state`` and ``context`` with leading axis ``B``). Hypotheses end
with ``eos`` (which counts in their length) or at ``max_len`` tokens; positions after the end are
``pad``. A finished hypothesis is never extended: its only continuation is itself, at no cost.

Length penalty (Wu et al. 2016, GNMT): hypotheses are ranked by ``score / lp(length)`` with
``lp(n) = ((5 + n) / 6) ** alpha``; ``alpha = 0`` ranks by the sum of log-probabilities.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Hypotheses", "greedy", "beam_search", "length_penalty"]


class Hypotheses(NamedTuple):
    """Decoder output. ``tokens`` ``[B, L]`` (greedy) or ``[B, K, L]`` (beam, best first);
    ``scores``: sum of log-probabilities; ``normalized``: ``scores / lp(lengths)`` (the ranking);
    ``lengths``: tokens up to and including ``eos``."""
    tokens: jax.Array
    scores: jax.Array
    normalized: jax.Array
    lengths: jax.Array


def length_penalty(lengths, alpha: float):
    """GNMT length penalty ``((5 + n) / 6) ** alpha``."""
    return ((5.0 + jnp.asarray(lengths, jnp.float32)) / 6.0) ** alpha


def greedy(step_fn, state, context, *, bos: int, eos: int, max_len: int, pad: int = 0,
           alpha: float = 0.0) -> Hypotheses:
    """The most probable token at every step, for a batch of ``B`` sources."""
    B = jax.tree.leaves(state)[0].shape[0]

    def cond(c):
        t, _, _, _, finished, _, _ = c
        return (t < max_len) & ~jnp.all(finished)

    def body(c):
        t, tokens, last, state, finished, scores, lengths = c
        logp, state = step_fn(last, state, context)
        tok = jnp.argmax(logp, axis=-1).astype(jnp.int32)
        gain = jnp.take_along_axis(logp, tok[:, None], axis=-1)[:, 0].astype(jnp.float32)
        tok = jnp.where(finished, pad, tok)
        scores = scores + jnp.where(finished, 0.0, gain)
        lengths = lengths + (~finished).astype(jnp.int32)
        tokens = tokens.at[:, t].set(tok)
        finished = finished | (tok == eos)
        return t + 1, tokens, tok, state, finished, scores, lengths

    init = (jnp.int32(0), jnp.full((B, max_len), pad, jnp.int32), jnp.full((B,), bos, jnp.int32),
            state, jnp.zeros((B,), bool), jnp.zeros((B,), jnp.float32), jnp.zeros((B,), jnp.int32))
    _, tokens, _, _, _, scores, lengths = jax.lax.while_loop(cond, body, init)
    return Hypotheses(tokens, scores, scores / length_penalty(lengths, alpha), lengths)


def beam_search(step_fn, state, context, *, beam_size: int, bos: int, eos: int, max_len: int,
                pad: int = 0, alpha: float = 0.0) -> Hypotheses:
    """Beam search for a batch of ``B`` sources: ``beam_size`` hypotheses per source, ranked by
    ``score / lp(length)``; stops when every hypothesis has ended or at ``max_len``. Returns the
    ``beam_size`` final hypotheses per source, best first (``tokens[:, 0]`` is the answer).
    Finished hypotheses stay in the beam and compete with the live ones by their normalized
    score; with ``beam_size=1`` this is exactly :func:`greedy`."""
    K = int(beam_size)
    if K < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    B = jax.tree.leaves(state)[0].shape[0]
    rep = lambda a: jnp.repeat(a, K, axis=0)           # [B, ...] -> [B*K, ...], row b*K + k
    state = jax.tree.map(rep, state)
    context = jax.tree.map(rep, context)
    neg = jnp.float32(-jnp.inf)

    def cond(c):
        t, _, _, _, finished, _, _ = c
        return (t < max_len) & ~jnp.all(finished)

    def body(c):
        t, tokens, last, state, finished, scores, lengths = c
        logp, new_state = step_fn(last, state, context)
        V = logp.shape[-1]
        logp = logp.reshape(B, K, V).astype(jnp.float32)
        # a finished hypothesis has one continuation, itself (token slot eos, cost 0)
        stay = jnp.where(jnp.arange(V) == eos, 0.0, neg)[None, None, :]   # [1, 1, V]
        logp = jnp.where(finished[..., None], stay, logp)
        cand = scores[..., None] + logp                               # [B, K, V]
        cand_len = lengths + (~finished).astype(jnp.int32)            # [B, K]
        rank = cand / length_penalty(cand_len, alpha)[..., None]
        _, idx = jax.lax.top_k(rank.reshape(B, K * V), K)             # [B, K]
        origin, tok = idx // V, (idx % V).astype(jnp.int32)
        new_scores = jnp.take_along_axis(cand.reshape(B, K * V), idx, axis=1)
        prev_fin = jnp.take_along_axis(finished, origin, axis=1)
        lengths = jnp.take_along_axis(lengths, origin, axis=1) + (~prev_fin).astype(jnp.int32)
        emitted = jnp.where(prev_fin, pad, tok)
        tokens = jnp.take_along_axis(tokens, origin[..., None], axis=1).at[:, :, t].set(emitted)
        finished = prev_fin | (tok == eos)
        rows = (jnp.arange(B, dtype=jnp.int32)[:, None] * K + origin).reshape(-1)
        state = jax.tree.map(lambda a: a[rows], new_state)
        return t + 1, tokens, emitted.reshape(-1), state, finished, new_scores, lengths

    scores0 = jnp.tile(jnp.where(jnp.arange(K) == 0, 0.0, neg)[None], (B, 1))
    init = (jnp.int32(0), jnp.full((B, K, max_len), pad, jnp.int32),
            jnp.full((B * K,), bos, jnp.int32), state, jnp.zeros((B, K), bool), scores0,
            jnp.zeros((B, K), jnp.int32))
    _, tokens, _, _, _, scores, lengths = jax.lax.while_loop(cond, body, init)
    normalized = scores / length_penalty(lengths, alpha)
    order = jnp.argsort(-normalized, axis=1, stable=True)
    take = lambda a: jnp.take_along_axis(a, order, axis=1)
    return Hypotheses(jnp.take_along_axis(tokens, order[..., None], axis=1), take(scores),
                      take(normalized), take(lengths))
