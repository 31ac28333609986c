"""Chinese word segmentation as character tagging (BMES) with a BiLSTM-CRF.

Data: CoNLL-X files (one word per line; ``ud_chinese_gsd_old/`` by default). Each sentence's
gold words become its characters tagged B (begin), M (middle), E (end) or S (single-character
word). Characters are NFKC-normalized when that keeps them one character (full-width letters and
digits become ASCII).

Model: character embeddings + left and right character-bigram embeddings (c[i-1]c[i],
c[i]c[i+1]) -> BiLSTM -> linear -> CRF constrained to valid BMES paths (Chen et al. 2015;
Ma, Ganchev & Weiss 2018, who report 96.9 F1 on UD Chinese).

Metrics (dev, ``jaxrnn evaluate --data FILE`` for any CoNLL-X file): word precision, recall
and F1 over word spans, in percent. ``jaxrnn predict --input FILE`` reads raw text, one sentence
a line (whitespace is ignored), and writes the words separated by spaces, one sentence a line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jaxrnn.text import Sentence, bmes_to_words, read_conllx, segmentation_prf, words_to_bmes
from jaxrnn.text.tagger import BatchConfig, CharInput, Tagger, TaggerConfig, tagging_task
from jaxrnn.text.vocab import Vocab
from jaxrnn.train.config import BaseConfig, TrainConfig, data_path

TAGS = ("B", "M", "E", "S")


@dataclass
class DataConfig:
    train: str = data_path("ud_chinese_gsd_old/train.conll")
    dev: str = data_path("ud_chinese_gsd_old/dev.conll")
    batching: BatchConfig = field(default_factory=BatchConfig)


@dataclass
class Config(BaseConfig):
    experiment: str = "cws"
    data: DataConfig = field(default_factory=DataConfig)
    model: TaggerConfig = field(default_factory=lambda: TaggerConfig(bigram_size=50))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(best_metric="f1",
                                                                   best_mode="max"))


def read(path) -> list[Sentence]:
    """Gold words of a CoNLL-X file -> sentences of characters with BMES tags."""
    out = []
    for s in read_conllx(path):
        out.append(Sentence(tuple("".join(s.tokens)), tuple(words_to_bmes(s.tokens)), s.line))
    return out


def score(gold: list[Sentence], pred: list) -> dict:
    return segmentation_prf((bmes_to_words(s.tokens, s.tags) for s in gold),
                            (bmes_to_words(s.tokens, p) for s, p in zip(gold, pred)))


def build(cfg: Config, runtime):
    train, dev = read(cfg.data.train), read(cfg.data.dev)
    inp = CharInput([s.tokens for s in train], cfg.model,
                    words=[bmes_to_words(s.tokens, s.tags) for s in train])
    model = Tagger(inp, cfg.model, Vocab(TAGS, specials=()), "BMES")
    return tagging_task(
        model=model, train=train, dev=dev, batch_size=cfg.train.batch_size,
        batching=cfg.data.batching, seed=cfg.seed, runtime=runtime, read_file=read, score=score,
        tokenize=lambda line: [c for c in line if not c.isspace()],
        write=lambda chars, tags: " ".join(bmes_to_words(chars, tags)) + "\n")
