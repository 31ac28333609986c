"""Connectionist temporal classification (Graves et al. 2006): loss, decoding, error rates.

- :func:`ctc_loss`: per-sequence negative log-likelihood over padded batches, a thin wrapper of
  ``optax.ctc_loss`` that takes lengths instead of padding masks. Pure, ``jit``-able.
- :func:`greedy_decode`: best path (argmax per frame), repeats collapsed, blanks dropped.
- :func:`prefix_beam_search`: CTC prefix beam search (Hannun et al. 2014, without a language
  model) in log space; each kept prefix's score is the total probability of all alignments
  that produce it, so with a wide enough beam it finds the most probable labelling.
- :func:`edit_distance`, :func:`error_rate`: Levenshtein distance and the label (digit, word,
  character) error rate ``sum(distances) / sum(len(references))``.

Decoding runs on the host over NumPy log-probabilities (``[T, K]``) of one sequence; the
label ``blank`` (default 0) is the CTC blank.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax.numpy as jnp
import numpy as np
import optax

from jaxrnn.cells import checks

__all__ = ["ctc_loss", "greedy_decode", "prefix_beam_search", "edit_distance", "error_rate"]


def ctc_loss(logits, logit_lengths, labels, label_lengths, *, blank: int = 0):
    """CTC negative log-likelihood per sequence, ``[B]``.

    Args:
      logits: ``[B, T, K]`` unnormalized scores (log-softmax is taken inside).
      logit_lengths: ``[B]`` valid frames of each sequence (right padding after them).
      labels: ``[B, L]`` int label sequences, right-padded (the padding value is ignored).
      label_lengths: ``[B]`` valid labels of each sequence.
      blank: the blank index.
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if logits.ndim != 3:
        raise checks.InvalidArgumentValue(f"ctc_loss: logits must be [B, T, K], got shape "
                                          f"{tuple(logits.shape)}")
    B, T, K = logits.shape
    if labels.ndim != 2 or labels.shape[0] != B:
        raise checks.InvalidArgumentValue(f"ctc_loss: labels must be [{B}, L], got shape "
                                          f"{tuple(labels.shape)}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise checks.InvalidArgumentType(f"ctc_loss: labels must be integers, got dtype "
                                         f"{labels.dtype}")
    L = labels.shape[1]
    blank = checks.check_int("blank", blank, low=0, where="ctc_loss")
    if blank >= K:
        raise checks.InvalidArgumentValue(f"ctc_loss: blank={blank} is not one of the {K} "
                                          f"classes")
    logit_lengths = checks.check_seq_lengths(logit_lengths, T, (B,),
                                             what="ctc_loss: logit_lengths")
    label_lengths = checks.check_seq_lengths(label_lengths, L, (B,),
                                             what="ctc_loss: label_lengths")
    # int32 on both sides (jnp.arange is int64 under x64, which strict promotion refuses)
    logit_pad = (jnp.arange(T, dtype=jnp.int32)[None, :]
                 >= logit_lengths[:, None]).astype(logits.dtype)
    label_pad = (jnp.arange(L, dtype=jnp.int32)[None, :]
                 >= label_lengths[:, None]).astype(logits.dtype)
    return optax.ctc_loss(logits, logit_pad, jnp.asarray(labels, jnp.int32), label_pad,
                          blank_id=blank)


def _valid(log_probs, length):
    lp = np.asarray(log_probs, np.float64)
    if lp.ndim != 2:
        raise checks.InvalidArgumentValue(
            f"expected [T, K] log-probabilities of one sequence, got {lp.shape}")
    if length is None:
        return lp
    return lp[:int(checks.check_seq_lengths(length, lp.shape[0], what="length"))]


def greedy_decode(log_probs, length: Optional[int] = None, *, blank: int = 0) -> list:
    """Best-path decoding of ``[T, K]`` scores (log-probabilities or logits: only the argmax
    matters): the most likely label per frame, repeats collapsed, then blanks dropped."""
    best = np.argmax(_valid(log_probs, length), axis=-1)
    out, prev = [], None
    for s in best.tolist():
        if s != prev and s != blank:
            out.append(s)
        prev = s
    return out


def prefix_beam_search(log_probs, length: Optional[int] = None, *, beam_width: int = 8,
                       blank: int = 0, prune: float = -np.inf, nbest: bool = False):
    """CTC prefix beam search over ``[T, K]`` log-probabilities (rows normalized).

    Each prefix keeps two log-probabilities: of all alignments of the frames so far that produce
    it and end in a blank, and of those that end in its last label. Extending with the prefix's
    last label counts only the blank-ending mass (a repeat needs a blank in between).

    Returns ``(labels, log_prob)`` of the best prefix, or with ``nbest=True`` the list of
    ``(labels, log_prob)`` of the final beam, best first. ``prune`` skips labels whose frame
    log-probability is below it (speed; -inf keeps all).
    """
    lp = _valid(log_probs, length)
    T, K = lp.shape
    beam_width = checks.check_positive_int("beam_width", beam_width, where="prefix_beam_search")
    lse = np.logaddexp
    beams = {(): (0.0, -np.inf)}                 # prefix -> (log p ending blank, log p ending label)
    for t in range(T):
        row = lp[t]
        nxt: dict = {}

        def add(prefix, pb, pnb):
            if pb == -np.inf and pnb == -np.inf:     # impossible (a repeat with no blank mass)
                return
            ob, onb = nxt.get(prefix, (-np.inf, -np.inf))
            nxt[prefix] = (lse(ob, pb), lse(onb, pnb))

        for prefix, (pb, pnb) in beams.items():
            total = lse(pb, pnb)
            add(prefix, total + row[blank], -np.inf)                   # blank: prefix unchanged
            last = prefix[-1] if prefix else None
            for k in range(K):
                if k == blank or row[k] < prune:
                    continue
                if k == last:
                    add(prefix, -np.inf, pnb + row[k])                 # repeat collapses
                    add(prefix + (k,), -np.inf, pb + row[k])           # needs a blank between
                else:
                    add(prefix + (k,), -np.inf, total + row[k])
        ranked = sorted(nxt.items(), key=lambda kv: -lse(*kv[1]))
        beams = dict(ranked[:beam_width])
    final = sorted(((list(p), float(lse(*v))) for p, v in beams.items()), key=lambda r: -r[1])
    return final if nbest else final[0]


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions, each cost 1)."""
    ref, hyp = list(ref), list(hyp)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def error_rate(refs: Sequence[Sequence], hyps: Sequence[Sequence]) -> float:
    """``sum(edit_distance) / sum(len(ref))`` over a corpus (the label error rate)."""
    if len(refs) != len(hyps):
        raise ValueError(f"error_rate: {len(refs)} references but {len(hyps)} hypotheses")
    n = sum(len(r) for r in refs)
    if n == 0:
        raise ValueError("error_rate: the references are all empty")
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / n

