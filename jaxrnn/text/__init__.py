"""Text data for sequence labelling: readers, vocabularies, bucketing, scorers, the tagger.

    from jaxrnn import text
    sents = text.read_conllu("en_ewt-ud-dev.conllu", column="upos")
    vocab = text.Vocab.build((w for s in sents for w in s.tokens), min_count=2)
    text.entity_prf(gold_tags, predicted_tags)["f1"]
"""

from jaxrnn.text.batching import BucketSampler, bucket_boundaries, bucket_length, eval_batches, pad
from jaxrnn.text.readers import (CONLL_FIELDS, FormatError, Sentence, read_chars, read_columns,
                                 read_conllu, read_conllx, read_lines)
from jaxrnn.text.scoring import (bmes_to_words, chunks, entity_prf, prf, segmentation_prf,
                                 tag_accuracy, word_spans, words_to_bmes)
from jaxrnn.text.vocab import PAD, UNK, Vocab

__all__ = [
    "BucketSampler", "CONLL_FIELDS", "FormatError", "PAD", "Sentence", "UNK", "Vocab",
    "bmes_to_words", "bucket_boundaries", "bucket_length", "chunks", "entity_prf",
    "eval_batches", "pad", "prf", "read_chars", "read_columns", "read_conllu", "read_conllx",
    "read_lines", "segmentation_prf", "tag_accuracy", "word_spans", "words_to_bmes",
]
