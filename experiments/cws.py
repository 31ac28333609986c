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

Joint segmentation and POS tagging (``data.pos: upos`` or ``xpos``; Ng & Low 2004, Shao et al.
2017): each character's tag also names its word's part of speech (``B-NOUN``, ``E-NOUN``,
``S-VERB``, ...), one CRF over the product tag set (constrained so that a word's characters share
one POS). The segmentation metrics are those above (the POS part stripped), and ``pos_f1`` /
``pos_precision`` / ``pos_recall`` count a word as correct only with its span and its POS
(the joint task's usual score). ``predict`` then writes ``word/POS`` tokens.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

from jaxrnn.text import (Sentence, bmes_to_words, prf, read_conllx, segmentation_prf,
                         words_to_bmes)
from experiments.tagging import BatchConfig, evaluate_ensemble, tagging_task  # noqa: F401
from jaxrnn.models.tagger import CharInput, Tagger, TaggerConfig
from jaxrnn.text.vocab import Vocab
from jaxrnn.train.config import BaseConfig, TrainConfig, data_path

TAGS = ("B", "M", "E", "S")


@dataclass
class DataConfig:
    train: str = data_path("ud_chinese_gsd_old/train.conll")
    dev: str = data_path("ud_chinese_gsd_old/dev.conll")
    # joint segmentation and POS tagging with this CoNLL-X column as the POS ("none": BMES only)
    pos: Literal["none", "upos", "xpos"] = "none"
    batching: BatchConfig = field(default_factory=BatchConfig)


@dataclass
class Config(BaseConfig):
    data: DataConfig = field(default_factory=DataConfig)
    model: TaggerConfig = field(default_factory=lambda: TaggerConfig(bigram_size=50))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(best_metric="f1",
                                                                   best_mode="max"))


def read(path, pos: str = "none") -> list[Sentence]:
    """Gold words of a CoNLL-X file -> sentences of characters with BMES tags (``B-NOUN``, ...
    with the POS column ``pos``)."""
    out = []
    column = "upos" if pos == "none" else pos
    for s in read_conllx(path, column=column):
        tags = []
        for w, t in zip(s.tokens, s.tags):
            bmes = words_to_bmes([w])
            tags += bmes if pos == "none" else [f"{b}-{t}" for b in bmes]
        out.append(Sentence(tuple("".join(s.tokens)), tuple(tags), s.line))
    return out


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-NOUN"`` -> ``("B", "NOUN")``; a plain ``"B"`` -> ``("B", "")``."""
    bmes, _, pos = tag.partition("-")
    return bmes, pos


def tagged_words(chars, tags) -> list[tuple[str, str]]:
    """``(word, POS)`` pairs from joint tags; a word's POS is that of its first character
    (the CRF's constraints make all of a word's characters agree)."""
    words = bmes_to_words(chars, [split_tag(t)[0] for t in tags])
    out, i = [], 0
    for w in words:
        out.append((w, split_tag(tags[i])[1]))
        i += len(w)
    return out


def score(gold: list[Sentence], pred: list) -> dict:
    gold_w = [tagged_words(s.tokens, s.tags) for s in gold]
    pred_w = [tagged_words(s.tokens, p) for s, p in zip(gold, pred)]
    out = segmentation_prf([[w for w, _ in g] for g in gold_w], [[w for w, _ in p] for p in pred_w])
    if any(t for g in gold_w for _, t in g):
        correct = n_pred = n_gold = 0
        for g, p in zip(gold_w, pred_w):
            g_set, p_set = _typed_spans(g), _typed_spans(p)
            correct += len(g_set & p_set)
            n_pred += len(p_set)
            n_gold += len(g_set)
        out.update({f"pos_{k}": v for k, v in prf(correct, n_pred, n_gold).items()})
    return out


def _typed_spans(words) -> set:
    spans, i = set(), 0
    for w, t in words:
        spans.add((i, i + len(w), t))
        i += len(w)
    return spans


def _write(chars, tags, joint: bool) -> str:
    if joint:
        return " ".join(f"{w}/{t}" for w, t in tagged_words(chars, tags)) + "\n"
    return " ".join(bmes_to_words(chars, tags)) + "\n"


def build(cfg: Config, runtime):
    pos = cfg.data.pos
    read_file = functools.partial(read, pos=pos)
    train, dev = read_file(cfg.data.train), read_file(cfg.data.dev)
    words = [bmes_to_words(s.tokens, [split_tag(t)[0] for t in s.tags]) for s in train]
    inp = CharInput([s.tokens for s in train], cfg.model, words=words)
    if pos == "none":
        tags = Vocab(TAGS, specials=())
    else:   # every (BMES, POS) pair that the scheme allows for the training POS tags
        kinds = sorted({split_tag(t)[1] for s in train for t in s.tags})
        tags = Vocab([f"{b}-{k}" for k in kinds for b in TAGS], specials=())
    model = Tagger(inp, cfg.model, tags, "BMES")
    return tagging_task(
        model=model, train=train, dev=dev, batch_size=cfg.train.batch_size,
        batching=cfg.data.batching, seed=cfg.seed, runtime=runtime, read_file=read_file,
        score=score, tokenize=lambda line: [c for c in line if not c.isspace()],
        write=functools.partial(_write, joint=pos != "none"))
