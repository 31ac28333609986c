"""A BiLSTM(-CRF) sequence labeller.

Inputs (:class:`CharInput` for character-level tasks, :class:`WordInput` for word-level ones)
turn tokens into id arrays and the ids into vectors; :class:`Tagger` runs them through a deep
BiLSTM, a linear layer to the tag scores (emissions) and a linear-chain CRF
(:mod:`jaxrnn.heads.crf`) or a per-token softmax. The trainer plumbing (bucketed batches,
jitted decoding, scoring, prediction, ensembles) is the tagging experiments' own
(``experiments/tagging.py``): the model knows nothing of the trainer.

Everything on the model side is a pure function of one sentence, ``vmap``-ed over the batch.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn as jr
from jaxrnn.heads import crf as crf_lib
from jaxrnn.models import embed
from jaxrnn.text.batching import pad
from jaxrnn.text.vocab import Vocab

__all__ = ["TaggerConfig", "CharInput", "WordInput", "Tagger", "normalize_char"]


@dataclass
class TaggerConfig:
    """The model section shared by the tagging experiments."""
    # token embeddings: characters (char-level tasks) or words (word-level tasks)
    embed_size: int = 100
    min_count: int = 1
    # word dropout: a token of training count c becomes <unk> with probability a / (a + c)
    word_dropout: float = 0.25
    # char-level tasks: left and right character-bigram embeddings (0: none)
    bigram_size: int = 0
    bigram_min_count: int = 1
    # char-level tasks: ASCII digits share one embedding, and so do ASCII letters (after NFKC)
    char_classes: bool = False
    # char-level tasks with gold words (cws): lexicon features. For each character and word
    # length L in 2..lexicon_max_len, three bits: a training word of length L starts here, ends
    # here, or covers this character inside. 0 = off. Training sentences see a lexicon built
    # without their own fold (lexicon_folds-fold jackknife), so the bits are as reliable in
    # training as on new text; dev, test and predicted text use the whole training lexicon.
    lexicon_max_len: int = 0
    lexicon_min_count: int = 1
    lexicon_folds: int = 10
    # word-level tasks: word table on lowercased forms, digits mapped to 0
    lowercase: bool = True
    normalize_digits: bool = True
    # word-level tasks: a character encoder per word (none, cnn, lstm)
    char_features: Literal["none", "cnn", "lstm"] = "cnn"
    char_embed_size: int = 30
    # CNN filters, or the BiLSTM's output size (both directions)
    char_hidden: int = 50
    # characters per word for the char encoder (longer words keep their first and last halves)
    max_word_len: int = 16
    # encoder: BiLSTM, hidden_size per direction
    hidden_size: int = 200
    num_layers: int = 1
    # dropout on the input vectors, between layers and on the BiLSTM outputs (training only)
    dropout: float = 0.5
    # CRF output layer (false: independent softmax per token)
    crf: bool = True
    # scheme constraints in the CRF (forbid I-X after O, M after S, ...): from the tag names
    constrain: bool = True
    # time steps per loop iteration of the BiLSTMs (None: the backend's measured plan)
    unroll: Optional[int] = None


def normalize_char(c: str) -> str:
    """NFKC (full-width letters and digits to ASCII, ...) when it gives one character."""
    n = unicodedata.normalize("NFKC", c)
    return n if len(n) == 1 else c


# --------------------------------------------------------------------------- inputs

class CharInput:
    """Characters as tokens: unigram embeddings plus optional left/right bigram embeddings
    (c[i-1]c[i] and c[i]c[i+1], as in Chen et al. 2015 / Ma et al. 2018) and optional
    lexicon-match bits (``cfg.lexicon_max_len``; needs the training sentences' gold ``words``)."""

    def __init__(self, train: Sequence[Sequence[str]], cfg: TaggerConfig,
                 words: Optional[Sequence[Sequence[str]]] = None):
        self.cfg = cfg
        norm = [self.normalize(s) for s in train]
        self.lexicon = self.fold_lexicons = None
        if cfg.lexicon_max_len:
            if cfg.lexicon_max_len < 2 or cfg.lexicon_folds < 2:
                raise ValueError(f"model.lexicon_max_len must be >= 2 (or 0: off) and "
                                 f"model.lexicon_folds >= 2, got {cfg.lexicon_max_len} and "
                                 f"{cfg.lexicon_folds}")
            if words is None or len(words) != len(train):
                raise ValueError("model.lexicon_max_len needs the gold words of every training "
                                 "sentence (a task with word boundaries, such as cws)")
            self.lexicon, self.fold_lexicons = self._lexicons(words)
        self.chars = Vocab.build((c for s in norm for c in s), cfg.min_count)
        self.uni = embed.embedding(len(self.chars), cfg.embed_size, unk_id=self.chars.unk_id,
                                   dropout_probs=self.chars.dropout_probs(cfg.word_dropout))
        self.bigrams = self.bi = None
        size = cfg.embed_size
        if cfg.bigram_size > 0:
            self.bigrams = Vocab.build((b for s in norm for b in self._bigrams(s)[0]),
                                       cfg.bigram_min_count)
            self.bi = embed.embedding(len(self.bigrams), cfg.bigram_size,
                                      unk_id=self.bigrams.unk_id,
                                      dropout_probs=self.bigrams.dropout_probs(cfg.word_dropout))
            size += 2 * cfg.bigram_size
        if self.lexicon is not None:
            size += 3 * (cfg.lexicon_max_len - 1)
        self.output_size = size

    def _lexicons(self, words):
        """The whole training lexicon and, per jackknife fold, the lexicon of the other folds
        (word -> count; words of 2..lexicon_max_len normalized characters)."""
        from collections import Counter
        cfg = self.cfg
        folds = [Counter() for _ in range(cfg.lexicon_folds)]
        for j, ws in enumerate(words):
            for w in ws:
                w = "".join(self.normalize(w))
                if 2 <= len(w) <= cfg.lexicon_max_len:
                    folds[j % cfg.lexicon_folds][w] += 1
        total = sum(folds, Counter())
        keep = lambda c: frozenset(w for w, n in c.items() if n >= cfg.lexicon_min_count)
        return keep(total), [keep(total - f) for f in folds]

    def lexicon_features(self, chars: Sequence[str], lexicon) -> np.ndarray:
        """``[n, 3 * (max_len - 1)]`` float32 bits: for each length L = 2..max_len, whether a
        lexicon word of length L starts at, ends at, or strictly covers each character."""
        L_max, n = self.cfg.lexicon_max_len, len(chars)
        out = np.zeros((n, 3 * (L_max - 1)), np.float32)
        for L in range(2, L_max + 1):
            col = 3 * (L - 2)
            for i in range(n - L + 1):
                if "".join(chars[i:i + L]) in lexicon:
                    out[i, col] = 1.0
                    out[i + L - 1, col + 1] = 1.0
                    out[i + 1:i + L - 1, col + 2] = 1.0
        return out

    def normalize(self, chars: Sequence[str]) -> list[str]:
        out = [normalize_char(c) for c in chars]
        if self.cfg.char_classes:
            out = ["0" if c.isascii() and c.isdigit() else
                   "a" if c.isascii() and c.isalpha() else c for c in out]
        return out

    @staticmethod
    def _bigrams(chars):
        ext = ["<s>"] + list(chars) + ["</s>"]
        bis = [a + b for a, b in zip(ext[:-1], ext[1:])]   # bis[i] = c[i-1] c[i]
        return bis, (bis[:-1], bis[1:])

    def encode(self, tokens: Sequence[str], train_index: Optional[int] = None) -> dict:
        """Ids of one sentence. ``train_index``: the sentence is the i-th training sentence
        (its lexicon bits then come from the lexicon without its jackknife fold)."""
        chars = self.normalize(tokens)
        out = {"uni": self.chars.encode(chars)}
        if self.bigrams is not None:
            _, (left, right) = self._bigrams(chars)
            out["bi_l"] = self.bigrams.encode(left)
            out["bi_r"] = self.bigrams.encode(right)
        if self.lexicon is not None:
            lex = (self.lexicon if train_index is None else
                   self.fold_lexicons[train_index % self.cfg.lexicon_folds])
            out["lex"] = self.lexicon_features(chars, lex)
        return out

    def collate(self, examples: Sequence[Optional[dict]], T: int) -> dict:
        keys = ["uni"] + (["bi_l", "bi_r"] if self.bigrams is not None else [])
        out = {k: pad([e[k] if e is not None else np.zeros(0, np.int32) for e in examples], T)
               for k in keys}
        if self.lexicon is not None:
            F = 3 * (self.cfg.lexicon_max_len - 1)
            out["lex"] = pad([e["lex"] if e is not None else np.zeros((0, F), np.float32)
                              for e in examples], T, dtype=np.float32)
        return out

    def init(self, key):
        k1, k2 = jax.random.split(key)
        p = {"uni": self.uni.init(k1)}
        if self.bi is not None:
            p["bi"] = self.bi.init(k2)
        return p

    def apply(self, params, x: dict, *, key=None):
        k1, k2, k3 = (None,) * 3 if key is None else jax.random.split(key, 3)
        parts = [self.uni.apply(params["uni"], x["uni"], key=k1)]
        if self.bi is not None:
            parts += [self.bi.apply(params["bi"], x["bi_l"], key=k2),
                      self.bi.apply(params["bi"], x["bi_r"], key=k3)]
        if self.lexicon is not None:
            parts.append(x["lex"].astype(parts[0].dtype))
        return jnp.concatenate(parts, axis=-1)


class WordInput:
    """Words as tokens: word embeddings (lowercased, digits to 0) plus a character encoder
    (CNN or BiLSTM) over each word's original characters."""

    def __init__(self, train: Sequence[Sequence[str]], cfg: TaggerConfig):
        self.cfg = cfg
        self.words = Vocab.build((self.norm(w) for s in train for w in s), cfg.min_count)
        self.word = embed.embedding(len(self.words), cfg.embed_size, unk_id=self.words.unk_id,
                                    dropout_probs=self.words.dropout_probs(cfg.word_dropout))
        size = cfg.embed_size
        self.chars = self.char = None
        if cfg.char_features != "none":
            if cfg.max_word_len < 2:
                raise ValueError(f"model.max_word_len must be >= 2, got {cfg.max_word_len}")
            self.chars = Vocab.build((c for s in train for w in s for c in w), 1)
            if cfg.char_features == "cnn":
                self.char = embed.char_cnn(len(self.chars), cfg.char_embed_size, cfg.char_hidden)
            else:
                if cfg.char_hidden % 2:
                    raise ValueError(f"model.char_hidden must be even for the char BiLSTM, "
                                     f"got {cfg.char_hidden}")
                self.char = embed.char_bilstm(len(self.chars), cfg.char_embed_size,
                                              cfg.char_hidden // 2)
            size += self.char.output_size
        self.output_size = size

    def norm(self, w: str) -> str:
        if self.cfg.lowercase:
            w = w.lower()
        if self.cfg.normalize_digits:
            w = "".join("0" if c.isdigit() else c for c in w)
        return w

    def _clip(self, w: str) -> str:
        W = self.cfg.max_word_len
        return w if len(w) <= W else w[:W // 2] + w[len(w) - (W - W // 2):]

    def encode(self, tokens: Sequence[str]) -> dict:
        out = {"word": self.words.encode(self.norm(w) for w in tokens)}
        if self.chars is not None:
            clipped = [self._clip(w) for w in tokens]
            out["chars"] = pad([self.chars.encode(w) for w in clipped], self.cfg.max_word_len)
            out["char_len"] = np.array([len(w) for w in clipped], np.int32)
        return out

    def collate(self, examples: Sequence[Optional[dict]], T: int) -> dict:
        W = self.cfg.max_word_len
        empty = {"word": np.zeros(0, np.int32), "chars": np.zeros((0, W), np.int32),
                 "char_len": np.zeros(0, np.int32)}
        keys = ["word"] + (["chars", "char_len"] if self.chars is not None else [])
        return {k: pad([(e if e is not None else empty)[k] for e in examples], T) for k in keys}

    def init(self, key):
        k1, k2 = jax.random.split(key)
        p = {"word": self.word.init(k1)}
        if self.char is not None:
            p["char"] = self.char.init(k2)
        return p

    def apply(self, params, x: dict, *, key=None):
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        parts = [self.word.apply(params["word"], x["word"], key=k1)]
        if self.char is not None:
            T = x["chars"].shape[0]
            keys = None if k2 is None else jax.random.split(k2, T)
            if keys is None:
                f = jax.vmap(lambda c, n: self.char.apply(params["char"], c, n))
                parts.append(f(x["chars"], x["char_len"]))
            else:
                f = jax.vmap(lambda c, n, k: self.char.apply(params["char"], c, n, key=k))
                parts.append(f(x["chars"], x["char_len"], keys))
        return jnp.concatenate(parts, axis=-1)


# --------------------------------------------------------------------------- model

class Tagger:
    """inputs -> dropout -> BiLSTM x num_layers -> dropout -> linear -> CRF (or softmax)."""

    def __init__(self, inp, cfg: TaggerConfig, tags: Vocab, scheme: Optional[str]):
        if cfg.num_layers < 1 or cfg.hidden_size < 1:
            raise ValueError("model.num_layers and model.hidden_size must be >= 1")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
        self.inp, self.cfg, self.tags = inp, cfg, tags
        self.K = len(tags)
        self.rnn = jr.stack([jr.bidirectional(jr.lstm(cfg.hidden_size), unroll=cfg.unroll)
                             for _ in range(cfg.num_layers)], dropout=cfg.dropout)
        self.constraints = (crf_lib.allowed_transitions(tags.itos, scheme)
                            if scheme is not None and cfg.constrain else None)

    def init(self, key):
        k_in, k_rnn, k_out = jax.random.split(key, 3)
        H = self.rnn.output_size
        return {"input": self.inp.init(k_in),
                "rnn": self.rnn.init(k_rnn, self.inp.output_size),
                "out": {"w": jax.random.normal(k_out, (H, self.K), jnp.float32) / float(np.sqrt(H)),
                        "b": jnp.zeros((self.K,), jnp.float32)},
                "crf": crf_lib.init(self.K)}

    def emissions(self, params, x: dict, length, key=None):
        """One sentence: ``x`` (arrays [T, ...]) -> tag scores [T, K]."""
        p = self.cfg.dropout
        keys = (None,) * 4 if key is None else jax.random.split(key, 4)
        h = self.inp.apply(params["input"], x, key=keys[0])
        h = jr.dropout(keys[1], h, p)
        ys, _ = self.rnn.apply(params["rnn"], h, seq_lengths=length, key=keys[2])
        ys = jr.dropout(keys[3], ys, p)
        em = ys @ params["out"]["w"]                                          # [T, K]
        return em + jnp.broadcast_to(params["out"]["b"], em.shape)

    def batch_emissions(self, params, batch, key=None):
        """A padded batch (``batch["x"]``, ``batch["length"]``) -> emissions ``[B, T, K]``."""
        n = batch["length"]
        if key is None:
            return jax.vmap(lambda x, l: self.emissions(params, x, l))(batch["x"], n)
        keys = jax.random.split(key, n.shape[0])
        return jax.vmap(lambda x, l, k: self.emissions(params, x, l, k))(batch["x"], n, keys)

    def loss(self, params, batch, key=None):
        """Negative log-likelihood per token (CRF), or mean token cross-entropy (softmax)."""
        em = self.batch_emissions(params, batch, key)
        n, tags = batch["length"], batch["tags"]
        tokens = jnp.maximum(jnp.sum(n), 1).astype(em.dtype)     # a count, divided by as a float
        if self.cfg.crf:
            ll = jax.vmap(crf_lib.log_likelihood, in_axes=(None, 0, 0, 0, None))(
                params["crf"], em, tags, n, self.constraints)
            return -jnp.sum(ll) / tokens
        mask = jnp.arange(tags.shape[1], dtype=jnp.int32)[None, :] < jnp.asarray(n, jnp.int32)[:, None]
        ce = optax.softmax_cross_entropy_with_integer_labels(em, tags)
        return jnp.sum(jnp.where(mask, ce, 0.0)) / tokens

    def decode(self, params, batch):
        """Best tag ids ``[B, T]`` (Viterbi under the CRF, argmax without)."""
        em = self.batch_emissions(params, batch)
        if self.cfg.crf:
            tags, _ = jax.vmap(crf_lib.decode, in_axes=(None, 0, 0, None))(
                params["crf"], em, batch["length"], self.constraints)
            return tags
        return jnp.argmax(em, axis=-1).astype(jnp.int32)         # as the CRF's Viterbi tags
