"""Scorers and tag-scheme conversions for sequence labelling.

- word segmentation: precision / recall / F1 over word spans (character offsets);
- tagging accuracy over tokens;
- entity-level precision / recall / F1 with exact span and type, chunks read exactly as the
  CoNLL ``conlleval`` script reads them (an ``I-X`` after ``O`` or after another type starts
  a chunk; BIO, IOB1, BIOES all work);
- BMES conversion: words -> character tags and back.

Scores are percentages (0-100), as conlleval prints them.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

__all__ = ["words_to_bmes", "bmes_to_words", "word_spans", "segmentation_prf", "tag_accuracy",
           "chunks", "entity_prf", "prf"]


# --------------------------------------------------------------------------- BMES

def words_to_bmes(words: Sequence[str]) -> list[str]:
    """One tag per character: S for a one-character word, else B M... E."""
    tags = []
    for w in words:
        if not w:
            raise ValueError("empty word")
        tags += ["S"] if len(w) == 1 else ["B"] + ["M"] * (len(w) - 2) + ["E"]
    return tags


def bmes_to_words(chars: Sequence[str], tags: Sequence[str]) -> list[str]:
    """Words from character tags. Robust to invalid sequences: a word starts at every B or S
    and after every E or S; M and E otherwise continue the current word."""
    if len(chars) != len(tags):
        raise ValueError(f"{len(chars)} characters but {len(tags)} tags")
    words, cur = [], ""
    for ch, t in zip(chars, tags):
        if t in ("B", "S") and cur:
            words.append(cur)
            cur = ""
        cur += ch
        if t in ("E", "S"):
            words.append(cur)
            cur = ""
    if cur:
        words.append(cur)
    return words


def word_spans(words: Sequence[str]) -> set:
    """The set of ``(start, end)`` character offsets of the words."""
    spans, i = set(), 0
    for w in words:
        spans.add((i, i + len(w)))
        i += len(w)
    return spans


def prf(correct: int, predicted: int, gold: int) -> dict:
    p = 100.0 * correct / predicted if predicted else 0.0
    r = 100.0 * correct / gold if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def segmentation_prf(gold: Iterable[Sequence[str]], pred: Iterable[Sequence[str]]) -> dict:
    """Word-segmentation P/R/F1: a predicted word is correct when its span is a gold span.
    ``gold`` and ``pred`` are sentences as lists of words over the same characters."""
    correct = n_pred = n_gold = 0
    for k, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if "".join(g) != "".join(p):
            raise ValueError(f"sentence {k}: the predicted words do not spell the gold text")
        gs, ps = word_spans(g), word_spans(p)
        correct += len(gs & ps)
        n_pred += len(ps)
        n_gold += len(gs)
    return prf(correct, n_pred, n_gold)


def tag_accuracy(gold: Iterable[Sequence[str]], pred: Iterable[Sequence[str]]) -> dict:
    """Token accuracy (percent) over sentences of tags."""
    right = total = 0
    for k, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {k}: {len(g)} gold tags but {len(p)} predicted")
        right += sum(a == b for a, b in zip(g, p))
        total += len(g)
    return {"accuracy": 100.0 * right / total if total else 0.0}


# --------------------------------------------------------------------------- entities

def _split(tag: str) -> tuple[str, str]:
    if tag == "O" or "-" not in tag:
        return (tag if tag in ("O", "B", "I", "E", "S") else "O"), ""
    prefix, kind = tag.split("-", 1)
    return prefix, kind


def _end_of_chunk(prev_tag, tag, prev_type, type_):
    # conlleval's endOfChunk
    return (prev_tag in ("E", "S")
            or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
            or (prev_tag != "O" and prev_type != type_))


def _start_of_chunk(prev_tag, tag, prev_type, type_):
    # conlleval's startOfChunk
    return (tag in ("B", "S")
            or (prev_tag in ("E", "S", "O") and tag in ("I", "E"))
            or (tag != "O" and prev_type != type_))


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities ``(type, start, end)`` (end exclusive) as conlleval reads a tag sequence."""
    out = []
    prev_tag, prev_type, start = "O", "", None
    for i, t in enumerate(list(tags) + ["O"]):
        tag, type_ = _split(t)
        if start is not None and _end_of_chunk(prev_tag, tag, prev_type, type_):
            out.append((prev_type, start, i))
            start = None
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            start = i
        prev_tag, prev_type = tag, type_
    return out


def entity_prf(gold: Iterable[Sequence[str]], pred: Iterable[Sequence[str]]) -> dict:
    """Entity-level P/R/F1 with exact span and type (conlleval), plus per-type F1
    (``f1_<type>``; no slash, since metric names become file names) and token accuracy."""
    correct, n_pred, n_gold = Counter(), Counter(), Counter()
    right = total = 0
    for k, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {k}: {len(g)} gold tags but {len(p)} predicted")
        gc, pc = set(chunks(g)), set(chunks(p))
        for c in gc & pc:
            correct[c[0]] += 1
        for c in pc:
            n_pred[c[0]] += 1
        for c in gc:
            n_gold[c[0]] += 1
        right += sum(a == b for a, b in zip(g, p))
        total += len(g)
    out = prf(sum(correct.values()), sum(n_pred.values()), sum(n_gold.values()))
    out["accuracy"] = 100.0 * right / total if total else 0.0
    for t in sorted(set(n_gold) | set(n_pred)):
        out[f"f1_{t}"] = prf(correct[t], n_pred[t], n_gold[t])["f1"]
    return out
