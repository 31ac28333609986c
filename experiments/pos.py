"""Part-of-speech tagging (UPOS by default) of CoNLL-U files with a BiLSTM-CRF.

Data: CoNLL-U (``ud_english_ewt/`` by default). The tokens are the syntactic words: multiword
tokens (``1-2 don't``) and empty nodes (``8.1``) are skipped. ``data.column`` picks the tag
column (``upos`` or ``xpos``).

Model: word embeddings (lowercased, digits mapped to 0, word dropout for rare words) + a
character CNN or BiLSTM over each word's characters -> BiLSTM -> linear -> CRF (or softmax
with ``model.crf: false``).

Metrics (dev, and ``jaxrnn evaluate --data FILE`` for any CoNLL-U file): token accuracy and the
accuracy on words unseen in training (``oov_accuracy``), in percent. ``jaxrnn predict --input
FILE`` reads whitespace-tokenized text, one sentence a line, and writes ``token<TAB>tag`` lines
with a blank line after each sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from jaxrnn.text import Sentence, Vocab, read_conllu, tag_accuracy
from experiments.tagging import BatchConfig, evaluate_ensemble, tagging_task  # noqa: F401
from jaxrnn.models.tagger import Tagger, TaggerConfig, WordInput
from jaxrnn.train.config import BaseConfig, TrainConfig, data_path


@dataclass
class DataConfig:
    train: str = data_path("ud_english_ewt/en_ewt-ud-train.conllu")
    dev: str = data_path("ud_english_ewt/en_ewt-ud-dev.conllu")
    column: Literal["upos", "xpos"] = "upos"
    batching: BatchConfig = field(default_factory=BatchConfig)


@dataclass
class Config(BaseConfig):
    data: DataConfig = field(default_factory=DataConfig)
    model: TaggerConfig = field(default_factory=TaggerConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(best_metric="accuracy",
                                                                   best_mode="max"))


def write_columns(tokens, tags) -> str:
    return "".join(f"{w}\t{t}\n" for w, t in zip(tokens, tags)) + "\n"


def build(cfg: Config, runtime):
    def read(path) -> list[Sentence]:
        return read_conllu(path, column=cfg.data.column)

    train, dev = read(cfg.data.train), read(cfg.data.dev)
    known = {w for s in train for w in s.tokens}

    def score(gold: list[Sentence], pred: list) -> dict:
        out = tag_accuracy((s.tags for s in gold), pred)
        oov = [(g, p) for s, ps in zip(gold, pred) for w, g, p in zip(s.tokens, s.tags, ps)
               if w not in known]
        out["oov_accuracy"] = 100.0 * sum(g == p for g, p in oov) / max(len(oov), 1)
        return out

    inp = WordInput([s.tokens for s in train], cfg.model)
    tags = Vocab.build((t for s in train for t in s.tags), specials=())
    model = Tagger(inp, cfg.model, tags, scheme=None)
    return tagging_task(
        model=model, train=train, dev=dev, batch_size=cfg.train.batch_size,
        batching=cfg.data.batching, seed=cfg.seed, runtime=runtime, read_file=read, score=score,
        tokenize=str.split, write=write_columns)
