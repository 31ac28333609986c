"""Named-entity recognition with a BiLSTM-CRF, English (WNUT-17) or Chinese (Weibo).

``data.format`` picks the input layout and with it the model's tokens:

- ``columns``: ``token<TAB>tag`` per line, BIO tags (``wnut17/``): word embeddings + a
  character CNN/BiLSTM per word, as in ``pos``;
- ``chars``: one character per line, ``char[digit]<TAB>tag`` (``weibo_ner/``; the digit is the
  character's position in a word of an automatic segmenter): character + character-bigram
  embeddings, as in ``cws``. With ``model.lexicon_max_len`` the training files' words (read
  off the position digits: a word starts at position 0) become a lexicon, and each character
  gets ``cws``'s lexicon-match bits (jackknifed over the training sentences); only the
  lexicon is needed afterwards, so ``evaluate`` and ``predict`` work on any text.

The CRF forbids invalid BIO transitions (``I-X`` after ``O`` or after another type).

Metrics (dev, and ``jaxrnn evaluate --data FILE`` for any file of the same layout): entity
precision, recall and F1 with exact span and type, as conlleval computes them (percent), per-type
F1 and token accuracy. ``jaxrnn predict --input FILE`` reads raw text, one sentence a line
(whitespace-tokenized for ``columns``; characters, whitespace ignored, for ``chars``), and writes
``token<TAB>tag`` lines with a blank line after each sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from jaxrnn.text import Sentence, Vocab, entity_prf, read_chars, read_columns
from experiments.tagging import BatchConfig, evaluate_ensemble, tagging_task  # noqa: F401
from jaxrnn.models.tagger import CharInput, Tagger, TaggerConfig, WordInput
from jaxrnn.train.config import BaseConfig, ConfigError, TrainConfig, data_path


@dataclass
class DataConfig:
    train: str = data_path("wnut17/wnut17train.conll")
    dev: str = data_path("wnut17/emerging.dev.conll")
    format: Literal["columns", "chars"] = "columns"
    batching: BatchConfig = field(default_factory=BatchConfig)


@dataclass
class Config(BaseConfig):
    data: DataConfig = field(default_factory=DataConfig)
    model: TaggerConfig = field(default_factory=TaggerConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(best_metric="f1",
                                                                   best_mode="max"))


def write_columns(tokens, tags) -> str:
    return "".join(f"{w}\t{t}\n" for w, t in zip(tokens, tags)) + "\n"


def segmenter_words(sentence) -> list[str]:
    """The words of a ``read_chars(..., keep_positions=True)`` sentence: a word starts at each
    character of position 0 (or without a position)."""
    words = []
    for ch, pos in sentence.tokens:
        if pos <= 0 or not words:
            words.append(ch)
        else:
            words[-1] += ch
    return words


def build(cfg: Config, runtime):
    chars = cfg.data.format == "chars"
    read = read_chars if chars else read_columns
    dev = read(cfg.data.dev)
    if chars:   # the training file once, with positions: its words feed the lexicon bits
        positioned = read_chars(cfg.data.train, keep_positions=True)
        train = [Sentence(tuple(c for c, _ in s.tokens), s.tags, s.line) for s in positioned]
        words = ([segmenter_words(s) for s in positioned] if cfg.model.lexicon_max_len
                 else None)
        inp = CharInput([s.tokens for s in train], cfg.model, words=words)
    else:
        train = read(cfg.data.train)
        if cfg.model.lexicon_max_len:
            raise ConfigError("model.lexicon_max_len needs data.format: chars (a character-level "
                             "task whose training words are known)")
        inp = WordInput([s.tokens for s in train], cfg.model)
    tags = Vocab.build((t for s in train for t in s.tags), specials=())
    model = Tagger(inp, cfg.model, tags, "BIO")
    tokenize = (lambda line: [c for c in line if not c.isspace()]) if chars else str.split
    return tagging_task(
        model=model, train=train, dev=dev, batch_size=cfg.train.batch_size,
        batching=cfg.data.batching, seed=cfg.seed, runtime=runtime, read_file=read,
        score=lambda gold, pred: entity_prf((s.tags for s in gold), pred),
        tokenize=tokenize, write=write_columns)
