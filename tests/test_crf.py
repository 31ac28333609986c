"""The CRF against brute-force enumeration of every tag path."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxrnn.heads import crf

K, T = 3, 5


def _random(seed, K=K, T=T):
    rng = np.random.default_rng(seed)
    params = crf.CRFParams(jnp.asarray(rng.normal(size=(K, K))), jnp.asarray(rng.normal(size=K)),
                           jnp.asarray(rng.normal(size=K)))
    return params, jnp.asarray(rng.normal(size=(T, K)))


def _brute(params, emissions, n, constraints=None):
    """Every path of length n: (log Z, best path, best score, marginals [n, K])."""
    tr, st, en = (np.asarray(a, np.float64) for a in params)
    e = np.asarray(emissions, np.float64)
    Kn = tr.shape[0]
    scores, paths = [], []
    for path in itertools.product(range(Kn), repeat=n):
        if constraints is not None:
            if not constraints.start[path[0]] or not constraints.end[path[-1]]:
                continue
            if any(not constraints.transitions[a, b] for a, b in zip(path, path[1:])):
                continue
        s = st[path[0]] + en[path[-1]] + sum(e[t, k] for t, k in enumerate(path))
        s += sum(tr[a, b] for a, b in zip(path, path[1:]))
        scores.append(s)
        paths.append(path)
    scores = np.array(scores)
    log_z = np.log(np.sum(np.exp(scores - scores.max()))) + scores.max()
    probs = np.exp(scores - log_z)
    marg = np.zeros((n, Kn))
    for p, path in zip(probs, paths):
        marg[np.arange(n), list(path)] += p
    best = int(np.argmax(scores))
    return log_z, paths[best], scores[best], marg


@pytest.mark.parametrize("n", [1, 2, 4, 5])
def test_partition_decode_and_marginals_equal_brute_force(n, x64):
    params, em = _random(n)
    log_z, best, best_score, marg = _brute(params, em, n)
    np.testing.assert_allclose(crf.log_partition(params, em, n), log_z, rtol=1e-12)
    tags, score = crf.decode(params, em, n)
    assert tuple(np.asarray(tags[:n])) == best and not np.asarray(tags[n:]).any()
    np.testing.assert_allclose(score, best_score, rtol=1e-12)
    np.testing.assert_allclose(crf.sequence_score(params, em, tags, n), best_score, rtol=1e-12)
    np.testing.assert_allclose(crf.marginals(params, em, n)[:n], marg, rtol=1e-10, atol=1e-12)
    assert not np.asarray(crf.marginals(params, em, n)[n:]).any()


def test_log_likelihood_is_a_distribution(x64):
    params, em = _random(7, T=4)
    total = sum(np.exp(crf.log_likelihood(params, em, jnp.array(p)))
                for p in itertools.product(range(K), repeat=4))
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)


def test_padding_never_matters(x64):
    params, em = _random(3)
    em2 = em.at[3:].set(50.0)
    tags = jnp.array([0, 2, 1, 1, 1])
    tags2 = tags.at[3:].set(2)
    for f in (lambda e, y: crf.log_likelihood(params, e, y, 3), lambda e, y: crf.decode(params, e, 3)[0]):
        np.testing.assert_allclose(f(em, tags), f(em2, tags2))


def test_empty_sequence(x64):
    params, em = _random(0)
    assert float(crf.log_likelihood(params, em, jnp.zeros(T, jnp.int32), 0)) == 0.0
    assert not np.asarray(crf.decode(params, em, 0)[0]).any()


def test_gradients_match_finite_differences(x64):
    params, em = _random(5)
    tags = jnp.array([1, 0, 2, 2, 1])
    check_grads(lambda p, e: crf.log_likelihood(p, e, tags, 4), (params, em), order=1,
                modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-6)


def test_vmap_over_a_batch(x64):
    params, _ = _random(0)
    em = jnp.asarray(np.random.default_rng(1).normal(size=(3, T, K)))
    lengths = jnp.array([5, 2, 1])
    tags = jnp.array([[0, 1, 2, 0, 1]] * 3)
    ll = jax.vmap(lambda e, y, n: crf.log_likelihood(params, e, y, n))(em, tags, lengths)
    dec = jax.vmap(lambda e, n: crf.decode(params, e, n)[0])(em, lengths)
    for b in range(3):
        np.testing.assert_allclose(ll[b], crf.log_likelihood(params, em[b], tags[b], lengths[b]))
        np.testing.assert_array_equal(dec[b], crf.decode(params, em[b], lengths[b])[0])


@pytest.mark.parametrize("scheme,tags", [
    ("BIO", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]),
    ("BMES", ["B", "M", "E", "S"]),
])
def test_constrained_crf_equals_brute_force_over_allowed_paths(scheme, tags, x64):
    cons = crf.allowed_transitions(tags, scheme)
    Kt = len(tags)
    params, em = _random(11, K=Kt, T=4)
    log_z, best, best_score, _ = _brute(params, em, 4, cons)
    np.testing.assert_allclose(crf.log_partition(params, em, 4, cons), log_z, rtol=1e-10)
    dec, score = crf.decode(params, em, 4, cons)
    assert tuple(np.asarray(dec)) == best
    np.testing.assert_allclose(score, best_score, rtol=1e-10)


def test_scheme_rules():
    bio = crf.allowed_transitions(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "BIO")
    assert not bio.start[2] and bio.start[1] and bio.start[0]
    assert bio.transitions[1, 2] and bio.transitions[2, 2] and not bio.transitions[1, 4]
    assert not bio.transitions[0, 2] and bio.transitions[2, 3]
    bmes = crf.allowed_transitions(["B", "M", "E", "S"], "BMES")
    # B -> M|E, M -> M|E, E -> B|S, S -> B|S; start B|S; end E|S
    want = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1], [1, 0, 0, 1]], bool)
    np.testing.assert_array_equal(bmes.transitions, want)
    np.testing.assert_array_equal(bmes.start, [1, 0, 0, 1])
    np.testing.assert_array_equal(bmes.end, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="scheme"):
        crf.allowed_transitions(["B"], "XYZ")


def test_bad_emission_shape():
    with pytest.raises(ValueError, match=r"\[T, 3\]"):
        crf.log_partition(crf.init(3), jnp.zeros((2, 5, 3)))
