"""Models built on the core: the BiLSTM(-CRF) tagger, the attention encoder-decoder and its
decoders, and the input front ends (embeddings, character features).

    from jaxrnn import models
    model = models.Seq2Seq(src_vocab, tgt_vocab, hidden_size=256, attention="additive")
    hyps = models.beam_search(model.decode_fn(params), state, context, beam_size=5, ...)
    tagger = models.Tagger(models.WordInput(train_tokens, cfg), cfg, tags, scheme="bio")

Models are plain Python objects holding pure functions of one example (``vmap`` for batches),
built from ``jaxrnn.layers`` and ``jaxrnn.heads``. They know nothing of the trainer: an
experiment wraps a model in a ``jaxrnn.train.Task``.
"""

from jaxrnn.models import decode, embed, seq2seq, tagger
from jaxrnn.models.decode import Hypotheses, beam_search, greedy, length_penalty
from jaxrnn.models.seq2seq import ATTENTIONS, Context, DecoderState, Seq2Seq
from jaxrnn.models.tagger import CharInput, Tagger, TaggerConfig, WordInput

__all__ = [
    "ATTENTIONS", "CharInput", "Context", "DecoderState", "Hypotheses",
    "Seq2Seq", "Tagger", "TaggerConfig", "WordInput", "beam_search", "decode", "embed",
    "greedy", "length_penalty", "seq2seq", "tagger",
]
