"""jaxrnn.models (seq2seq) and jaxrnn.heads.attention: attention masking (values), beam search against enumeration and greedy,
finished hypotheses, the decoder step shared by teacher forcing and decoding."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import models
from jaxrnn.heads import attention

PAD, EOS, BOS = 0, 1, 2


# --------------------------------------------------------------------------- attention

@pytest.mark.parametrize("att", [attention.additive(8), attention.multiplicative("general"),
                                 attention.multiplicative("dot")], ids=lambda a: a.name)
def test_attention_masks_padding(att):
    rng = np.random.default_rng(0)
    S, M, n = 6, 5, 3
    memory = jnp.asarray(rng.normal(size=(S, M)), jnp.float32)
    query = jnp.asarray(rng.normal(size=(M,)), jnp.float32)
    p = att.init(jax.random.PRNGKey(0), M, M)
    mask = jnp.arange(S) < n
    ctx, w = att.attend(p, query, memory, att.prepare(p, memory), mask)
    # padded positions get weight exactly 0, real ones sum to 1
    np.testing.assert_array_equal(np.asarray(w[n:]), 0.0)
    np.testing.assert_allclose(float(w[:n].sum()), 1.0, rtol=1e-6)
    # changing the padding (even to huge values) changes nothing
    junk = memory.at[n:].set(1e3)
    ctx2, w2 = att.attend(p, query, junk, att.prepare(p, junk), mask)
    np.testing.assert_allclose(np.asarray(w2), np.asarray(w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(ctx2), np.asarray(ctx), rtol=1e-5, atol=1e-6)
    # and equals attention over the unpadded source, and a NumPy softmax of the scores
    ctx3, w3 = att.attend(p, query, memory[:n], att.prepare(p, memory[:n]), jnp.ones(n, bool))
    np.testing.assert_allclose(np.asarray(w[:n]), np.asarray(w3), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(ctx), np.asarray(ctx3), rtol=1e-5, atol=1e-6)
    if att.name == "dot":
        s = np.asarray(memory[:n]) @ np.asarray(query)
        ref = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
        np.testing.assert_allclose(np.asarray(w[:n]), ref, rtol=1e-5)


def test_masked_softmax_all_masked_is_zero_not_nan():
    w = attention.masked_softmax(jnp.array([1.0, 2.0]), jnp.array([False, False]))
    np.testing.assert_array_equal(np.asarray(w), 0.0)


# --------------------------------------------------------------------------- decoding

def toy_model(V=5, H=4, seed=0):
    """A tiny recurrent 'language model' whose next-token log-probs depend on the whole prefix
    (no token ever emits PAD or BOS)."""
    rng = np.random.default_rng(seed)
    A = jnp.asarray(rng.normal(size=(H, H)), jnp.float32)
    Bm = jnp.asarray(rng.normal(size=(V, H)) * 2, jnp.float32)
    W = jnp.asarray(rng.normal(size=(H, V)) * 2, jnp.float32)
    banned = jnp.isin(jnp.arange(V), jnp.array([PAD, BOS]))

    def one(tok, h, ctx):
        h = jnp.tanh(h @ A + Bm[tok] + ctx)
        logits = jnp.where(banned, -1e9, h @ W)
        return jax.nn.log_softmax(logits), h
    return jax.jit(jax.vmap(one))


def enumerate_best(step, h0, ctx, V, max_len, alpha):
    """Every hypothesis (ends at EOS or at max_len) with its normalized score, by brute force."""
    out = []
    real = [t for t in range(V) if t not in (PAD, BOS)]
    for n in range(1, max_len + 1):
        for seq in itertools.product(real, repeat=n):
            if EOS in seq[:-1] or (n < max_len and seq[-1] != EOS):
                continue
            h, last, total = h0[None], BOS, 0.0
            for tok in seq:
                logp, h = step(jnp.array([last]), h, ctx[None])
                total += float(logp[0, tok])
                last = tok
            out.append((total / float(models.length_penalty(n, alpha)), seq))
    return sorted(out, key=lambda x: -x[0])


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_finds_the_enumerated_best(alpha):
    V, H, L = 5, 4, 4
    step = toy_model(V, H)
    rng = np.random.default_rng(1)
    h0 = jnp.asarray(rng.normal(size=(3, H)), jnp.float32)
    ctx = jnp.asarray(rng.normal(size=(3, H)), jnp.float32)
    K = 64   # >= all 3 + 9 + 27 + 81 hypotheses' prefixes per step: exact search
    hyps = jax.jit(lambda s, c: models.beam_search(step, s, c, beam_size=K, bos=BOS, eos=EOS,
                                                    max_len=L, alpha=alpha))(h0, ctx)
    for b in range(3):
        ref = enumerate_best(step, h0[b], ctx[b], V, L, alpha)
        best_score, best_seq = ref[0]
        n = int(hyps.lengths[b, 0])
        assert tuple(int(t) for t in hyps.tokens[b, 0, :n]) == best_seq
        np.testing.assert_allclose(float(hyps.normalized[b, 0]), best_score, rtol=1e-5)
        # the top hypotheses are the enumerated top ones, in order
        top = [float(x) for x in hyps.normalized[b, :10]]
        np.testing.assert_allclose(top, [s for s, _ in ref[:10]], rtol=1e-5)
    # a small beam also finds it here, and it is never worse than greedy
    small = models.beam_search(step, h0, ctx, beam_size=3, bos=BOS, eos=EOS, max_len=L,
                                alpha=alpha)
    g = models.greedy(step, h0, ctx, bos=BOS, eos=EOS, max_len=L, alpha=alpha)
    assert np.all(np.asarray(small.normalized[:, 0]) >= np.asarray(g.normalized) - 1e-6)


def test_beam_width_one_equals_greedy():
    V, H, L = 7, 6, 9
    step = toy_model(V, H, seed=3)
    rng = np.random.default_rng(2)
    h0 = jnp.asarray(rng.normal(size=(8, H)), jnp.float32)
    ctx = jnp.asarray(rng.normal(size=(8, H)), jnp.float32)
    for alpha in (0.0, 0.6):
        g = jax.jit(lambda s, c: models.greedy(step, s, c, bos=BOS, eos=EOS, max_len=L,
                                                alpha=alpha))(h0, ctx)
        b = jax.jit(lambda s, c: models.beam_search(step, s, c, beam_size=1, bos=BOS, eos=EOS,
                                                     max_len=L, alpha=alpha))(h0, ctx)
        np.testing.assert_array_equal(np.asarray(b.tokens[:, 0]), np.asarray(g.tokens))
        np.testing.assert_array_equal(np.asarray(b.lengths[:, 0]), np.asarray(g.lengths))
        np.testing.assert_allclose(np.asarray(b.scores[:, 0]), np.asarray(g.scores), rtol=1e-6)


def test_finished_hypotheses_are_never_extended():
    V, H, L = 6, 5, 8
    step = toy_model(V, H, seed=5)
    rng = np.random.default_rng(4)
    h0 = jnp.asarray(rng.normal(size=(4, H)), jnp.float32)
    ctx = jnp.asarray(rng.normal(size=(4, H)), jnp.float32)
    hyps = models.beam_search(step, h0, ctx, beam_size=4, bos=BOS, eos=EOS, max_len=L)
    tokens, lengths = np.asarray(hyps.tokens), np.asarray(hyps.lengths)
    assert np.any(lengths < L)
    for b in range(4):
        for k in range(4):
            n, seq = lengths[b, k], tokens[b, k]
            if n < L:
                assert seq[n - 1] == EOS and EOS not in seq[:n - 1]
            assert np.all(seq[n:] == PAD)          # nothing after the end
            assert np.all(seq[:n] != PAD)
            # the score is exactly the prefix's log-probability: no cost added after EOS
            h, last, total = h0[b][None], BOS, 0.0
            for tok in seq[:n]:
                logp, h = step(jnp.array([last]), h, ctx[b][None])
                total += float(logp[0, tok])
                last = int(tok)
            np.testing.assert_allclose(float(hyps.scores[b, k]), total, rtol=1e-5)


def test_decoders_stop_early_and_do_not_retrace():
    step = toy_model(5, 4)
    h0 = jnp.zeros((2, 4))
    calls = []

    @jax.jit
    def run(h, c):
        calls.append(1)
        return models.beam_search(step, h, c, beam_size=2, bos=BOS, eos=EOS, max_len=50)
    run(h0, h0)
    run(h0 + 1, h0)
    assert len(calls) == 1


# --------------------------------------------------------------------------- the model

@pytest.mark.parametrize("attention", ["additive", "general", "none"])
def test_teacher_forcing_equals_stepwise_decoding(attention):
    m = models.Seq2Seq(11, 9, embed_size=6, hidden_size=8, enc_layers=2, dec_layers=2,
                        attention=attention)
    p = m.init(jax.random.PRNGKey(0))
    src = jnp.array([[3, 4, 5, 6, 0, 0], [7, 8, 9, 10, 3, 4]])
    n = jnp.array([4, 6])
    tgt_in = jnp.array([[BOS, 5, 6, 7], [BOS, 3, 3, 8]])
    tf = jax.jit(jax.vmap(lambda s, l, t: m.teacher_forced(p, s, l, t)))
    logits, ws = tf(src, n, tgt_in)
    # the same step, one token at a time through decode_fn
    state, context = jax.jit(m.start)(p, src, n)
    fn = jax.jit(m.decode_fn(p))
    for t in range(4):
        logp, state = fn(tgt_in[:, t], state, context)
        np.testing.assert_allclose(np.asarray(logp), np.asarray(jax.nn.log_softmax(logits[:, t])),
                                   rtol=1e-5, atol=1e-5)
    if attention != "none":
        np.testing.assert_array_equal(np.asarray(ws[0, :, 4:]), 0.0)    # padding unattended
        np.testing.assert_allclose(np.asarray(ws.sum(-1)), 1.0, rtol=1e-5)
    # padding the source further changes nothing
    src2 = jnp.pad(src, ((0, 0), (0, 3)), constant_values=0).at[0, 4:].set(7)
    logits2, _ = tf(src2, n, tgt_in)
    np.testing.assert_allclose(np.asarray(logits2), np.asarray(logits), rtol=1e-5, atol=1e-5)


def test_tiny_model_learns_to_reverse():
    """Smoke: a few hundred Adam steps teach an attention model to reverse 4-token strings, and
    greedy and beam decoding reproduce them."""
    import optax
    V = 8   # 0 pad, 1 eos, 2 bos, 3..7 symbols
    m = models.Seq2Seq(V, V, embed_size=16, hidden_size=32, attention="general")
    rng = np.random.default_rng(0)
    src = rng.integers(3, V, size=(256, 4)).astype(np.int32)
    tgt = np.concatenate([src[:, ::-1], np.full((256, 1), EOS)], 1).astype(np.int32)
    tgt_in = np.concatenate([np.full((256, 1), BOS), tgt[:, :-1]], 1).astype(np.int32)
    lens = np.full((256,), 4, np.int32)
    opt = optax.adam(1e-2)
    p = m.init(jax.random.PRNGKey(0))
    st = opt.init(p)

    def loss_fn(p, s, l, ti, to):
        lg, _ = jax.vmap(lambda a, b, c: m.teacher_forced(p, a, b, c))(s, l, ti)
        return optax.softmax_cross_entropy_with_integer_labels(lg, to).mean()

    @jax.jit
    def update(p, st, i):
        sl = jax.lax.dynamic_slice_in_dim
        args = [sl(jnp.asarray(a), (i % 8) * 32, 32) for a in (src, lens, tgt_in, tgt)]
        loss, g = jax.value_and_grad(loss_fn)(p, *args)
        with jax.numpy_dtype_promotion("standard"):   # optax's bias correction: float ** int32
            u, st = opt.update(g, st, p)
        return optax.apply_updates(p, u), st, loss

    for i in range(200):
        p, st, loss = update(p, st, i)
    assert float(loss) < 0.1
    @jax.jit
    def decode(p, s, l):
        state, ctx = m.start(p, s, l)
        g = models.greedy(m.decode_fn(p), state, ctx, bos=BOS, eos=EOS, max_len=8)
        b = models.beam_search(m.decode_fn(p), state, ctx, beam_size=3, bos=BOS, eos=EOS,
                                max_len=8)
        return g, b
    g, b = decode(p, jnp.asarray(src[:16]), jnp.asarray(lens[:16]))
    np.testing.assert_array_equal(np.asarray(g.tokens[:, :5]), tgt[:16])
    np.testing.assert_array_equal(np.asarray(b.tokens[:, 0, :5]), tgt[:16])


def _old_decoder(m, params, state, x):
    """The decoder as it was before it became a jr.stack: each cell's step in turn."""
    new = []
    for cell, p, c in zip(m.cells, params["decoder"], state.carries):
        c = cell.step(p, c, x)
        x = cell.output(c)
        new.append(c)
    return x, tuple(new)


@pytest.mark.parametrize("cell", ["lstm", "gru_cho"])
def test_decoder_is_a_stack_with_the_cells_numbers(cell):
    """The decoder runs as one jr.stack step: params["decoder"] is a tuple of per-layer params,
    and without dropout its numbers are those of the cells stepped in turn."""
    import jaxrnn as jr
    m = models.Seq2Seq(11, 9, embed_size=6, hidden_size=8, dec_layers=3, cell=cell,
                       attention="general", dropout=0.3)
    p = m.init(jax.random.PRNGKey(0))
    assert isinstance(p["decoder"], tuple) and len(p["decoder"]) == 3
    assert isinstance(m.decoder, jr.Layer)
    src, n = jnp.array([3, 4, 5, 0]), jnp.array(3)
    context, state = m.encode(p, src, n)
    for tok in [BOS, 5, 6]:
        x = jnp.concatenate([p["tgt_embed"][tok], state.feed], axis=-1)
        h_old, c_old = _old_decoder(m, p, state, x)
        h_new, c_new = m.decoder.step(p["decoder"], state.carries, x)
        np.testing.assert_allclose(np.asarray(h_new), np.asarray(h_old), rtol=1e-6, atol=1e-7)
        ht, state, _ = m.step(p, context, state, jnp.array(tok))
        for a, b in zip(jax.tree.leaves(state.carries), jax.tree.leaves(c_old)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_decoder_dropout_on_its_input_and_between_layers():
    """With a key, the step drops the decoder input (first half of the key) and the outputs of
    every decoder layer but the last (the stack's rule, from the second half)."""
    import jaxrnn as jr
    rate = 0.5
    m = models.Seq2Seq(11, 9, embed_size=6, hidden_size=8, dec_layers=2, attention="none",
                       dropout=rate)
    p = m.init(jax.random.PRNGKey(0))
    context, state = m.encode(p, jnp.array([3, 4, 5]), jnp.array(3))
    key = jax.random.PRNGKey(4)
    ht, new, _ = m.step(p, context, state, jnp.array(BOS), key)
    k_in, k_dec = jax.random.split(key)
    k_layers = jax.random.split(k_dec, 4)           # layer i: 2i, the dropout after it: 2i + 1
    x = jnp.concatenate([p["tgt_embed"][BOS], state.feed], axis=-1)
    x = jr.dropout(k_in, x, rate)
    c1 = m.cells[0].step(p["decoder"][0], state.carries[0], x)
    h1 = jr.dropout(k_layers[1], m.cells[0].output(c1), rate)
    assert np.any(np.asarray(h1) == 0.0)
    c2 = m.cells[1].step(p["decoder"][1], state.carries[1], h1)
    for a, b in zip(jax.tree.leaves(new.carries), jax.tree.leaves((c1, c2))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    # no key: no dropout anywhere
    ht0, _, _ = m.step(p, context, state, jnp.array(BOS))
    assert np.abs(np.asarray(ht - ht0)).max() > 1e-3
    lg, _ = m.teacher_forced(p, jnp.array([3, 4, 5]), jnp.array(3), jnp.array([BOS, 5, 6]),
                             key=jax.random.PRNGKey(1))
    assert np.all(np.isfinite(np.asarray(lg)))


def test_cells_come_from_the_registry():
    from jaxrnn.cells import registry
    with pytest.raises(ValueError, match="unknown cell 'lstmm'"):
        models.Seq2Seq(5, 5, cell="lstmm")
    with pytest.raises(ValueError, match="unknown option 'peepole'"):
        models.Seq2Seq(5, 5, cell="lstm", cell_options={"peepole": True})
    with pytest.raises(ValueError, match="proj_size"):
        models.Seq2Seq(5, 5, hidden_size=8, cell="lstm", cell_options={"proj_size": 4})
    with pytest.raises(ValueError, match="spatial"):
        models.Seq2Seq(5, 5, hidden_size=8, cell="conv_lstm")
    # a cell whose carry has no h field: the bridge cannot set it
    if "_test_seq2seq_no_h" not in registry.names():
        from typing import NamedTuple

        class NoH(NamedTuple):
            s: jax.Array

        def no_h(hidden_size, **kw):
            c = registry.make("gru", hidden_size)
            return c._replace(initial_carry=lambda p, batch_shape=(): NoH(
                jnp.zeros(tuple(batch_shape) + (hidden_size,))))
        registry.register("_test_seq2seq_no_h", no_h)
    with pytest.raises(ValueError, match="without an 'h' field"):
        models.Seq2Seq(5, 5, hidden_size=8, cell="_test_seq2seq_no_h")
    for name in ("mgu", "simple_rnn", "lstm_peephole"):
        m = models.Seq2Seq(7, 7, embed_size=4, hidden_size=6, cell=name, attention="additive")
        p = m.init(jax.random.PRNGKey(0))
        lg, _ = m.teacher_forced(p, jnp.array([3, 4]), jnp.array(2), jnp.array([BOS, 3]))
        assert lg.shape == (2, 7) and np.all(np.isfinite(np.asarray(lg)))
