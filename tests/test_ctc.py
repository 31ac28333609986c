"""jaxrnn.heads.ctc: the loss against a brute-force sum over every alignment, decoding on
constructed posteriors, edit distance and error rate."""

import itertools

import jax
import numpy as np
import pytest

from jaxrnn.heads import ctc


def _collapse(path, blank=0):
    out, prev = [], None
    for s in path:
        if s != prev and s != blank:
            out.append(s)
        prev = s
    return tuple(out)


def _brute_force(log_probs, label, blank=0):
    """log P(label | x): the sum over all K^T frame paths that collapse to the label."""
    T, K = log_probs.shape
    total = -np.inf
    for path in itertools.product(range(K), repeat=T):
        if _collapse(path, blank) == tuple(label):
            total = np.logaddexp(total, sum(log_probs[t, s] for t, s in enumerate(path)))
    return total


def _all_labellings(log_probs, blank=0):
    T, K = log_probs.shape
    probs = {}
    for path in itertools.product(range(K), repeat=T):
        lab = _collapse(path, blank)
        probs[lab] = np.logaddexp(probs.get(lab, -np.inf), sum(log_probs[t, s] for t, s in enumerate(path)))
    return probs


def _log_softmax(x):
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def test_hand_example_two_frames():
    # p(blank) = 0.6, p(a) = 0.4 in both frames: P("") = .36, P("a") = .16 + .24 + .24 = .64
    lp = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    loss = ctc.ctc_loss(lp[None], np.array([2]), np.array([[1]]), np.array([1]))
    np.testing.assert_allclose(loss, [-np.log(0.64)], rtol=1e-5)
    loss0 = ctc.ctc_loss(lp[None], np.array([2]), np.array([[1]]), np.array([0]))
    np.testing.assert_allclose(loss0, [-np.log(0.36)], rtol=1e-5)
    # greedy reads "" (blank, blank); the beam finds "a", the more probable labelling
    assert ctc.greedy_decode(lp) == []
    best, score = ctc.prefix_beam_search(lp, beam_width=4)
    assert best == [1] and score == pytest.approx(np.log(0.64))


def test_loss_equals_brute_force_over_padded_batch():
    rng = np.random.default_rng(0)
    K, T = 4, 5
    # labels of several lengths incl. a repeat (needs a blank between) and the empty labelling
    cases = [([1, 2], 5), ([3, 3], 4), ([1], 3), ([2, 1, 3], 5), ([], 2), ([1, 1, 1], 5)]
    logits = rng.standard_normal((len(cases), T, K)).astype(np.float32) * 2
    labels = np.full((len(cases), 3), 9, np.int32)          # padding value is ignored
    for i, (lab, _) in enumerate(cases):
        labels[i, :len(lab)] = lab
    lab_len = np.array([len(c[0]) for c in cases])
    lens = np.array([c[1] for c in cases])
    got = np.asarray(jax.jit(ctc.ctc_loss)(logits, lens, labels, lab_len))
    for i, (lab, n) in enumerate(cases):
        lp = _log_softmax(logits[i, :n].astype(np.float64))
        np.testing.assert_allclose(got[i], -_brute_force(lp, lab), rtol=1e-4, atol=1e-4)
    # what is past the length does not matter
    logits2 = logits.copy()
    logits2[:, 4:] = 100.0
    got2 = np.asarray(ctc.ctc_loss(logits2, lens, labels, lab_len))
    np.testing.assert_allclose(got2[lens < 5], got[lens < 5], rtol=1e-5)


def test_impossible_labelling_has_huge_loss():
    # [1, 1] needs at least 3 frames; with 2 the probability is 0
    lp = np.zeros((1, 2, 3), np.float32)
    loss = ctc.ctc_loss(lp, np.array([2]), np.array([[1, 1]]), np.array([2]))
    assert float(loss[0]) > 1e4


def test_greedy_collapses_repeats_then_drops_blanks():
    seq = [0, 1, 1, 0, 1, 2, 2, 2, 0, 0, 3, 1]
    lp = np.log(np.full((len(seq), 4), 0.01))
    lp[np.arange(len(seq)), seq] = np.log(0.97)
    assert ctc.greedy_decode(lp) == [1, 1, 2, 3, 1]
    assert ctc.greedy_decode(lp, length=5) == [1, 1]
    assert ctc.greedy_decode(lp, blank=1) == [0, 0, 2, 0, 3]


def test_prefix_beam_scores_are_exact_labelling_probabilities():
    rng = np.random.default_rng(1)
    for trial in range(4):
        T, K = 4, 3
        lp = _log_softmax(rng.standard_normal((T, K)) * 1.5)
        probs = _all_labellings(lp)
        best_lab = max(probs, key=probs.get)
        beam = ctc.prefix_beam_search(lp, beam_width=100, nbest=True)
        assert tuple(beam[0][0]) == best_lab
        for lab, score in beam:                       # every kept prefix: its exact probability
            np.testing.assert_allclose(score, probs[tuple(lab)], rtol=1e-9)
        assert len(beam) == len(probs)                # a wide beam keeps every labelling
        # agrees with the CTC loss
        loss = ctc.ctc_loss(lp[None].astype(np.float32), np.array([T]),
                            np.array([list(best_lab) or [0]]), np.array([len(best_lab)]))
        np.testing.assert_allclose(-float(loss[0]), probs[best_lab], rtol=1e-4, atol=1e-5)
    # beam width 1 still returns a valid labelling with its (lower-bound) score
    lab, s = ctc.prefix_beam_search(lp, beam_width=1)
    assert s <= probs[tuple(lab)] + 1e-9


def test_edit_distance_and_error_rate():
    assert ctc.edit_distance([], []) == 0
    assert ctc.edit_distance([1, 2, 3], []) == 3
    assert ctc.edit_distance([], [4, 5]) == 2
    assert ctc.edit_distance("kitten", "sitting") == 3
    assert ctc.edit_distance([1, 2, 3, 4], [1, 3, 4, 5]) == 2    # delete 2, insert 5
    assert ctc.edit_distance([1, 2], [2, 1]) == 2
    assert ctc.error_rate([[1, 2, 3], [4]], [[1, 2, 3], [5, 6]]) == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="2 references but 1"):
        ctc.error_rate([[1], [2]], [[1]])
