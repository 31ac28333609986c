"""A linear-chain conditional random field as pure functions over one sequence.

The score of a tag path y_0..y_{n-1} for emissions ``E [T, K]`` (a BiLSTM's outputs
projected to K tags) is::

    s(y) = start[y_0] + sum_t E[t, y_t] + sum_{t>0} trans[y_{t-1}, y_t] + end[y_{n-1}]

and p(y | x) = exp(s(y)) / Z with Z the sum over every path. ``log_partition`` runs the
forward algorithm under ``jax.lax.scan`` in log space, ``decode`` runs Viterbi with back
pointers under ``scan``. Everything takes one sequence and its valid ``length`` (positions
>= length are padding and never matter); ``jax.vmap`` handles batches.

Optional constraints (``allowed_transitions``, e.g. no I-PER after B-LOC in BIO, no M after S
in BMES) add a large negative score to forbidden transitions, starts and ends, so their
paths have probability zero in float32 and float64 alike.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.cells import checks

# exp(FORBIDDEN) underflows to exactly 0 in float32 and float64, and stays finite for gradients.
FORBIDDEN = -1e4


class CRFParams(NamedTuple):
    transitions: jax.Array   # [K, K]: score of moving from tag i (row) to tag j (column)
    start: jax.Array         # [K]
    end: jax.Array           # [K]


class Constraints(NamedTuple):
    """Boolean masks of what is allowed: ``transitions [K, K]``, ``start [K]``, ``end [K]``."""
    transitions: np.ndarray
    start: np.ndarray
    end: np.ndarray


def init(num_tags: int, dtype=jnp.float32) -> CRFParams:
    """Zero scores: before training, every path is as likely as its emissions say."""
    num_tags = checks.check_positive_int("num_tags", num_tags, where="crf.init")
    dtype = checks.check_float_dtype("dtype", dtype, where="crf.init")
    return CRFParams(jnp.zeros((num_tags, num_tags), dtype), jnp.zeros(num_tags, dtype),
                     jnp.zeros(num_tags, dtype))


def _constrained(params: CRFParams, constraints: Optional[Constraints]) -> CRFParams:
    if constraints is None:
        return params
    f = jnp.asarray(FORBIDDEN, params.transitions.dtype)
    return CRFParams(jnp.where(constraints.transitions, params.transitions, f),
                     jnp.where(constraints.start, params.start, f),
                     jnp.where(constraints.end, params.end, f))


def _check(params: CRFParams, emissions, length):
    if not isinstance(params, CRFParams):
        raise checks.InvalidArgumentType(f"crf: params must be CRFParams (crf.init(num_tags)), "
                                         f"got {type(params).__name__}")
    K = params.transitions.shape[0]
    emissions = jnp.asarray(emissions)
    if emissions.ndim != 2 or emissions.shape[-1] != K:
        raise checks.InvalidArgumentValue(
            f"crf: emissions must be [T, {K}] for one sequence (vmap for batches), got shape "
            f"{tuple(emissions.shape)}")
    T = emissions.shape[0]
    if length is None:
        return T, jnp.asarray(T, jnp.int32)
    if jnp.ndim(length) != 0:
        raise checks.InvalidArgumentValue(
            f"crf: length must be a scalar per sequence, got shape {tuple(jnp.shape(length))}")
    return T, checks.check_seq_lengths(length, T, what="crf: length")


def sequence_score(params: CRFParams, emissions, tags, length=None,
                   constraints: Optional[Constraints] = None):
    """s(y): the unnormalized log score of the tag path ``tags [T]``."""
    T, n = _check(params, emissions, length)
    p = _constrained(params, constraints)
    tags = jnp.asarray(tags, jnp.int32)
    t = jnp.arange(T, dtype=jnp.int32)   # n is int32
    valid = t < n
    emit = jnp.take_along_axis(emissions, tags[:, None], axis=1)[:, 0]
    trans = p.transitions[tags[:-1], tags[1:]]
    last = tags[jnp.maximum(n - 1, 0)]
    score = (jnp.sum(jnp.where(valid, emit, 0.0)) + jnp.sum(jnp.where(valid[1:], trans, 0.0))
             + p.start[tags[0]] + p.end[last])
    return jnp.where(n > 0, score, 0.0)


def log_partition(params: CRFParams, emissions, length=None,
                  constraints: Optional[Constraints] = None):
    """log Z by the forward algorithm (log space, ``lax.scan``)."""
    T, n = _check(params, emissions, length)
    p = _constrained(params, constraints)
    alpha0 = p.start + emissions[0]

    def body(alpha, inp):
        emit_t, t = inp
        nxt = jax.nn.logsumexp(alpha[:, None] + p.transitions, axis=0) + emit_t
        return jnp.where(t < n, nxt, alpha), None

    alpha, _ = jax.lax.scan(body, alpha0, (emissions[1:], jnp.arange(1, T, dtype=jnp.int32)))
    return jnp.where(n > 0, jax.nn.logsumexp(alpha + p.end), 0.0)


def log_likelihood(params: CRFParams, emissions, tags, length=None,
                   constraints: Optional[Constraints] = None):
    """log p(tags | emissions) = s(tags) - log Z. Negate and average over a batch for a loss."""
    return (sequence_score(params, emissions, tags, length, constraints)
            - log_partition(params, emissions, length, constraints))


def marginals(params: CRFParams, emissions, length=None, constraints: Optional[Constraints] = None):
    """p(y_t = k | x) for every position, ``[T, K]`` (forward-backward, as the gradient of log Z)."""
    return jax.grad(lambda e: log_partition(params, e, length, constraints))(emissions)


def decode(params: CRFParams, emissions, length=None, constraints: Optional[Constraints] = None
           ) -> Tuple[jax.Array, jax.Array]:
    """Viterbi: the best tag path ``[T]`` (0 past ``length``) and its score."""
    T, n = _check(params, emissions, length)
    p = _constrained(params, constraints)
    K = p.transitions.shape[0]
    delta0 = p.start + emissions[0]

    def forward(delta, inp):
        emit_t, t = inp
        cand = delta[:, None] + p.transitions           # [from, to]
        best_prev = jnp.argmax(cand, axis=0).astype(jnp.int32)   # int64 under x64
        nxt = jnp.max(cand, axis=0) + emit_t
        keep = t >= n
        # past the end the path stands still: the back pointer of tag k is k itself
        stay = jnp.arange(K, dtype=jnp.int32)
        return jnp.where(keep, delta, nxt), jnp.where(keep, stay, best_prev)

    delta, pointers = jax.lax.scan(forward, delta0,
                                   (emissions[1:], jnp.arange(1, T, dtype=jnp.int32)))
    final = delta + p.end
    last = jnp.argmax(final).astype(jnp.int32)

    def backward(tag, ptr):
        prev = ptr[tag]
        return prev, tag

    first, rest = jax.lax.scan(backward, last, pointers, reverse=True)
    tags = jnp.concatenate([first[None], rest])
    tags = jnp.where(jnp.arange(T, dtype=jnp.int32) < n, tags, 0)
    return tags, jnp.where(n > 0, jnp.max(final), 0.0)


# --------------------------------------------------------------------------- tag schemes

def allowed_transitions(tags: Sequence[str], scheme: str = "BIO") -> Constraints:
    """What a tagging scheme allows, from tag names like ``B-PER``, ``I-PER``, ``O`` (BIO),
    ``B``, ``M``, ``E``, ``S`` (BMES word segmentation) or ``B-X``/``I-X``/``E-X``/``S-X``
    (BIOES). Returns :class:`Constraints` for the CRF functions."""
    scheme = scheme.upper()
    if scheme not in ("BIO", "BMES", "BIOES"):
        raise ValueError(f"unknown tagging scheme {scheme!r}; choose BIO, BMES or BIOES")
    parsed = []
    for tag in tags:
        if tag == "O":
            parsed.append(("O", ""))
            continue
        prefix, _, kind = tag.partition("-")
        if prefix not in scheme or (prefix == "O"):
            raise ValueError(f"tag {tag!r} does not belong to the {scheme} scheme")
        parsed.append((prefix, kind))
    K = len(tags)
    trans = np.zeros((K, K), bool)
    start = np.zeros(K, bool)
    end = np.zeros(K, bool)
    # which prefixes begin a span, continue one, and may end a sentence
    begins = {"BIO": "BO", "BMES": "BS", "BIOES": "BSO"}[scheme]
    inside = {"BIO": "I", "BMES": "ME", "BIOES": "IE"}[scheme]
    closed = {"BIO": "BIO", "BMES": "ES", "BIOES": "ESO"}[scheme]   # may be the last tag
    opens = {"BIO": "BI", "BMES": "BM", "BIOES": "BI"}[scheme]      # followed by an inside tag
    for i, (pi, ki) in enumerate(parsed):
        start[i] = pi in begins
        end[i] = pi in closed
        for j, (pj, kj) in enumerate(parsed):
            if pj in inside:
                ok = pi in opens and ki == kj
            else:
                ok = scheme == "BIO" or pi in closed
            trans[i, j] = ok
    return Constraints(trans, start, end)
