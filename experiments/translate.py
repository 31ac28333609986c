"""English -> Chinese translation on Tatoeba (``tatoeba_cmn_eng/cmn.txt``): an encoder-decoder
LSTM (``jaxrnn.models.Seq2Seq``) with or without attention, scored by BLEU with greedy and beam search.

Data: ``english TAB chinese`` a line (20,133 pairs). A fixed split drawn from
``data.split_seed`` (``data.test_size`` pairs test, ``data.dev_size`` dev, the rest train) is
written to ``data.split_dir`` inside the run folder as ``train.txt``, ``dev.txt``, ``test.txt``
(same format), so
``jaxrnn evaluate --data FILE`` can score any file of pairs.

Vocabularies, built from the train split only: English words (lowercased, punctuation split
off: ``don't`` -> ``don ' t``; words seen fewer than ``data.src_min_count`` times are ``<unk>``)
and Chinese characters. Characters need no segmenter, give a small closed vocabulary (~3,000
symbols) and are exactly the units of sacrebleu's ``zh`` tokenizer, which splits every CJK
character; English words keep the source short (median 6 tokens) for the encoder.

Training: teacher forcing, token-level cross-entropy averaged over real target tokens; batches of
similar source lengths (``jaxrnn.text.BucketSampler``, a pure function of the step), padded to
a few bucket lengths (one compilation each). Train pairs longer than ``data.max_src_len`` /
``data.max_tgt_len`` tokens are dropped; dev and test are kept whole.

Metrics: ``loss`` (nats per target token, ``</s>`` included), ``bleu`` (greedy decoding),
``bleu_beam`` (beam search, ``decode.beam_size``, length penalty ``decode.alpha``; computed for
``test`` and for files, and on ``dev`` when ``decode.dev_beam``): sacrebleu corpus BLEU with
``tokenize="zh"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrnn.train.config import (BaseConfig, CellName, ConfigError, DataError, NonNegativeFloat,
                                 NonNegativeInt, PositiveInt, Rate, data_path, output_path)
from jaxrnn import models
from jaxrnn.text.batching import BucketSampler, bucket_length, pad
from jaxrnn.text.readers import FormatError, read_lines
from jaxrnn.text.vocab import PAD, UNK, Vocab
from jaxrnn.train.experiment import Task

BOS, EOS = "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)      # ids 0, 1, 2, 3 in both vocabularies


@dataclass
class DataConfig:
    path: str = data_path("tatoeba_cmn_eng/cmn.txt")
    # where the split is written (relative to the working directory unless absolute)
    split_dir: str = output_path("split")
    split_seed: int = 0
    test_size: PositiveInt = 1000
    dev_size: PositiveInt = 1000
    src_level: Literal["word", "char"] = "word"
    src_min_count: PositiveInt = 2
    tgt_min_count: PositiveInt = 1
    # train pairs longer than these (tokens, </s> included) are dropped
    max_src_len: PositiveInt = 32
    max_tgt_len: PositiveInt = 48
    # padded lengths (source and target each take the smallest that fits)
    buckets: list[PositiveInt] = field(default_factory=lambda: [8, 16, 24, 48])


@dataclass
class ModelConfig:
    # a name of jaxrnn.cells.registry whose carry has an h (the decoder bridge sets it)
    cell: CellName = "lstm"
    embed_size: PositiveInt = 128
    hidden_size: PositiveInt = 256
    enc_layers: PositiveInt = 1
    dec_layers: PositiveInt = 1
    attention: Literal["additive", "general", "dot", "none"] = "additive"
    attn_size: NonNegativeInt = 0              # additive attention width; 0: hidden_size
    input_feeding: bool = True
    dropout: Rate = 0.2


@dataclass
class DecodeConfig:
    beam_size: PositiveInt = 5
    alpha: NonNegativeFloat = 0.6              # GNMT length penalty exponent; 0: raw log-probability
    max_len: PositiveInt = 48               # output tokens at most (</s> included)
    batch_size: PositiveInt = 250           # sources decoded at once in evaluation
    dev_beam: bool = False          # also beam-decode dev at every evaluation


@dataclass
class Config(BaseConfig):
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)


# --------------------------------------------------------------------------- data

_WORD = re.compile(r"\w+|[^\w\s]")


def tokenize_en(text: str, level: str = "word") -> list[str]:
    text = text.strip().lower()
    if level == "char":
        return list(text)
    return _WORD.findall(text)


def tokenize_zh(text: str) -> list[str]:
    return [c for c in text.strip() if not c.isspace()]


def read_pairs(path) -> list[tuple[str, str]]:
    pairs = []
    for i, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            raise FormatError(path, i, f"expected 'english TAB chinese', got {line[:80]!r}")
        pairs.append((cols[0], cols[1]))      # extra columns (attribution) are ignored
    return pairs


def split_pairs(pairs, seed: int, test_size: int, dev_size: int):
    if test_size + dev_size >= len(pairs):
        raise ConfigError(f"data.test_size + data.dev_size must be < {len(pairs)} pairs")
    order = np.random.default_rng(seed).permutation(len(pairs))
    take = lambda idx: [pairs[i] for i in idx]
    return {"test": take(order[:test_size]), "dev": take(order[test_size:test_size + dev_size]),
            "train": take(order[test_size + dev_size:])}


def write_split(splits: dict, folder) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, pairs in splits.items():
        text = "".join(f"{en}\t{zh}\n" for en, zh in pairs)
        path = folder / f"{name}.txt"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)


class Encoded:
    """Pairs as id arrays: sources (no specials), targets ending with </s>."""

    def __init__(self, pairs, src_vocab, tgt_vocab, level):
        self.pairs = pairs
        self.src = [np.concatenate([src_vocab.encode(tokenize_en(en, level)),
                                    [src_vocab[EOS]]]).astype(np.int32) for en, _ in pairs]
        self.tgt = [np.concatenate([tgt_vocab.encode(tokenize_zh(zh)), [tgt_vocab[EOS]]]
                                   ).astype(np.int32) for _, zh in pairs]
        self.src_len = np.array([len(s) for s in self.src], np.int64)
        self.tgt_len = np.array([len(t) for t in self.tgt], np.int64)


def make_batch(data: Encoded, idx, buckets, rows: int) -> dict:
    """Rows ``idx`` (``-1``: an empty pad row) padded to bucket lengths."""
    idx = np.asarray(idx)
    real = idx[idx >= 0]
    S = bucket_length(int(data.src_len[real].max()), buckets)
    T = bucket_length(int(data.tgt_len[real].max()), buckets)
    empty = np.zeros((1,), np.int32)
    src = pad([data.src[i] if i >= 0 else empty for i in idx], S)
    tgt = pad([data.tgt[i] if i >= 0 else np.zeros((0,), np.int32) for i in idx], T)
    src_len = np.array([data.src_len[i] if i >= 0 else 1 for i in idx], np.int32)
    tgt_in = np.concatenate([np.full((len(idx), 1), SPECIALS.index(BOS), np.int32),
                             tgt[:, :-1]], axis=1)
    out = {"src": src, "src_len": src_len, "tgt_in": tgt_in, "tgt_out": tgt}
    if len(idx) < rows:   # pad rows (eval): length-0 targets contribute nothing
        extra = rows - len(idx)
        out = {k: np.concatenate([v, np.repeat(v[:1] * 0 + (1 if k == "src_len" else 0),
                                                extra, axis=0)]) for k, v in out.items()}
    return out


# --------------------------------------------------------------------------- task

def build(cfg: Config, runtime) -> Task:
    d, m, dc, t = cfg.data, cfg.model, cfg.decode, cfg.train
    runtime.check_batch(t.batch_size)
    splits = split_pairs(read_pairs(d.path), d.split_seed, d.test_size, d.dev_size)
    src_vocab = Vocab.build((w for en, _ in splits["train"] for w in tokenize_en(en, d.src_level)),
                            min_count=d.src_min_count, specials=SPECIALS)
    tgt_vocab = Vocab.build((c for _, zh in splits["train"] for c in tokenize_zh(zh)),
                            min_count=d.tgt_min_count, specials=SPECIALS)
    bos, eos, pad_id = tgt_vocab[BOS], tgt_vocab[EOS], tgt_vocab[PAD]
    buckets = sorted(d.buckets)
    train = Encoded(splits["train"], src_vocab, tgt_vocab, d.src_level)
    keep = np.nonzero((train.src_len <= d.max_src_len) & (train.tgt_len <= d.max_tgt_len))[0]
    train = Encoded([splits["train"][i] for i in keep], src_vocab, tgt_vocab, d.src_level)
    held = {s: Encoded(splits[s], src_vocab, tgt_vocab, d.src_level) for s in ("dev", "test")}
    sampler = BucketSampler(train.src_len, t.batch_size, buckets, seed=cfg.seed)
    try:
        model = models.Seq2Seq(len(src_vocab), len(tgt_vocab), embed_size=m.embed_size,
                                hidden_size=m.hidden_size, enc_layers=m.enc_layers,
                                dec_layers=m.dec_layers, cell=m.cell, attention=m.attention,
                                attn_size=m.attn_size or None, input_feeding=m.input_feeding,
                                dropout=m.dropout)
    except ValueError as e:
        raise ConfigError(f"model: {e}") from None

    def nll(params, batch, key):
        logits, _ = jax.vmap(lambda s, n, ti, k: model.teacher_forced(params, s, n, ti, k),
                             in_axes=(0, 0, 0, None if key is None else 0))(
            batch["src"], batch["src_len"], batch["tgt_in"],
            None if key is None else jax.random.split(key, batch["src"].shape[0]))
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["tgt_out"])
        mask = batch["tgt_out"] != pad_id
        return jnp.sum(jnp.where(mask, ce, 0.0)), jnp.sum(mask)

    def loss(params, state, batch, key):
        total, count = nll(params, batch, key)
        return total / jnp.maximum(count, 1).astype(total.dtype), (state, {})   # count as a float

    def train_batch(step):
        idx, _ = sampler.batch(step)
        return make_batch(train, idx, buckets, t.batch_size)

    eval_nll = jax.jit(lambda p, b: nll(p, b, None))

    @jax.jit
    def decode_greedy(params, src, src_len):
        state, ctx = model.start(params, src, src_len)
        return models.greedy(model.decode_fn(params), state, ctx, bos=bos, eos=eos,
                              max_len=dc.max_len, pad=pad_id, alpha=dc.alpha).tokens

    @jax.jit
    def decode_beam(params, src, src_len):
        state, ctx = model.start(params, src, src_len)
        return models.beam_search(model.decode_fn(params), state, ctx, beam_size=dc.beam_size,
                                   bos=bos, eos=eos, max_len=dc.max_len, pad=pad_id,
                                   alpha=dc.alpha).tokens[:, 0]

    def detok(ids) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == eos or i == pad_id:
                break
            if i >= len(SPECIALS):
                out.append(tgt_vocab.itos[i])
        return "".join(out)

    def translate(params, data: Encoded, beam: bool) -> list[str]:
        order = np.argsort(data.src_len, kind="stable")
        hyps = [""] * len(order)
        fn = decode_beam if beam else decode_greedy
        for a in range(0, len(order), dc.batch_size):
            idx = order[a:a + dc.batch_size]
            b = make_batch(data, idx, buckets, dc.batch_size)
            toks = np.asarray(fn(params, b["src"], b["src_len"]))
            for i, row in zip(idx, toks):
                hyps[i] = detok(row)
        return hyps

    def score(params, data: Encoded, beam: bool) -> dict:
        import sacrebleu
        params = runtime.to_host(params)
        total, count = 0.0, 0
        order = np.argsort(data.src_len, kind="stable")
        for a in range(0, len(order), dc.batch_size):
            b = make_batch(data, order[a:a + dc.batch_size], buckets, dc.batch_size)
            s, n = eval_nll(params, b)
            total, count = total + float(s), count + int(n)
        refs = [zh for _, zh in data.pairs]
        out = {"loss": total / max(count, 1)}
        out["bleu"] = sacrebleu.corpus_bleu(translate(params, data, False), [refs],
                                            tokenize="zh").score
        if beam:
            out["bleu_beam"] = sacrebleu.corpus_bleu(translate(params, data, True), [refs],
                                                     tokenize="zh").score
        return out

    def evaluate(params, split="dev"):
        if split not in held:
            raise DataError(f"translate has splits dev and test, not {split!r}")
        return score(params, held[split], beam=split == "test" or dc.dev_beam)

    def evaluate_file(params, path):
        pairs = read_pairs(path)
        if not pairs:
            raise DataError(f"{path}: no sentence pairs to score")
        return score(params, Encoded(pairs, src_vocab, tgt_vocab, d.src_level), True)

    def translate_lines(params, lines: list[str]) -> list[str]:
        data = Encoded([(x, "") for x in lines], src_vocab, tgt_vocab, d.src_level)
        return translate(runtime.to_host(params), data, dc.beam_size > 1)

    def generate(params, *, prompt="", length=None, temperature=None, seed=0, emit=None):
        """Translates ``prompt`` (``jaxrnn generate --input TEXT``) with beam search."""
        out = translate_lines(params, [prompt.strip() or "."])[0]
        if emit is not None:
            emit(out)
        return out

    def predict(params, input_path, output_path):
        """One English sentence a line (a TAB and anything after it is ignored) -> Chinese."""
        lines = [l.rstrip("\n").split("\t")[0] for l in
                 Path(input_path).read_text(encoding="utf-8").splitlines()]
        text = "".join(h + "\n" for h in translate_lines(params, lines))
        if output_path:
            Path(output_path).write_text(text, encoding="utf-8")
        else:
            print(text, end="")

    return Task(init=model.init, loss=loss, train_batch=train_batch, evaluate=evaluate,
                evaluate_file=evaluate_file, generate=generate, predict=predict,
                units=(t.batch_size, "pair"), metrics=("loss", "bleu") + (("bleu_beam",) if dc.dev_beam else ()),
                write_files=lambda workdir: write_split(splits, Path(workdir) / d.split_dir))
