"""What the tagging experiments (``cws``, ``pos``, ``ner``) share: a :class:`jaxrnn.train.Task`
around a :class:`jaxrnn.models.Tagger` (bucketed batches, jitted Viterbi decoding, scoring,
prediction) and the ensemble evaluator behind ``jaxrnn evaluate --ensemble``.

The trainer knows nothing of tagging: the ensemble is this module's :func:`evaluate_ensemble`,
which each tagging experiment module re-exports and the CLI finds on the experiment module by
name (the way big_vision's trainer finds evaluators), and the per-sequence scores it averages
are a field of :class:`TaggingTask`, a ``Task`` subclass.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Optional, Sequence

import jax
import numpy as np

from jaxrnn.train.config import DataError, PositiveInt, Range
from jaxrnn.heads import crf as crf_lib
from jaxrnn.models.tagger import CharInput, Tagger
from jaxrnn.text.batching import BucketSampler, bucket_boundaries, eval_batches, pad
from jaxrnn.text.readers import Sentence, read_lines
from jaxrnn.train import Task

__all__ = ["BatchConfig", "TaggingTask", "evaluate_ensemble", "tagging_task"]


@dataclass
class BatchConfig:
    """Bucketing (section ``data.batching``): padded lengths are multiples of ``bucket_width``
    growing by about ``bucket_ratio``, so each jit-compiled step sees only a few shapes."""
    bucket_width: PositiveInt = 8
    bucket_ratio: Annotated[float, Range(lo=1.0)] = 1.3
    eval_batch_size: PositiveInt = 128


@dataclass
class TaggingTask(Task):
    """A tagging experiment's task, plus what an ensemble of such tasks combines.

    Attributes:
      scores: ``(params, token_seqs) -> (per-sequence emissions [n_i, K] (NumPy), the CRF
        params (None for a softmax tagger), the tag names)``.
      ensemble: ``(members, path=None) -> {metric: float}`` with ``members`` a list of
        ``(task, params)``: scores dev (or a file in the task's format) with the members'
        mean emissions and mean CRF, decoded by Viterbi.
    """
    scores: Optional[Callable[..., Any]] = None
    ensemble: Optional[Callable[..., dict]] = None


def evaluate_ensemble(members, path=None) -> dict:
    """``jaxrnn evaluate --ensemble``: ``members`` is a list of ``(task, params)`` of one tagging
    experiment; scored by the first member's task (its dev set, or ``path``)."""
    if not members:
        raise DataError("an ensemble needs at least one member")
    task = members[0][0]
    if not isinstance(task, TaggingTask):
        raise DataError("an ensemble needs tagging tasks (cws, pos, ner)")
    return task.ensemble(members, path)


def check_raw_text(path, lines: Sequence[str]) -> None:
    """``predict`` reads raw text, one sentence a line. A gold file in a column format (CoNLL,
    CoNLL-U: a token per line, tab-separated fields) would be tagged as text, field by field:
    refuse it, pointing at ``evaluate --data``."""
    nonempty = [ln for ln in lines if ln.strip()]
    tabbed = sum(1 for ln in nonempty if "\t" in ln or ln.startswith("# sent_id"))
    if nonempty and tabbed > len(nonempty) / 2:
        raise DataError(f"{path}: looks like a tab-separated column file (CoNLL), not raw text; "
                        f"predict reads raw text, one sentence a line; score a gold file with "
                        f"jaxrnn evaluate --data {path}")


def tagging_task(*, model: Tagger, train: Sequence[Sentence], dev: Sequence[Sentence],
                 batch_size: int, batching: BatchConfig, seed: int, runtime,
                 read_file: Callable[[str], Sequence[Sentence]],
                 score: Callable[[Sequence[Sentence], list], dict],
                 tokenize: Callable[[str], Sequence[str]],
                 write: Callable[[Sequence[str], Sequence[str]], str]):
    """A :class:`TaggingTask` for a tagger.

    ``read_file(path)`` reads gold sentences in the task's format; ``score(gold, predicted
    tag lists)`` gives the dev metrics; ``tokenize(line)`` splits a raw line into tokens and
    ``write(tokens, tags)`` formats one predicted sentence for ``jaxrnn predict``."""
    inp, tags = model.inp, model.tags
    if not train:
        raise DataError("no training sentences")
    enc = [{"x": inp.encode(s.tokens, train_index=i) if isinstance(inp, CharInput)
             else inp.encode(s.tokens), "tags": tags.encode(s.tags), "n": len(s.tokens)}
           for i, s in enumerate(train)]
    lengths = [e["n"] for e in enc]
    bounds = bucket_boundaries(max(lengths), batching.bucket_width, batching.bucket_ratio)
    sampler = BucketSampler(lengths, batch_size, bounds, seed)
    eval_bs = -(-batching.eval_batch_size // runtime.num_devices) * runtime.num_devices

    def collate(examples, T):
        """Examples (None: a pad row of length 0) -> a batch padded to length T."""
        return {"x": inp.collate([e and e["x"] for e in examples], T),
                "tags": pad([e["tags"] if e else np.zeros(0, np.int32) for e in examples], T),
                "length": np.array([e["n"] if e else 0 for e in examples], np.int32)}

    def train_batch(step):
        idx, T = sampler.batch(step)
        return collate([enc[i] if i >= 0 else None for i in idx], T)

    def loss(params, state, batch, key):
        return model.loss(params, batch, key), (state, {})

    decode = jax.jit(model.decode)
    batch_emissions = jax.jit(model.batch_emissions)

    def per_sequence(fn, params, token_seqs: Sequence[Sequence[str]]) -> list:
        """``fn(params, batch)`` over length-sorted eval batches of raw token sequences; the
        rows cut back to each sequence's length, in input order (NumPy)."""
        examples = [{"x": inp.encode(t), "tags": np.zeros(len(t), np.int32), "n": len(t)}
                    for t in token_seqs]
        out: list = [None] * len(examples)
        for idx, T in eval_batches([len(t) for t in token_seqs], eval_bs, bounds):
            b = collate([examples[i] if i >= 0 else None for i in idx], T)
            res = np.asarray(runtime.to_host(fn(params, runtime.shard_batch(b))))
            for r, i in enumerate(idx):
                if i >= 0:
                    out[i] = res[r, :len(token_seqs[i])]
        return out

    def predict_tags(params, token_seqs: Sequence[Sequence[str]]) -> list[list[str]]:
        return [tags.decode(p) for p in per_sequence(decode, params, token_seqs)]

    def scores(params, token_seqs: Sequence[Sequence[str]]):
        """Emissions ``[n_i, K]`` per sequence (NumPy), the CRF params (None: softmax) and
        the tag names: what an ensemble averages."""
        out = per_sequence(batch_emissions, params, token_seqs)
        crf = jax.tree.map(np.asarray, params["crf"]) if model.cfg.crf else None
        return out, crf, tuple(tags.itos)

    viterbi = jax.jit(jax.vmap(lambda crf, em, n: crf_lib.decode(crf, em, n, model.constraints)[0],
                               in_axes=(None, 0, 0)))

    def ensemble(members, path=None):
        """Mean emissions and mean CRF transitions of every member (a product of the members'
        CRFs, renormalized), decoded by Viterbi; scored like ``evaluate``."""
        if not members:
            raise DataError("an ensemble needs at least one member")
        sents = dev if path is None else read_file(path)
        token_seqs = [s.tokens for s in sents]
        got = []
        for k, (task, params) in enumerate(members):
            if not isinstance(task, TaggingTask):
                raise DataError(f"ensemble member {k} is not a tagging task")
            got.append(task.scores(params, token_seqs))
        for k, (_, crf, names) in enumerate(got):
            if names != tuple(tags.itos):
                raise DataError(f"ensemble member {k} has tags {names}, expected {tuple(tags.itos)}")
            if (crf is None) != (not model.cfg.crf):
                raise DataError(f"ensemble member {k}: CRF and softmax taggers cannot be mixed")
        em = [np.mean([g[0][i] for g in got], axis=0) for i in range(len(sents))]
        pred: list = [None] * len(sents)
        if model.cfg.crf:
            crf = jax.tree.map(lambda *a: np.mean(a, axis=0), *[g[1] for g in got])
            lengths = [len(t) for t in token_seqs]
            for idx, T in eval_batches(lengths, eval_bs, bounds):
                rows = [em[i] if i >= 0 else np.zeros((0, len(tags)), np.float32) for i in idx]
                n = np.array([lengths[i] if i >= 0 else 0 for i in idx], np.int32)
                best = np.asarray(viterbi(crf, pad(rows, T, dtype=np.float32), n))
                for r, i in enumerate(idx):
                    if i >= 0:
                        pred[i] = tags.decode(best[r, :lengths[i]])
        else:
            pred = [tags.decode(np.argmax(e, axis=-1)) for e in em]
        return score(sents, pred)

    def evaluate_sentences(params, sents):
        return score(sents, predict_tags(params, [s.tokens for s in sents]))

    def evaluate(params, split="dev"):
        if split != "dev":
            raise DataError(f"only the dev split is configured; score other files with "
                             f"jaxrnn evaluate --data FILE (got split {split!r})")
        return evaluate_sentences(params, dev)

    def evaluate_file(params, path):
        sents = read_file(path)
        if not sents:
            raise DataError(f"{path}: no sentences to score")
        return evaluate_sentences(params, sents)

    def predict(params, input_path, output_path=None):
        lines = read_lines(input_path)
        check_raw_text(input_path, lines)
        token_seqs = [list(tokenize(line)) for line in lines]
        nonempty = [i for i, t in enumerate(token_seqs) if t]
        pred = predict_tags(params, [token_seqs[i] for i in nonempty])
        by_line = dict(zip(nonempty, pred))
        text = "".join(write(t, by_line.get(i, [])) for i, t in enumerate(token_seqs))
        if output_path is None:
            sys.stdout.write(text)
        else:
            with open(output_path, "w", encoding="utf-8") as f:
                f.write(text)

    return TaggingTask(init=model.init, loss=loss, train_batch=train_batch, evaluate=evaluate,
                evaluate_file=evaluate_file, predict=predict, scores=scores, ensemble=ensemble,
                units=(int(np.mean(lengths) * batch_size), "token"))
