"""Sequence to sequence: encoder-decoder RNNs, attention, greedy and beam-search decoding.

    from jaxrnn import seq2seq
    model = seq2seq.Seq2Seq(src_vocab, tgt_vocab, hidden_size=256, attention="additive")
    params = model.init(key)
    logits, weights = model.teacher_forced(params, src, src_len, tgt_in)   # one example; vmap
    state, context = model.start(params, src_batch, src_lengths)
    hyps = seq2seq.beam_search(model.decode_fn(params), state, context, beam_size=5,
                               bos=BOS, eos=EOS, max_len=50, alpha=0.6)
"""

from jaxrnn.seq2seq.attention import (Attention, additive, length_mask, masked_softmax,
                                      multiplicative)
from jaxrnn.seq2seq.decode import Hypotheses, beam_search, greedy, length_penalty
from jaxrnn.seq2seq.model import ATTENTIONS, CELLS, Context, DecoderState, Seq2Seq

__all__ = ["Attention", "additive", "multiplicative", "masked_softmax", "length_mask",
           "Hypotheses", "greedy", "beam_search", "length_penalty",
           "Seq2Seq", "Context", "DecoderState", "CELLS", "ATTENTIONS"]
